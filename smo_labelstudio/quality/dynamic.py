"""Dynamic overlap: one more annotator for each task whose consensus is weak, within a cap and a budget.

`plan_raises` is pure over tidy frames: the consensus (`task`, `confidence`, optionally `source`), each
task's answers and overlap, the raises already spent, and the spec's `overlap.dynamic`. A task is raised
when its answers have reached its overlap (nothing is pending), its weakest control's confidence is below
the target and it has fewer answers than the cap; lowest confidence first, until the budget is spent.

`apply_dynamic_overlap` does it on a project: it records each raise in the workspace
(`dynamic/raises.parquet`) before asking Label Studio, and re-sends recorded raises Label Studio does not
hold yet, so a run after a crash never raises (or spends on) a task twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from smo_labelstudio.core.lock import workspace_lock
from smo_labelstudio.core.spec import DynamicOverlap, Spec
from smo_labelstudio.core.workspace import Workspace, read_table, write_parquet
from smo_labelstudio.labelstudio.client import http_client
from smo_labelstudio.labelstudio.overlap import raise_task_overlap, task_overlaps

RAISE_COLUMNS = ["task", "task_id", "answers", "to_overlap", "confidence", "raised_at"]


def raises_path(ws: Workspace) -> Path:
    """Where the raises of a project are recorded (one row per extra answer asked for)."""
    return ws.root / "dynamic" / "raises.parquet"


def read_raises(ws: Workspace) -> pd.DataFrame:
    """Every raise recorded so far (empty frame before the first)."""
    path = raises_path(ws)
    return read_table(path) if path.exists() else pd.DataFrame(columns=RAISE_COLUMNS)


def plan_raises(consensus: pd.DataFrame, tasks: pd.DataFrame, spent: int, settings: DynamicOverlap) -> pd.DataFrame:
    """The tasks to give one more annotator now: `task`, `task_id`, `answers`, `to_overlap`, `confidence`.

    `consensus`: task, confidence (one row per task and control; the weakest control decides; rows whose
    `source` is not "consensus", i.e. gold or adjudicated, are never raised). `tasks`: task, task_id,
    answers, overlap (Label Studio's, or a recorded raise not yet held there). `spent`: raises so far."""
    left = max(0, settings.budget - spent)
    empty = pd.DataFrame(columns=RAISE_COLUMNS[:-1])
    if left == 0 or consensus.empty or tasks.empty:
        return empty
    open_rows = consensus if "source" not in consensus else consensus[consensus["source"] == "consensus"]
    weakest = open_rows.groupby("task", sort=True)["confidence"].min().rename("confidence").reset_index()
    merged = tasks.merge(weakest, on="task", how="inner")
    eligible = merged[
        (merged["answers"] >= merged["overlap"])
        & (merged["answers"] < settings.max_annotators)
        & (merged["confidence"] < settings.target)
    ]
    chosen = eligible.sort_values(["confidence", "task_id"], kind="stable").head(left)
    return chosen.assign(to_overlap=chosen["answers"] + 1)[RAISE_COLUMNS[:-1]].reset_index(drop=True)


@dataclass
class DynamicOutcome:
    """What one pass did: raised now, re-sent after a crash, spent in all, budget left."""

    raised: pd.DataFrame
    resent: int
    spent: int
    budget: int

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures for flows and the CLI."""
        return {
            "raised": len(self.raised),
            "resent": self.resent,
            "spent": self.spent,
            "budget": self.budget,
            "budget_left": max(0, self.budget - self.spent),
        }


def apply_dynamic_overlap(
    ws: Workspace,
    settings: DynamicOverlap,
    consensus: pd.DataFrame,
    task_ids: dict[Any, int],
    project_id: int,
    url: str,
    token: str,
) -> DynamicOutcome:
    """Raise the weak tasks of a project (see the module docstring); `task_ids` maps consensus task keys
    (external ids) to Label Studio task ids."""
    raises = read_raises(ws)
    with http_client(url, token, timeout=300) as http:
        held = {t.task_id: t for t in task_overlaps(http, project_id)}
        resent = 0
        if len(raises):  # recorded but not held by Label Studio (a crash between the two, or a re-plan)
            wanted = raises.groupby("task_id")["to_overlap"].max()
            for task_id, overlap in wanted.items():
                task = held.get(int(task_id))
                if task is not None and task.overlap < overlap and task.answers < overlap:
                    raise_task_overlap(http, task.task_id, int(overlap), task.answers)
                    resent += 1
                    held[task.task_id] = replace(task, overlap=int(overlap))
        by_id = {v: k for k, v in task_ids.items()}
        tasks = pd.DataFrame(
            [
                {"task": by_id[t.task_id], "task_id": t.task_id, "answers": t.answers, "overlap": t.overlap}
                for t in held.values()
                if t.task_id in by_id
            ],
            columns=["task", "task_id", "answers", "overlap"],
        )
        plan = plan_raises(consensus, tasks, len(raises), settings)
        if len(plan):
            rows = plan.assign(raised_at=pd.Timestamp.now(tz="UTC").isoformat())
            write_parquet(raises_path(ws), pd.concat([raises, rows], ignore_index=True)[RAISE_COLUMNS])
            for row in plan.itertuples():
                raise_task_overlap(http, int(row.task_id), int(row.to_overlap), int(row.answers))
    return DynamicOutcome(plan, resent, len(raises) + len(plan), settings.budget)


def dynamic_figures(raises: pd.DataFrame, consensus: pd.DataFrame, settings: DynamicOverlap) -> dict[str, Any]:
    """What dynamic overlap has done, for the report and the warehouse: answers spent, budget left, tasks
    raised, their mean weakest confidence when first raised and now, and the gain between the two."""
    spent = len(raises)
    out: dict[str, Any] = {
        "target": settings.target,
        "max_annotators": settings.max_annotators,
        "budget": settings.budget,
        "answers_spent": spent,
        "budget_left": max(0, settings.budget - spent),
        "tasks_raised": int(raises["task"].nunique()) if spent else 0,
        "confidence_before": None,
        "confidence_now": None,
        "confidence_gained": None,
    }
    if not spent or consensus.empty:
        return out
    first = raises.sort_values("raised_at", kind="stable").groupby("task")["confidence"].first()
    now = consensus.groupby("task")["confidence"].min().reindex(first.index).dropna()
    if len(now):
        before = float(first.loc[now.index].mean())
        out.update(
            confidence_before=round(before, 4),
            confidence_now=round(float(now.mean()), 4),
            confidence_gained=round(float(now.mean()) - before, 4),
        )
    return out


def raise_weak_tasks(
    ws: Workspace, settings: DynamicOverlap, consensus: pd.DataFrame, labels: pd.DataFrame, url: str, token: str
) -> dict[str, Any]:
    """After a quality pass: raise the project's weak tasks (consensus keyed by external id, Label Studio
    ids from the pulled labels table) and return the figures for the report and the warehouse."""
    project_id = (ws.project() or {}).get("project_id")
    if not project_id:
        return {}
    pairs = labels[["external_id", "task"]].dropna().drop_duplicates("external_id")
    task_ids = {key: int(task) for key, task in zip(pairs["external_id"], pairs["task"])}
    with workspace_lock(ws, "dynamic overlap"):
        outcome = apply_dynamic_overlap(ws, settings, consensus, task_ids, int(project_id), url, token)
        figures = dynamic_figures(read_raises(ws), consensus, settings)
    return {**figures, "raised_now": len(outcome.raised), "resent": outcome.resent}


def overlap_after_pull(ws: Workspace, spec: Spec, url: str, token: str, method: str = "smoothed-ds") -> dict[str, Any]:
    """Dynamic overlap right after a pull: the quality check's calibrated consensus over the answers that count
    (few bootstrap resamples: only the consensus is used), then the raises; nothing without `overlap.dynamic`
    or before the first pull."""
    if spec.overlap.dynamic is None:
        return {}
    # the engine loads scipy and scikit-learn: only a dynamic project's pull pays for it (and the warehouse never)
    from smo_labelstudio.quality.check import MissingInputError  # noqa: PLC0415
    from smo_labelstudio.quality.qualification import counted_check  # noqa: PLC0415

    try:
        result, inputs, _ = counted_check(ws, spec, method=method, n_boot=10)  # answers that do not count stay out
    except MissingInputError:  # nothing pulled or nothing that counts yet: nothing to raise
        return {}
    return raise_weak_tasks(ws, spec.overlap.dynamic, result.consensus, inputs["labels"], url, token)
