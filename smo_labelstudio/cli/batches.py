"""`smo launch`, `smo pull`, `smo spec new` and `smo serve`: the project manager's commands. Each prints a
summary (`--json`: one JSON object); mistakes end in one line on stderr, exit 1 (smo_labelstudio.cli._errors)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import typer
import yaml

from smo_labelstudio.cli._errors import reported
from smo_labelstudio.cli._flows import load_flow, prefect_ready
from smo_labelstudio.cli._progress import Bar
from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.params import PROGRESS_HOOKS, LaunchParams, PullParams, parse
from smo_labelstudio.core.settings import env_name
from smo_labelstudio.core.spec import Spec, load_spec
from smo_labelstudio.labelstudio.configs import labeling_interface

spec_app = typer.Typer(no_args_is_help=True, help="Project spec files.")


@reported
def launch(
    spec: Path = typer.Option(..., "--spec", help="Project spec (YAML); `smo spec new` writes one."),
    data: Optional[Path] = typer.Option(
        None, "--data", metavar="FILE", help="CSV, JSONL or Parquet file of items (or --query)."
    ),
    query: Optional[str] = typer.Option(
        None,
        "--query",
        metavar="SQL",
        help="Instead of --data: a SELECT against the warehouse (PostgreSQL) giving the items' rows; run in a "
        "read-only transaction under SMO_SOURCE_TIMEOUT, streamed; its text and result digest go into the manifest.",
    ),
    source_url: Optional[str] = typer.Option(
        None,
        "--source-url",
        metavar="URL",
        help="The PostgreSQL --query runs on, postgresql://user[:password]@host[:port]/db (default SMO_SOURCE_URL).",
    ),
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
    adopt: Optional[int] = typer.Option(
        None,
        "--adopt",
        metavar="PROJECT_ID",
        help="Make this Label Studio project the workspace's own (when the recorded one was deleted or renamed); "
        "its label config is set to the spec's.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run manifest as one JSON object."),
) -> None:
    """Create (or top up) the spec's labeling project from a file or a warehouse query: validate, de-duplicate,
    sample, mix in gold, pre-annotate, import. Re-running imports only what is missing. The workspace keeps the
    project's id: later launches use that project, never another found by its title."""
    load_spec(spec)  # a bad spec fails here, before Prefect starts
    if (data is None) == (query is None):
        raise ConfigError("give the items with --data FILE or --query SQL (one of the two)")
    if query is not None:  # bad SQL or an unreachable database: one line before a flow run starts
        from smo_labelstudio.ingest.query import check_query, launch_query  # noqa: PLC0415 - start-up time

        check_query(launch_query(query, source_url))
    if source_url and urlsplit(source_url).password:  # kept out of the flow run's parameters, which Prefect stores
        os.environ[env_name("source_url")] = source_url
        source_url = None
    params = parse(
        LaunchParams,
        spec=str(spec),
        data=str(data) if data is not None else None,
        query=query,
        source_url=source_url,
        gold=str(gold) if gold else None,
        sample=sample,
        batch_size=batch_size,
        seed=seed,
        adopt=adopt,
    )
    prefect_ready()
    create_tasks = load_flow("create_tasks")
    bar = Bar("import", "batches", disable=as_json)
    hook = bar.update_to
    PROGRESS_HOOKS.append(hook)
    try:
        manifest = create_tasks(params)
    finally:
        PROGRESS_HOOKS.remove(hook)
        bar.close()
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
    problems = "; ".join(manifest["prediction_problems"])
    typer.echo(
        f"gold {manifest['gold']:,}; predictions {manifest['predictions']:,} "
        f"(missing {manifest['missing_predictions']:,}{': ' + problems if problems else ''})"
    )
    if manifest.get("gold_corrected"):
        shown = manifest["gold_corrected_items"]
        typer.echo(
            f"gold answers corrected: {manifest['gold_corrected']:,} item(s) ({', '.join(shown[:10])}"
            + (", ..." if len(shown) > 10 else "")
            + ")"
        )
    if manifest["quarantined"] or manifest["gold_quarantined"]:
        typer.echo(f"quarantined rows and reasons: {manifest['quarantine_file']}")
    if manifest.get("qualification_batch"):
        typer.echo(f"qualification batch served first: {len(manifest['qualification_batch'])} gold task(s)")


