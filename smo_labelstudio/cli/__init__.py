"""The `smo` command. Every user mistake ends in one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from smo_labelstudio.core.paths import state_home
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack.envs import EnvError
from smo_labelstudio.stack.services import ServiceError, Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Safety-model-operations data production on Label Studio."
)
stack_app = typer.Typer(no_args_is_help=True, help="The local stack: Label Studio, Prefect, the ML backend.")
configs_app = typer.Typer(no_args_is_help=True, help="Label configs and guidelines generated from taxonomy.yaml.")
app.add_typer(stack_app, name="stack")
backend_app = typer.Typer(no_args_is_help=True, help="The pre-annotation ML backend: train, list versions, connect.")
app.add_typer(configs_app, name="configs")
from smo_labelstudio.cli.quality import app as quality_app  # noqa: E402

app.add_typer(quality_app, name="quality")
from smo_labelstudio.cli import simulate as simulate_cli  # noqa: E402

app.command("simulate")(simulate_cli.simulate)
app.add_typer(backend_app, name="backend")
from smo_labelstudio.cli import batches as batch_cli  # noqa: E402

app.command("launch")(batch_cli.launch)
app.command("pull")(batch_cli.pull_cmd)
app.add_typer(batch_cli.spec_app, name="spec")
app.command("serve")(batch_cli.serve)
from smo_labelstudio.cli import report as report_cli  # noqa: E402

app.command("report")(report_cli.report)
from smo_labelstudio.cli import export as export_cli  # noqa: E402

app.command("export")(export_cli.export)
from smo_labelstudio.cli import warehouse as warehouse_cli  # noqa: E402

app.command("sql")(warehouse_cli.sql)
app.add_typer(warehouse_cli.warehouse_app, name="warehouse")

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
        None,
        "--postgres",
        metavar="URL",
        envvar="SMO_POSTGRES_URL",
        help="Run Label Studio and Prefect on PostgreSQL: postgresql://user@host:port/dbname "
        "(Prefect uses <dbname>_prefect). Default: SQLite under the state folder.",
    ),
) -> None:
    """Start the stack (idempotent), wait for every health check, print URLs and how to log in."""
    settings = _settings(postgres)
    try:
        state = stack.up(settings, typer.echo)
    except USER_ERRORS as exc:
        _fail(str(exc))
    report = stack.status(settings)
    ls_url = report["services"]["label-studio"]["url"]
    typer.echo("")
    typer.echo(f"Label Studio   {ls_url}")
    typer.echo(
        f"  log in as {state['label_studio']['email']}; the password is in "
        f"{stack.state_path(settings.home)} (mode 0600, key label_studio.password)"
    )
    typer.echo(f"Prefect UI     {report['services']['prefect']['url']}")
    typer.echo(
        f"ML backend     {report['services']['ml-backend']['url']} (basic auth: SMO_BACKEND_USER/PASSWORD "
        f"from `smo stack env`)"
    )
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
        typer.echo(f"{name:13} {word:22} {svc['url'] or ''}")
    if not all(s["healthy"] for s in report["services"].values()):
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
    from smo_labelstudio.labelstudio import configs

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
    from smo_labelstudio.labelstudio import client, configs

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
    typer.echo(
        f"{len(configs.list_configs())} configs, taxonomy and guidelines agree"
        + ("" if offline else "; Label Studio accepts every config")
    )


@configs_app.command("list")
def configs_list() -> None:
    """List config names (the stems spec files refer to)."""
    from smo_labelstudio.labelstudio import configs

    typer.echo("\n".join(configs.list_configs()))


def _model_store():
    from smo_labelstudio.model.modelstore import ModelStore
    from smo_labelstudio.stack.services import MLBackend

    return ModelStore(MLBackend(_settings()).model_dir)


@backend_app.command("train")
def backend_train(
    data: Optional[str] = typer.Option(
        None,
        "--data",
        metavar="FILE",
        help="CSV or JSONL with text, labels (policy ids, |-separated), "
        "optional severity and language. Default: generated starter data.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the held-out split and the model."),
    as_json: bool = typer.Option(False, "--json", help="Print the version's metrics as one JSON object."),
) -> None:
    """Train a model version; it is promoted only if its held-out macro F1 is not worse than the current one."""
    from smo_labelstudio.core.taxonomy import load_taxonomy
    from smo_labelstudio.model.training import TrainingDataError, read_training_file, starter_data, train_version

    try:
        labels = load_taxonomy().ids
        rows = read_training_file(Path(data), labels) if data else starter_data(seed=seed)
        metrics = train_version(_model_store(), rows, labels, seed=seed, source=data or "generated starter data")
    except (TrainingDataError,) + USER_ERRORS as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    verdict = (
        "promoted"
        if metrics["promoted"]
        else (
            f"kept, not promoted (current {metrics['previous_version']} scores "
            f"{metrics['previous_macro_f1_same_rows']:.3f} on the same rows)"
        )
    )
    typer.echo(
        f"{metrics['version']}: macro F1 {metrics['macro_f1']:.3f}, micro F1 {metrics['micro_f1']:.3f} "
        f"on {metrics['n_test']} held-out rows ({metrics['n_train']} trained); {verdict}"
    )


@backend_app.command("versions")
def backend_versions(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Every model version kept on disk with its held-out metrics; the current one marked."""
    store = _model_store()
    rows = [store.metrics(v) for v in store.versions()]
    current = store.current_version()
    if as_json:
        typer.echo(json.dumps({"current": current, "versions": rows}))
        return
    if not rows:
        typer.echo(f"no model versions in {store.root}; `smo stack up` or `smo backend train` makes one")
    for m in rows:
        mark = "*" if m["version"] == current else " "
        typer.echo(
            f"{mark} {m['version']}  macro F1 {m['macro_f1']:.3f}  n={m['n_train']}+{m['n_test']}  "
            f"promoted={m['promoted']}  source: {m['source']}"
        )


