"""Prefect flow: pull what annotators did into the workspace's tidy tables (smo_labelstudio.pull.completions)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.progress import progress_reporter
from flows.project_slot import one_per_project
from flows.warehouse_step import publish, record_failure
from smo_labelstudio.core.params import PullParams
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace, WorkspaceFileError
from smo_labelstudio.labelstudio import client
from smo_labelstudio.pull import completions as pull
from smo_labelstudio.quality import dynamic
from smo_labelstudio.reports.links import links_markdown
from smo_labelstudio.reports.safe import md_text


def _worth_retrying(task, task_run, state) -> bool:
    """A retry helps a failed export snapshot; not a Label Studio that outlasted the client's own retries
    (`SMO_LS_RETRIES`), nor a damaged workspace file."""
    try:
        state.result(raise_on_failure=True)
    except (client.LabelStudioUnavailable, WorkspaceFileError, pull.PullError):
        return False
    except Exception:
        return True
    return False


def pull_markdown(summary: dict) -> str:
    """The pull summary a project manager reads in the Prefect UI (every value as Markdown text)."""
    t, tables = md_text, summary["tables"]
    return (
        f"# Pull: project {t(summary['project_id'])} ({t(summary['mode'])})\n\n"
        "| annotations in table | new | updated | deleted | tasks fetched | labels quarantined | seconds |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {summary['annotations']:,} | {summary['new']:,} | {summary['updated']:,} | {summary['deleted']:,} | "
        f"{summary['tasks_fetched']:,} | {summary.get('labels_quarantined', 0):,} | {t(summary['seconds'])} |\n\n"
        f"Tables: {t(tables['labels'])}"
        + (
            f"\n\nLabels not in the taxonomy (not used by quality or reports): {t(tables['labels_quarantine'])}"
            if summary.get("labels_quarantined")
            else ""
        )
    )


# A pull replaces rows: a retry cannot duplicate.
@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=_worth_retrying)
def pull_tables(workspace: Workspace, url: str, token: str, full: bool) -> dict:
    return pull.pull(workspace, url, token, full, progress=progress_reporter("Pull"))


@task(cache_policy=NO_CACHE, name="raise overlap where consensus is weak")
def raise_overlap(workspace: Workspace, spec, url: str, token: str) -> dict:
    return dynamic.overlap_after_pull(workspace, spec, url, token)


@flow(name="pull-completions", log_prints=False, on_failure=[record_failure])
@one_per_project("pull")
def pull_completions(params: PullParams) -> dict:
    """Incremental since the last successful pull; updated and deleted annotations reflected."""
    spec = load_spec(Path(params.spec))
    url, token = client.connection_settings()
    ws = Workspace.for_title(spec.title)
    summary = pull_tables(ws, url, token, params.full)
    create_markdown_artifact(
        pull_markdown(summary) + links_markdown(ws), key=f"pull-{summary['project_id']}", description="Pull summary"
    )
    get_run_logger().info("pull: %s", {k: summary[k] for k in ("mode", "annotations", "new", "updated", "deleted")})
    if spec.overlap.dynamic is not None:
        summary["dynamic_overlap"] = raise_overlap(ws, spec, url, token)
        get_run_logger().info("dynamic overlap: %s", summary["dynamic_overlap"])
    publish(ws, spec, summary)
    return summary
