"""One quality pass over a project's pulled labels: gold checks, agreement per policy and language,
consensus (overridden by adjudicated labels), the spec's gates and the tasks to adjudicate.

Pure over frames (`compute_check`); `load_inputs` reads them from a workspace. The report, the
adjudication queue, the flow and `smo quality --spec` all consume the `CheckResult`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.jsonenc import jsonable
from smo_labelstudio.core.lock import workspace_lock
from smo_labelstudio.core.spec import Quality
from smo_labelstudio.core.workspace import Workspace, read_json, read_plan, read_table
from smo_labelstudio.quality import (
    agreement_summary,
    flags,
    gold_accuracy,
    krippendorff_alpha_ci,
    masi_alpha,
    multilabel_agreement,
)
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.calibration import Calibration, fit_calibration, held_out_gold
from smo_labelstudio.quality.consensus import consensus_frame, fit_consensus
from smo_labelstudio.quality.guideline_versions import pending_gold_review
from smo_labelstudio.quality.model_voter import compare_on_gold, with_model
from smo_labelstudio.quality.span_consensus import consensus_spans

FIGURES = ["percent_agreement", "fleiss_kappa", "gwet_ac1", "krippendorff_alpha"]


class MissingInputError(InputError):
    """A table the check needs is not in the workspace yet (a user mistake, not a bug)."""


@dataclass
class Gate:
    """One pass/fail check against a spec threshold; `passed` None when there is too little data."""

    name: str
    value: float | None
    threshold: float
    passed: bool | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "name": self.name,
                "value": self.value,
                "threshold": self.threshold,
                "passed": self.passed,
                "detail": self.detail,
            }
        )


@dataclass
class CheckResult:
    """Everything one pass found; frames for the report, `summary()` for JSON and artifacts."""

    counts: dict[str, Any]
    annotators: pd.DataFrame
    policy_agreement: pd.DataFrame
    language_agreement: pd.DataFrame
    policy_language_alpha: pd.DataFrame
    severity_agreement: pd.DataFrame
    confusions: dict[str, pd.DataFrame]
    consensus: pd.DataFrame
    to_review: pd.DataFrame
    gates: list[Gate]
    quality: Quality
    gold_by_policy: pd.DataFrame = field(default_factory=pd.DataFrame)
    calibration: dict[str, Calibration] = field(default_factory=dict)
    # the consensus model's probabilities per control, tasks x labels (policy labels are set keys)
    posteriors: dict[str, pd.DataFrame] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # harmful spans (quality/span_consensus.py): consensus spans, figures per policy, refused spans
    span_consensus: pd.DataFrame = field(default_factory=pd.DataFrame)
    span_policies: pd.DataFrame = field(default_factory=pd.DataFrame)
    span_refused: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if g.passed is False]

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures: counts, gates, per-policy and per-language agreement, annotators, consensus."""
        c = self.consensus
        return jsonable(
            {
                **self.counts,
                **self.extra,
                "passed": not self.failed_gates,
                "gates": [g.to_dict() for g in self.gates],
                "failed_gates": [g.name for g in self.failed_gates],
                "thresholds": self.quality.model_dump(),
                "policies": self.policy_agreement.to_dict(orient="records"),
                "languages": self.language_agreement.to_dict(orient="records"),
                "severity": self.severity_agreement.to_dict(orient="records"),
                "annotators": self.annotators.to_dict(orient="records"),
                "gold_by_policy": self.gold_by_policy.to_dict(orient="records"),
                "flagged": sorted(self.confusions),
                "consensus": {
                    "n_tasks": int(c["task"].nunique()) if len(c) else 0,
                    "adjudicated": int(c.loc[c["source"] == "adjudicated", "task"].nunique()) if len(c) else 0,
                    "mean_confidence": float(c["confidence"].mean()) if len(c) else None,
                    "below_min_confidence": len(self.to_review),
                    "calibration": {k: v.summary() for k, v in self.calibration.items()},
                },
                "spans": self.span_figures(),
            }
        )

    def span_figures(self) -> dict[str, Any]:
        """Span agreement and consensus per policy, and the refused spans by reason (JSON-ready)."""
        refused = self.span_refused
        return {
            "policies": self.span_policies.to_dict(orient="records"),
            "n_consensus_spans": len(self.span_consensus),
            "refused": len(refused),
            "refused_by_reason": refused["reason"].value_counts().sort_index().to_dict() if len(refused) else {},
        }


