"""Quality over time (per annotator and UTC day) and the retrospective of launches and batches.
Pure over frames."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from smo_labelstudio.metrics.progress import answers_per_task
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.gold import wilson_interval

TREND_COLUMNS = [
    "annotator",
    "day",
    "answers",
    "gold_n",
    "gold_accuracy",
    "gold_ci_low",
    "gold_ci_high",
    "agreement_n",
    "agreement",
]
RETROSPECTIVE_COLUMNS = [
    "plan_id",
    "batch",
    "created",
    "tasks",
    "done",
    "answers",
    "median_lead_time",
    "agreement",
    "model_exact",
]


def _answer_days(annotations: pd.DataFrame) -> dict[tuple[str, str], pd.Timestamp]:
    ans = answers_per_task(annotations)
    day = pd.to_datetime(ans["created_at"], utc=True).dt.floor("D")
    return dict(zip(zip(ans["external_id"], ans["annotator"]), day))


def quality_trend(
    keys: pd.DataFrame, gold_keys: pd.DataFrame, consensus: pd.DataFrame, annotations: pd.DataFrame
) -> pd.DataFrame:
    """annotator, day, answers, gold_n, gold_accuracy, agreement (with the consensus policy set; gold
    tasks excluded), each per UTC day: drift shows as a falling line."""
    days = _answer_days(annotations)
    gold = dict(zip(gold_keys["task"], gold_keys["label"]))
    cons = consensus[(consensus["control"] == qi.POLICY)] if len(consensus) else consensus
    agreed = dict(zip(cons.get("task", []), cons.get("label", [])))
    frame = keys.assign(day=[days.get((t, a)) for t, a in zip(keys["task"], keys["annotator"])]).dropna(subset=["day"])
    frame["gold_hit"] = [(lab == gold[t]) if t in gold else np.nan for t, lab in zip(frame["task"], frame["label"])]
    frame["agree"] = [
        (lab == agreed[t]) if t in agreed and t not in gold else np.nan for t, lab in zip(frame["task"], frame["label"])
    ]
    rows = []
    for (who, day), part in frame.groupby(["annotator", "day"], sort=True):
        g, a = part["gold_hit"].dropna(), part["agree"].dropna()
        lo, hi = wilson_interval(float(g.sum()), len(g))
        rows.append(
            {
                "annotator": who,
                "day": day.date().isoformat(),
                "answers": len(part),
                "gold_n": len(g),
                "gold_accuracy": float(g.mean()) if len(g) else math.nan,
                "gold_ci_low": float(lo),
                "gold_ci_high": float(hi),
                "agreement_n": len(a),
                "agreement": float(a.mean()) if len(a) else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


def retrospective(
    plan: pd.DataFrame,
    tasks: pd.DataFrame,
    keys: pd.DataFrame,
    consensus: pd.DataFrame,
    lead: pd.DataFrame,
    preds: pd.DataFrame,
) -> pd.DataFrame:
    """One row per launch plan and batch: when, tasks, done share, answers, median lead time, agreement
    with consensus, and the model's exact-set accuracy on its tasks."""
    if plan.empty:
        return pd.DataFrame(columns=RETROSPECTIVE_COLUMNS)
    cons = consensus[consensus["control"] == qi.POLICY] if len(consensus) else consensus
    agreed = dict(zip(cons.get("task", []), cons.get("label", [])))
    state = dict(zip(tasks["external_id"], tasks["state"]))
    lead_by = lead.drop_duplicates(["external_id", "annotator"]).groupby("external_id")["lead_time"].apply(list)
    model = dict(zip(preds["external_id"], preds["policy"].map(qi.set_key))) if len(preds) else {}
    rows = []
    for (plan_id, batch), part in plan.groupby(["plan_id", "batch"], sort=False):
        ids = set(part["external_id"])
        k = keys[keys["task"].isin(ids)]
        agree = [lab == agreed[t] for t, lab in zip(k["task"], k["label"]) if t in agreed]
        leads = [x for t in ids if t in lead_by.index for x in lead_by[t]]
        judged = [model[t] == agreed[t] for t in ids if t in model and t in agreed]
        created = part["plan_created"].iloc[0]
        rows.append(
            {
                "plan_id": str(plan_id)[:12],
                "batch": int(batch),
                "created": datetime.fromtimestamp(float(created), UTC).strftime("%Y-%m-%d %H:%M")
                if created is not None and not pd.isna(created)
                else None,
                "tasks": len(ids),
                "done": sum(state.get(t) == "done" for t in ids) / len(ids),
                "answers": len(k),
                "median_lead_time": float(np.median(leads)) if leads else math.nan,
                "agreement": float(np.mean(agree)) if agree else math.nan,
                "model_exact": float(np.mean(judged)) if judged else math.nan,
            }
        )
    return pd.DataFrame(rows)
