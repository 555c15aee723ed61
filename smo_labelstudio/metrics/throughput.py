"""How fast annotators work: answers per hour, lead times, the slowest policies, who skips tasks.
Pure over frames."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from smo_labelstudio.metrics.model_eval import key_to_set
from smo_labelstudio.metrics.progress import answers_per_task
from smo_labelstudio.quality import inputs as qi

THROUGHPUT_COLUMNS = [
    "annotator",
    "answers",
    "active_hours",
    "per_active_hour",
    "labeling_hours",
    "per_labeling_hour",
    "skipped",
]


def throughput(annotations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per annotator: answers, active_hours (distinct clock hours with an answer), per_active_hour,
    labeling_hours (sum of lead times), per_labeling_hour, skipped; per annotator and hour: answers)."""
    ann = annotations[annotations["annotator"].notna()].copy()
    if ann.empty:
        return pd.DataFrame(columns=THROUGHPUT_COLUMNS), pd.DataFrame(columns=["annotator", "hour", "answers"])
    ann["hour"] = pd.to_datetime(ann["created_at"], utc=True).dt.floor("h")
    done = ann[~ann["was_cancelled"].fillna(False).astype(bool)]
    hourly = done.groupby(["annotator", "hour"]).size().rename("answers").reset_index()
    rows = []
    for who, part in ann.groupby("annotator", sort=True):
        ok = part[~part["was_cancelled"].fillna(False).astype(bool)]
        hours = ok["hour"].nunique()
        labeling = float(pd.to_numeric(ok["lead_time"], errors="coerce").fillna(0).sum()) / 3600
        rows.append(
            {
                "annotator": who,
                "answers": len(ok),
                "active_hours": hours,
                "per_active_hour": len(ok) / hours if hours else math.nan,
                "labeling_hours": labeling,
                "per_labeling_hour": len(ok) / labeling if labeling else math.nan,
                "skipped": int(len(part) - len(ok)),
            }
        )
    return pd.DataFrame(rows), hourly


def blocked(thr: pd.DataFrame) -> pd.DataFrame:
    """Annotators who skipped tasks (possibly blocked by unclear guidelines): annotator, answers, skipped."""
    if not len(thr):
        return pd.DataFrame(columns=["annotator", "answers", "skipped"])
    return thr[thr["skipped"] > 0][["annotator", "answers", "skipped"]].reset_index(drop=True)


def lead_times(annotations: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """external_id, annotator, language, lead_time (seconds), policy (consensus set, one row per policy)."""
    ans = answers_per_task(annotations)
    frame = pd.DataFrame(
        {
            "external_id": ans["external_id"],
            "annotator": ans["annotator"],
            "language": ans["language"].fillna("unknown").astype(str),
            "lead_time": pd.to_numeric(ans["lead_time"], errors="coerce"),
        }
    ).dropna(subset=["lead_time"])
    cons = consensus[consensus["control"] == qi.POLICY] if len(consensus) else consensus
    policy = dict(zip(cons.get("task", []), cons.get("label", [])))
    frame["policy"] = frame["external_id"].map(
        lambda t: sorted(key_to_set(policy.get(t))) or [qi.NO_POLICY] if t in policy else ["(no consensus)"]
    )
    return frame.explode("policy").reset_index(drop=True)


def lead_summary(lead: pd.DataFrame) -> dict[str, Any]:
    """n, median, p90 and mean lead time over answers (each answer once, whatever its policies)."""
    per_answer = lead.drop_duplicates(["external_id", "annotator"])["lead_time"]
    if per_answer.empty:
        return {"n": 0}
    return {
        "n": int(len(per_answer)),
        "median": float(per_answer.median()),
        "p90": float(per_answer.quantile(0.9)),
        "mean": float(per_answer.mean()),
    }


def slow_policies(lead: pd.DataFrame) -> pd.DataFrame:
    """policy, answers, median and p90 lead time: slowest first."""
    if lead.empty:
        return pd.DataFrame(columns=["policy", "answers", "median", "p90"])
    g = lead.groupby("policy")["lead_time"]
    out = pd.DataFrame({"answers": g.size(), "median": g.median(), "p90": g.quantile(0.9)}).reset_index()
    return out.sort_values("median", ascending=False, ignore_index=True)
