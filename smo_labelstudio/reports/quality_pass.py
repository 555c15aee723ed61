"""The quality pass over one project's workspace, step by step, as `smo quality --spec` and the
`quality_check` flow run it: read back adjudications, check, queue new adjudications, write the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smo_labelstudio.core.lock import workspace_lock
from smo_labelstudio.core.spec import Spec
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.labelstudio.client import connect, connection_settings, http_client
from smo_labelstudio.quality import qualification
from smo_labelstudio.quality.adjudication import adjudicators_note, queue_for_review, sync_adjudicated
from smo_labelstudio.quality.check import CheckResult, MissingInputError, load_inputs
from smo_labelstudio.quality.dynamic import raise_weak_tasks
from smo_labelstudio.quality.inputs import gold_policy_keys
from smo_labelstudio.quality.tables import save_quality_tables
from smo_labelstudio.reports.quality import write_report
from smo_labelstudio.reports.shell import ReportFiles

GATE_FAILED_EVENT = "smo.quality.gate-failed"


@dataclass
class PassOutcome:
    """What one pass produced: the figures, the report files, the adjudication queue's state."""

    spec: Spec
    workspace: Workspace
    result: CheckResult
    report: ReportFiles
    project: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The check's JSON summary plus where the report is and which project it is about."""
        return {
            "title": self.spec.title,
            "project_id": self.project.get("project_id"),
            **self.result.summary(),
            "report": {
                "html": str(self.report.html),
                "markdown": str(self.report.markdown),
                "summary": str(self.report.summary),
            },
        }


def resource_id(project: dict[str, Any], ws: Workspace) -> str:
    """The Prefect event resource of a project: `smo.project.<project_id>` (the workspace name before launch)."""
    return f"smo.project.{project.get('project_id') or ws.root.name}"


def gate_event(outcome: PassOutcome) -> dict[str, Any]:
    """The arguments of `prefect.events.emit_event` announcing the failed gates of a pass."""
    result = outcome.result
    return {
        "event": GATE_FAILED_EVENT,
        "resource": {
            "prefect.resource.id": resource_id(outcome.project, outcome.workspace),
            "prefect.resource.name": outcome.spec.title,
        },
        "payload": {
            "failed_gates": [g.to_dict() for g in result.failed_gates],
            "thresholds": result.quality.model_dump(),
            "report": str(outcome.report.html),
        },
    }


def connect_label_studio() -> tuple[Any, str]:
    """An SDK client and the base URL (for links) of the configured Label Studio."""
    url, token = connection_settings()
    return connect(url, token), url


def read_back(ws: Workspace, spec: Spec, ls: Any) -> int:
    """Adjudicated labels from the recorded review project, by the spec's adjudicators, into the workspace; the
    number of tasks decided."""
    decided = sync_adjudicated(ls, ws, spec.adjudicators)
    return 0 if decided is None else int(decided["external_id"].nunique())


def check(ws: Workspace, spec: Spec, *, method: str = "smoothed-ds", n_boot: int = 1000) -> tuple[CheckResult, dict]:
    """Load the workspace tables and run the check with the spec's thresholds."""
    result, inputs, decision = qualification.counted_check(ws, spec, method=method, n_boot=n_boot)
    if decision is not None:  # statuses into the workspace; pauses for `pause` to act on
        result.extra["qualification"] = qualification.summary(decision, qualification.record(ws, decision))
    return result, inputs


def pause(ws: Workspace, spec: Spec, inputs: dict, http: Any) -> dict[str, Any]:
    """Act on recorded pauses not yet acted on: another annotator for the withdrawn tasks and, with the spec's
    `qualification.remove_from_organization`, the annotator out of the organization."""
    project_id = inputs["project"].get("project_id")
    if spec.qualification is None or not project_id:
        return {}
    removed = []
    if spec.qualification.remove_from_organization:
        for p in qualification.pending(ws, "removed"):
            qualification.remove_from_organization(http, p["annotator"])
            qualification.mark(ws, p["annotator"], "removed")
            removed.append(p["annotator"])
    raised = qualification.recover_tasks(ws, http, int(project_id), inputs["labels"])
    return {"tasks_raised": raised, "removed_from_organization": removed}


def pause_events(ws: Workspace, spec: Spec, project: dict[str, Any]) -> list[dict[str, Any]]:
    """The `emit_event` arguments of each recorded pause not announced yet; the caller marks each sent."""
    return [
        qualification.paused_event(p, resource_id(project, ws), spec.title)
        for p in qualification.pending(ws, "notified")
    ]


def queue(ws: Workspace, spec: Spec, result: CheckResult, inputs: dict, ls: Any, base_url: str) -> dict[str, Any]:
    """Queue the low-confidence tasks for adjudication (needs the launched project)."""
    project = inputs["project"]
    if not project.get("project_id"):
        raise MissingInputError(f"no project.json in {ws.root}: launch the project before queueing adjudication")
    gold_ids = set(gold_policy_keys(inputs["gold"])["task"]) | _all_gold_ids(inputs)
    info = queue_for_review(
        ls, ws, int(project["project_id"]), spec.title, inputs["labels"], result.to_review, gold_ids, base_url
    )
    note = adjudicators_note(ls, spec.adjudicators)
    if note:
        info["note"] = note
    result.extra["adjudication"] = info
    return info


def _all_gold_ids(inputs: dict) -> set:
    ids = set(inputs["gold"]["external_id"]) if inputs["gold"] is not None else set()
    labels = inputs["labels"]
    if "is_gold" in labels.columns:
        ids |= set(labels.loc[labels["is_gold"].fillna(False).astype(bool), "external_id"])
    return ids


def report(ws: Workspace, spec: Spec, result: CheckResult, project: dict[str, Any]) -> ReportFiles:
    """Write the report into the workspace's reports/ folder."""
    url = project.get("url")
    save_quality_tables(ws, result)  # consensus and agreement frames, for the warehouse
    return write_report(result, ws.reports, spec.title, project_url=url)


def run_pass(
    spec: Spec, *, adjudicate: bool = True, method: str = "smoothed-ds", n_boot: int = 1000, home: Path | None = None
) -> PassOutcome:
    """Every step in order, holding the workspace lock; without `adjudicate`, Label Studio is not contacted."""
    ws = Workspace.for_title(spec.title, home)
    with workspace_lock(ws, "quality"):
        return _run_pass(ws, spec, adjudicate, method, n_boot)


def _run_pass(ws: Workspace, spec: Spec, adjudicate: bool, method: str, n_boot: int) -> PassOutcome:
    ls: Any = None
    base_url = ""
    if adjudicate:
        load_inputs(ws)  # a missing table is the first thing to tell the user, before any connection
        ls, base_url = connect_label_studio()
        read_back(ws, spec, ls)
    result, inputs = check(ws, spec, method=method, n_boot=n_boot)
    if adjudicate:
        queue(ws, spec, result, inputs, ls, base_url)
        if spec.qualification is not None:
            with http_client(*connection_settings()) as http:
                result.extra.setdefault("qualification", {}).update(pause(ws, spec, inputs, http))
        if spec.overlap.dynamic is not None:  # one more annotator where the consensus is weak
            url, token = connection_settings()
            result.extra["dynamic_overlap"] = raise_weak_tasks(
                ws, spec.overlap.dynamic, result.consensus, inputs["labels"], url, token
            )
    files = report(ws, spec, result, inputs["project"])
    return PassOutcome(spec, ws, result, files, inputs["project"])
