"""Running `smo` as a user does, pointed at the test session's servers (a helper, not a test file)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path


def stack_env(label_studio, ml_backend, home: Path) -> dict:
    """The environment `eval "$(smo stack env)"` would give, for the session's Label Studio and backend."""
    return {
        **os.environ,
        "SMO_HOME": str(home),
        "SMO_LS_URL": label_studio.url,
        "SMO_LS_TOKEN": label_studio.token,
        "SMO_BACKEND_URL": ml_backend.url,
        "SMO_BACKEND_USER": ml_backend.auth[0],
        "SMO_BACKEND_PASSWORD": ml_backend.auth[1],
    }


def smo(env: dict, *args: str, process: bool = False) -> subprocess.CompletedProcess:
    """`smo args` with exactly the environment `env`: the same command, its exit code, stdout and stderr.

    It runs in this process (the same typer app `smo` runs, on the same Label Studio and Prefect API) unless
    `process` asks for a separate one, or it must be: called from a thread other than the main one (runs side
    by side would share os.environ and the output streams), or pointed at another Prefect API or home (Prefect
    reads its settings once per process). A process costs seconds of imports per call, which the suite paid
    hundreds of times; tests about processes (killed, concurrent, what a process prints) pass `process=True`."""
    started = time.monotonic()
    here = not process and threading.current_thread() is threading.main_thread()
    here = here and all(env.get(k) == os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME"))
    result = _in_process(env, args) if here else _subprocess(env, args)
    where = "in-process" if here else "process"
    print(f"smo {' '.join(args[:1])} ({where}): {time.monotonic() - started:.1f} s", flush=True)  # with -s or failing
    return result


def _subprocess(env: dict, args: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smo_labelstudio.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def _in_process(env: dict, args: tuple[str, ...]) -> subprocess.CompletedProcess:
    import prefect.main  # noqa: F401 - Prefect's console handler keeps the stream of its first import: not the runner's
    from typer.testing import CliRunner

    from smo_labelstudio.cli import app

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the command sees exactly `env`, and nothing it sets outlives it
    try:
        outcome = CliRunner().invoke(app, list(args), prog_name="smo")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    stderr = outcome.stderr
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):  # escaped `reported`
        stderr += "".join(traceback.format_exception(outcome.exception))
    return subprocess.CompletedProcess(["smo", *args], outcome.exit_code, outcome.stdout, stderr)