@backend_app.command("connect")
def backend_connect(
    project: int = typer.Option(..., "--project", help="Label Studio project id."),
) -> None:
    """Register the stack's ML backend with a project: predictions for tasks opened without one,
    and retraining on completed work through Label Studio's webhook."""
    from smo_labelstudio.labelstudio import client

    settings = _settings()
    try:
        state = stack.load_state(settings.home)
        backend = state.get("backend")
        if not backend:
            _fail("no stack state; run `smo stack up` first")
        url, token = client.connection_settings()
        result = client.connect_backend(
            url,
            token,
            project,
            stack.backend_url(stack._as_recorded(settings, state)),
            backend["user"],
            backend["password"],
            backend["webhook_secret"],
        )
    except USER_ERRORS + (client.LabelStudioError, client.ConnectionSettingsError) as exc:
        _fail(str(exc))
    typer.echo(
        f"project {project}: ML backend {result['ml_backend_id']} connected (state {result['state']}), "
        f"training webhook {result['webhook_id']}"
    )


@app.command("demo")
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """The whole line on generated items: launch, simulated annotators, pull, quality check."""
    from smo_labelstudio.cli import batches as batch_cli
    from smo_labelstudio.cli import demo as demo_mod

    batch_cli._prefect_ready()
    summary = batch_cli.run_command(lambda: demo_mod.run(say=(lambda _m: None) if as_json else typer.echo))
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo("")
    typer.echo(
        f"project {summary['project_id']}: {summary['imported']} imported now, {summary['already_present']} "
        f"already there, {summary['duplicates']} duplicates and {summary['quarantined']} quarantined rows "
        f"skipped; {summary['annotations_written']} annotations written now, {summary['annotations']} pulled"
    )
    typer.echo(f"Label Studio  {summary['project_url']}")
    typer.echo(f"Prefect runs  {summary['prefect_url']}")
    typer.echo(f"Quality       {'passed' if summary['quality_passed'] else 'a gate failed'}: {summary['report']}")
    typer.echo(f"Operations    {summary['ops_report']}")
    typer.echo(f"Dataset       {summary['export']} (datasheet.md)")
    typer.echo(f"Workspace     {summary['workspace']}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
