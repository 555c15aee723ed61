"""The adjudication queue: low-confidence tasks go to a review project in Label Studio, decisions come back.

The review project is "<title> - adjudication" with the source project's label config, created or
reused by title. A task is queued once (keyed by external_id, checked before every import), with
each annotator's answer attached as a prediction (`model_version` "annotator:<id>") so the
adjudicator sees them side by side. Gold tasks are never queued and nothing from the gold answers
is ever sent: task data is copied from the source task, predictions from the annotators' labels.
The adjudicators' annotations are read back with the export API into `adjudicated.parquet`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pandas as pd

from smo_labelstudio.core.workspace import Workspace, write_parquet
from smo_labelstudio.labelstudio.client import import_tasks, list_tasks, task_data
from smo_labelstudio.quality.check import adjudicated_path
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


def annotator_predictions(rows: pd.DataFrame, targets: dict[str, tuple[str, str]], text: str | None) -> list[dict]:
    """One prediction per annotator of a task, from their latest annotation's label rows."""
    predictions = []
    for annotator, theirs in rows.groupby("annotator", sort=True):
        result = []
        for control, part in theirs.groupby("control", sort=True):
            if control in targets:
                result += _result(control, *targets[control], part, text)
        predictions.append({"model_version": f"annotator:{annotator}", "result": result})
    return predictions


def ensure_review_project(ls: Any, title: str, label_config: str) -> int:
    """The review project's id, created with `label_config` when it does not exist yet."""
    name = review_title(title)
    for project in ls.projects.list(title=name):
        if project.title == name:
            return project.id
    return ls.projects.create(
        title=name,
        label_config=label_config,
        description="Adjudication of low-confidence consensus: the annotators' answers are shown as predictions.",
    ).id


def queue_for_review(
    ls: Any,
    source_project_id: int,
    title: str,
    labels: pd.DataFrame,
    to_review: pd.DataFrame,
    gold_ids: set[str],
    base_url: str = "",
) -> dict[str, Any]:
    """Import the `to_review` tasks (task = external_id, confidence) not queued yet; never a gold task."""
    label_config = ls.projects.get(id=source_project_id).label_config
    review_id = ensure_review_project(ls, title, label_config)
    present = {t["data"].get("external_id") for t in list_tasks(ls, review_id)}
    todo = to_review[~to_review["task"].isin(present) & ~to_review["task"].isin(gold_ids)]
    rows = latest_annotations(labels)
    answers = dict(list(rows[rows["external_id"].isin(todo["task"])].groupby("external_id", sort=False)))
    targets = control_targets(label_config)
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
        tasks.append({"data": data, "predictions": annotator_predictions(theirs, targets, data.get("text"))})
    _refuse_gold(tasks, gold_ids)
    queued = import_tasks(ls, review_id, tasks)
    return {
        "project_id": review_id,
        "title": review_title(title),
        "url": f"{base_url}/projects/{review_id}/data",
        "queued": queued,
        "in_review": len(present) + queued,
    }


def _refuse_gold(tasks: list[dict], gold_ids: set[str]) -> None:
    leaked = [t["data"]["external_id"] for t in tasks if t["data"]["external_id"] in gold_ids]
    if leaked:
        raise RuntimeError(f"refusing to send gold task(s) to Label Studio: {', '.join(map(str, leaked[:5]))}")


def read_adjudicated(ls: Any, review_project_id: int) -> pd.DataFrame:
    """The adjudicators' decisions (latest non-cancelled annotation per task), one row per value."""
    exported = json.loads(b"".join(ls.projects.exports.download_sync(id=review_project_id, export_type="JSON")))
    rows = []
    for task in exported:
        kept = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
        if not kept:
            continue
        latest = max(kept, key=lambda a: (a.get("updated_at") or "", a.get("id", 0)))
        base = {
            "external_id": task["data"].get("external_id"),
            "annotation_id": latest.get("id"),
            "adjudicator": str(latest.get("completed_by")),
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


def sync_adjudicated(ls: Any, ws: Workspace, title: str) -> pd.DataFrame | None:
    """Read the review project's decisions into the workspace; None when there is no review project yet."""
    name = review_title(title)
    project = next((p for p in ls.projects.list(title=name) if p.title == name), None)
    if project is None:
        return None
    decided = read_adjudicated(ls, project.id)
    write_parquet(adjudicated_path(ws), decided)
    return decided
