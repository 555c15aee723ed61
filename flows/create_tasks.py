"""Prefect flow: turn a file of items into a labeling batch (the logic is smo_labelstudio.ingest.launch).

One Prefect task plans, one task per import batch (never per item) on a pool of one, one task
writes the manifest. One at a time on purpose: Label Studio re-plans overlap across the whole project
on every import, and on SQLite concurrent imports measured slower than sequential ones. Import batches
are not retried by Prefect: a retry could import twice; a flow re-run resumes from the saved plan instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.progress import progress_reporter
from flows.project_slot import one_per_project, spec_file_first
from flows.warehouse_step import publish, record_failure
from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.params import LaunchParams
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.ingest import launch
from smo_labelstudio.ingest.query import launch_query
from smo_labelstudio.labelstudio import client
from smo_labelstudio.reports.links import links_markdown
from smo_labelstudio.reports.safe import md_link, md_text

# Typed as the task runner the flow decorator takes: ThreadPoolTaskRunner's own type parameter infers as Never.
ONE_AT_A_TIME = cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=1))


@task(cache_policy=NO_CACHE)
def plan_batch(params: LaunchParams, url: str, token: str) -> launch.Plan:
    spec = load_spec(Path(params.spec))
    rows = launch_query(params.query, params.source_url) if params.query is not None else Path(str(params.data))
    return launch.plan_launch(
        spec,
        rows,
        url,
        token,
        Path(params.gold) if params.gold else None,
        params.sample,
        params.batch_size,
        params.seed,
        adopt=params.adopt,
    )


@task(cache_policy=NO_CACHE, retries=0)
def import_one(plan: launch.Plan, batch: int, url: str, token: str, backend) -> dict:
    return launch.import_batch(plan, batch, url, token, backend)


@task(cache_policy=NO_CACHE)
def backfill_predictions(plan: launch.Plan, url: str, token: str, backend) -> dict:
    """Tasks an earlier run imported while the backend was down get their predictions now."""
    return launch.backfill_predictions(plan, url, token, backend)


@task(cache_policy=NO_CACHE)
def serve_qualification(plan: launch.Plan, params: LaunchParams, url: str, token: str) -> list[int] | None:
    """With a `qualification` section, the project's qualification batch (its first gold tasks, chosen once)
    is served first to every annotator; None when the spec has no such section or no gold is launched yet."""
    spec = load_spec(Path(params.spec))
    if spec.qualification is None:
        return None
    from smo_labelstudio.quality.qualification import qualification_batch  # noqa: PLC0415 - start-up time: scipy

    with client.http_client(url, token) as http:
        try:
            return qualification_batch(plan.workspace, http, plan.project_id, spec.qualification)
        except InputError as exc:  # no gold in the project yet: the launch that brings it serves the batch
            get_run_logger().warning("qualification batch not served: %s", exc)
            return None


@task(cache_policy=NO_CACHE)
def write_manifest(plan: launch.Plan, results: list[dict], url: str) -> dict:
    return launch.finish(plan, results, url)


def manifest_markdown(m: dict) -> str:
    """The run summary a project manager reads in the Prefect UI (every value as Markdown text, the link
    only to an http(s) address)."""
    t = md_text
    lines = [
        f"# Launch: project {t(m['project_id'])}",
        "",
        md_link("Open in Label Studio", m["project_url"]),
        "",
        "| | rows |",
        "|---|---:|",
    ]
    for key in (
        "rows_read",
        "imported",
        "duplicates",
        "quarantined",
        "already_present",
        "sampled_out",
        "pending",
        "gold",
        "predictions",
        "missing_predictions",
    ):
        lines.append(f"| {key.replace('_', ' ')} | {m[key]:,} |")
    lines += [
        "",
        f"Counts add up: **{t(m['counts_add_up'])}**. Quarantined rows and reasons: {t(m['quarantine_file'])}.",
        f"Versions: {t(', '.join(f'{k} {v}' for k, v in m['versions'].items()))}.",
    ]
    source = m.get("source") or {}
    if source.get("kind") == "query":
        lines.append(
            f"Rows from a query on {t(source['database'])} (result digest {t(str(source['digest'])[:16])}): "
            f"{t(source['query'])}."
        )
    if m.get("gold_corrected"):
        shown = ", ".join(f"`{item}`" for item in m["gold_corrected_items"][:20])
        lines.append(f"Gold answers corrected: **{m['gold_corrected']}** item(s): {shown}.")
    if m["prediction_problems"]:
        lines.append(f"Predictions missing because: {t('; '.join(m['prediction_problems']))}.")
    return "\n".join(lines)


@flow(name="create-tasks", task_runner=ONE_AT_A_TIME, log_prints=False, on_failure=[record_failure])
@spec_file_first
@one_per_project("launch")
def create_tasks(params: LaunchParams) -> dict:
    """Read, validate, de-duplicate, sample, mix in gold, pre-annotate and import; write the manifest."""
    log = get_run_logger()
    url, token = client.connection_settings()
    backend = client.backend_settings()
    plan = plan_batch(params, url, token)
    pending = launch.pending_batches(plan)
    log.info(
        "plan %s: %d tasks in %d batches, %d to import; %s",
        plan.plan_id,
        len(plan.items),
        len(plan.batches),
        len(pending),
        plan.counts,
    )
    step = progress_reporter(f"Import into project {plan.project_id}")
    results = []
    futures = [import_one.submit(plan, b, url, token, backend) for b in pending]
    for done, future in enumerate(futures, start=1):
        results.append(future.result())
        step(done, len(futures))
    if not futures:
        step(0, 0)
    filled = backfill_predictions(plan, url, token, backend)
    if filled["backfilled"] or filled["still_missing"]:
        log.info(
            "predictions added to %d earlier tasks; %d still without (%s)",
            filled["backfilled"],
            filled["still_missing"],
            filled["problem"] or "-",
        )
    try:  # Label Studio then asks the backend for tasks opened without a prediction, and retrains it
        linked = client.connect_stack_backend(url, token, plan.project_id)
    except (client.LabelStudioError, OSError) as exc:
        linked = None
        log.warning("could not connect the ML backend to project %s: %s", plan.project_id, exc)
    manifest = write_manifest(plan, results, url)
    manifest["backend_connected"] = linked is not None
    manifest["qualification_batch"] = serve_qualification(plan, params, url, token)
    create_markdown_artifact(
        manifest_markdown(manifest) + links_markdown(plan.workspace),
        key=f"launch-{plan.project_id}",
        description="Launch summary",
    )
    log.info(
        "launch done: %s",
        {k: manifest[k] for k in ("imported", "duplicates", "quarantined", "already_present", "gold", "predictions")},
    )
    publish(plan.workspace, load_spec(Path(params.spec)), manifest)
    return manifest
