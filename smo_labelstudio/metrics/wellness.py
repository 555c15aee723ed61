"""Annotator wellness: how many high-severity items each annotator answered per UTC day, against the
spec's cap. Pure over frames."""

from __future__ import annotations

import pandas as pd

from smo_labelstudio.core.spec import Spec
from smo_labelstudio.metrics.progress import answers_per_task
from smo_labelstudio.quality import inputs as qi

WELLNESS_COLUMNS = ["annotator", "day", "answers", "high_severity", "cap", "exceeded"]


def wellness(
    annotations: pd.DataFrame, consensus: pd.DataFrame, gold_severity: pd.DataFrame, spec: Spec
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(annotator, day, answers, high_severity (answers on items whose consensus or gold severity is at
    least `wellness.high_severity`), cap, exceeded; the rows over the cap)."""
    w = spec.wellness
    sev = consensus[consensus["control"] == qi.SEVERITY] if len(consensus) else pd.DataFrame(columns=["task", "label"])
    severity = dict(zip(sev["task"], pd.to_numeric(sev["label"], errors="coerce")))
    severity.update(dict(zip(gold_severity["task"], gold_severity["label"])))
    ans = answers_per_task(annotations)
    cols = WELLNESS_COLUMNS
    if ans.empty:
        empty = pd.DataFrame(columns=cols)
        return empty, empty
    ans = ans.assign(
        day=pd.to_datetime(ans["created_at"], utc=True).dt.floor("D").dt.date.astype(str),
        high=[(severity.get(t) or 0) >= w.high_severity for t in ans["external_id"]],
    )
    g = ans.groupby(["annotator", "day"], sort=True)
    out = pd.DataFrame({"answers": g.size(), "high_severity": g["high"].sum().astype(int)}).reset_index()
    out["cap"] = w.max_high_severity_per_day
    out["exceeded"] = out["high_severity"] > out["cap"]
    return out[cols], out[out["exceeded"]].reset_index(drop=True)[cols]
