"""Pulling completed work from Label Studio into the workspace's tidy tables, incrementally.

The first pull reads every annotated task (an export snapshot, checked against the project's annotation
count: labelstudio/exports.py). Later pulls fetch only tasks Label Studio changed since the last one began
(annotation writes and deletions bump a task's `updated_at`): a data-manager view filtered on `updated_at`
feeds an export snapshot, and every fetched task's rows
replace the rows held for it, so updated annotations are not duplicated and deleted ones disappear.
A deleted task bumps nothing such a view sees, so an incremental pull also compares the rows it
holds with the project's annotation count and, when it holds more, drops the rows of tasks no longer
in the project's task list. The watermark is Label Studio's own clock (its `Date` header, read
before the export, less one second for its resolution), so a change made while a pull runs is
fetched by the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pandas as pd

from smo_labelstudio.core.errors import ServiceError
from smo_labelstudio.core.lock import workspace_lock
from smo_labelstudio.core.paths import LABEL_CONFIGS_DIR
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.core.workspace import (
    ANNOTATION_COLUMNS,
    LABEL_COLUMNS,
    Workspace,
    read_json,
    read_plan,
    read_table,
    write_json,
    write_parquet,
)
from smo_labelstudio.labelstudio.exports import LS_TIME, ProjectExports, SnapshotFailed
from smo_labelstudio.labelstudio.label_config import KINDS, config_labels, render_config

MARGIN = timedelta(seconds=1)  # the Date header's resolution: re-reading a task twice is harmless
QUARANTINE_COLUMNS = [*LABEL_COLUMNS, "reason"]
NOT_IN_TAXONOMY = "label not in the taxonomy"
UNKNOWN_CONTROL = "control not in the label config"


class PullError(ServiceError):
    """The pull cannot run; the message says what to do."""


def item_ledger(ws: Workspace) -> pd.DataFrame:
    """item_id -> external_id, is_gold, language for every item our launches planned (gold ids prefixed
    `gold:`); the language is the one we imported, not what a task's data says now (any account can edit it)."""
    columns = ["item_id", "external_id", "is_gold", "language"]
    return read_plan(ws, columns)[columns]


def quarantine_table(ws: Workspace) -> Path:
    """Where pulled labels that are not in the taxonomy go (`tables/labels_quarantine.parquet`)."""
    return ws.labels.with_name("labels_quarantine.parquet")


def allowed_labels(project: dict) -> dict[str, set[str]]:
    """The stored values each control may hold: the project's label config in label_configs/ (generated from
    the taxonomy; never the copy in Label Studio, which any account can edit), else every config the taxonomy
    generates."""
    path = LABEL_CONFIGS_DIR / f"{project.get('config')}.xml"
    if project.get("config") and path.is_file():
        return config_labels(path.read_text(encoding="utf-8"))
    tax, allowed = load_taxonomy(), dict[str, set[str]]()
    for kind in KINDS:
        for control, values in config_labels(render_config(tax, kind)).items():
            allowed.setdefault(control, set()).update(values)
    return allowed


