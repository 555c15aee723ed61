"""The adjudication queue: low-confidence tasks go to a review project in Label Studio, decisions come back.

The review project ("<title> - adjudication", the source project's label config) is created once and its id
recorded in the workspace (`review.json`, with the id of every task we queued and its external id); it is
never looked up by title, which any member can give a project of theirs. A task is queued once, with each
annotator's answer attached as a prediction under a pseudonym (`annotator-` and 8 hex digits of an HMAC under
the workspace's key: stable, not reversible, never an e-mail) so the adjudicator sees them side by side. Gold
tasks are never queued and nothing from the gold answers is ever sent: task data is copied from the source
task, predictions from the annotators' labels. Decisions are read back with the export API into
`adjudicated.parquet`: only from the recorded project, only on the tasks we queued (by task id, not by what
the task data says), and only annotations by the spec's `adjudicators` (their Label Studio accounts, by
e-mail); with no adjudicators listed, none is read.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, cast

import pandas as pd

from smo_labelstudio.core.keys import keyed_hex, secret_key
from smo_labelstudio.core.lock import workspace_lock
from smo_labelstudio.core.workspace import Workspace, read_json, write_json, write_parquet
from smo_labelstudio.labelstudio.client import NO_RETRY, create_project, task_data
from smo_labelstudio.quality.check import MissingInputError, adjudicated_path
from smo_labelstudio.quality.inputs import latest_annotations

RESULT_TYPES = {
    "Choices": "choices",
    "Labels": "labels",
    "TextArea": "textarea",
    "Rating": "rating",
    "Number": "number",
    "Taxonomy": "taxonomy",
}
ADJUDICATED_COLUMNS = ["external_id", "control", "label", "start", "end", "annotation_id", "adjudicator", "updated_at"]


def review_title(title: str) -> str:
    """The review project's title for a project title."""
    return f"{title} - adjudication"


def control_targets(label_config: str) -> dict[str, tuple[str, str]]:
    """Control name -> (result type, toName) for every control tag of a label config."""
    targets = {}
    for element in ET.fromstring(label_config).iter():
        kind, name, to_name = RESULT_TYPES.get(element.tag), element.get("name"), element.get("toName")
        if kind and name and to_name:
            targets[name] = (kind, to_name.split(",")[0])
    return targets


def _result(control: str, kind: str, to_name: str, rows: pd.DataFrame, text: str | None) -> list[dict]:
    base = {"from_name": control, "to_name": to_name, "type": kind, "origin": "prediction"}
    values = [str(v) for v in rows["label"].dropna()]
    if kind == "labels":
        items = []
        for row in rows.itertuples():
            if pd.isna(row.start) or pd.isna(row.end):
                continue
            value = {"start": int(row.start), "end": int(row.end), "labels": [str(row.label)]}
            if isinstance(text, str):
                value["text"] = text[int(row.start) : int(row.end)]
            items.append({**base, "value": value})
        return items
    if kind == "textarea":
        return [{**base, "value": {"text": values}}] if values else []
    if kind in ("rating", "number"):
        return [{**base, "value": {kind: float(values[-1])}}] if values else []
    return [{**base, "value": {kind: values}}] if values else []


def annotator_predictions(
    rows: pd.DataFrame, targets: dict[str, tuple[str, str]], text: str | None, key: bytes
) -> list[dict]:
    """One prediction per annotator of a task, from their latest annotation's label rows, under the annotator's
    pseudonym (`review_pseudonym`), never their account."""
    predictions = []
    for annotator, theirs in rows.groupby("annotator", sort=True):
        result = []
        for control, part in theirs.groupby("control", sort=True):
            if control in targets:
                result += _result(control, *targets[control], part, text)
        predictions.append({"model_version": review_pseudonym(key, str(annotator)), "result": result})
    return predictions


class ReviewProjectGone(MissingInputError):
    """The review project recorded in the workspace is no longer in Label Studio."""


def review_file(ws: Workspace) -> Path:
    """`review.json`: the review project's id and the tasks we queued in it (task id -> external id)."""
    return ws.root / "review.json"


