"""`smo doctor`: check that a Label Studio (URL and token) is one smo can work with, one line per check
with the fix for each failure (the checks: smo_labelstudio.labelstudio.doctor)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from smo_labelstudio.cli._errors import reported


@reported
def doctor(
    url: Optional[str] = typer.Option(
        None,
        "--url",
        envvar="SMO_LS_URL",
        help="Label Studio's URL, with its path prefix if behind a proxy (default: the local stack's).",
    ),
    token: Optional[str] = typer.Option(
        None,
        "--token",
        envvar="SMO_LS_TOKEN",
        show_default=False,
        help="A personal access token or a legacy API token (default: the local stack's).",
    ),
    backend_url: Optional[str] = typer.Option(
        None,
        "--backend-url",
        envvar="SMO_BACKEND_URL",
        help="The ML backend's URL as Label Studio reaches it (default: the local stack's).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with a key per check."),
) -> None:
    """Check a Label Studio and token: reachable, version, token kind, can create projects, webhooks allowed to
    reach the ML backend, ML backend reachable from Label Studio. Exit 0 when every check passes, 1 otherwise.

    It creates a scratch project (with an inactive webhook and an ML backend connection in it) and deletes it.
    """
    from smo_labelstudio.labelstudio import doctor as checks  # noqa: PLC0415 - start-up time: the SDK
    from smo_labelstudio.labelstudio.client import backend_settings, connection_settings  # noqa: PLC0415

    url, token = connection_settings(url, token)
    backend = backend_settings()
    if backend_url:
        backend = (backend_url.rstrip("/"), backend[1] if backend else ("", ""))
    results = checks.diagnose(url, token, backend)
    if as_json:
        typer.echo(json.dumps(checks.as_json(results)))
    else:
        for check in results:
            typer.echo(check.line())
    if any(check.ok is False for check in results):
        raise typer.Exit(1)
