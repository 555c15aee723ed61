"""Evaluation of the pre-annotation model against consensus, and what annotators did with its suggestions.

Pure functions over frames (no I/O except `load_predictions`). Tasks are keyed by `external_id` as in
the quality engine; the model's policy set is compared with the consensus policy set (`quality_check`
consensus, `control == "policy"`, labels as '+'-joined keys or '(none)').

    policy_metrics     per policy: precision, recall, F1 with seeded bootstrap intervals over tasks
    confusion_matrix   model policy-set key x consensus key (counts)
    calibration        expected calibration error and the reliability table from `label_scores`
    by_language        per language: exact-set accuracy and micro F1
    acceptance         per annotation: accepted / edited / rejected the pre-annotation (and skipped)
    anchoring_audit    agreement with the model when the model was wrong vs right (vs a consensus
                       without the annotator's own answers, or gold)

>>> preds = pd.DataFrame({"external_id": ["a", "b"], "language": ["en", "en"],
...                       "policy": [frozenset({"hate"}), frozenset()], "label_scores": [{"hate": .9}, {"hate": .1}]})
>>> cons = pd.DataFrame({"task": ["a", "b"], "label": ["hate", "(none)"]})
>>> float(policy_metrics(preds, cons, n_boot=20).set_index("policy").loc["hate", "f1"])
1.0
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.jsonenc import jsonable
from smo_labelstudio.core.workspace import read_table
from smo_labelstudio.quality.calibration import reliability
from smo_labelstudio.quality.consensus import fit_consensus
from smo_labelstudio.quality.gold import wilson_interval
from smo_labelstudio.quality.inputs import NO_POLICY, set_key

OUTCOMES = ["accepted", "edited", "rejected", "skipped"]


def _wilson(k: float, n: float) -> tuple[float, float]:
    """The 95% Wilson interval of k successes in n trials as two floats (NaNs when n is 0)."""
    low, high = wilson_interval(k, n)
    return float(low), float(high)


def key_to_set(key: Any) -> frozenset:
    """A consensus key ('hate+spam_scams', '(none)') as a policy set."""
    if key is None or (isinstance(key, float) and math.isnan(key)) or key == NO_POLICY or key == "":
        return frozenset()
    return frozenset(str(key).split("+"))


def load_predictions(runs_dir: Path | str, ledger: pd.DataFrame, plans: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every kept pre-annotation as external_id, language, model_version, score, policy (set), severity,
    label_scores (dict); later launches win for an item predicted twice."""
    frames = []
    for path in sorted(Path(runs_dir).glob("*/predictions/*.parquet")):
        frames.append(read_table(path).assign(plan_id=path.parent.parent.name))
    if not frames:
        return pd.DataFrame(
            columns=[
                "external_id",
                "language",
                "model_version",
                "score",
                "policy",
                "severity",
                "label_scores",
                "plan_id",
            ]
        )
    preds = pd.concat(frames, ignore_index=True).drop_duplicates("item_id", keep="last")
    preds = preds.merge(ledger[["item_id", "external_id"]], on="item_id", how="inner")
    if plans is not None and len(plans):
        lang = plans.drop_duplicates("item_id").set_index("item_id")["language"]
        preds["language"] = preds["item_id"].map(lang).fillna("unknown").astype(str)
    else:
        preds["language"] = "unknown"
    preds["policy"] = preds["policy"].fillna("").map(lambda s: frozenset(p for p in str(s).split("|") if p))
    preds["label_scores"] = preds["label_scores"].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
    return preds.reset_index(drop=True)


