"""How the CLI runs the flows of flows/: on a Prefect API that answers, loaded by their deployment
entrypoint (the library never imports flows/), with Prefect's console tracebacks left to the run's logs."""

from __future__ import annotations

import logging
import os
from typing import Any

from smo_labelstudio.cli._errors import fail
from smo_labelstudio.core.paths import REPO_ROOT, state_home
from smo_labelstudio.stack.control import load_state


def prefect_ready() -> None:
    """Flows run on a real Prefect API: the stack's, or PREFECT_API_URL; one line when it does not answer."""
    import httpx  # noqa: PLC0415 - start-up time: only the commands that run flows need it

    if not os.environ.get("PREFECT_API_URL"):
        record = load_state(state_home()).get("services", {}).get("prefect")
        if not record:
            fail('no Prefect API: run `smo stack up` (or eval "$(smo stack env)" / set PREFECT_API_URL)')
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{record['port']}/api"
    url = os.environ["PREFECT_API_URL"].rstrip("/")
    try:
        httpx.get(f"{url}/health", timeout=10)  # any answer will do (Prefect Cloud wants a key for it)
    except httpx.TransportError as exc:
        fail(f"the Prefect API at {url} does not answer ({type(exc).__name__}); is the stack up? (`smo stack status`)")


def load_flow(name: str) -> Any:
    """The flow `name` of flows/<name>.py, by the entrypoint prefect.yaml deploys; an error while loading
    the file is raised as itself (not as Prefect's ScriptError), and strips Prefect's console tracebacks."""
    from prefect.exceptions import ScriptError  # noqa: PLC0415 - start-up time: Prefect takes seconds to import
    from prefect.flows import load_flow_from_entrypoint  # noqa: PLC0415 - start-up time

    try:
        flow: Any = load_flow_from_entrypoint(f"{REPO_ROOT / 'flows' / name}.py:{name}", use_placeholder_flow=False)
    except ScriptError as exc:
        raise exc.user_exc from None
    console_without_tracebacks()
    return flow


class _NoTraceback(logging.Formatter):
    """Wraps a console formatter so a failed run's traceback is not printed twice: the command reports the
    error itself, and the traceback stays in the run's logs on the Prefect server."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def console_without_tracebacks() -> None:
    """Strip tracebacks from Prefect's console output (call once Prefect is imported)."""
    from prefect.logging.handlers import PrefectConsoleHandler  # noqa: PLC0415 - start-up time

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _NoTraceback):
                handler.setFormatter(_NoTraceback(handler.formatter))
