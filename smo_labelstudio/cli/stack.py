"""`smo stack`: the local stack (Label Studio, Prefect, the ML backend): up, down, status, env."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Optional

import typer

from smo_labelstudio.cli._errors import reported
from smo_labelstudio.core.paths import state_home
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack.services import Settings

app = typer.Typer(no_args_is_help=True, help="The local stack: Label Studio, Prefect, the ML backend.")


def settings(postgres: Optional[str] = None) -> Settings:
    """The stack's settings, with the PostgreSQL URL checked now (a bad one is a ConfigError)."""
    settings = Settings.from_env(state_home(), postgres)
    _ = settings.pg  # validate the URL now, with a clear message
    return settings


@app.command("up")
@reported
def stack_up(
    postgres: Optional[str] = typer.Option(
        None,
        "--postgres",
        metavar="URL",
        envvar="SMO_POSTGRES_URL",
        help="Run Label Studio and Prefect on PostgreSQL: postgresql://user@host:port/dbname "
        "(Prefect uses <dbname>_prefect). Default: SQLite under the state folder.",
    ),
    legacy_token: bool = typer.Option(
        False,
        "--legacy-token",
        help="Switch Label Studio's legacy API tokens on and issue one (the behaviour before personal access "
        "tokens). Default (or SMO_LS_LEGACY_TOKEN=false): legacy tokens off, a personal access token issued.",
    ),
) -> None:
    """Start the stack (idempotent), wait for every health check, print URLs and how to log in."""
    current = settings(postgres)
    if legacy_token:
        current = replace(current, legacy_token=True)
    state = stack.up(current, typer.echo)
    report = stack.status(current)
    ls_url = report["services"]["label-studio"]["url"]
    typer.echo("")
    typer.echo(f"Label Studio   {ls_url}")
    typer.echo(
        f"  log in as {state['label_studio']['email']}; the password is in "
        f"{stack.state_path(current.home)} (mode 0600, key label_studio.password)"
    )
    typer.echo(f"Prefect UI     {report['services']['prefect']['url']}")
    typer.echo(
        f"ML backend     {report['services']['ml-backend']['url']} (basic auth: SMO_BACKEND_USER/PASSWORD "
        f"from `smo stack env`)"
    )
    if "deployments" in report["services"]:
        typer.echo(
            "Deployments    create-tasks/smo, pull-completions/smo, quality-check/smo, quality-scan/smo, "
            "ops-report/smo, "
            "export-dataset/smo: listed in the Prefect UI (Deployments) within about 30 s; forms offer the specs "
            "folder and the landing folder"
        )
    typer.echo(f"Notifications  {_notifications(report['services']['prefect']['url'])}")
    typer.echo(f"Database       {report['database']}")
    typer.echo('Point a shell at it: eval "$(smo stack env)"')


def _notifications(prefect_url: str) -> str:
    """With SMO_NOTIFY_BLOCK set, the notification automations on the stack's Prefect, created or updated as by
    `smo notify setup` (a block that is not there yet is a note, not a failed `up`); what to print."""
    from smo_labelstudio.core.errors import ConfigError  # noqa: PLC0415
    from smo_labelstudio.core.settings import get_settings  # noqa: PLC0415

    block = get_settings().notify_block
    if not block:
        return "none yet: `smo notify setup --slack URL` (or --webhook URL, --block TYPE/NAME)"
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings  # noqa: PLC0415

    from smo_labelstudio.notify import automations as na  # noqa: PLC0415 - start-up time: Prefect

    with temporary_settings({PREFECT_API_URL: prefect_url + "/api", PREFECT_UI_URL: prefect_url}):
        try:
            ref = na.find_block(block)
        except ConfigError as exc:
            return f"not set up: {exc}"
        done = na.ensure_automations(ref, prefect_url)
    return f"{len(done)} automations send through {ref} (SMO_NOTIFY_BLOCK)"


@app.command("down")
@reported
def stack_down() -> None:
    """Stop only the processes the stack started."""
    stack.down(settings(), typer.echo)


@app.command("status")
@reported
def stack_status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Report each service: running, healthy, URL, pid, log."""
    report = stack.status(settings())
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"state: {report['home']}  database: {report['database']}")
    for name, svc in report["services"].items():
        word = "healthy" if svc["healthy"] else ("running, not healthy" if svc["running"] else "stopped")
        typer.echo(f"{name:13} {word:22} {svc['url'] or ''}")
    if not all(s["healthy"] for s in report["services"].values()):
        raise typer.Exit(3)


@app.command("env")
@reported
def stack_env() -> None:
    """Print `export` lines: eval "$(smo stack env)" points a shell, script or notebook at the stack."""
    typer.echo("\n".join(stack.env_lines(settings())))
