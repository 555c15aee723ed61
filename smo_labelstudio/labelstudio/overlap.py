"""Per-task overlap in Label Studio: read each task's overlap and answers, and raise one task's overlap
so Label Studio serves it again.

Label Studio 1.23.2 stores a PATCHed `overlap` but keeps `is_labeled` as it was, and its next-task
logic (`projects/functions/next_task.py`) only serves tasks with `is_labeled` false; `is_labeled` is
recomputed only when an annotation of the task is written (`tasks/mixins.py` `update_is_labeled`:
distinct annotators >= overlap). So a raise sends both fields; the next answer recomputes it. The
next-task logic never serves a task to a member who already annotated or skipped it, and `/next`
returns only the asking member's own annotations, so the new annotator does not see earlier answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from smo_labelstudio.labelstudio.client import LabelStudioError, iter_tasks


@dataclass(frozen=True)
class TaskOverlap:
    """One task's overlap as Label Studio holds it."""

    task_id: int
    overlap: int
    answers: int  # completed annotations (skips not counted)
    is_labeled: bool


def task_overlaps(http: httpx.Client, project_id: int) -> list[TaskOverlap]:
    """Every task's overlap, answers and labeled state (one paged listing)."""
    return [
        TaskOverlap(
            task_id=int(t["id"]),
            overlap=int(t.get("overlap") or 1),
            answers=int(t.get("total_annotations") or 0),
            is_labeled=bool(t.get("is_labeled")),
        )
        for t in iter_tasks(http, project_id)
    ]


def raise_task_overlap(http: httpx.Client, task_id: int, overlap: int, answers: int) -> None:
    """Set a task's overlap to `overlap` and mark it unlabeled when it has fewer `answers`, so the next-task
    logic serves it again (idempotent: setting the same overlap twice changes nothing)."""
    resp = http.patch(f"/api/tasks/{task_id}", json={"overlap": overlap, "is_labeled": answers >= overlap})
    if resp.status_code >= 300:
        raise LabelStudioError(
            f"Label Studio answered {resp.status_code} to raising task {task_id}'s overlap to {overlap}: "
            f"{resp.text[:200]}"
        )
