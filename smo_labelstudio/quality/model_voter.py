"""The pre-annotation model as one more voter in consensus (`quality.model_voter` in the spec).

The model's answer per task is its pre-annotation as the launch imported it and kept it in the workspace
(`runs/*/predictions/*.parquet`), never anything read back from Label Studio, where any member can write:
an annotator who posts JSON claiming to be the model is an annotator. The model votes under an id no
annotator has (`voter_id`), once per task, and only on tasks that have at least one annotator's answer
(it never decides a task alone). Consensus models it like an annotator: Dawid-Skene learns its confusion
matrix (its reliability) from the same answers, anchored on gold, so a model that is often wrong gets little
weight and a good one as much as a good annotator would; majority vote counts it as one vote. It is never an
annotator anywhere else: agreement, gold gates, overlap and scorecards read the annotators' answers only.

`compare_on_gold` is what the quality report shows: consensus accuracy on held-out gold (cross-fitted, as
the calibration reads it) with and without the model voter, and the model's own accuracy on gold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.workspace import Workspace, read_table
from smo_labelstudio.pull.completions import item_ledger

from . import inputs as qi
from .calibration import held_out_gold
from .consensus import fit_consensus
from .gold import wilson_interval

__all__ = ["MODEL_VOTER", "compare_on_gold", "load_model_answers", "model_reliability", "voter_id", "with_model"]

MODEL_VOTER = "model"
MODEL_COLUMNS = ["external_id", "control", "label", "model_version"]


def voter_id(annotators: Iterable[Any]) -> str:
    """The model's voter id: `model`, or `model~2`, `model~3`, ... when an annotator already has that id."""
    taken = {str(a) for a in annotators}
    candidate, n = MODEL_VOTER, 1
    while candidate in taken:
        n += 1
        candidate = f"{MODEL_VOTER}~{n}"
    return candidate


def with_model(answers: pd.DataFrame, model: pd.DataFrame | None) -> tuple[pd.DataFrame, str | None]:
    """Annotators' answers (task, annotator, label) plus the model's (task, label) as one more voter: one vote
    per task that has an annotator's answer; the voter id is None when the model answered none of them."""
    answers = answers[["task", "annotator", "label"]]
    if model is None or model.empty:
        return answers, None
    votes = model.loc[model["label"].notna(), ["task", "label"]].drop_duplicates("task", keep="last")
    votes = votes[votes["task"].isin(set(answers["task"]))]
    if votes.empty:
        return answers, None
    voter = voter_id(answers["annotator"].unique())
    votes = votes.assign(annotator=voter)[["task", "annotator", "label"]]
    label_type = answers["label"].dtype
    if pd.api.types.is_integer_dtype(label_type):
        votes["label"] = pd.to_numeric(votes["label"], errors="coerce")
        votes = votes.dropna(subset=["label"]).astype({"label": label_type})
    else:
        votes["label"] = votes["label"].astype(str)
    return pd.concat([answers, votes], ignore_index=True), voter


def model_reliability(estimator: Any, voter: str) -> float | None:
    """The model's accuracy as consensus learned it: for Dawid-Skene, sum over labels of prior x P(says it |
    it is true); None for an estimator that learns no confusion (majority vote)."""
    errors = getattr(estimator, "errors_", None)
    if errors is None or voter not in errors.index.get_level_values("annotator"):
        return None
    confusion = errors.loc[voter]
    priors = estimator.priors_
    diagonal = [float(confusion.loc[k, k]) if k in confusion.index else 0.0 for k in priors.index]
    return float(np.dot(priors.to_numpy(), diagonal))


def _accuracy(correct: pd.Series) -> dict[str, Any]:
    n, k = len(correct), int(correct.sum())
    low, high = (float(v) for v in wilson_interval(k, n)) if n else (None, None)
    return {"n_gold": n, "correct": k, "accuracy": k / n if n else None, "ci_low": low, "ci_high": high}


def compare_on_gold(
    method: str, answers: pd.DataFrame, model: pd.DataFrame | None, gold: pd.DataFrame, random_state: int = 0
) -> dict[str, Any]:
    """Consensus accuracy on held-out gold (each gold task read from a model anchored on the other folds'
    gold only) without and with the model voter, the model's own accuracy on the same gold tasks and its
    reliability as consensus learned it. Empty figures when there is no gold."""
    both, voter = with_model(answers, model)
    gold = gold.loc[gold["task"].isin(set(answers["task"])), ["task", "label"]].drop_duplicates("task")
    without = held_out_gold(method, answers[["task", "annotator", "label"]], gold, random_state=random_state)
    out: dict[str, Any] = {"voter": voter, "annotators": _accuracy(without["correct"].astype(bool))}
    if voter is None:
        out["with_model"] = _accuracy(pd.Series([], dtype=bool))
        out["model_alone"] = _accuracy(pd.Series([], dtype=bool))
        out["model_reliability"] = None
        return out
    withm = held_out_gold(method, both, gold, random_state=random_state)
    out["with_model"] = _accuracy(withm["correct"].astype(bool))
    mine = both[both["annotator"] == voter].merge(gold, on="task", suffixes=("", "_gold"))
    out["model_alone"] = _accuracy((mine["label"].astype(str) == mine["label_gold"].astype(str)).reset_index(drop=True))
    out["model_reliability"] = model_reliability(fit_consensus(method, both, gold if len(gold) else None), voter)
    return out


def load_model_answers(ws: Workspace) -> pd.DataFrame:
    """The model's answers as the launches kept them (external_id, control, label, model_version): its policy
    set as one key (as `inputs.policy_keys`) and its severity; a later launch's prediction of an item wins."""
    paths = sorted(ws.runs.glob("*/predictions/*.parquet"), key=lambda p: (p.stat().st_mtime_ns, str(p)))
    if not paths:
        return pd.DataFrame(columns=MODEL_COLUMNS)
    preds = pd.concat([read_table(p) for p in paths], ignore_index=True).drop_duplicates("item_id", keep="last")
    ledger = item_ledger(ws).drop_duplicates("item_id", keep="last")
    preds = preds.merge(ledger[["item_id", "external_id"]], on="item_id", how="inner")
    policy = preds["policy"].fillna("").astype(str)
    rows = [
        pd.DataFrame(
            {
                "external_id": preds["external_id"].astype(str),
                "control": qi.POLICY,
                "label": [qi.set_key(p for p in s.split("|") if p) for s in policy],
                "model_version": preds["model_version"],
            }
        )
    ]
    severity = pd.to_numeric(preds["severity"].astype(str).str.split("|").str[0], errors="coerce")
    graded = severity.notna()
    rows.append(
        pd.DataFrame(
            {
                "external_id": preds.loc[graded, "external_id"].astype(str),
                "control": qi.SEVERITY,
                "label": severity[graded].astype(int).astype(str),
                "model_version": preds.loc[graded, "model_version"],
            }
        )
    )
    return pd.concat(rows, ignore_index=True)[MODEL_COLUMNS]
