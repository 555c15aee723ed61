"""The operations report a project manager reads every day: progress, throughput, lead times, ETA
against the spec's deadline, bottlenecks, quality over time, annotator wellness, a retrospective of
launches, and the model evaluation (`model_eval`). Markdown plus one self-contained HTML page.

Pure over frames (`compute_ops`); `load_ops_inputs` reads a workspace; `write_ops_report` writes
`reports/ops-<stamp>/` (report.md with PNGs beside it, report.html, summary.json).

Progress counts answers against what the plan needs: each planned task needs `overlap.annotators`
answers, and a `share` of them `extra_annotators` (Label Studio picks that cohort; we take the tasks
with the most answers as the cohort, which is how Label Studio fills it).
"""

from __future__ import annotations

import base64
import html as html_lib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import markdown  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from smo_labelstudio.core.spec import Spec  # noqa: E402
from smo_labelstudio.core.workspace import Workspace, _atomic, read_json, read_table, write_json  # noqa: E402
from smo_labelstudio.metrics import model_eval as me  # noqa: E402
from smo_labelstudio.quality import inputs as qi  # noqa: E402
from smo_labelstudio.quality.compute import jsonable  # noqa: E402
from smo_labelstudio.reports.quality import HTML_PAGE, _cell, _png, _table, draw_reliability, plot_heatmap  # noqa: E402