def load_inputs(ws: Workspace) -> dict[str, Any]:
    """The workspace tables the check reads (under the workspace lock: never half of a pull); a MissingInputError
    when the labels were never pulled."""
    with workspace_lock(ws, "quality"):
        return _load_inputs(ws)


def _load_inputs(ws: Workspace) -> dict[str, Any]:
    if not ws.labels.exists():
        raise MissingInputError(f"no labels table at {ws.labels}: run `smo pull` first")
    labels = read_table(ws.labels)
    if len(labels) == 0:
        raise MissingInputError(
            f"the labels table {ws.labels} is empty: nothing annotated yet (run `smo pull` again later)"
        )
    gold = read_table(ws.gold_answers) if ws.gold_answers.exists() else None
    held = pending_gold_review(ws)  # listed by `smo relabel` after a policy change: not scored until reviewed
    if gold is not None and held:
        gold = gold[~gold["external_id"].isin(held)]
    adjudicated = read_table(adjudicated_path(ws)) if adjudicated_path(ws).exists() else None
    cancelled = None
    if ws.annotations.exists():
        ann = read_table(ws.annotations)
        if "was_cancelled" in ann.columns:
            cancelled = ann.loc[ann["was_cancelled"].fillna(False).astype(bool), "annotation_id"].tolist()
    return {
        "labels": labels,
        "gold": gold,
        "adjudicated": adjudicated,
        "cancelled": cancelled,
        "project": read_json(ws.project_file) or {},
        "texts": item_texts(ws),
    }


def item_texts(ws: Workspace) -> dict[str, str]:
    """external_id -> the text we launched (plans), what span offsets index; never the copy in Label Studio."""
    plan = read_plan(ws)  # every column: an image project's plans have no text (no spans either)
    if "text" not in plan:
        return {}
    plan = plan.loc[plan["text"].map(lambda v: isinstance(v, str)).astype(bool)]  # bool: an empty mask selects rows
    return dict(zip(plan["external_id"], plan["text"]))


def adjudicated_path(ws: Workspace) -> Path:
    """Where adjudicated labels read back from the review project are kept."""
    return ws.root / "adjudicated.parquet"


def _clip(p: float) -> float:
    return min(max(p, 1e-6), 1 - 1e-6)


