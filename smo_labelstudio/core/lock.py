"""One lock per workspace, across processes: launch, pull, quality, export and adjudication hold it while they
read or write the workspace, so two of them never interleave (two launches importing the same batch, a pull
replacing tables under another pull's newer watermark, a quality check reading half-replaced tables).

An OS file lock (`filelock`: `flock` on POSIX) on `<workspace>/workspace.lock`: the operating system releases
it when the holder dies, so a crash never leaves a stale lock. The holder writes its pid, command and
operation into `workspace.lock.json` beside it, for the one-line message a waiting process ends with.

Re-entrant within one run: a step that holds the lock may call another step that takes it (a flow holds it
around its tasks; the tasks' library calls take it again), including from the threads of a Prefect task
runner, which copy the caller's context. Two unrelated threads of one process exclude each other like two
processes do. A second holder waits up to `SMO_LOCK_TIMEOUT` seconds (0: fail at once), then raises
`WorkspaceBusy`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from smo_labelstudio.core.errors import SmoError
from smo_labelstudio.core.settings import get_settings
from smo_labelstudio.core.workspace import Workspace

LOCK_FILE = "workspace.lock"
HOLDER_FILE = "workspace.lock.json"

log = logging.getLogger(__name__)

# The workspace roots this context holds (copied into Prefect task threads: their calls re-enter).
_held: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("smo_workspace_locks", default=frozenset())
_threads: dict[str, threading.Lock] = {}  # one per workspace: threads of one process queue like processes
_threads_guard = threading.Lock()


class WorkspaceBusy(SmoError, RuntimeError):
    """Another process (or run) holds the workspace's lock and did not let go in time."""


def _thread_lock(key: str) -> threading.Lock:
    with _threads_guard:
        return _threads.setdefault(key, threading.Lock())


def holder(root: Path) -> dict | None:
    """Who holds (or last held) the workspace's lock, as its holder wrote it; None when unknown."""
    try:
        return json.loads((Path(root) / HOLDER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _describe(root: Path) -> str:
    info = holder(root)
    if not info:
        return "another process (it has not said which yet)"
    where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
    what, pid, command, since = (info.get(k, "?") for k in ("what", "pid", "command", "since"))
    return f"{what} (pid {pid}{where}, `{command}`, since {since})"


def _command() -> str:
    """The holder's command line, shortened: what a person needs to find it in `ps`."""
    words = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]
    text = " ".join(words)
    return text if len(text) <= 200 else text[:197] + "..."


def busy_message(root: Path, what: str, waited: float) -> str:
    """The one line a process that could not get the lock ends with."""
    return (
        f"workspace {root} is busy: {_describe(root)} holds it; this {what} waited {waited:g} s "
        f"(SMO_LOCK_TIMEOUT); run it again when that one is done"
    )


@contextmanager
def workspace_lock(root: Path | Workspace, what: str, timeout: float | None = None) -> Iterator[dict | None]:
    """Hold the workspace's lock for `what` (launch, pull, quality, export, adjudication); re-entrant within a run.
    `root` is the workspace folder or a `Workspace`; `timeout` defaults to `SMO_LOCK_TIMEOUT`. Yields what a holder
    that died holding it had written (its sidecar, see `note_holder`), else None."""
    folder = Path(root.root if isinstance(root, Workspace) else root).absolute()
    key = str(folder)
    if key in _held.get():
        yield None
        return
    wait = get_settings().lock_timeout if timeout is None else timeout
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    thread_lock = _thread_lock(key)
    if not thread_lock.acquire(blocking=False):
        log.warning(
            "workspace %s is busy: another run of this process holds it; this %s waits up to %g s", folder, what, wait
        )
        if wait <= 0 or not thread_lock.acquire(timeout=wait):
            raise WorkspaceBusy(busy_message(folder, what, wait))
    try:
        lock = FileLock(folder / LOCK_FILE, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            left = max(0.0, wait - (time.monotonic() - started))
            log.warning(
                "workspace %s is busy: %s holds it; this %s waits up to %g s", folder, _describe(folder), what, left
            )
            try:
                lock.acquire(timeout=left) if left > 0 else lock.acquire(timeout=0)
            except Timeout:
                raise WorkspaceBusy(busy_message(folder, what, wait)) from None
        try:
            stale = holder(folder)  # a holder that let go removed it: one left behind died holding the lock
            info = {
                "what": what,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": _command(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            }
            (folder / HOLDER_FILE).write_text(json.dumps(info))
            token = _held.set(_held.get() | {key})
            try:
                yield stale
            finally:
                _held.reset(token)
                (folder / HOLDER_FILE).unlink(missing_ok=True)
        finally:
            lock.release()
    finally:
        thread_lock.release()


def holds(root: Path | Workspace) -> bool:
    """Whether this run holds the workspace's lock (tests; a step that must not run without it)."""
    return str(Path(root.root if isinstance(root, Workspace) else root).absolute()) in _held.get()


def note_holder(root: Path | Workspace, **extra: str) -> None:
    """Add to the holder's sidecar what a successor must undo if this holder dies (a Prefect lease id); only
    while this run holds the lock."""
    folder = Path(root.root if isinstance(root, Workspace) else root).absolute()
    if str(folder) in _held.get():
        (folder / HOLDER_FILE).write_text(json.dumps({**(holder(folder) or {}), **extra}))
