"""Operations report of one labeling project (smo_labelstudio.reports.operations): read the workspace, compute
progress, throughput, ETA, bottlenecks, quality trend, wellness, retrospective and the model
evaluation, write the HTML report, post artifacts, and emit `smo.wellness.cap-exceeded` (resource
`smo.project.<id>`) when an annotator is over the spec's daily high-severity cap and `smo.deadline.at-risk` when
the ETA is past the spec's deadline (the automations of `smo notify setup` turn both into notifications).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from flows.warehouse_step import publish, record_failure
from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.params import OpsReportParams
from smo_labelstudio.core.reportlinks import signed_link
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace, workspace_key
from smo_labelstudio.metrics import operations as om
from smo_labelstudio.reports import operations as ops
from smo_labelstudio.reports.links import links_markdown
from smo_labelstudio.reports.safe import md_text, plain_rows
from smo_labelstudio.reports.shell import ReportFiles


@task(cache_policy=NO_CACHE, name="read the workspace")
def read(ws: Workspace) -> dict:
    inputs = om.load_ops_inputs(ws)
    if inputs["plan"].empty:
        raise InputError(f"no launch plan in {ws.runs}: run `smo launch --spec SPEC --data FILE` first")
    return inputs


@task(cache_policy=NO_CACHE, name="compute progress, quality, wellness and the model evaluation")
def compute(spec, inputs: dict, stale_hours: float, n_boot: int) -> om.OpsReport:
    return om.compute_ops(spec, inputs, stale_hours=stale_hours, n_boot=n_boot)


@task(cache_policy=NO_CACHE, name="write the report")
def write(ws: Workspace, spec, report: om.OpsReport, project: dict) -> ReportFiles:
    return ops.write_ops_report(
        report, ws.reports, cap=spec.wellness.max_high_severity_per_day, project_url=project.get("url")
    )


@task(cache_policy=NO_CACHE, name="post artifacts")
def post_artifacts(spec, report: om.OpsReport, files: ReportFiles, ws: Workspace) -> None:
    key = workspace_key(spec.title)  # the title's slug and hash: titles that slug alike keep their own
    create_markdown_artifact(
        key=f"ops-{key}",
        markdown=ops.render_markdown(report, {}) + links_markdown(ws),
        description="Operations summary (plots are in the HTML report)",
    )
    for name, frame in (("progress", report.progress), ("wellness", report.wellness)):
        table = frame.astype(object).where(frame.notna(), None)
        create_table_artifact(
            key=f"ops-{name}-{key}",
            table=plain_rows(table.to_dict(orient="records")),
            description=f"{name.capitalize()} ({md_text(spec.title)})",
        )
    create_link_artifact(
        key=f"ops-report-{key}",
        link=signed_link(files.html) or files.html.resolve().as_uri(),
        link_text="Operations report (HTML)",
        description=md_text(files.html),
    )


@flow(name="ops-report", log_prints=True, on_failure=[record_failure])
def ops_report(params: OpsReportParams) -> dict:
    """Report one project's operations and model quality; alert on the wellness cap."""
    spec = load_spec(Path(params.spec))
    ws = Workspace.for_title(spec.title)
    inputs = read(ws)
    report = compute(spec, inputs, params.stale_hours, params.n_boot)
    files = write(ws, spec, report, inputs["project"])
    post_artifacts(spec, report, files, ws)
    if len(report.alerts):
        emit_event(**ops.wellness_event(report, files))
        print(f"wellness cap exceeded: {len(report.alerts)} annotator-day(s)")
    if ops.deadline_at_risk(report):
        emit_event(**ops.deadline_event(report, files))
        print(f"deadline at risk: ETA {report.eta.get('eta') or 'unknown'}, deadline {report.eta.get('deadline')}")
    summary = {
        **report.summary(),
        "report": {"html": str(files.html), "markdown": str(files.markdown), "summary": str(files.summary)},
    }
    publish(ws, spec, summary.get("totals") if isinstance(summary.get("totals"), dict) else {})
    return summary


if __name__ == "__main__":
    import sys

    ops_report(OpsReportParams(spec=sys.argv[1]))