def review_record(ws: Workspace) -> dict[str, Any]:
    """The recorded review project (`project_id`, `title`, `tasks`), empty before the first queue."""
    return read_json(review_file(ws)) or {}


def review_pseudonym(key: bytes, annotator: str) -> str:
    """How an annotator appears in review tasks: `annotator-` and 8 hex digits of an HMAC under the workspace's
    key (stable within the project, not reversible, not the export's pseudonym)."""
    return "annotator-" + keyed_hex(key, "review", str(annotator))[:8]


def _exists(ls: Any, project_id: int) -> bool:
    try:
        ls.projects.get(id=project_id)
    except Exception as exc:  # the SDK's NotFoundError; this layer does not import the SDK
        if getattr(exc, "status_code", None) == 404:
            return False
        raise
    return True


def ensure_review_project(ls: Any, ws: Workspace, title: str, label_config: str) -> int:
    """The recorded review project's id; created with `label_config` and recorded when none is recorded. A
    recorded project that is gone is an error, not a reason to take whichever project has the title."""
    record = review_record(ws)
    if record.get("project_id") is not None:
        project_id = int(record["project_id"])
        if not _exists(ls, project_id):
            raise ReviewProjectGone(
                f"review project {project_id} (recorded in {review_file(ws)}) is gone from Label Studio: move that "
                f"file away to start a new review project (decisions already read stay in adjudicated.parquet "
                f"until the next pass)"
            )
        return project_id
    project_id = create_project(
        ls,
        review_title(title),
        label_config,
        description="Adjudication of low-confidence consensus: the annotators' answers are shown as predictions.",
    )
    write_json(review_file(ws), {"project_id": project_id, "title": review_title(title), "tasks": {}})
    return project_id


def queue_for_review(
    ls: Any,
    ws: Workspace,
    source_project_id: int,
    title: str,
    labels: pd.DataFrame,
    to_review: pd.DataFrame,
    gold_ids: set[str],
    base_url: str = "",
) -> dict[str, Any]:
    """Import the `to_review` tasks (task = external_id, confidence) not queued yet; never a gold task."""
    label_config = ls.projects.get(id=source_project_id).label_config
    review_id = ensure_review_project(ls, ws, title, label_config)
    present = set(review_record(ws).get("tasks", {}).values())
    todo = to_review[~to_review["task"].isin(present) & ~to_review["task"].isin(gold_ids)]
    rows = latest_annotations(labels)
    answers = dict(list(rows[rows["external_id"].isin(todo["task"])].groupby("external_id", sort=False)))
    targets = control_targets(label_config)
    key = secret_key(ws.root / "export_key")
    sources = task_data(ls, source_project_id, (theirs["task"].iloc[0] for theirs in answers.values()))
    tasks = []
    for item in todo.itertuples():
        theirs = answers.get(item.task)
        if theirs is None:
            continue
        source_task = int(theirs["task"].iloc[0])
        data = {
            **sources[source_task],
            "external_id": item.task,
            "smo_source_task": source_task,
            "smo_consensus_confidence": round(float(item.confidence), 4),
        }
        predictions = annotator_predictions(theirs, targets, data.get("text"), key)
        tasks.append({"data": data, "predictions": predictions})
    _refuse_gold(tasks, gold_ids)
    queued = _import_recorded(ls, ws, review_id, tasks)
    return {
        "project_id": review_id,
        "title": review_title(title),
        "url": f"{base_url}/projects/{review_id}/data",
        "queued": queued,
        "in_review": len(present) + queued,
    }


def _import_recorded(ls: Any, ws: Workspace, review_id: int, tasks: list[dict]) -> int:
    """Import review tasks and record their ids with the external id we sent (read back by id, so the record
    holds what we imported whatever order Label Studio answers in)."""
    if not tasks:
        return 0
    response = ls.projects.import_tasks(id=review_id, request=tasks, return_task_ids=True, request_options=NO_RETRY)
    ids = [int(t) for t in (response.task_ids or [])]  # one request, never retried: a retry could import twice
    sent = task_data(ls, review_id, ids)
    record = review_record(ws)
    record.setdefault("tasks", {}).update({str(t): str(d.get("external_id")) for t, d in sent.items()})
    write_json(review_file(ws), record)
    return len(ids)


