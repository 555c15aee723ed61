"""The full quality pass an analyst runs: agreement with intervals, gold checks, consensus, as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.jsonenc import jsonable

from ._frame import check_choice, check_level, encode, per_group
from ._table import CountTable, count_table
from .agreement import agreement_table_summary, pairwise_cohen_kappa, per_label_table
from .consensus import METHODS, consensus_frame, fit_consensus
from .gold import flags, gold_accuracy

__all__ = ["METHODS", "QualityResult", "run_quality"]

COHEN_WEIGHTS = {"nominal": None, "ordinal": "linear", "interval": "quadratic", "ratio": "quadratic"}
MAX_PER_LABEL = 50
LOW_CONFIDENCE = 0.6


@dataclass
class QualityResult:
    """`summary`: JSON-ready figures; `consensus`: one row per task (task, label, confidence)."""

    summary: dict[str, Any]
    consensus: pd.DataFrame

    def to_json(self, **kwargs: Any) -> str:
        """The summary as one JSON object (NaN written as null)."""
        return json.dumps(self.summary, allow_nan=False, **kwargs)


def _agreement(
    table: CountTable, level: str, n_boot: int, confidence: float, random_state: int | None
) -> dict[str, Any]:
    figures = agreement_table_summary(table, level, n_boot=n_boot, confidence=confidence, random_state=random_state)
    out: dict[str, Any] = {}
    for name, row in figures.iterrows():
        out[name] = row["estimate"]
        out[f"{name}_ci"] = [row["ci_low"], row["ci_high"]]
    return out


def _group_agreement(
    part: pd.DataFrame, level: str, n_boot: int, confidence: float, random_state: int | None
) -> pd.Series:
    ratings = encode(part, level)
    figures = _agreement(count_table(ratings.deduplicated()), level, n_boot, confidence, random_state)
    return pd.Series({"n_tasks": ratings.n_tasks, "n_annotations": len(ratings), **figures})


def run_quality(
    annotations: pd.DataFrame,
    gold: pd.DataFrame | None = None,
    *,
    level: str = "nominal",
    method: str = "ds",
    threshold: float = 0.8,
    min_gold: int = 20,
    alpha: float = 0.05,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: int | None = 0,
    min_overlap: int = 1,
    by: str | None = None,
) -> QualityResult:
    """Run every check on a tidy `task, annotator, label` frame (and optional gold `task, label`).

    Counts: n_annotations are non-empty labels (n_missing the empty ones), n_tasks and n_annotators
    those with at least one label.
    Percent agreement, Fleiss' kappa and Gwet's AC1 treat labels as categories; Krippendorff's
    alpha uses `level`; Cohen's kappa per annotator pair is unweighted for nominal labels, linearly
    weighted for ordinal, quadratically for interval and ratio. Intervals are percentile bootstraps
    over tasks (`n_boot`, `random_state`). Gold: see `gold.gold_accuracy` (`threshold`, `min_gold`,
    `alpha`). Consensus: majority vote ("mv") or Dawid-Skene ("ds", anchored on the gold tasks).
    With `by` (a column such as language), `groups` repeats the agreement figures per group.
    """
    check_level(level)
    check_choice("method", method, tuple(METHODS))
    nominal = encode(annotations, "nominal")
    if len(nominal) == 0:
        raise InputError("annotations: no labels (every label is empty)")
    ratings = nominal if level == "nominal" else encode(annotations, level)
    table = count_table(ratings.deduplicated())

    summary: dict[str, Any] = {
        "n_tasks": nominal.n_tasks,
        "n_annotators": len(nominal.annotators),
        "n_annotations": len(nominal),
        "n_missing": nominal.n_missing,
        "n_labels": nominal.n_labels,
        "level": level,
        "method": method,
    }
    table_figures = _agreement(table, level, n_boot, confidence, random_state)
    weights = COHEN_WEIGHTS[level]
    pairs = pairwise_cohen_kappa(ratings, weights=weights, level="nominal" if level == "nominal" else "ordinal")
    used = pairs.loc[pairs["n"] >= min_overlap, "kappa"].dropna()
    summary.update(table_figures)
    summary.update(
        {
            "cohen_kappa_mean": float(used.mean()) if len(used) else None,
            "cohen_kappa_weights": weights or "none",
            "cohen_kappa_pairs": int(len(used)),
        }
    )
    if nominal.n_labels <= MAX_PER_LABEL:
        nominal_table = table if ratings is nominal else count_table(nominal.deduplicated())
        summary["per_label"] = per_label_table(nominal_table).to_dict(orient="records")

    report = None
    if gold is not None:
        report = gold_accuracy(
            annotations, gold, threshold=threshold, min_answers=min_gold, alpha=alpha, confidence=confidence
        )
    summary["annotators"] = _annotators(nominal, report)
    summary["flagged"] = [f.to_dict() for f in flags(annotations, gold, report)] if report is not None else []
    summary["gold"] = {
        "threshold": threshold,
        "min_answers": min_gold,
        "alpha": alpha,
        "n_gold_tasks": int(gold["task"].nunique()) if gold is not None else 0,
    }

    estimator = fit_consensus(method, nominal, gold)
    consensus = consensus_frame(estimator)
    summary["consensus"] = {
        "method": METHODS[method],
        "n_tasks": len(consensus),
        "mean_confidence": float(consensus["confidence"].mean()),
        "low_confidence_below": LOW_CONFIDENCE,
        "low_confidence": int((consensus["confidence"] < LOW_CONFIDENCE).sum()),
        **({"iterations": estimator.n_iter_} if method != "mv" else {}),
    }
    if by is not None:
        groups = per_group(
            _group_agreement,
            annotations,
            by,
            level=level,
            n_boot=n_boot,
            confidence=confidence,
            random_state=random_state,
        )
        summary["groups"] = {str(key): row.to_dict() for key, row in groups.iterrows()}
    return QualityResult(jsonable(summary), consensus)


def _annotators(ratings: Any, report: pd.DataFrame | None) -> list[dict[str, Any]]:
    answers = np.bincount(ratings.annotator, minlength=len(ratings.annotators))
    frame = pd.DataFrame({"annotator": ratings.annotators, "n_annotations": answers})
    if report is None:
        frame = frame.assign(
            gold_n=0,
            gold_correct=0,
            gold_accuracy=np.nan,
            ci_low=np.nan,
            ci_high=np.nan,
            p_value=np.nan,
            flagged=False,
            reason="no gold answers",
        )
    else:
        frame = frame.merge(report, on="annotator", how="left")
    frame["annotator"] = frame["annotator"].astype(object)
    return frame.to_dict(orient="records")
