"""Quality check of one labeling project: read back adjudications, check gold and agreement, queue
low-confidence tasks for adjudication, write the report, post artifacts, and emit
`smo.quality.gate-failed` (resource `smo.project.<id>`) when a gate fails so automations can react; with the
spec's `qualification`, pause annotators below the bar (their withdrawn tasks get another annotator) and emit
`smo.annotator.paused` (resource `smo.annotator.<e-mail>`) once per pause.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from flows.project_slot import one_per_project
from flows.warehouse_step import publish, record_failure
from smo_labelstudio.core.errors import SmoError
from smo_labelstudio.core.params import QualityCheckParams
from smo_labelstudio.core.reportlinks import signed_link
from smo_labelstudio.core.spec import Spec, load_spec
from smo_labelstudio.core.workspace import Workspace, workspace_key
from smo_labelstudio.labelstudio.client import connection_settings, http_client
from smo_labelstudio.quality import dynamic, qualification
from smo_labelstudio.reports import quality_pass as qp
from smo_labelstudio.reports.links import link_in_description, links_markdown
from smo_labelstudio.reports.quality import render_markdown
from smo_labelstudio.reports.safe import md_text, plain_rows


@task(cache_policy=NO_CACHE, name="read back adjudications")
def read_back(ws: Workspace, spec) -> int:
    ls, _ = qp.connect_label_studio()
    return qp.read_back(ws, spec, ls)


@task(cache_policy=NO_CACHE, name="check gold, agreement and consensus")
def check(ws: Workspace, spec: Spec, method: str, n_boot: int) -> tuple[qp.CheckResult, dict]:
    return qp.check(ws, spec, method=method, n_boot=n_boot)


@task(cache_policy=NO_CACHE, name="queue low-confidence tasks for adjudication")
def queue(ws: Workspace, spec, result, inputs) -> dict:
    ls, url = qp.connect_label_studio()
    return qp.queue(ws, spec, result, inputs, ls, url)


@task(cache_policy=NO_CACHE, name="pause annotators below the bar")
def pause(ws: Workspace, spec: Spec, inputs: dict) -> dict:
    url, token = connection_settings()
    with http_client(url, token) as http:
        return qp.pause(ws, spec, inputs, http)


@task(cache_policy=NO_CACHE, name="raise overlap where consensus is weak")
def raise_overlap(ws: Workspace, spec: Spec, result: qp.CheckResult, inputs: dict) -> dict:
    if spec.overlap.dynamic is None:
        return {}
    url, token = connection_settings()
    return dynamic.raise_weak_tasks(ws, spec.overlap.dynamic, result.consensus, inputs["labels"], url, token)


@task(cache_policy=NO_CACHE, name="write the report")
def write(ws: Workspace, spec: Spec, result: qp.CheckResult, project: dict) -> qp.ReportFiles:
    return qp.report(ws, spec, result, project)


@task(cache_policy=NO_CACHE, name="write the annotator scorecards")
def write_scorecards(ws: Workspace, spec: Spec, result: qp.CheckResult, inputs: dict) -> str:
    from smo_labelstudio.reports.scorecards import scorecards_from_check  # noqa: PLC0415 - one call, kept apart

    return str(scorecards_from_check(ws, spec, result, inputs).index)


@task(cache_policy=NO_CACHE, name="post artifacts")
def post_artifacts(outcome: qp.PassOutcome) -> None:
    key = workspace_key(outcome.spec.title)  # slug and hash: titles that slug alike keep their own
    result = outcome.result
    create_markdown_artifact(
        key=f"quality-{key}",
        markdown=render_markdown(result, outcome.spec.title, {}) + links_markdown(outcome.workspace),
        description="Quality summary (plots are in the HTML report)",
    )
    columns = ["annotator", "n_answers", "gold_n", "gold_accuracy", "ci_low", "ci_high", "flagged", "reason"]
    table = result.annotators[columns].astype(object).where(result.annotators[columns].notna(), None)
    create_table_artifact(
        key=f"quality-annotators-{key}",
        table=plain_rows(table.to_dict(orient="records")),
        description="Annotators on gold",
    )
    create_link_artifact(
        key=f"quality-report-{key}",
        link=signed_link(outcome.report.html) or outcome.report.html.resolve().as_uri(),
        link_text="Quality report (HTML)",
        description=md_text(outcome.report.html),
    )


@task(cache_policy=NO_CACHE, name="link the report in the project's description")
def describe(ws: Workspace, project: dict) -> None:
    """The Label Studio project's description points at the newest quality report (managers' login: it holds
    every annotator's figures); a Label Studio that cannot take it is a warning, not a failed check."""
    if not project.get("project_id"):
        return
    try:
        link_in_description(ws, *connection_settings(), int(project["project_id"]))
    except (OSError, SmoError, httpx.HTTPError) as exc:
        print(f"warning: the project's description was not updated: {' '.join(str(exc).split())[:200]}")


@flow(name="quality-check", log_prints=True, on_failure=[record_failure])
@one_per_project("quality")
def quality_check(params: QualityCheckParams) -> dict:
    """Check one project's labels against its spec's quality gates."""
    spec = load_spec(Path(params.spec))
    ws = Workspace.for_title(spec.title)
    qp.load_inputs(ws)  # fail early, in one line, when nothing was pulled
    if params.adjudicate:
        read_back(ws, spec)
    result, inputs = check(ws, spec, params.method, params.n_boot)
    if params.adjudicate:
        queue(ws, spec, result, inputs)
    if spec.qualification is not None and inputs["project"].get("project_id"):
        result.extra.setdefault("qualification", {}).update(pause(ws, spec, inputs))
    if spec.overlap.dynamic is not None and inputs["project"].get("project_id"):
        result.extra["dynamic_overlap"] = raise_overlap(ws, spec, result, inputs)
    for event in qp.pause_events(ws, spec, inputs["project"]):  # smo.annotator.paused, once per pause
        emit_event(**event)
        qualification.mark(ws, event["payload"]["annotator"], "notified")
    files = write(ws, spec, result, inputs["project"])
    outcome = qp.PassOutcome(spec, ws, result, files, inputs["project"])
    post_artifacts(outcome)
    if result.failed_gates:
        emit_event(**qp.gate_event(outcome))
        print(f"gates failed: {', '.join(g.name for g in result.failed_gates)}")
    scorecards = write_scorecards(ws, spec, result, inputs)  # each annotator's page, current (after the event)
    describe(ws, inputs["project"])
    summary = {**outcome.summary(), "scorecards": scorecards}
    publish(ws, spec, summary)
    return summary


if __name__ == "__main__":
    import sys

    quality_check(QualityCheckParams(spec=sys.argv[1]))
