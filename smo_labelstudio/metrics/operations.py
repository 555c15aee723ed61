"""Every figure of the operations report a project manager reads every day: progress, throughput, lead
times, ETA against the spec's deadline, bottlenecks, quality over time, annotator wellness, a
retrospective of launches, and the model evaluation (`model_eval`).

`load_ops_inputs` reads a workspace; `compute_ops` is pure over those frames and returns an `OpsReport`
(`reports.operations` draws and writes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from smo_labelstudio.core.jsonenc import jsonable
from smo_labelstudio.core.spec import Spec
from smo_labelstudio.core.workspace import (
    ANNOTATION_COLUMNS,
    LABEL_COLUMNS,
    Workspace,
    read_json,
    read_plan,
    read_table,
)
from smo_labelstudio.metrics import model_eval as me
from smo_labelstudio.metrics.eta import eta
from smo_labelstudio.metrics.progress import progress, stale_tasks
from smo_labelstudio.metrics.throughput import blocked, lead_summary, lead_times, slow_policies, throughput
from smo_labelstudio.metrics.trend import quality_trend, retrospective
from smo_labelstudio.metrics.wellness import wellness
from smo_labelstudio.pull.completions import item_ledger
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.check import compute_check


@dataclass
class OpsReport:
    """Every table of the report; `summary()` for JSON and artifacts."""

    title: str
    generated: datetime
    progress: pd.DataFrame
    throughput: pd.DataFrame
    hourly: pd.DataFrame
    lead_times: pd.DataFrame
    eta: dict[str, Any]
    stale: pd.DataFrame
    slow_policies: pd.DataFrame
    blocked: pd.DataFrame
    trend: pd.DataFrame
    wellness: pd.DataFrame
    alerts: pd.DataFrame
    retrospective: pd.DataFrame
    model: me.ModelEvaluation | None
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The whole report as plain JSON values (summary.json, the CLI's --json, the flow's artifacts)."""
        total = self.progress[self.progress["language"] == "(all)"]
        return jsonable(
            {
                "title": self.title,
                "generated": self.generated.isoformat(),
                **self.settings,
                "progress": self.progress.to_dict(orient="records"),
                "totals": total.iloc[0].to_dict() if len(total) else {},
                "throughput": self.throughput.to_dict(orient="records"),
                "lead_time": lead_summary(self.lead_times),
                "eta": self.eta,
                "stale_tasks": len(self.stale),
                "slow_policies": self.slow_policies.to_dict(orient="records"),
                "blocked": self.blocked.to_dict(orient="records"),
                "trend": self.trend.to_dict(orient="records"),
                "wellness": self.wellness.to_dict(orient="records"),
                "wellness_alerts": self.alerts.to_dict(orient="records"),
                "retrospective": self.retrospective.to_dict(orient="records"),
                "model": self.model.summary() if self.model is not None else None,
            }
        )


def load_ops_inputs(ws: Workspace) -> dict[str, Any]:
    """The workspace frames the report reads (missing tables come back empty)."""
    plan = read_plan(ws)
    created = {p: (read_json(ws.runs / p / "plan.json") or {}).get("created") for p in plan["plan_id"].unique()}
    plan = plan.assign(plan_created=plan["plan_id"].map(created))
    if plan.empty:  # the columns the report reads, before any launch
        plan = plan.reindex(
            columns=["item_id", "external_id", "language", "is_gold", "batch", "plan_id", "plan_created"]
        )
    ledger = item_ledger(ws)
    annotations = read_table(ws.annotations) if ws.annotations.exists() else pd.DataFrame(columns=ANNOTATION_COLUMNS)
    labels = read_table(ws.labels) if ws.labels.exists() else pd.DataFrame(columns=LABEL_COLUMNS)
    gold = read_table(ws.gold_answers) if ws.gold_answers.exists() else None
    preds = me.load_predictions(ws.runs, ledger, plan)
    adjudicated = None
    adj = ws.root / "adjudicated.parquet"
    if adj.exists():
        adjudicated = read_table(adj)
    return {
        "plan": plan,
        "annotations": annotations,
        "labels": labels,
        "gold": gold,
        "predictions": preds,
        "adjudicated": adjudicated,
        "project": ws.project() or {},
    }


def compute_ops(
    spec: Spec,
    inputs: dict[str, Any],
    *,
    now: datetime | None = None,
    stale_hours: float = 24.0,
    n_boot: int = 300,
    random_state: int = 0,
) -> OpsReport:
    """Every section from the workspace frames (see `load_ops_inputs`)."""
    now = now or datetime.now(UTC)
    plan, annotations, labels, gold = inputs["plan"], inputs["annotations"], inputs["labels"], inputs["gold"]
    cancelled = annotations.loc[annotations["was_cancelled"].fillna(False).astype(bool), "annotation_id"].tolist()
    kept = qi.latest_annotations(labels, cancelled) if len(labels) else labels
    if len(kept):
        check = compute_check(
            labels,
            gold,
            spec.quality,
            adjudicated=inputs.get("adjudicated"),
            cancelled=cancelled,
            n_boot=50,
            random_state=random_state,
        )
        consensus = check.consensus
        sets = qi.policy_sets(labels[~labels["annotation_id"].isin(cancelled)])
    else:
        consensus = pd.DataFrame(columns=["task", "control", "label", "confidence", "source"])
        sets = pd.DataFrame(columns=["task", "annotator", "language", "label"])
    keys = qi.policy_keys(sets) if len(sets) else sets
    prog, tasks = progress(plan, annotations, spec)
    thr, hourly = throughput(annotations)
    lead = lead_times(annotations, consensus)
    all_row = prog.iloc[0].to_dict() if len(prog) else {}
    gold_keys, gold_sev = qi.gold_policy_keys(gold), qi.gold_severity(gold)
    trend = (
        quality_trend(keys, gold_keys, consensus, annotations)
        if len(keys)
        else quality_trend(pd.DataFrame(columns=["task", "annotator", "label"]), gold_keys, consensus, annotations)
    )
    well, alerts = wellness(annotations, consensus, gold_sev, spec)
    preds = inputs["predictions"]
    model = (
        me.evaluate(preds, consensus, sets, annotations, n_boot=n_boot, random_state=random_state)
        if len(preds) and len(consensus)
        else None
    )
    return OpsReport(
        title=spec.title,
        generated=now,
        progress=prog,
        throughput=thr,
        hourly=hourly,
        lead_times=lead,
        eta=eta(all_row, annotations, spec.deadline, now),
        stale=stale_tasks(tasks, now, stale_hours),
        slow_policies=slow_policies(lead),
        blocked=blocked(thr),
        trend=trend,
        wellness=well,
        alerts=alerts,
        retrospective=retrospective(plan, tasks, keys, consensus, lead, preds),
        model=model,
        settings={
            "stale_hours": stale_hours,
            "wellness_settings": spec.wellness.model_dump(),
            "overlap": spec.overlap.model_dump(),
            "project_id": inputs.get("project", {}).get("project_id"),
        },
    )