def quarantine_labels(labels: pd.DataFrame, allowed: dict[str, set[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The label rows whose control and value the label config holds, and the rest with a reason each:
    labels are free text in Label Studio's API, and only the taxonomy's reach the quality engine and reports."""
    known_control = labels["control"].isin(list(allowed))
    known = pd.Series(
        [c in allowed and lab in allowed[c] for c, lab in zip(labels["control"], labels["label"])],
        index=labels.index,
        dtype=bool,
    )
    refused = labels[~known].assign(reason=NOT_IN_TAXONOMY)
    refused.loc[~known_control[~known], "reason"] = UNKNOWN_CONTROL
    return labels[known].reset_index(drop=True), refused.reset_index(drop=True)[QUARANTINE_COLUMNS]


def _values(item: dict) -> list[tuple[str, str, float | None, float | None]]:
    """(control, label, start, end) for one result item; free text is not a label."""
    value = item.get("value") or {}
    control = cast(str, item.get("from_name"))  # every result Label Studio exports names its control
    if "choices" in value:
        return [(control, str(c), None, None) for c in value["choices"]]
    for key in ("labels", "rectanglelabels", "polygonlabels", "taxonomy"):
        if key in value:
            return [
                (
                    control,
                    str(lab if not isinstance(lab, list) else "/".join(lab)),
                    value.get("start"),
                    value.get("end"),
                )
                for lab in value[key]
            ]
    if "rating" in value:
        return [(control, str(value["rating"]), None, None)]
    return []


def _utf16_to_points(text: str, offset: int) -> int | None:
    """A UTF-16 code-unit offset (what a browser counts) as a code-point offset into `text`, None mid-pair."""
    units = 0
    for i, ch in enumerate(text):
        if units == offset:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > offset:
            return None
    return len(text) if units == offset else None


def _whole(value: Any) -> int | None:
    """An offset as an int when it is a whole number (5 or 5.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, float) and value.is_integer() else None


def check_span(value: dict, text: Any) -> tuple[Any, Any, str | None]:
    """A text span's (start, end) as code-point offsets into the task's text, and why it is refused (None when
    it is fine): offsets missing or not whole numbers, negative, start not before end, past the text's end, or
    its `text` not what the text holds there. Offsets a browser counted in UTF-16 units (text with emoji, Label
    Studio issue #1347) are converted when that makes the span's text match."""
    start, end = _whole(value.get("start")), _whole(value.get("end"))
    if start is None or end is None:
        return value.get("start"), value.get("end"), "span offsets missing or not whole numbers"
    if start < 0 or end < 0:
        return start, end, "negative span offset"
    if start >= end:
        return start, end, "span start not before its end"
    if not isinstance(text, str):
        return start, end, None  # nothing to check against (not a text task)
    said = value.get("text")
    if end <= len(text) and (said is None or text[start:end] == said):
        return start, end, None
    if isinstance(said, str) and any(ord(ch) > 0xFFFF for ch in text):
        s, e = _utf16_to_points(text, start), _utf16_to_points(text, end)
        if s is not None and e is not None and s < e and text[s:e] == said:
            return s, e, None
    if end > len(text):
        return start, end, f"span end {end} past the end of the task's text ({len(text)} characters)"
    return start, end, "span text differs from the task's text at its offsets"


def _offset(value: Any) -> float | None:
    """An offset as the quarantine table holds it: a float, or None when it is no number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _choice_set(result: list[dict]) -> dict[str, frozenset]:
    out: dict[str, set] = {}
    for item in result or []:
        for control, label, start, end in _values(item):
            out.setdefault(control, set()).add((label, start, end))
    return {k: frozenset(v) for k, v in out.items()}


def tidy(
    tasks: list[dict],
    project_id: int,
    ledger: pd.DataFrame,
    users: dict[int, str],
    refused: list[dict] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables for a list of exported tasks; text spans that `check_span` refuses are left out of the
    labels table and, when `refused` is given, appended to it as quarantine rows (QUARANTINE_COLUMNS)."""
    by_item = ledger.set_index("item_id").to_dict("index") if len(ledger) else {}
    ann_rows, label_rows = [], []
    for task in tasks:
        data = task.get("data") or {}
        known = by_item.get(data.get("item_id"), {})
        external, gold = known.get("external_id"), bool(known.get("is_gold", False))
        language = known.get("language") if known.get("language") is not None else data.get("language")
        for ann in task.get("annotations") or []:
            if ann.get("ground_truth") and not ann.get("result"):
                continue  # the empty marker that serves a qualification task first (quality/qualification.py)
            prediction = ann.get("prediction") if isinstance(ann.get("prediction"), dict) else None
            changed = None
            if prediction and prediction.get("result") is not None:
                changed = _choice_set(prediction["result"]) != _choice_set(ann.get("result"))
            annotator = users.get(ann.get("completed_by"), str(ann.get("completed_by")))
            ann_rows.append(
                {
                    "project": project_id,
                    "task": task["id"],
                    "external_id": external,
                    "annotation_id": ann["id"],
                    "annotator": annotator,
                    "created_at": ann.get("created_at"),
                    "updated_at": ann.get("updated_at"),
                    "lead_time": ann.get("lead_time"),
                    "was_cancelled": bool(ann.get("was_cancelled")),
                    "is_gold": gold,
                    "prediction_model_version": prediction.get("model_version") if prediction else None,
                    "changed_prediction": changed,
                    "language": language,
                }
            )
            if ann.get("was_cancelled"):
                continue
            for item in ann.get("result") or []:
                reason = None
                value = item.get("value") if isinstance(item, dict) else None
                if isinstance(value, dict) and "labels" in value and "choices" not in value:
                    start, end, reason = check_span(item["value"], data.get("text"))
                    item = {**item, "value": {**item["value"], "start": start, "end": end}}
                for control, label, start, end in _values(item):
                    row = {
                        "project": project_id,
                        "task": task["id"],
                        "external_id": external,
                        "annotation_id": ann["id"],
                        "annotator": annotator,
                        "control": control,
                        "label": label,
                        "start": start,
                        "end": end,
                        "is_gold": gold,
                        "language": language,
                    }
                    if reason is None:
                        label_rows.append(row)
                    elif refused is not None:
                        refused.append({**row, "start": _offset(start), "end": _offset(end), "reason": reason})
    annotations = pd.DataFrame(ann_rows, columns=ANNOTATION_COLUMNS)
    for col in ("created_at", "updated_at"):
        annotations[col] = pd.to_datetime(annotations[col], utc=True, format="ISO8601")
    labels = pd.DataFrame(label_rows, columns=LABEL_COLUMNS)
    labels[["start", "end"]] = labels[["start", "end"]].astype("float64")
    return annotations, labels


PULL_STEPS = 4  # read the users, fetch the tasks, tidy and merge, write the tables


def pull(
    ws: Workspace, url: str, token: str, full: bool = False, progress: Callable[[int, int], None] | None = None
) -> dict:
    """Bring the workspace tables up to date with the project; returns the pull summary. A crash at
    any point is safe: the watermark is saved last, so the next pull re-reads and replaces.
    `progress(done, PULL_STEPS)` is called after each step."""
    ls = ProjectExports(url, token)
    step = progress or (lambda _done, _total: None)
    try:
        with workspace_lock(ws, "pull"):  # another pull, a launch, a quality check: one at a time
            return _pull(ws, ls, full, lambda done: step(done, PULL_STEPS))
    except SnapshotFailed as exc:
        raise PullError(str(exc)) from None
    finally:
        ls.close()


def _pull(ws: Workspace, ls: ProjectExports, full: bool, step: Callable[[int], None]) -> dict:
    project = ws.project()
    if not project:
        raise PullError(f"no project recorded in {ws.root}; run `smo launch --spec SPEC --data FILE` first")
    pid = project["project_id"]
    state = None if full else read_json(ws.pull_state)
    t0 = time.perf_counter()
    users, server_now = ls.users()
    ledger = item_ledger(ws)
    step(1)
    have_tables = ws.annotations.exists() and ws.labels.exists()
    if state and have_tables and state.get("project_id") == pid and state.get("watermark"):
        since = datetime.strptime(state["watermark"], LS_TIME).replace(tzinfo=UTC)
        tasks, mode = ls.changed_since(pid, since), "incremental"
        old_ann, old_lab = read_table(ws.annotations), read_table(ws.labels)
        old_q = read_table(quarantine_table(ws)) if quarantine_table(ws).exists() else None
    else:
        tasks, mode = ls.export_annotated(pid), "full"
        old_ann = pd.DataFrame(columns=ANNOTATION_COLUMNS)
        old_lab = pd.DataFrame(columns=LABEL_COLUMNS)
        old_q = None
    step(2)
    bad_spans: list[dict] = []
    new_ann, new_lab = tidy(tasks, pid, ledger, users, refused=bad_spans)
    touched = {t["id"] for t in tasks}
    kept_ann = old_ann[~old_ann["task"].isin(touched)]
    before = dict(zip(old_ann["annotation_id"], old_ann["updated_at"]))
    fetched_ids = set(new_ann["annotation_id"])
    summary = {
        "project_id": pid,
        "mode": mode,
        "tasks_fetched": len(tasks),
        "new": int(sum(a not in before for a in new_ann["annotation_id"])),
        "updated": int(
            sum(a in before and before[a] != u for a, u in zip(new_ann["annotation_id"], new_ann["updated_at"]))
        ),
        "deleted": int(old_ann[old_ann["task"].isin(touched) & ~old_ann["annotation_id"].isin(fetched_ids)].shape[0]),
    }
    annotations = pd.concat([kept_ann, new_ann], ignore_index=True) if len(kept_ann) else new_ann
    labels = (
        pd.concat([old_lab[~old_lab["task"].isin(touched)], new_lab], ignore_index=True) if len(old_lab) else new_lab
    )
    labels, refused = quarantine_labels(labels, allowed_labels(project))
    if bad_spans:  # spans whose offsets do not fit the task's text (`check_span`), each with its reason
        refused = pd.concat([refused, pd.DataFrame(bad_spans, columns=QUARANTINE_COLUMNS)], ignore_index=True)
    if old_q is not None and len(old_q):
        refused = pd.concat([old_q[~old_q["task"].isin(touched)], refused], ignore_index=True)
    if mode == "incremental" and len(annotations) > ls.annotation_count(pid):
        # A deleted task bumps nothing a changed-since view can see: more rows here than annotations in
        # Label Studio means some task is gone, so the task list (ids only) says which rows to drop.
        gone = set(annotations["task"]) - ls.task_ids(pid)
        summary["deleted"] += int(annotations["task"].isin(gone).sum())
        summary["tasks_deleted"] = len(gone)
        annotations = annotations[~annotations["task"].isin(gone)]
        labels = labels[~labels["task"].isin(gone)]
        refused = refused[~refused["task"].isin(gone)]
    step(3)
    annotations = annotations.sort_values(["task", "annotation_id"]).reset_index(drop=True)
    labels = labels.sort_values(["task", "annotation_id", "control", "label"]).reset_index(drop=True)
    write_parquet(ws.annotations, annotations)
    refused = refused.sort_values(["task", "annotation_id", "control", "label"]).reset_index(drop=True)
    write_parquet(ws.labels, labels)
    write_parquet(quarantine_table(ws), refused)
    watermark = (server_now.astimezone(UTC) - MARGIN).strftime(LS_TIME)
    write_json(ws.pull_state, {"project_id": pid, "watermark": watermark, "pulled_at": time.time(), "mode": mode})
    step(4)
    summary.update(
        {
            "annotations": len(annotations),
            "labels": len(labels),
            "labels_quarantined": len(refused),
            "seconds": round(time.perf_counter() - t0, 3),
            "tables": {
                "annotations": str(ws.annotations),
                "labels": str(ws.labels),
                "labels_quarantine": str(quarantine_table(ws)),
            },
        }
    )
    return summary