WELLNESS_EVENT = "smo.wellness.cap-exceeded"


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
        total = self.progress[self.progress["language"] == "(all)"]
        return jsonable(
            {
                "title": self.title,
                "generated": self.generated.isoformat(),
                **self.settings,
                "progress": self.progress.to_dict(orient="records"),
                "totals": total.iloc[0].to_dict() if len(total) else {},
                "throughput": self.throughput.to_dict(orient="records"),
                "lead_time": _lead_summary(self.lead_times),
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


# ---------------------------------------------------------------- inputs


def load_ops_inputs(ws: Workspace) -> dict[str, Any]:
    """The workspace frames the report reads (missing tables come back empty)."""
    from smo_labelstudio.pull.completions import item_ledger

    plans = []
    for path in sorted(ws.runs.glob("*/plan.parquet")):
        meta = read_json(path.parent / "plan.json") or {}
        plans.append(read_table(path).assign(plan_id=path.parent.name, plan_created=meta.get("created")))
    plan = (
        pd.concat(plans, ignore_index=True)
        if plans
        else pd.DataFrame(columns=["item_id", "external_id", "language", "is_gold", "batch", "plan_id", "plan_created"])
    )
    if len(plan):
        plan = plan.drop_duplicates("item_id", keep="first")
        plan["external_id"] = plan["external_id"].where(~plan["is_gold"].astype(bool), "gold:" + plan["external_id"])
    ledger = item_ledger(ws)
    from smo_labelstudio.core.workspace import ANNOTATION_COLUMNS, LABEL_COLUMNS

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


# ---------------------------------------------------------------- pieces


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


def throughput(annotations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per annotator: answers, active_hours (distinct clock hours with an answer), per_active_hour,
    labeling_hours (sum of lead times), per_labeling_hour, skipped; per annotator and hour: answers)."""
    ann = annotations[annotations["annotator"].notna()].copy()
    if ann.empty:
        return (
            pd.DataFrame(
                columns=[
                    "annotator",
                    "answers",
                    "active_hours",
                    "per_active_hour",
                    "labeling_hours",
                    "per_labeling_hour",
                    "skipped",
                ]
            ),
            pd.DataFrame(columns=["annotator", "hour", "answers"]),
        )
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
        lambda t: sorted(me.key_to_set(policy.get(t))) or [qi.NO_POLICY] if t in policy else ["(no consensus)"]
    )
    return frame.explode("policy").reset_index(drop=True)


def _lead_summary(lead: pd.DataFrame) -> dict[str, Any]:
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


def eta(
    progress_all: dict[str, Any],
    annotations: pd.DataFrame,
    deadline: str | None,
    now: datetime,
    window_hours: float = 24 * 7,
) -> dict[str, Any]:
    """Answers per hour over the last `window_hours` (from the first answer in the window to now), the
    estimated finish, and whether it is before the spec's deadline (end of that day, UTC, for a date)."""
    out: dict[str, Any] = {"remaining_answers": progress_all.get("answers_remaining", 0), "deadline": deadline}
    done = annotations[~annotations["was_cancelled"].fillna(False).astype(bool)]
    created = pd.to_datetime(done["created_at"], utc=True)
    now_ts = pd.Timestamp(now)
    recent = created[created >= now_ts - pd.Timedelta(hours=window_hours)]
    hours = max((now_ts - recent.min()).total_seconds() / 3600, 1 / 60) if len(recent) else math.nan
    rate = len(recent) / hours if len(recent) else 0.0
    out["answers_per_hour"] = rate
    remaining = out["remaining_answers"]
    if remaining == 0:
        finish = now_ts
    elif rate > 0:
        finish = now_ts + pd.Timedelta(hours=remaining / rate)
    else:
        finish = None
    out["eta"] = finish.isoformat() if finish is not None else None
    if deadline:
        due = pd.Timestamp(deadline)
        due = due.tz_localize("UTC") if due.tzinfo is None else due.tz_convert("UTC")
        if len(str(deadline)) <= 10:
            due = due + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        out["deadline_at"] = due.isoformat()
        out["on_track"] = bool(finish is not None and finish <= due)
        if rate >= 0 and due > now_ts:
            out["needed_per_hour"] = remaining / max((due - now_ts).total_seconds() / 3600, 1e-9)
    else:
        out["on_track"] = None
    return out


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
        lo, hi = me.wilson(float(g.sum()), len(g))
        rows.append(
            {
                "annotator": who,
                "day": day.date().isoformat(),
                "answers": len(part),
                "gold_n": len(g),
                "gold_accuracy": float(g.mean()) if len(g) else math.nan,
                "gold_ci_low": lo,
                "gold_ci_high": hi,
                "agreement_n": len(a),
                "agreement": float(a.mean()) if len(a) else math.nan,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "annotator",
            "day",
            "answers",
            "gold_n",
            "gold_accuracy",
            "gold_ci_low",
            "gold_ci_high",
            "agreement_n",
            "agreement",
        ],
    )


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
    cols = ["annotator", "day", "answers", "high_severity", "cap", "exceeded"]
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
        return pd.DataFrame(
            columns=[
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
        )
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


# ---------------------------------------------------------------- the whole report


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
    from smo_labelstudio.quality.check import compute_check

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
    in_progress = tasks[tasks["state"] == "in progress"].copy()
    if len(in_progress):
        age = (pd.Timestamp(now) - pd.to_datetime(in_progress["last_answer"], utc=True)).dt.total_seconds() / 3600
        in_progress["hours_since_last_answer"] = age.to_numpy()
    else:
        in_progress["hours_since_last_answer"] = pd.Series(dtype=float)
    stale = (
        in_progress[in_progress["hours_since_last_answer"] >= stale_hours]
        .sort_values("hours_since_last_answer", ascending=False)[
            ["external_id", "language", "answers", "target", "hours_since_last_answer"]
        ]
        .reset_index(drop=True)
    )
    blocked = (
        thr[thr["skipped"] > 0][["annotator", "answers", "skipped"]].reset_index(drop=True)
        if len(thr)
        else pd.DataFrame(columns=["annotator", "answers", "skipped"])
    )
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
        stale=stale,
        slow_policies=slow_policies(lead),
        blocked=blocked,
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


# ---------------------------------------------------------------- plots


def plot_progress(prog: pd.DataFrame) -> bytes:
    rows = prog[prog["language"] != "(all)"]
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.4 * max(len(rows), 1)))
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for col, colour in (("done", "#55a868"), ("in_progress", "#dd8452"), ("not_started", "#b0b0b0")):
        vals = rows[col].to_numpy(dtype=float)
        ax.barh(y, vals, left=left, color=colour, label=col.replace("_", " "))
        left += vals
    ax.set_yticks(y, rows["language"].astype(str))
    ax.invert_yaxis()
    ax.set_xlabel("tasks")
    ax.set_title("Progress by language", fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    return _png(fig)


def plot_throughput(thr: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.4 * max(len(thr), 1)))
    y = np.arange(len(thr))
    ax.barh(y - 0.2, thr["per_active_hour"].fillna(0), 0.4, color="#4c72b0", label="per active clock hour")
    ax.barh(y + 0.2, thr["per_labeling_hour"].fillna(0), 0.4, color="#55a868", label="per hour of lead time")
    ax.set_yticks(y, thr["annotator"].astype(str))
    ax.invert_yaxis()
    ax.set_xlabel("answers per hour")
    ax.set_title("Throughput per annotator", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_lead_times(lead: pd.DataFrame) -> bytes:
    per_answer = lead.drop_duplicates(["external_id", "annotator"])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for language, part in per_answer.groupby("language", sort=True):
        ax.hist(part["lead_time"], bins=20, alpha=0.55, label=str(language))
    if len(per_answer):
        ax.axvline(per_answer["lead_time"].median(), color="#333333", linestyle="--", linewidth=1, label="median")
    ax.set_xlabel("lead time (seconds)")
    ax.set_ylabel("answers")
    ax.set_title("Lead-time distribution by language", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_trend(trend: pd.DataFrame) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for who, part in trend.groupby("annotator", sort=True):
        axes[0].plot(part["day"], part["gold_accuracy"], marker="o", label=str(who))
        axes[1].plot(part["day"], part["agreement"], marker="o", label=str(who))
    axes[0].set_title("Gold accuracy per day", fontsize=10)
    axes[1].set_title("Agreement with consensus per day", fontsize=10)
    axes[0].set_ylim(0, 1.02)
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    axes[1].legend(fontsize=7, loc="lower left")
    return _png(fig)


def plot_wellness(well: pd.DataFrame, cap: int) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.35 * max(len(well), 1)))
    y = np.arange(len(well))
    colours = ["#c44e52" if e else "#4c72b0" for e in well["exceeded"]]
    ax.barh(y, well["high_severity"], color=colours)
    ax.axvline(cap, color="#c44e52", linestyle="--", linewidth=1, label=f"cap {cap}/day")
    ax.set_yticks(y, [f"{a} {d}" for a, d in zip(well["annotator"], well["day"])])
    ax.invert_yaxis()
    ax.set_xlabel("high-severity items answered")
    ax.set_title("Wellness: high-severity exposure per annotator and day (red = over the cap)", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_reliability(reliability: pd.DataFrame, ece: float) -> bytes:
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    draw_reliability(
        ax,
        [("model", "#4c72b0", reliability)],
        "predicted probability (label_scores)",
        "share chosen by consensus",
        f"Reliability diagram (ECE {ece:.3f}; dot size: items)",
    )
    return _png(fig)


def plot_policy_f1(metrics: pd.DataFrame) -> bytes:
    rows = metrics.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.4 * max(len(rows), 1)))
    for i, r in enumerate(rows.itertuples()):
        if r.f1 is None or not math.isfinite(r.f1):
            continue
        lo = r.f1 - r.f1_low if math.isfinite(r.f1_low) else 0
        hi = r.f1_high - r.f1 if math.isfinite(r.f1_high) else 0
        ax.errorbar(r.f1, i, xerr=[[max(lo, 0)], [max(hi, 0)]], fmt="o", capsize=3, color="#4c72b0")
    ax.set_yticks(range(len(rows)), [f"{p} (n={s})" for p, s in zip(rows["policy"], rows["support"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("F1 against consensus (95% bootstrap interval)")
    ax.set_title("Pre-annotation model: F1 per policy", fontsize=10)
    return _png(fig)


def plot_acceptance(outcomes: pd.DataFrame) -> bytes:
    table = me.acceptance_summary(outcomes, "annotator")
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.4 * max(len(table), 1)))
    y = np.arange(len(table))
    left = np.zeros(len(table))
    for col, colour in zip(me.OUTCOMES, ("#55a868", "#dd8452", "#c44e52", "#b0b0b0")):
        vals = table[col].to_numpy(dtype=float) if len(table) else np.zeros(0)
        ax.barh(y, vals, left=left, color=colour, label=col)
        left += vals
    ax.set_yticks(y, table["annotator"].astype(str) if len(table) else [])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of answers")
    ax.set_title("What annotators did with the pre-annotation", fontsize=10)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return _png(fig)


def plot_anchoring(anch: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * max(anch["annotator"].nunique(), 1)))
    names = list(dict.fromkeys(anch["annotator"]))
    for j, (correct, colour) in enumerate(((True, "#55a868"), (False, "#c44e52"))):
        part = anch[anch["model_correct"] == correct].set_index("annotator").reindex(names)
        y = np.arange(len(names)) + (j - 0.5) * 0.35
        vals = part["agree_with_model"].fillna(0).to_numpy(dtype=float)
        ax.barh(y, vals, 0.35, color=colour, label="model right" if correct else "model wrong")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of answers equal to the model's suggestion")
    ax.set_title("Anchoring audit: agreement with the model when it was right vs wrong", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def build_plots(report: OpsReport, cap: int) -> dict[str, bytes]:
    plots: dict[str, bytes] = {}
    if len(report.progress) > 1:
        plots["progress.png"] = plot_progress(report.progress)
    if len(report.throughput):
        plots["throughput.png"] = plot_throughput(report.throughput)
    if len(report.lead_times):
        plots["lead-times.png"] = plot_lead_times(report.lead_times)
    if len(report.trend):
        plots["quality-trend.png"] = plot_trend(report.trend)
    if len(report.wellness):
        recent = sorted(set(report.wellness["day"]))[-7:]  # the plot shows the last week; the table everything
        plots["wellness.png"] = plot_wellness(report.wellness[report.wellness["day"].isin(recent)], cap)
    m = report.model
    if m is not None and m.n_tasks:
        plots["model-f1.png"] = plot_policy_f1(m.metrics)
        plots["model-reliability.png"] = plot_reliability(m.reliability, m.ece)
        if not m.confusion.empty:
            plots["model-confusion.png"] = plot_heatmap(
                m.confusion,
                "Model policy set vs consensus (tasks)",
                fmt="{:.0f}",
                cmap="Blues",
                xlabel="model",
                ylabel="consensus",
            )
        if len(m.outcomes):
            plots["model-acceptance.png"] = plot_acceptance(m.outcomes)
        if len(m.anchoring):
            plots["model-anchoring.png"] = plot_anchoring(m.anchoring)
    return plots


# ---------------------------------------------------------------- text


def _fmt_hours(hours: float) -> str:
    if hours is None or not math.isfinite(hours):
        return "n/a"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def render_markdown(report: OpsReport, plots: dict[str, bytes], *, project_url: str | None = None) -> str:
    s = report.summary()
    t = s["totals"]
    e = report.eta
    lines = [
        f"# Operations report: {html_lib.escape(report.title, quote=False)}",
        "",
        f"Generated {report.generated:%Y-%m-%d %H:%M} UTC"
        + (f" · [project in Label Studio]({project_url})" if project_url else ""),
        "",
    ]
    if len(report.alerts):
        lines += [
            f"**WELLNESS ALERT**: {len(report.alerts)} annotator-day(s) over the cap of "
            f"{report.settings['wellness_settings']['max_high_severity_per_day']} high-severity items.",
            "",
        ]
    if t:
        lines += [
            f"**{t['done']:,} of {t['tasks']:,} tasks done**, {t['in_progress']:,} in progress, "
            f"{t['not_started']:,} not started; {t['answers_given']:,} of {t['answers_needed']:,} answers "
            f"({_cell(t['percent_done'] * 100 if t['answers_needed'] else None, 1)}%), "
            f"{t['answers_remaining']:,} remaining.",
            "",
        ]
    rate = e.get("answers_per_hour") or 0
    lines += [
        "## Timeline",
        "",
        f"Rate {rate:.1f} answers/hour over the last week; estimated finish "
        f"{e.get('eta') or 'unknown (no recent answers)'}; deadline {e.get('deadline') or 'none set in the spec'}"
        + ("" if e.get("on_track") is None else (" — **on track**" if e["on_track"] else " — **behind**"))
        + (f" (needs {e['needed_per_hour']:.1f} answers/hour)" if e.get("needed_per_hour") is not None else "")
        + ".",
        "",
    ]
    lines += [
        "## Progress by language",
        "",
        "Answers needed = each planned task × its overlap (the plan and the spec's `overlap`).",
        "",
    ]
    if "progress.png" in plots:
        lines += ["![Progress by language](progress.png)", ""]
    lines += [
        _table(
            report.progress,
            {
                "language": "language",
                "tasks": "tasks",
                "done": "done",
                "in_progress": "in progress",
                "not_started": "not started",
                "answers_needed": "answers needed",
                "answers_given": "given",
                "answers_remaining": "remaining",
                "percent_done": "share done",
            },
        ),
        "",
    ]
    lines += [
        "## Throughput per annotator",
        "",
        "Answers per active clock hour (hours with at least one answer) and per hour of labeling time "
        "(sum of lead times); skipped = cancelled annotations.",
        "",
    ]
    if "throughput.png" in plots:
        lines += ["![Throughput](throughput.png)", ""]
    lines += [
        _table(
            report.throughput,
            {
                "annotator": "annotator",
                "answers": "answers",
                "active_hours": "active hours",
                "per_active_hour": "per active hour",
                "labeling_hours": "labeling hours",
                "per_labeling_hour": "per labeling hour",
                "skipped": "skipped",
            },
        ),
        "",
    ]
    lead = s["lead_time"]
    lines += [
        "## Lead time",
        "",
        f"{lead.get('n', 0):,} answers; median {_cell(lead.get('median'), 1)} s, 90th percentile "
        f"{_cell(lead.get('p90'), 1)} s.",
        "",
    ]
    if "lead-times.png" in plots:
        lines += ["![Lead times](lead-times.png)", ""]
    lines += [
        "## Bottlenecks",
        "",
        f"**Stale tasks** (in progress, no answer for {report.settings['stale_hours']:g} h): {len(report.stale)}.",
        "",
    ]
    if len(report.stale):
        lines += [
            _table(
                report.stale.head(20),
                {
                    "external_id": "task",
                    "language": "language",
                    "answers": "answers",
                    "target": "target",
                    "hours_since_last_answer": "hours idle",
                },
            ),
            "",
        ]
    lines += [
        "**Slowest policies** (consensus policy of the task, lead time in seconds):",
        "",
        _table(report.slow_policies, {"policy": "policy", "answers": "answers", "median": "median", "p90": "p90"}),
        "",
    ]
    if len(report.blocked):
        lines += [
            "**Annotators skipping tasks** (possibly blocked by unclear guidelines):",
            "",
            _table(report.blocked, {"annotator": "annotator", "answers": "answers", "skipped": "skipped"}),
            "",
        ]
    lines += [
        "## Quality over time",
        "",
        "Per annotator and UTC day: accuracy on gold (policy set) with Wilson 95% interval, and agreement with "
        "the consensus policy set on non-gold tasks. A falling line is drift.",
        "",
    ]
    if "quality-trend.png" in plots:
        lines += ["![Quality trend](quality-trend.png)", ""]
    lines += [
        _table(
            report.trend,
            {
                "annotator": "annotator",
                "day": "day",
                "answers": "answers",
                "gold_n": "gold",
                "gold_accuracy": "gold accuracy",
                "gold_ci_low": "CI low",
                "gold_ci_high": "CI high",
                "agreement_n": "compared",
                "agreement": "agreement",
            },
        ),
        "",
    ]
    ws_ = report.settings["wellness_settings"]
    lines += [
        "## Wellness",
        "",
        f"High-severity items (consensus or gold severity ≥ {ws_['high_severity']}) each annotator answered per "
        f"UTC day, against the cap of {ws_['max_high_severity_per_day']} (spec `wellness`).",
        "",
    ]
    if "wellness.png" in plots:
        lines += ["![Wellness](wellness.png)", ""]
    lines += [
        _table(
            report.wellness,
            {
                "annotator": "annotator",
                "day": "day",
                "answers": "answers",
                "high_severity": "high severity",
                "cap": "cap",
                "exceeded": "over cap",
            },
        ),
        "",
    ]
    lines += [
        "## Retrospective: launches and batches",
        "",
        _table(
            report.retrospective,
            {
                "plan_id": "plan",
                "batch": "batch",
                "created": "launched (UTC)",
                "tasks": "tasks",
                "done": "share done",
                "answers": "answers",
                "median_lead_time": "median lead time (s)",
                "agreement": "agreement with consensus",
                "model_exact": "model exact",
            },
        ),
        "",
    ]
    lines += render_model_markdown(report.model, plots)
    return "\n".join(lines)


def render_model_markdown(m: me.ModelEvaluation | None, plots: dict[str, bytes]) -> list[str]:
    lines = ["## Model evaluation", ""]
    if m is None or not m.n_tasks:
        return lines + ["No task has both a pre-annotation and a consensus yet.", ""]
    s = m.summary()
    lines += [
        f"The pre-annotator ({', '.join(m.model_versions) or 'unknown version'}) against consensus on "
        f"{m.n_tasks:,} tasks: micro F1 {_cell(s['micro_f1'])}, expected calibration error {_cell(m.ece)}.",
        "",
    ]
    if "model-f1.png" in plots:
        lines += ["![F1 per policy](model-f1.png)", ""]
    lines += [
        _table(
            m.metrics,
            {
                "policy": "policy",
                "support": "support",
                "predicted": "predicted",
                "precision": "precision",
                "precision_low": "P low",
                "precision_high": "P high",
                "recall": "recall",
                "recall_low": "R low",
                "recall_high": "R high",
                "f1": "F1",
                "f1_low": "F1 low",
                "f1_high": "F1 high",
            },
        ),
        "",
    ]
    lines += [
        "### Per language",
        "",
        _table(
            m.languages,
            {
                "language": "language",
                "n_tasks": "tasks",
                "exact": "exact set",
                "exact_low": "CI low",
                "exact_high": "CI high",
                "precision": "precision",
                "recall": "recall",
                "f1": "F1",
            },
        ),
        "",
    ]
    lines += ["### Confusion and calibration", ""]
    for name, alt in (("model-confusion.png", "Confusion"), ("model-reliability.png", "Reliability diagram")):
        if name in plots:
            lines += [f"![{alt}]({name})", ""]
    lines += [
        "### Pre-annotations accepted, edited, rejected",
        "",
        "Accepted: submitted unchanged; edited: changed but kept one of the model's policies (or changed only "
        "severity or spans); rejected: none of the model's policies kept; skipped: cancelled.",
        "",
    ]
    if "model-acceptance.png" in plots:
        lines += ["![Acceptance](model-acceptance.png)", ""]
    lines += [
        _table(
            me.acceptance_summary(m.outcomes, "language"),
            {"language": "language", "n": "answers", **{o: o for o in me.OUTCOMES}},
        ),
        "",
    ]
    a = s["anchoring"]
    lines += [
        "### Anchoring audit",
        "",
        f"Share of answers equal to the model's suggestion: {_cell(a['agree_when_model_right'])} when the model "
        f"was right, {_cell(a['agree_when_model_wrong'])} when it was wrong (against consensus). Following wrong "
        "suggestions shows as a high share on the wrong side.",
        "",
    ]
    if "model-anchoring.png" in plots:
        lines += ["![Anchoring](model-anchoring.png)", ""]
    lines += [
        _table(
            m.anchoring,
            {
                "annotator": "annotator",
                "model_correct": "model right",
                "n": "answers",
                "agree_with_model": "agree with model",
                "ci_low": "CI low",
                "ci_high": "CI high",
            },
        ),
        "",
    ]
    return lines


def render_html(markdown_text: str, plots: dict[str, bytes], title: str) -> str:
    body = markdown.markdown(markdown_text, extensions=["tables"])
    for name, data in plots.items():
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{base64.b64encode(data).decode()}"')
    return HTML_PAGE.format(title=html_lib.escape(f"Operations report: {title}"), body=body)


@dataclass
class OpsFiles:
    folder: Path
    markdown: Path
    html: Path
    summary: Path


def write_ops_report(report: OpsReport, out_dir: Path, *, cap: int, project_url: str | None = None) -> OpsFiles:
    """report.md (+ PNGs), report.html (self-contained), summary.json in `out_dir/ops-<stamp>/`."""
    folder = Path(out_dir) / f"ops-{report.generated:%Y%m%dT%H%M%S%fZ}"
    folder.mkdir(parents=True, exist_ok=True)
    plots = build_plots(report, cap)
    for name, data in plots.items():
        _atomic(folder / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
    text = render_markdown(report, plots, project_url=project_url)
    files = OpsFiles(folder, folder / "report.md", folder / "report.html", folder / "summary.json")
    _atomic(files.markdown, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    page = render_html(text, plots, report.title)
    _atomic(files.html, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    write_json(files.summary, report.summary())
    return files


def wellness_event(report: OpsReport, files: OpsFiles | None) -> dict[str, Any]:
    """The arguments of `prefect.events.emit_event` announcing annotators over the wellness cap."""
    pid = report.settings.get("project_id")
    return {
        "event": WELLNESS_EVENT,
        "resource": {
            "prefect.resource.id": f"smo.project.{pid or report.title}",
            "prefect.resource.name": report.title,
        },
        "payload": {
            "exceeded": jsonable(report.alerts.to_dict(orient="records")),
            "settings": report.settings["wellness_settings"],
            "report": str(files.html) if files else None,
        },
    }


def run_report(
    spec: Spec, *, out: Path | None = None, home: Path | None = None, now: datetime | None = None, n_boot: int = 300
) -> tuple[OpsReport, OpsFiles]:
    """Read the workspace, compute, write; the report and its files."""
    ws = Workspace.for_title(spec.title, home)
    inputs = load_ops_inputs(ws)
    if inputs["plan"].empty:
        raise ValueError(f"no launch plan in {ws.runs}: run `smo launch --spec SPEC --data FILE` first")
    report = compute_ops(spec, inputs, now=now, n_boot=n_boot)
    files = write_ops_report(
        report, out or ws.reports, cap=spec.wellness.max_high_severity_per_day, project_url=inputs["project"].get("url")
    )
    return report, files
