"""Background processes we start and may later stop: spawn, identify, health-wait, stop.

A process is recorded as (pid, kernel start time): a recycled pid never matches, so `stop`
only ever signals processes this tooling started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counted after the parenthesised command name, which may hold spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


PRIVATE_UMASK = 0o077  # what our services create (databases, uploads, logs) only their user can read


def open_log(log: Path):
    """`log` opened for appending, created 0600 in a 0700 folder: logs may hold tokens or task text."""
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return open(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


def spawn(argv: list[str], *, env: Mapping[str, str], cwd: Path | None, log: Path) -> dict:
    """Start `argv` in its own session with output appended to `log` and a private umask (files it
    creates are its user's only); return its record."""
    with open_log(log) as out:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    return {"pid": proc.pid, "start_time": _start_time(proc.pid), "log": str(log)}


def alive(record: Mapping) -> bool:
    """True while the recorded process (same pid and start time) is running and not a zombie."""
    pid = record.get("pid")
    if not pid or _start_time(pid) != record.get("start_time"):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(record: Mapping, timeout: float = 30.0) -> None:
    """Terminate the recorded process group (TERM, then KILL after `timeout`)."""
    if not alive(record):
        return
    pid = record["pid"]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not alive(record) and not _group_alive(pid):
                return
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for tests and side services)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def healthy(url: str | None, timeout: float = 5.0, auth: tuple[str, str] | None = None) -> bool:
    """True when `url` answers 200 (a service without a health URL counts as healthy)."""
    if url is None:
        return True
    try:
        return httpx.get(url, timeout=timeout, auth=auth).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(url: str | None, record: Mapping, timeout: float, auth: tuple[str, str] | None = None) -> str | None:
    """Poll `url` until it answers 200; return None when healthy, else why not.

    Without a URL the process only has to stay up for a couple of seconds."""
    deadline = time.monotonic() + timeout
    settle = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if not alive(record):
            return "exited during startup"
        if url is None and time.monotonic() >= settle:
            return None
        if url is not None and healthy(url, timeout=3.0, auth=auth):
            return None
        time.sleep(0.5)
    return f"not healthy after {timeout:.0f} s"