def _refuse_gold(tasks: list[dict], gold_ids: set[str]) -> None:
    leaked = [t["data"]["external_id"] for t in tasks if t["data"]["external_id"] in gold_ids]
    if leaked:
        raise RuntimeError(f"refusing to send gold task(s) to Label Studio: {', '.join(map(str, leaked[:5]))}")


def adjudicator_ids(ls: Any, emails: list[str]) -> tuple[dict[int, str], list[str]]:
    """The Label Studio accounts of the listed adjudicators (user id -> e-mail), and the e-mails no account has."""
    wanted = {e.lower() for e in emails}
    found = {int(u.id): str(u.email).lower() for u in ls.users.list() if str(u.email or "").lower() in wanted}
    return found, sorted(wanted - set(found.values()))


def read_adjudicated(
    ls: Any, review_project_id: int, tasks: dict[int, str], adjudicators: dict[int, str]
) -> pd.DataFrame:
    """The adjudicators' decisions (latest non-cancelled annotation by a listed adjudicator per queued task),
    one row per value. `tasks` maps the task ids we queued to their external ids; other tasks are ignored, as
    are annotations by anyone not in `adjudicators` (user id -> e-mail)."""
    exported = json.loads(b"".join(ls.projects.exports.download_sync(id=review_project_id, export_type="JSON")))
    rows = []
    for task in exported:
        external = tasks.get(int(task.get("id", -1)))
        if external is None:
            continue
        kept = [
            a
            for a in task.get("annotations", [])
            if not a.get("was_cancelled") and _user(a.get("completed_by")) in adjudicators
        ]
        if not kept:
            continue
        latest = max(kept, key=lambda a: (a.get("updated_at") or "", a.get("id", 0)))
        base = {
            "external_id": external,
            "annotation_id": latest.get("id"),
            "adjudicator": adjudicators[cast(int, _user(latest.get("completed_by")))],
            "updated_at": latest.get("updated_at"),
        }
        for item in latest.get("result", []):
            value = item.get("value", {})
            kind = item.get("type")
            labels = value.get(kind, []) if kind in ("choices", "labels", "taxonomy") else value.get("text", [])
            for label in labels if isinstance(labels, list) else [labels]:
                rows.append(
                    {
                        **base,
                        "control": item.get("from_name"),
                        "label": str(label),
                        "start": value.get("start"),
                        "end": value.get("end"),
                    }
                )
    return pd.DataFrame(rows, columns=ADJUDICATED_COLUMNS).astype({"start": "Int64", "end": "Int64"})


def _user(completed_by: Any) -> int | None:
    """The user id of an exported annotation's `completed_by` (an id, or a user object)."""
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    try:
        return int(completed_by)
    except (TypeError, ValueError):
        return None


def adjudicators_note(ls: Any, adjudicators: list[str]) -> str | None:
    """One line when adjudication answers cannot count: no adjudicators listed, or listed ones without an account."""
    if not adjudicators:
        return "no `adjudicators:` in the spec, so no answer in the review project is accepted"
    missing = adjudicator_ids(ls, adjudicators)[1]
    if missing:
        return f"adjudicators without a Label Studio account (their answers cannot count): {', '.join(missing)}"
    return None


def sync_adjudicated(ls: Any, ws: Workspace, adjudicators: list[str]) -> pd.DataFrame | None:
    """Read the recorded review project's decisions by the listed adjudicators into the workspace (none listed:
    none read, and decisions read before no longer count); None before anything was queued."""
    record = review_record(ws)
    if record.get("project_id") is None:
        return None
    allowed = adjudicator_ids(ls, adjudicators)[0] if adjudicators else {}
    tasks = {int(t): e for t, e in record.get("tasks", {}).items()}
    with workspace_lock(ws, "adjudication"):
        decided = read_adjudicated(ls, int(record["project_id"]), tasks, allowed) if allowed else _empty()
        write_parquet(adjudicated_path(ws), decided)
    return decided


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=ADJUDICATED_COLUMNS).astype({"start": "Int64", "end": "Int64"})
