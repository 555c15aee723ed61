"""Export an evaluated dataset from one labeling project's pulled labels: consensus, gates, seeded
splits, five files and a datasheet, with the datasheet posted as a markdown artifact."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.progress import progress_reporter
from flows.project_slot import one_per_project
from flows.warehouse_step import publish, record_failure
from smo_labelstudio.core.params import ExportDatasetParams
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace, workspace_key
from smo_labelstudio.export.dataset import Export, export_workspace
from smo_labelstudio.reports.links import keep_datasheet, links_markdown
from smo_labelstudio.reports.safe import md_text


@task(cache_policy=NO_CACHE, name="build, gate, split and write the dataset")
def build(ws: Workspace, spec, out: Path, method: str, seed: int, consensus_only: bool = False) -> Export:
    step = progress_reporter(f"Export to {md_text(out)}")
    return export_workspace(ws, spec, out, method=method, seed=seed, consensus_only=consensus_only, progress=step)


@task(cache_policy=NO_CACHE, name="post the datasheet")
def post_datasheet(result: Export, title: str, ws: Workspace) -> None:
    keep_datasheet(ws, result.out)  # served by the stack's reports service, linked below
    key = workspace_key(title)  # the title's slug and hash: titles that slug alike keep their own
    create_markdown_artifact(
        key=f"export-{key}",
        markdown=(result.out / "datasheet.md").read_text(encoding="utf-8") + links_markdown(ws),
        description=f"Datasheet of the dataset in {md_text(result.out)}",
    )


@flow(name="export-dataset", log_prints=True, on_failure=[record_failure])
@one_per_project("export")
def export_dataset(params: ExportDatasetParams) -> dict:
    """Export one project's evaluated dataset."""
    spec = load_spec(Path(params.spec))
    ws = Workspace.for_title(spec.title)
    result = build(ws, spec, Path(params.out), params.method, params.seed, params.consensus_only)
    post_datasheet(result, spec.title, ws)
    summary = result.summary()
    print(f"{summary['tasks']} tasks: {summary['splits']} -> {summary['out']}")
    publish(ws, spec, {"tasks": summary["tasks"], **summary["splits"]})
    return summary


if __name__ == "__main__":
    import sys

    export_dataset(ExportDatasetParams(spec=sys.argv[1], out=sys.argv[2]))
