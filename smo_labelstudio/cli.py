"""The `smo` command. Every user mistake ends in one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from . import stack
from .envs import ML_BACKEND_ENV, EnvError
from .paths import state_home
from .services import ServiceError, Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Safety-model-operations data production on Label Studio.")
stack_app = typer.Typer(no_args_is_help=True, help="The local stack: Label Studio, Prefect, the ML backend.")
configs_app = typer.Typer(no_args_is_help=True, help="Label configs and guidelines generated from taxonomy.yaml.")
app.add_typer(stack_app, name="stack")
app.add_typer(configs_app, name="configs")

USER_ERRORS = (stack.StackError, ServiceError, EnvError, ValueError, OSError)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _settings(postgres: Optional[str] = None) -> Settings:
    try:
        settings = Settings.from_env(state_home(), postgres)
        _ = settings.pg  # validate the URL now, with a clear message
    except ValueError as exc:
        _fail(str(exc))
    return settings


@stack_app.command("up")
def stack_up(
    postgres: Optional[str] = typer.Option(
        None, "--postgres", metavar="URL", envvar="SMO_POSTGRES_URL",
        help="Run Label Studio and Prefect on PostgreSQL: postgresql://user@host:port/dbname "
             "(Prefect uses <dbname>_prefect). Default: SQLite under the state folder."),
) -> None:
    """Start the stack (idempotent), wait for every health check, print URLs and how to log in."""
    settings = _settings(postgres)
    try:
        ML_BACKEND_ENV.ensure(typer.echo)
        state = stack.up(settings, typer.echo)
    except USER_ERRORS as exc:
        _fail(str(exc))
    report = stack.status(settings)
    ls_url = report["services"]["label-studio"]["url"]
    typer.echo("")
    typer.echo(f"Label Studio   {ls_url}")
    typer.echo(f"  log in as {state['label_studio']['email']}; the password is in "
               f"{stack.state_path(settings.home)} (mode 0600, key label_studio.password)")
    typer.echo(f"Prefect UI     {report['services']['prefect']['url']}")
    typer.echo(f"Database       {report['database']}")
    typer.echo('Point a shell at it: eval "$(smo stack env)"')


@stack_app.command("down")
def stack_down() -> None:
    """Stop only the processes the stack started."""
    try:
        stack.down(_settings(), typer.echo)
    except USER_ERRORS as exc:
        _fail(str(exc))


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Report each service: running, healthy, URL, pid, log."""
    try:
        report = stack.status(_settings())
    except USER_ERRORS as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"state: {report['home']}  database: {report['database']}")
    for name, svc in report["services"].items():
        word = "healthy" if svc["healthy"] else ("running, not healthy" if svc["running"] else "stopped")
        extra = f" ({svc['note']})" if svc.get("note") else ""
        typer.echo(f"{name:13} {word:22} {svc['url']}{extra}")
    if not all(s["healthy"] for n, s in report["services"].items() if n != "ml-backend"):
        raise typer.Exit(3)


@stack_app.command("env")
def stack_env() -> None:
    """Print `export` lines: eval "$(smo stack env)" points a shell, script or notebook at the stack."""
    try:
        lines = stack.env_lines(_settings())
    except USER_ERRORS as exc:
        _fail(str(exc))
    typer.echo("\n".join(lines))


@configs_app.command("build")
def configs_build() -> None:
    """Regenerate label_configs/ and guidelines/ from taxonomy.yaml."""
    from . import configs

    try:
        changed = configs.build()
    except USER_ERRORS as exc:
        _fail(str(exc))
    for path in changed:
        typer.echo(f"wrote {path.relative_to(configs.REPO_ROOT)}")
    typer.echo(f"{len(changed)} file(s) changed" if changed else "configs and guidelines are up to date")


@configs_app.command("check")
def configs_check(
    offline: bool = typer.Option(False, "--offline", help="Skip validation against a running Label Studio."),
) -> None:
    """Check configs, taxonomy and guidelines agree, and that Label Studio accepts every config."""
    from . import client, configs

    validate = None
    if not offline:
        try:
            url, token = client.connection_settings()
        except USER_ERRORS + (client.ConnectionSettingsError,) as exc:
            _fail(f"{exc} (or pass --offline)")
        if not client.reachable(url):
            _fail(f"Label Studio is not answering at {url}; run `smo stack up` (or pass --offline)")
        validate = lambda xml: client.validate_config(url, token, xml)  # noqa: E731
    try:
        problems = configs.check(validate=validate)
    except USER_ERRORS as exc:
        _fail(str(exc))
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        _fail(f"{len(problems)} problem(s)")
    typer.echo(f"{len(configs.list_configs())} configs, taxonomy and guidelines agree"
               + ("" if offline else "; Label Studio accepts every config"))


@configs_app.command("list")
def configs_list() -> None:
    """List config names (the stems spec files refer to)."""
    from . import configs

    typer.echo("\n".join(configs.list_configs()))


@app.command("demo")
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Create (or reuse) the demo project, import the demo items not yet there, read them back."""
    from . import demo as demo_mod

    try:
        summary = demo_mod.run()
    except USER_ERRORS as exc:
        _fail(str(exc))
    except Exception as exc:  # a server-side refusal: say what and where, without a traceback
        _fail(f"Label Studio refused the demo: {exc}")
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(f"project {summary['project_id']}: {summary['imported']} imported, "
               f"{summary['already_present']} already present, {summary['tasks']} tasks in all")
    typer.echo(f"Open it: {summary['project_url']}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
