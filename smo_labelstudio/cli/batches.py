"""`smo launch`, `smo pull` and `smo spec new`: the project manager's commands. Each prints a
summary (`--json`: one JSON object); user mistakes end in one line on stderr, exit 1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

spec_app = typer.Typer(no_args_is_help=True, help="Project spec files.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _user_errors() -> tuple:
    from smo_labelstudio.core.spec import SpecError
    from smo_labelstudio.ingest.launch import LaunchError
    from smo_labelstudio.ingest.sources import SourceError
    from smo_labelstudio.labelstudio.client import ConnectionSettingsError, LabelStudioError
    from smo_labelstudio.pull.completions import PullError

    return (
        SpecError,
        SourceError,
        LaunchError,
        PullError,
        ConnectionSettingsError,
        LabelStudioError,
        OSError,
        ValueError,
    )


def _prefect_ready() -> None:
    """Flows run on a real Prefect API: the stack's, or PREFECT_API_URL; one line when it does not answer."""
    import httpx

    if not os.environ.get("PREFECT_API_URL"):
        from smo_labelstudio.core.paths import state_home
        from smo_labelstudio.stack.control import load_state

        record = load_state(state_home()).get("services", {}).get("prefect")
        if not record:
            _fail('no Prefect API: run `smo stack up` (or eval "$(smo stack env)" / set PREFECT_API_URL)')
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{record['port']}/api"
    url = os.environ["PREFECT_API_URL"].rstrip("/")
    try:
        httpx.get(f"{url}/health", timeout=10)  # any answer will do (Prefect Cloud wants a key for it)
    except httpx.TransportError as exc:
        _fail(f"the Prefect API at {url} does not answer ({type(exc).__name__}); is the stack up? (`smo stack status`)")


class _NoTraceback:
    """Wraps a console formatter so a failed run's traceback is not printed: the command ends in one
    line, and the traceback stays in the run's logs on the Prefect server."""

    def __init__(self, inner):
        self.inner = inner

    def format(self, record):
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved

    def __getattr__(self, name):
        return getattr(self.inner, name)


def console_without_tracebacks() -> None:
    """Strip tracebacks from Prefect's console output (call once Prefect is imported)."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _NoTraceback):
                handler.setFormatter(_NoTraceback(handler.formatter))


def run_command(call):
    """Run a command's work; a user mistake or an unreachable server ends in one line on stderr."""
    import httpx

    try:
        return call()
    except _user_errors() as exc:
        _fail(str(exc).strip().splitlines()[0])
    except httpx.ConnectError as exc:
        _fail(f"cannot reach {exc.request.url.host}:{exc.request.url.port}; is the stack up? (`smo stack status`)")