def _joined(preds: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """One row per task with both a prediction and a consensus: external_id, language, model, truth (sets)."""
    cons = consensus
    if "control" in cons.columns:
        cons = cons[cons["control"] == "policy"]
    cons = cons.drop_duplicates("task", keep="last")
    truth = dict(zip(cons["task"], cons["label"].map(key_to_set)))
    out = preds[preds["external_id"].isin(truth)].copy()
    out["truth"] = out["external_id"].map(truth)
    out["model"] = out["policy"]
    return out.reset_index(drop=True)


def _universe(joined: pd.DataFrame) -> list[str]:
    seen = set()
    for s in list(joined["model"]) + list(joined["truth"]):
        seen |= set(s)
    for scores in joined.get("label_scores", pd.Series(dtype=object)):
        seen |= set(scores or {})
    return sorted(seen)


def _prf(tps: np.ndarray, fps: np.ndarray, fns: np.ndarray) -> tuple[float, float, float]:
    tp, fp, fn = float(tps.sum()), float(fps.sum()), float(fns.sum())
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return precision, recall, f1


def policy_metrics(
    preds: pd.DataFrame, consensus: pd.DataFrame, *, n_boot: int = 500, random_state: int = 0
) -> pd.DataFrame:
    """policy, support, predicted, precision, recall, f1 and 95% bootstrap intervals (resampling tasks,
    seeded); a final row `(micro)` pools every policy."""
    joined = _joined(preds, consensus)
    policies = _universe(joined)
    rng = np.random.default_rng(random_state)
    n = len(joined)
    samples = [rng.integers(0, n, n) for _ in range(n_boot)] if n else []
    rows: list[dict[str, Any]] = []
    pooled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for policy in policies + ["(micro)"]:
        if policy == "(micro)":
            tp, fp, fn = (np.sum(parts, axis=0) for parts in zip(*pooled)) if pooled else (np.zeros(0),) * 3
        else:
            m = joined["model"].map(lambda s, p=policy: p in s).to_numpy(dtype=bool)
            t = joined["truth"].map(lambda s, p=policy: p in s).to_numpy(dtype=bool)
            tp, fp, fn = (m & t).astype(float), (m & ~t).astype(float), (~m & t).astype(float)
            pooled.append((tp, fp, fn))
        precision, recall, f1 = _prf(tp, fp, fn)
        boots = np.array([_prf(tp[i], fp[i], fn[i]) for i in samples]) if samples else np.full((1, 3), np.nan)
        with np.errstate(all="ignore"):
            lo = [np.nanpercentile(boots[:, j], 2.5) if np.isfinite(boots[:, j]).any() else math.nan for j in range(3)]
            hi = [np.nanpercentile(boots[:, j], 97.5) if np.isfinite(boots[:, j]).any() else math.nan for j in range(3)]
        rows.append(
            {
                "policy": policy,
                "support": int((tp + fn).sum()),
                "predicted": int((tp + fp).sum()),
                "precision": precision,
                "precision_low": lo[0],
                "precision_high": hi[0],
                "recall": recall,
                "recall_low": lo[1],
                "recall_high": hi[1],
                "f1": f1,
                "f1_low": lo[2],
                "f1_high": hi[2],
            }
        )
    return pd.DataFrame(rows)


def confusion_matrix(preds: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """Counts of tasks by model policy-set key (columns) and consensus key (rows)."""
    joined = _joined(preds, consensus)
    if joined.empty:
        return pd.DataFrame()
    return pd.crosstab(joined["truth"].map(set_key).rename("consensus"), joined["model"].map(set_key).rename("model"))


def calibration(preds: pd.DataFrame, consensus: pd.DataFrame, n_bins: int = 10) -> tuple[float, pd.DataFrame]:
    """Expected calibration error over every (task, policy) probability in `label_scores` against
    whether consensus chose that policy, and the reliability table (bin, n, confidence, accuracy)."""
    joined = _joined(preds, consensus)
    probs, hits = [], []
    for scores, truth in zip(joined["label_scores"], joined["truth"]):
        for policy, p in (scores or {}).items():
            probs.append(float(p))
            hits.append(policy in truth)
    return reliability(np.array(probs, dtype=float), np.array(hits, dtype=float), n_bins)


def by_language(preds: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """language, n_tasks, exact (model set == consensus set) with a Wilson interval, micro precision/recall/F1."""
    joined = _joined(preds, consensus)
    rows = []
    for language, part in joined.groupby("language", sort=True):
        exact = int((part["model"] == part["truth"]).sum())
        lo, hi = _wilson(exact, len(part))
        tp = sum(len(m & t) for m, t in zip(part["model"], part["truth"]))
        fp = sum(len(m - t) for m, t in zip(part["model"], part["truth"]))
        fn = sum(len(t - m) for m, t in zip(part["model"], part["truth"]))
        p, r, f1 = _prf(np.array([tp]), np.array([fp]), np.array([fn]))
        rows.append(
            {
                "language": language,
                "n_tasks": len(part),
                "exact": exact / len(part),
                "exact_low": lo,
                "exact_high": hi,
                "precision": p,
                "recall": r,
                "f1": f1,
            }
        )
    return pd.DataFrame(
        rows, columns=["language", "n_tasks", "exact", "exact_low", "exact_high", "precision", "recall", "f1"]
    )


def acceptance(annotations: pd.DataFrame, sets: pd.DataFrame, preds: pd.DataFrame) -> pd.DataFrame:
    """One row per annotation of a pre-annotated task: task, annotator, language, outcome.

    accepted: submitted unchanged (`changed_prediction` false); edited: changed but kept at least one
    of the model's policies (or only the severity or span changed); rejected: none of the model's
    policies kept; skipped: the annotation was cancelled."""
    model = dict(zip(preds["external_id"], preds["policy"]))
    given = {(t, a): s for t, a, s in zip(sets["task"], sets["annotator"], sets["label"])}
    ann = annotations[annotations["external_id"].isin(model)]
    if ann.empty:
        return pd.DataFrame(columns=["task", "annotator", "language", "outcome"])
    ann = ann.sort_values("annotation_id").drop_duplicates(["external_id", "annotator"], keep="last")
    rows = []
    for r in ann.itertuples():
        m, s = model[r.external_id], given.get((r.external_id, r.annotator))
        if bool(r.was_cancelled):
            outcome = "skipped"
        elif (not bool(r.changed_prediction)) if not pd.isna(r.changed_prediction) else s == m:
            outcome = "accepted"
        elif s is not None and (s & m or s == m):
            outcome = "edited"
        else:
            outcome = "rejected"
        rows.append(
            {
                "task": r.external_id,
                "annotator": r.annotator,
                "language": r.language if isinstance(r.language, str) else "unknown",
                "outcome": outcome,
            }
        )
    return pd.DataFrame(rows)


def acceptance_summary(outcomes: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Share of each outcome (overall, or per `by` column)."""
    if outcomes.empty:
        return pd.DataFrame(columns=([by] if by else []) + ["n"] + OUTCOMES)
    groups = [("all", outcomes)] if by is None else list(outcomes.groupby(by, sort=True))
    rows = []
    for name, part in groups:
        counts = part["outcome"].value_counts()
        row = {"n": len(part), **{o: counts.get(o, 0) / len(part) for o in OUTCOMES}}
        rows.append({by: name, **row} if by else row)
    return pd.DataFrame(rows)


def references_without_self(sets: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """Per (task, annotator): the policy set to judge the model by when auditing that annotator: the
    gold answer on gold tasks, else smoothed Dawid-Skene consensus fitted on everyone else's answers
    (a consensus that counted the annotator's own answer would make following the model look right).
    Tasks nobody else answered get no reference."""
    cons = consensus[consensus["control"] == "policy"] if "control" in consensus.columns else consensus
    gold = cons[cons["source"] == "gold"] if "source" in cons.columns else cons.iloc[:0]
    gold_sets = dict(zip(gold["task"], gold["label"].map(key_to_set)))
    keyed = sets.assign(label=sets["label"].map(set_key))[["task", "annotator", "label"]]
    rows = []
    for who in sorted(keyed["annotator"].unique()):
        own = keyed.loc[keyed["annotator"] == who, "task"].unique()
        others = keyed[(keyed["annotator"] != who) & keyed["task"].isin(own)]
        labels = fit_consensus("smoothed-ds", others).labels_ if len(others) else pd.Series(dtype=object)
        for task in own:
            if task in gold_sets:
                rows.append((task, who, gold_sets[task]))
            elif task in labels.index:
                rows.append((task, who, key_to_set(labels[task])))
    return pd.DataFrame(rows, columns=["task", "annotator", "reference"])


def anchoring_audit(sets: pd.DataFrame, preds: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """Do annotators follow wrong suggestions? Per model_correct (model set == the reference set from
    `references_without_self`): answers, the share of answers equal to the model's set, with a Wilson
    interval; plus one row per annotator.

    When the model is wrong, agreeing with it means agreeing with an error: a high share there (close
    to the share when it is right) is anchoring."""
    model = dict(zip(preds["external_id"], preds["policy"].map(frozenset)))
    answers = sets[sets["task"].isin(model)]
    refs = (
        references_without_self(answers, consensus)
        if len(answers)
        else pd.DataFrame(columns=["task", "annotator", "reference"])
    )
    answers = answers.merge(refs, on=["task", "annotator"], how="inner")
    if answers.empty:
        return pd.DataFrame(columns=["annotator", "model_correct", "n", "agree_with_model", "ci_low", "ci_high"])
    model_sets = answers["task"].map(model)
    frame = pd.DataFrame(
        {
            "annotator": answers["annotator"].to_numpy(),
            "model_correct": (model_sets == answers["reference"]).to_numpy(dtype=bool),
            "agree": (answers["label"].map(frozenset) == model_sets).to_numpy(dtype=bool),
        }
    )
    rows = []
    for who, part in [("(all)", frame)] + list(frame.groupby("annotator", sort=True)):
        for correct in (False, True):
            sub = part[part["model_correct"] == correct]
            k, n = int(sub["agree"].sum()), len(sub)
            lo, hi = _wilson(k, n)
            rows.append(
                {
                    "annotator": who,
                    "model_correct": correct,
                    "n": n,
                    "agree_with_model": k / n if n else math.nan,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return pd.DataFrame(rows)


@dataclass
class ModelEvaluation:
    """Every figure of the model evaluation; `summary()` for JSON."""

    n_tasks: int
    model_versions: list[str]
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    ece: float
    reliability: pd.DataFrame
    languages: pd.DataFrame
    outcomes: pd.DataFrame
    anchoring: pd.DataFrame
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        micro = self.metrics[self.metrics["policy"] == "(micro)"]
        anch = (
            self.anchoring[self.anchoring["annotator"] == "(all)"].set_index("model_correct")["agree_with_model"]
            if len(self.anchoring)
            else pd.Series(dtype=float)
        )
        return jsonable(
            {
                "n_tasks": self.n_tasks,
                "model_versions": self.model_versions,
                "micro_f1": float(micro["f1"].iloc[0]) if len(micro) else None,
                "ece": self.ece,
                "policies": self.metrics.to_dict(orient="records"),
                "languages": self.languages.to_dict(orient="records"),
                "acceptance": acceptance_summary(self.outcomes).to_dict(orient="records"),
                "anchoring": {
                    "agree_when_model_wrong": anch.get(False),
                    "agree_when_model_right": anch.get(True),
                    "rows": self.anchoring.to_dict(orient="records"),
                },
            }
        )


def evaluate(
    preds: pd.DataFrame,
    consensus: pd.DataFrame,
    sets: pd.DataFrame,
    annotations: pd.DataFrame | None,
    *,
    n_boot: int = 500,
    random_state: int = 0,
) -> ModelEvaluation:
    """The whole evaluation. `sets` is `quality_inputs.policy_sets(labels)` (task, annotator, language, label)."""
    ece, reliability = calibration(preds, consensus)
    joined = _joined(preds, consensus)
    outcomes = (
        acceptance(annotations, sets, preds)
        if annotations is not None and len(annotations)
        else acceptance(
            pd.DataFrame(
                columns=["external_id", "annotator", "annotation_id", "was_cancelled", "changed_prediction", "language"]
            ),
            sets,
            preds,
        )
    )
    return ModelEvaluation(
        n_tasks=len(joined),
        model_versions=sorted({str(v) for v in preds.get("model_version", []) if v}),
        metrics=policy_metrics(preds, consensus, n_boot=n_boot, random_state=random_state),
        confusion=confusion_matrix(preds, consensus),
        ece=ece,
        reliability=reliability,
        languages=by_language(preds, consensus),
        outcomes=outcomes,
        anchoring=anchoring_audit(sets, preds, consensus),
    )