@reported
def pull_cmd(
    spec: Path = typer.Option(..., "--spec", help="Project spec (YAML)."),
    full: bool = typer.Option(False, "--full", help="Re-read everything, not only what changed."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Pull completed work into the workspace tables (annotations, labels), incrementally."""
    load_spec(spec)
    prefect_ready()
    bar = Bar("pull", "steps", disable=as_json)
    PROGRESS_HOOKS.append(bar.update_to)
    try:
        summary = load_flow("pull_completions")(parse(PullParams, spec=str(spec), full=full))
    finally:
        PROGRESS_HOOKS.remove(bar.update_to)
        bar.close()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"project {summary['project_id']} ({summary['mode']} pull): {summary['annotations']:,} annotations "
        f"in the table; {summary['new']:,} new, {summary['updated']:,} updated, {summary['deleted']:,} deleted "
        f"({summary['tasks_fetched']:,} tasks fetched in {summary['seconds']} s)"
    )
    typer.echo(f"tables: {summary['tables']['annotations']}, {summary['tables']['labels']}")
    if summary.get("labels_quarantined"):
        typer.echo(
            f"labels not in the taxonomy: {summary['labels_quarantined']:,} quarantined (left out of quality and "
            f"reports): {summary['tables']['labels_quarantine']}"
        )
    if summary.get("dynamic_overlap"):
        typer.echo(dynamic_line(summary["dynamic_overlap"]))


@spec_app.command("new")
@reported
def spec_new(
    config: str = typer.Option(..., "--config", help="A label config name (`smo configs list`)."),
    title: str = typer.Option(..., "--title", help="The Label Studio project title."),
) -> None:
    """Write a complete project spec with defaults to stdout."""
    ui = labeling_interface(config)
    shows = ui["label_config"]
    columns = {
        "id": "id",
        "text": "text" if "$text" in shows else None,
        "image": "image" if "$image" in shows else None,
        "language": "language",
        "source": None,
    }
    spec = parse(Spec, title=title, config=config, guidelines_version=ui["taxonomy_version"], columns=columns)
    typer.echo(f"# Project spec for {title!r}; every key is documented in specs/example.yaml.")
    typer.echo(yaml.safe_dump(spec.model_dump(), sort_keys=False, allow_unicode=True).rstrip())


@reported
def serve(
    spec: Optional[str] = typer.Option(
        None,
        "--spec",
        metavar="SPEC",
        envvar="SMO_SCHEDULE_SPEC",
        help="Run this project's daily pull (06:00 UTC), quality check (06:30) and report (07:00), as prefect.yaml "
        "does (a file name in the specs folder, or a path); without it those schedules are registered paused.",
    ),
) -> None:
    """Serve the flows (create-tasks, pull-completions, quality-check, quality-scan, ops-report, export-dataset) as
    deployments on this machine, each with a form of dropdowns (specs folder, landing folder, label configs) kept up
    to date while it runs, so project managers start them from the Prefect UI; runs until Ctrl-C. `smo stack up`
    runs it as the stack's `deployments` service. For many machines, register the same deployments for a work pool
    with `prefect deploy --all` (prefect.yaml)."""
    import threading  # noqa: PLC0415 - only this command needs it

    from smo_labelstudio.cli import deployments  # noqa: PLC0415 - start-up time: it loads the flows
    from smo_labelstudio.core.choices import resolve_spec  # noqa: PLC0415 - start-up time
    from smo_labelstudio.core.settings import get_settings  # noqa: PLC0415 - start-up time

    if spec is not None:
        spec = str(Path(resolve_spec(spec)).resolve())
        load_spec(Path(spec))  # a scheduled run must not be the first to find the spec broken
    prefect_ready()
    from prefect import serve as prefect_serve  # noqa: PLC0415 - start-up time: Prefect takes seconds to import

    built = deployments.build(spec)
    schedule = f"; daily pull, quality check and report of {spec}" if spec else "; daily schedules paused"
    typer.echo(
        f"serving {', '.join(f'{d.flow_name}/{d.name}' for d in built)} on {os.environ['PREFECT_API_URL']}"
        f"{schedule} (Ctrl-C stops)"
    )
    stop = threading.Event()
    deployments.keep_forms_fresh(get_settings().forms_refresh, stop)
    try:
        # not paused on the way out: a `smo stack down` and `up` must not leave the daily schedules paused
        prefect_serve(*built, pause_on_shutdown=False, print_starting_message=False)
    finally:
        stop.set()


def dynamic_line(d: dict) -> str:
    """One line on what dynamic overlap did (after a pull or a quality pass)."""
    return (
        f"dynamic overlap: {d.get('raised_now', 0):,} task(s) raised now; {d['answers_spent']:,} of the budget of "
        f"{d['budget']:,} extra answers spent ({d['budget_left']:,} left)"
    )
