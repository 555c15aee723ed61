"""Progress of a project against its launch plan: which answers count, how far each task and language is,
and which tasks are stalled. Pure over frames.

Progress counts answers against what the plan needs: each planned task needs `overlap.annotators`
answers, and a `share` of them `extra_annotators` (Label Studio picks that cohort; we take the tasks
with the most answers as the cohort, which is how Label Studio fills it).
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd

from smo_labelstudio.core.spec import Spec


def answers_per_task(annotations: pd.DataFrame) -> pd.DataFrame:
    """One row per kept answer (each annotator's latest, not cancelled): external_id, annotator, created_at,
    lead_time, language."""
    ann = annotations[annotations["external_id"].notna()].sort_values("annotation_id")
    ann = ann.drop_duplicates(["external_id", "annotator"], keep="last")
    return ann[~ann["was_cancelled"].fillna(False).astype(bool)].reset_index(drop=True)


def progress(plan: pd.DataFrame, annotations: pd.DataFrame, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per language and '(all)': tasks, done, in_progress, not_started, answers_needed, answers_given,
    answers_remaining; per task: external_id, language, answers, target, last_answer)."""
    answers = answers_per_task(annotations)
    count = answers.groupby("external_id").size()
    last = answers.groupby("external_id")["created_at"].max()
    tasks = plan[["external_id", "language"]].copy()
    tasks["language"] = tasks["language"].fillna("unknown").astype(str)
    tasks["answers"] = tasks["external_id"].map(count).fillna(0).astype(int)
    # reindex, not map: mapping through an empty datetime Series makes pandas cast it to float and fail
    tasks["last_answer"] = (
        pd.Series(last.reindex(tasks["external_id"]).array, index=tasks.index) if len(last) else pd.NaT
    )
    o = spec.overlap
    tasks["target"] = o.annotators
    if o.share > 0 and len(tasks):
        cohort = int(math.ceil(o.share * len(tasks)))
        order = tasks.sort_values(["answers", "external_id"], ascending=[False, True]).index[:cohort]
        tasks.loc[order, "target"] = o.extra_annotators
    tasks["given"] = np.minimum(tasks["answers"], tasks["target"])
    tasks["state"] = np.where(
        tasks["answers"] >= tasks["target"], "done", np.where(tasks["answers"] > 0, "in progress", "not started")
    )
    rows = []
    for language, part in [("(all)", tasks)] + list(tasks.groupby("language", sort=True)):
        states = part["state"].value_counts()
        needed, given = int(part["target"].sum()), int(part["given"].sum())
        rows.append(
            {
                "language": language,
                "tasks": len(part),
                "done": int(states.get("done", 0)),
                "in_progress": int(states.get("in progress", 0)),
                "not_started": int(states.get("not started", 0)),
                "answers_needed": needed,
                "answers_given": given,
                "answers_remaining": needed - given,
                "percent_done": given / needed if needed else math.nan,
            }
        )
    return pd.DataFrame(rows), tasks


def stale_tasks(tasks: pd.DataFrame, now: datetime, stale_hours: float) -> pd.DataFrame:
    """Tasks in progress (per-task frame of `progress`) with no answer for `stale_hours`: external_id,
    language, answers, target, hours_since_last_answer, the longest idle first."""
    in_progress = tasks[tasks["state"] == "in progress"].copy()
    if len(in_progress):
        age = (pd.Timestamp(now) - pd.to_datetime(in_progress["last_answer"], utc=True)).dt.total_seconds() / 3600
        in_progress["hours_since_last_answer"] = age.to_numpy()
    else:
        in_progress["hours_since_last_answer"] = pd.Series(dtype=float)
    return (
        in_progress[in_progress["hours_since_last_answer"] >= stale_hours]
        .sort_values("hours_since_last_answer", ascending=False)[
            ["external_id", "language", "answers", "target", "hours_since_last_answer"]
        ]
        .reset_index(drop=True)
    )