def _annotators(
    keys: pd.DataFrame, gold_keys: pd.DataFrame, severity: pd.DataFrame, gold_sev: pd.DataFrame, quality: Quality
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Gold accuracy on the policy decision (the gate) and on severity, per annotator; flagged confusions."""
    counts = keys.groupby("annotator", sort=True).size().rename("n_answers").reset_index()
    if len(gold_keys) and keys["task"].isin(gold_keys["task"]).any():
        report = gold_accuracy(
            keys, gold_keys, threshold=_clip(quality.min_gold_accuracy), min_answers=quality.min_gold_answers
        )
        confusions = {str(f.annotator): f.confusion for f in flags(keys, gold_keys, report)}
    else:
        report = pd.DataFrame(
            {
                "annotator": counts["annotator"],
                "gold_n": 0,
                "gold_correct": 0,
                "gold_accuracy": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "p_value": np.nan,
                "flagged": False,
                "reason": "no gold answers",
            }
        )
        confusions = {}
    frame = counts.merge(report, on="annotator", how="left")
    if len(gold_sev) and len(severity) and severity["task"].isin(gold_sev["task"]).any():
        sev = gold_accuracy(
            severity, gold_sev, threshold=_clip(quality.min_gold_accuracy), min_answers=quality.min_gold_answers
        )
        frame = frame.merge(
            sev[["annotator", "gold_n", "gold_accuracy"]].rename(
                columns={"gold_n": "severity_gold_n", "gold_accuracy": "severity_gold_accuracy"}
            ),
            on="annotator",
            how="left",
        )
    frame["annotator"] = frame["annotator"].astype(str)
    return frame, confusions


def _gold_by_policy(binary: pd.DataFrame, gold_binary: pd.DataFrame, quality: Quality) -> pd.DataFrame:
    """Gold accuracy per annotator and policy (chosen or not), with Wilson intervals: which policy an
    annotator gets wrong, not only that they do."""
    parts = []
    for policy, answers in binary.groupby("policy", sort=True):
        gold = gold_binary[gold_binary["policy"] == policy]
        if gold.empty or not answers["task"].isin(gold["task"]).any():
            continue
        report = gold_accuracy(
            answers[["task", "annotator", "label"]],
            gold[["task", "label"]],
            threshold=_clip(quality.min_gold_accuracy),
            min_answers=quality.min_gold_answers,
        )
        parts.append(report[["annotator", "gold_n", "gold_accuracy", "ci_low", "ci_high"]].assign(policy=policy))
    columns = ["annotator", "policy", "gold_n", "gold_accuracy", "ci_low", "ci_high"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _policy_agreement(sets: pd.DataFrame, binary: pd.DataFrame, n_boot: int, random_state: int) -> pd.DataFrame:
    figures = multilabel_agreement(sets[["task", "annotator", "label"]]).rename(columns={"label": "policy"})
    lows, highs, n_tasks = [], [], []
    for policy in figures["policy"]:
        part = binary.loc[binary["policy"] == policy, ["task", "annotator", "label"]]
        low, high = krippendorff_alpha_ci(part, n_boot=n_boot, random_state=random_state)
        lows.append(low)
        highs.append(high)
        n_tasks.append(int((part.groupby("task").size() >= 2).sum()))
    return figures.assign(alpha_ci_low=lows, alpha_ci_high=highs, n_tasks_2plus=n_tasks)


def _language_agreement(sets: pd.DataFrame, keys: pd.DataFrame, n_boot: int, random_state: int) -> pd.DataFrame:
    """Per language: agreement on the whole policy decision (its set as one label) and MASI alpha."""
    rows = []
    for language, part in keys.groupby("language", sort=True):
        row: dict[str, Any] = {
            "language": language,
            "n_tasks": int(part["task"].nunique()),
            "n_tasks_2plus": int((part.groupby("task").size() >= 2).sum()),
        }
        if row["n_tasks_2plus"]:
            figures = agreement_summary(
                part[["task", "annotator", "label"]], n_boot=n_boot, random_state=random_state
            ).set_index("figure")
            row.update({name: figures.loc[name, "estimate"] for name in FIGURES})
            row["masi_alpha"] = masi_alpha(sets.loc[sets["language"] == language, ["task", "annotator", "label"]])
        else:
            row.update({name: np.nan for name in FIGURES + ["masi_alpha"]})
        rows.append(row)
    return pd.DataFrame(rows, columns=["language", "n_tasks", "n_tasks_2plus", *FIGURES, "masi_alpha"])


def _policy_language_alpha(sets: pd.DataFrame) -> pd.DataFrame:
    """Alpha of each policy as a binary choice, policies x languages."""
    if sets.empty:
        return pd.DataFrame()
    per = multilabel_agreement(sets[["task", "annotator", "label", "language"]], by="language")
    return per.pivot(index="label", columns="language", values="krippendorff_alpha").rename_axis("policy")


def _severity_agreement(severity: pd.DataFrame, n_boot: int, random_state: int) -> pd.DataFrame:
    """Ordinal agreement on severity, overall ('all') and per language."""
    rows = []
    groups = [("all", severity)] + list(severity.groupby("language", sort=True))
    for language, part in groups:
        row: dict[str, Any] = {"language": language, "n_tasks": int(part["task"].nunique())}
        if (part.groupby("task").size() >= 2).any():
            figures = agreement_summary(
                part[["task", "annotator", "label"]], "ordinal", n_boot=n_boot, random_state=random_state
            ).set_index("figure")
            row.update({name: figures.loc[name, "estimate"] for name in FIGURES})
        else:
            row.update({name: np.nan for name in FIGURES})
        rows.append(row)
    return pd.DataFrame(rows, columns=["language", "n_tasks", *FIGURES])


CONSENSUS_COLUMNS = ["task", "control", "label", "confidence", "posterior", "source"]


def _consensus(
    frame: pd.DataFrame,
    gold: pd.DataFrame,
    control: str,
    method: str,
    gold_ids: set,
    random_state: int,
    model: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, Calibration, pd.DataFrame]:
    """One control's consensus; `confidence` is the posterior calibrated on held-out gold where there
    is enough of it (`quality.calibration`), `posterior` the model's own figure. `model` (task, label): the
    pre-annotator's answers, one more voter (model_voter.py)."""
    if frame.empty:
        return pd.DataFrame(columns=CONSENSUS_COLUMNS), Calibration(0, False, "no answers"), pd.DataFrame()
    answers, _ = with_model(frame[["task", "annotator", "label"]], model)
    estimator = fit_consensus(method, answers, gold if len(gold) else None)
    out = consensus_frame(estimator)
    out["label"] = out["label"].astype(str)
    out.insert(1, "control", control)
    out["source"] = np.where(out["task"].isin(gold_ids), "gold", "consensus")  # every control of a gold task
    calibration = fit_calibration(
        held_out_gold(method, answers, gold, random_state=random_state), random_state=random_state
    )
    out["posterior"] = out["confidence"]
    open_rows = out["source"] == "consensus"
    out.loc[open_rows, "confidence"] = calibration.transform(out.loc[open_rows, "posterior"])
    return out[CONSENSUS_COLUMNS], calibration, estimator.probas_  # probas: the export's posterior_<policy>


def adjudicated_labels(adjudicated: pd.DataFrame | None) -> pd.DataFrame:
    """Adjudicated answers (external_id, control, label) as consensus rows: policy set key, severity."""
    if adjudicated is None or adjudicated.empty:
        return pd.DataFrame(columns=CONSENSUS_COLUMNS)
    rows = []
    for task, part in adjudicated.groupby("external_id", sort=True):
        policies = part.loc[part["control"] == qi.POLICY, "label"].dropna().astype(str)
        rows.append({"task": task, "control": qi.POLICY, "label": qi.set_key(policies)})
        severity = part.loc[part["control"] == qi.SEVERITY, "label"].dropna()
        if len(severity):
            rows.append({"task": task, "control": qi.SEVERITY, "label": str(severity.iloc[-1])})
    return pd.DataFrame(rows).assign(confidence=1.0, posterior=np.nan, source="adjudicated")[CONSENSUS_COLUMNS]


def apply_adjudication(consensus: pd.DataFrame, adjudicated: pd.DataFrame | None) -> pd.DataFrame:
    """Consensus where an adjudicator's answer replaces every control of the tasks they decided."""
    decided = adjudicated_labels(adjudicated)
    if decided.empty:
        return consensus
    kept = consensus[~consensus["task"].isin(decided["task"])]
    return pd.concat([kept, decided], ignore_index=True).sort_values(
        ["task", "control"], kind="stable", ignore_index=True
    )


def compute_check(
    labels: pd.DataFrame,
    gold: pd.DataFrame | None,
    quality: Quality,
    *,
    adjudicated: pd.DataFrame | None = None,
    cancelled: list | None = None,
    excluded: list | None = None,
    method: str = "smoothed-ds",
    n_boot: int = 1000,
    random_state: int = 0,
    texts: dict[str, str] | None = None,
    model: pd.DataFrame | None = None,
) -> CheckResult:
    """The whole pass on the labels table (LABEL_COLUMNS) and gold answers (external_id, control, label).

    `excluded`: annotation ids that do not count (qualification.py: not yet qualified, or paused); the
    annotators' gold table still reads them, nothing else does (agreement, consensus, counts). `model`
    (external_id, control, label: `model_voter.load_model_answers`): the pre-annotator votes in consensus as one
    more voter, and `extra["model_voter"]` compares consensus with and without it on held-out gold; it is no
    annotator anywhere else (agreement, gold gates, counts). `texts`
    (external_id -> item text) bounds span offsets and gives each consensus span its text."""
    labels = qi.latest_annotations(labels, cancelled)
    if labels.empty:
        raise MissingInputError("the labels table holds no annotations (all cancelled or empty)")
    gold_keys, gold_sev = qi.gold_policy_keys(gold), qi.gold_severity(gold)
    annotators, confusions = _annotators(
        qi.policy_keys(qi.policy_sets(labels)), gold_keys, qi.severity_answers(labels), gold_sev, quality
    )
    n_excluded = 0
    if excluded:
        kept = ~labels["annotation_id"].isin(list(excluded))
        n_excluded = int(labels.loc[~kept, "annotation_id"].nunique())
        labels = labels[kept]
        if labels.empty:
            raise MissingInputError("no answer counts yet: every annotator is still qualifying or paused")
    sets = qi.policy_sets(labels)
    keys = qi.policy_keys(sets)
    policies = sorted({p for s in sets["label"] for p in s})
    binary = qi.policy_binary(sets, policies)
    severity = qi.severity_answers(labels)

    gold_by_policy = _gold_by_policy(binary, qi.gold_policy_binary(gold, policies), quality)
    policy_agreement = _policy_agreement(sets, binary, n_boot, random_state)
    gold_ids = set(gold["external_id"]) if gold is not None and len(gold) else set()
    votes = {control: _model_votes(model, control) for control in (qi.POLICY, qi.SEVERITY)}
    policy, policy_cal, policy_probas = _consensus(
        keys, gold_keys, qi.POLICY, method, gold_ids, random_state, votes[qi.POLICY]
    )
    sev, sev_cal, sev_probas = _consensus(
        severity, gold_sev, qi.SEVERITY, method, gold_ids, random_state, votes[qi.SEVERITY]
    )
    consensus = pd.concat([policy, sev], ignore_index=True)
    consensus = apply_adjudication(consensus, adjudicated)
    span_consensus, span_policies, span_refused = consensus_spans(
        labels, texts, keys, consensus[consensus["control"] == qi.POLICY]
    )
    languages = qi.task_languages(labels)
    open_tasks = consensus[consensus["source"] == "consensus"]
    weakest = open_tasks.groupby("task", sort=True)["confidence"].min()
    below = weakest[weakest < quality.min_confidence]
    to_review = pd.DataFrame(
        {
            "task": below.index.to_numpy(),
            "confidence": below.to_numpy(),
            "language": languages.reindex(below.index).to_numpy(),
        }
    )

    gates = [
        Gate(
            f"alpha:{row.policy}",
            _num(row.krippendorff_alpha),
            quality.min_alpha,
            None if _num(row.krippendorff_alpha) is None else bool(row.krippendorff_alpha >= quality.min_alpha),
            f"Krippendorff's alpha for {row.policy} (chosen or not) over {row.n_tasks_2plus} tasks with 2+ answers",
        )
        for row in policy_agreement.itertuples()
    ]
    severity_agreement = _severity_agreement(severity, n_boot, random_state)
    if quality.min_severity_alpha is not None:
        overall = _num(severity_agreement.loc[severity_agreement["language"] == "all", "krippendorff_alpha"].max())
        gates.append(
            Gate(
                "alpha:severity",
                overall,
                quality.min_severity_alpha,
                None if overall is None else overall >= quality.min_severity_alpha,
                "Krippendorff's alpha (ordinal) on severity over tasks with 2+ answers",
            )
        )
    for row in annotators.itertuples():
        if row.gold_n >= quality.min_gold_answers:
            gates.append(
                Gate(
                    f"gold-accuracy:{row.annotator}",
                    _num(row.gold_accuracy),
                    quality.min_gold_accuracy,
                    not bool(row.flagged),
                    row.reason,
                )
            )
    counts = {
        "n_tasks": int(keys["task"].nunique()),
        "n_annotators": int(keys["annotator"].nunique()),
        "n_annotations": int(len(keys)),
        "n_not_counting": n_excluded,
        "n_gold_tasks": int(gold_keys["task"].nunique()),
        "n_languages": int(keys["language"].nunique()),
        "masi_alpha": masi_alpha(sets[["task", "annotator", "label"]]) if len(sets) else None,
    }
    extra: dict[str, Any] = {}
    if model is not None:
        extra["model_voter"] = {
            "model_versions": _model_versions(model),
            qi.POLICY: compare_on_gold(method, keys, votes[qi.POLICY], gold_keys, random_state),
            qi.SEVERITY: compare_on_gold(method, severity, votes[qi.SEVERITY], gold_sev, random_state),
        }
    return CheckResult(
        counts=counts,
        annotators=annotators,
        policy_agreement=policy_agreement,
        language_agreement=_language_agreement(sets, keys, n_boot, random_state),
        policy_language_alpha=_policy_language_alpha(sets),
        severity_agreement=severity_agreement,
        confusions=confusions,
        consensus=consensus,
        to_review=to_review,
        gates=gates,
        quality=quality,
        gold_by_policy=gold_by_policy,
        calibration={qi.POLICY: policy_cal, qi.SEVERITY: sev_cal},
        posteriors={qi.POLICY: policy_probas, qi.SEVERITY: sev_probas},
        extra=extra,
        span_consensus=span_consensus,
        span_policies=span_policies,
        span_refused=span_refused,
    )


def _model_votes(model: pd.DataFrame | None, control: str) -> pd.DataFrame | None:
    """The model's answers for one control as (task, label), severity as integers like the annotators'."""
    if model is None or model.empty:
        return None
    rows = model.loc[(model["control"] == control) & model["label"].notna()]
    votes = pd.DataFrame({"task": rows["external_id"].to_numpy(), "label": rows["label"].astype(str).to_numpy()})
    if control == qi.SEVERITY:
        votes["label"] = pd.to_numeric(votes["label"], errors="coerce")
        votes = votes.dropna(subset=["label"]).astype({"label": int})
    return votes


def _model_versions(model: pd.DataFrame) -> list[str]:
    return sorted(set(model["model_version"].dropna().astype(str))) if "model_version" in model.columns else []


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
