"""The CLI's one error path. A problem the user or their environment can fix (an SmoError, or Label Studio
refusing or not answering) ends in one line on stderr and exit 1; anything else is a bug in smo: its traceback,
where to report it, and exit 2, so a bug is never disguised as a user mistake."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import click
import typer

from smo_labelstudio.core.errors import SmoError

REPORT_TO = "the smo-labelstudio issue tracker"
BUG_EXIT = 2

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: object, code: int = 1) -> NoReturn:
    """End the command with `error: <message>` (one line) on stderr."""
    text = " ".join(str(message).split())
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)


def _environment_errors() -> tuple[type[BaseException], ...]:
    """Label Studio's own errors (HTTP and SDK), which the environment causes, not smo."""
    from smo_labelstudio.labelstudio import client  # noqa: PLC0415 - start-up time: the SDK takes ~2 s to import

    return client.environment_errors()


def _message(exc: BaseException) -> str:
    """The one line a user reads: the error's message, or where a connection failed."""
    import httpx  # noqa: PLC0415 - start-up time: needed only when a command fails

    if isinstance(exc, httpx.ConnectError):
        try:
            url = exc.request.url
        except RuntimeError:  # an error raised without its request
            pass
        else:
            return f"cannot reach {url.host}:{url.port}; is the stack up? (`smo stack status`)"
    if isinstance(exc, httpx.TransportError):
        try:
            request = exc.request
        except RuntimeError:
            pass
        else:  # sent, then the connection broke: a POST is not re-sent blindly, a re-run looks first
            return (
                f"Label Studio did not answer {request.method} {request.url.path} (the connection broke: "
                f"{type(exc).__name__}); check it is up (`smo stack status`) and run the command again, "
                "it resumes where it stopped"
            )
    return str(exc).strip() or type(exc).__name__


def report(exc: Exception) -> NoReturn:
    """One line and exit 1 for a user's or environment's problem; for a bug, the traceback, where to report
    it, and exit 2."""
    if isinstance(exc, SmoError) or isinstance(exc, _environment_errors()):
        fail(_message(exc))
    traceback.print_exception(exc, file=sys.stderr)
    typer.echo(
        f"this is a bug in smo, not a mistake in what you asked: please report it, with the traceback above and "
        f"the command you ran, on {REPORT_TO}",
        err=True,
    )
    raise typer.Exit(BUG_EXIT)


def reported(func: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so every exception it raises goes through `report` (click's own exits pass through)."""

    @functools.wraps(func)
    def command(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place that sorts every error into a line or a bug
            report(exc)

    return command