def launch(
    spec: Path = typer.Option(..., "--spec", help="Project spec (YAML); `smo spec new` writes one."),
    data: Path = typer.Option(..., "--data", metavar="FILE", help="CSV, JSONL or Parquet file of items."),
    gold: Optional[Path] = typer.Option(
        None,
        "--gold",
        metavar="FILE",
        help="Gold items with answer columns `policy` (ids, |-separated) and `severity`.",
    ),
    sample: Optional[float] = typer.Option(
        None, "--sample", help="Fraction (<= 1) or number of items, stratified by language and source."
    ),
    batch_size: int = typer.Option(
        10_000,
        "--batch-size",
        help="Tasks per import request (Label Studio re-plans overlap over the project on each one: fewer is faster).",
    ),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print the run manifest as one JSON object."),
) -> None:
    """Create (or top up) the spec's labeling project from a file: validate, de-duplicate, sample,
    mix in gold, pre-annotate, import. Re-running imports only what is missing."""
    from smo_labelstudio.core.spec import load_spec

    def work() -> dict:
        load_spec(spec)  # a bad spec fails here, before Prefect starts
        _prefect_ready()
        from tqdm import tqdm

        from flows.create_tasks import PROGRESS_HOOKS, LaunchParams, create_tasks

        console_without_tracebacks()

        bar = tqdm(total=None, unit="batch", desc="import", disable=as_json, leave=False)

        def hook(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        PROGRESS_HOOKS.append(hook)
        try:
            return create_tasks(
                LaunchParams(
                    spec=str(spec),
                    data=str(data),
                    gold=str(gold) if gold else None,
                    sample=sample,
                    batch_size=batch_size,
                    seed=seed,
                )
            )
        finally:
            PROGRESS_HOOKS.remove(hook)
            bar.close()

    manifest = run_command(work)
    if as_json:
        typer.echo(json.dumps(manifest))
        return
    typer.echo(f"project {manifest['project_id']}: {manifest['project_url']}")
    typer.echo(
        f"rows read {manifest['rows_read']:,} = imported {manifest['imported']:,} + duplicates "
        f"{manifest['duplicates']:,} + quarantined {manifest['quarantined']:,} + already present "
        f"{manifest['already_present']:,} + sampled out {manifest['sampled_out']:,}"
        + (f" + pending {manifest['pending']:,}" if manifest["pending"] else "")
    )
    typer.echo(
        f"gold {manifest['gold']:,}; predictions {manifest['predictions']:,} "
        f"(missing {manifest['missing_predictions']:,}{': ' + '; '.join(manifest['prediction_problems']) if manifest['prediction_problems'] else ''})"
    )
    if manifest["quarantined"] or manifest["gold_quarantined"]:
        typer.echo(f"quarantined rows and reasons: {manifest['quarantine_file']}")


def pull_cmd(
    spec: Path = typer.Option(..., "--spec", help="Project spec (YAML)."),
    full: bool = typer.Option(False, "--full", help="Re-read everything, not only what changed."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Pull completed work into the workspace tables (annotations, labels), incrementally."""
    from smo_labelstudio.core.spec import load_spec

    def work() -> dict:
        load_spec(spec)
        _prefect_ready()
        from flows.pull_completions import PullParams, pull_completions

        console_without_tracebacks()

        return pull_completions(PullParams(spec=str(spec), full=full))

    summary = run_command(work)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"project {summary['project_id']} ({summary['mode']} pull): {summary['annotations']:,} annotations "
        f"in the table; {summary['new']:,} new, {summary['updated']:,} updated, {summary['deleted']:,} deleted "
        f"({summary['tasks_fetched']:,} tasks fetched in {summary['seconds']} s)"
    )
    typer.echo(f"tables: {summary['tables']['annotations']}, {summary['tables']['labels']}")


@spec_app.command("new")
def spec_new(
    config: str = typer.Option(..., "--config", help="A label config name (`smo configs list`)."),
    title: str = typer.Option(..., "--title", help="The Label Studio project title."),
) -> None:
    """Write a complete project spec with defaults to stdout."""
    import yaml

    from smo_labelstudio.core.spec import Spec
    from smo_labelstudio.labelstudio.configs import labeling_interface

    try:
        ui = labeling_interface(config)
        shows = ui["label_config"]
        columns = {
            "id": "id",
            "text": "text" if "$text" in shows else None,
            "image": "image" if "$image" in shows else None,
            "language": "language",
            "source": None,
        }
        spec = Spec(title=title, config=config, guidelines_version=ui["taxonomy_version"], columns=columns)
    except ValueError as exc:
        _fail(str(exc).strip().splitlines()[0])
    typer.echo(f"# Project spec for {title!r}; every key is documented in specs/example.yaml.")
    typer.echo(yaml.safe_dump(spec.model_dump(), sort_keys=False, allow_unicode=True).rstrip())


def serve(
    spec: Optional[Path] = typer.Option(
        None,
        "--spec",
        metavar="SPEC",
        help="Schedule this project's daily pull (06:00 UTC), quality check (06:30) and report (07:00), "
        "as prefect.yaml does; without it nothing is scheduled and runs start from the UI.",
    ),
) -> None:
    """Serve the flows (create-tasks, pull-completions, quality-check, quality-scan, ops-report, export-dataset) as
    deployments on this machine, so project managers start them from the Prefect UI; runs until Ctrl-C. For many
    machines, register the same deployments for a work pool with `prefect deploy --all` (prefect.yaml)."""
    from smo_labelstudio.core.spec import SpecError, load_spec

    if spec is not None:
        try:
            load_spec(spec)  # a scheduled run must not be the first to find the spec broken
        except (SpecError, OSError) as exc:
            _fail(str(exc))
        spec = spec.resolve()
    _prefect_ready()
    from prefect import serve as prefect_serve

    from flows.create_tasks import create_tasks
    from flows.export_dataset import export_dataset
    from flows.ops_report import ops_report
    from flows.pull_completions import pull_completions
    from flows.quality_check import quality_check

    try:
        from flows.quality_scan import quality_scan  # reads SMO_TASK_RUNNER and friends
    except ValueError as exc:
        _fail(str(exc))

    def daily(flow, cron: str):
        if spec is None:
            return flow.to_deployment(name="smo")
        return flow.to_deployment(name="smo", cron=cron, parameters={"params": {"spec": str(spec)}})

    schedule = f"; daily pull, quality check and report of {spec}" if spec else ""
    typer.echo(
        f"serving create-tasks/smo, pull-completions/smo, quality-check/smo, quality-scan/smo, ops-report/smo, "
        f"export-dataset/smo on {os.environ['PREFECT_API_URL']}{schedule} (Ctrl-C stops)"
    )
    prefect_serve(
        create_tasks.to_deployment(name="smo"),
        daily(pull_completions, "0 6 * * *"),
        daily(quality_check, "30 6 * * *"),
        quality_scan.to_deployment(name="smo"),
        daily(ops_report, "0 7 * * *"),
        export_dataset.to_deployment(name="smo"),
        print_starting_message=False,
    )
