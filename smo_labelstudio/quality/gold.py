"""Annotator accuracy on gold tasks: Wilson intervals, an exact binomial test, flags with reasons.

Whom to flag: an annotator with at least `min_answers` gold answers whose accuracy is significantly
below `threshold` in a one-sided exact binomial test (H0: accuracy >= threshold; the p-value equals
`scipy.stats.binomtest(correct, n, threshold, alternative="less").pvalue`, computed vectorised as
the binomial CDF, scipy.special.bdtr). Fewer answers than `min_answers`: never flagged, and the reason says so.

For continuous checks (re-testing after every new gold answer), repeated binomial tests inflate
false flags, so `sequential_check` uses Wald's sequential probability ratio test instead: it tests
H0 accuracy = `good` against H1 accuracy = `bad` after each answer in order, with error rates
alpha (flagging a good annotator) and beta (missing a bad one) that hold however often one looks.
Each annotator's test stops at the first boundary crossed: "flag" or "pass"; else "continue".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from smo_labelstudio.core.errors import ConfigError, InputError

from ._frame import check_choice, factorize_sorted, require_frame, show

__all__ = ["Flag", "flags", "gold_accuracy", "gold_answers", "gold_confusion", "sequential_check", "wilson_interval"]

CORRECTIONS = ("none", "holm")


def wilson_interval(correct: Any, n: Any, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion (scipy's `binomtest(k, n).proportion_ci(method="wilson")`),
    element-wise over arrays of counts: sensible at small n and at 0 % or 100 %; NaN where n = 0."""
    k, n = np.broadcast_arrays(np.rint(np.asarray(correct, dtype=float)), np.asarray(n, dtype=float))
    low, high = np.full(k.shape, np.nan), np.full(k.shape, np.nan)
    for i in (i for i in np.ndindex(k.shape) if n[i] > 0):
        ci = stats.binomtest(int(k[i]), int(n[i])).proportion_ci(method="wilson", confidence_level=confidence)
        low[i], high[i] = ci.low, ci.high
    return low, high


def _gold_series(gold: pd.DataFrame) -> pd.Series:
    require_frame(gold, ("task", "label"), what="gold")
    gold = gold.loc[gold["label"].notna(), ["task", "label"]].drop_duplicates()
    clash = gold["task"].duplicated(keep=False)
    if clash.any():
        raise InputError(f"gold: task {show(gold.loc[clash, 'task'].iloc[0])} has more than one gold label")
    return gold.set_index("task")["label"]


def gold_answers(annotations: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    """Every non-missing answer on a gold task with its gold label and whether it matches."""
    require_frame(annotations)
    truth = _gold_series(gold)
    answers = annotations.loc[annotations["label"].notna() & annotations["task"].isin(truth.index)].copy()
    answers["gold_label"] = truth.reindex(answers["task"]).to_numpy()
    kinds = pd.api.types.infer_dtype(truth, skipna=True), pd.api.types.infer_dtype(answers["label"], skipna=True)
    if len(answers) and kinds[0] != kinds[1] and not answers["label"].isin(truth.unique()).any():
        raise InputError(
            f"gold: no gold label equals any answer on the gold tasks (gold labels such as "
            f"{show(truth.iloc[0])}, answers such as {show(answers['label'].iloc[0])}); check their types"
        )
    answers["correct"] = (answers["label"] == answers["gold_label"]).to_numpy(dtype=bool)
    return answers


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries are left out)."""
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def gold_accuracy(
    annotations: pd.DataFrame,
    gold: pd.DataFrame,
    *,
    threshold: float = 0.8,
    min_answers: int = 20,
    alpha: float = 0.05,
    confidence: float = 0.95,
    correction: str = "none",
    by_label: bool = False,
    by: str | None = None,
) -> pd.DataFrame:
    """One row per annotator (per gold label with `by_label`, per group of `by`): accuracy, CI, test, flag.

    Columns: annotator, [gold_label], [by], gold_n, gold_correct, gold_accuracy, ci_low, ci_high,
    p_value, flagged, reason. `correction="holm"` adjusts p-values for testing many annotators at once.
    Annotators without gold answers get a row with gold_n 0.
    """
    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be between 0 and 1; got {threshold!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1; got {alpha!r}")
    if min_answers < 1:
        raise ConfigError(f"min_answers must be at least 1; got {min_answers!r}")
    check_choice("correction", correction, CORRECTIONS)
    answers = gold_answers(annotations, gold)
    keys = ["annotator"] + (["gold_label"] if by_label else []) + ([by] if by else [])
    if by and by not in annotations.columns:
        raise ConfigError(f"by: no column {by!r} in the annotations")
    counts = answers.groupby(keys, sort=True, dropna=False)["correct"].agg(["size", "sum"])
    if len(keys) == 1:  # everyone gets a row, with gold_n 0 if they answered no gold task
        everyone = factorize_sorted(annotations["annotator"].dropna())[1].rename("annotator")
        counts = counts.reindex(everyone, fill_value=0)
    report = counts.reset_index().rename(columns={"size": "gold_n", "sum": "gold_correct"})
    n = report["gold_n"].to_numpy(dtype=float)
    k = report["gold_correct"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        report["gold_accuracy"] = np.where(n > 0, k / n, np.nan)
    report["ci_low"], report["ci_high"] = wilson_interval(k, n, confidence)
    p_value = np.where(n > 0, special.bdtr(k, np.maximum(n, 1), threshold), np.nan)  # binomial CDF
    judged = n >= min_answers
    if correction == "holm":
        p_value = np.where(judged, _holm(np.where(judged, p_value, np.nan)), p_value)
    report["p_value"] = p_value
    report["flagged"] = judged & (p_value < alpha)
    report["reason"] = [
        _reason(*row, threshold=threshold, min_answers=min_answers, alpha=alpha)
        for row in zip(n, report["gold_accuracy"], report["p_value"], report["flagged"], strict=True)
    ]
    report["gold_n"] = report["gold_n"].astype(int)
    report["gold_correct"] = report["gold_correct"].astype(int)
    return report


def _reason(
    n: float, accuracy: float, p: float, flagged: bool, *, threshold: float, min_answers: int, alpha: float
) -> str:
    if n == 0:
        return "no gold answers"
    if n < min_answers:
        return f"only {int(n)} gold answer(s), need {min_answers} before judging"
    verdict = "significantly below" if flagged else "not significantly below"
    return f"accuracy {accuracy:.3f} on {int(n)} gold answers is {verdict} {threshold:g} (p={p:.2g}, alpha {alpha:g})"


def _confusion(answers: pd.DataFrame, values: pd.Index) -> pd.DataFrame:
    """Counts of (gold label, given label) over `answers`, on the label values `values`."""
    gold_code = values.get_indexer(answers["gold_label"])
    given_code = values.get_indexer(answers["label"])
    k = len(values)
    counts = np.bincount(gold_code * k + given_code, minlength=k * k).reshape(k, k)
    return pd.DataFrame(counts, index=values.rename("gold"), columns=values.rename("given"))


def _values(answers: pd.DataFrame) -> pd.Index:
    return factorize_sorted(pd.concat([answers["gold_label"], answers["label"]], ignore_index=True))[1]


def gold_confusion(annotations: pd.DataFrame, gold: pd.DataFrame, annotator: Any) -> pd.DataFrame:
    """One annotator's confusion matrix against gold: rows gold label, columns the label given."""
    answers = gold_answers(annotations, gold)
    return _confusion(answers[answers["annotator"] == annotator], _values(answers))


@dataclass
class Flag:
    """An annotator to look at, why, and their answers against gold."""

    annotator: Any
    reason: str
    confusion: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the confusion matrix as {gold label: {given label: count}}."""
        confusion = {str(g): {str(c): int(v) for c, v in row.items()} for g, row in self.confusion.iterrows()}
        return {"annotator": _plain(self.annotator), "reason": self.reason, "confusion": confusion}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def flags(
    annotations: pd.DataFrame, gold: pd.DataFrame, report: pd.DataFrame | None = None, **settings: Any
) -> list[Flag]:
    """The annotators to flag (from `report`, or a fresh `gold_accuracy` with `settings`), with confusions."""
    if report is None:
        report = gold_accuracy(annotations, gold, **settings)
    answers = gold_answers(annotations, gold)
    values = _values(answers)
    flagged = report[report["flagged"]]
    reasons = flagged.groupby("annotator", sort=True)["reason"].agg("; ".join)
    theirs = answers[answers["annotator"].isin(reasons.index)].groupby("annotator", sort=True)
    return [Flag(annotator, reasons[annotator], _confusion(part, values)) for annotator, part in theirs]


def sequential_check(
    annotations: pd.DataFrame,
    gold: pd.DataFrame,
    *,
    good: float = 0.8,
    bad: float = 0.65,
    alpha: float = 0.05,
    beta: float = 0.1,
    order: str | None = None,
) -> pd.DataFrame:
    """Wald's SPRT per annotator over their gold answers in order (column `order`, else row order).

    Log-likelihood ratio after n answers, k correct: k log(bad/good) + (n-k) log((1-bad)/(1-good));
    flag at >= log((1-beta)/alpha), pass at <= log(beta/(1-alpha)). Columns: annotator, gold_n,
    gold_correct, llr, decision (flag, pass, continue) and decided_after (answers used, else NaN).
    To keep monitoring after a pass, run it again on the answers given since.
    """
    if not 0 < bad < good < 1:
        raise ConfigError(f"need 0 < bad < good < 1; got bad={bad!r}, good={good!r}")
    if not (0 < alpha < 1 and 0 < beta < 1):
        raise InputError(f"alpha and beta must be between 0 and 1; got alpha={alpha!r}, beta={beta!r}")
    answers = gold_answers(annotations, gold)
    if order is not None:
        if order not in annotations.columns:
            raise ConfigError(f"order: no column {order!r} in the annotations")
        answers = answers.sort_values(order, kind="stable")
    answers = answers.sort_values("annotator", kind="stable")
    step_right, step_wrong = np.log(bad / good), np.log((1 - bad) / (1 - good))
    upper, lower = np.log((1 - beta) / alpha), np.log(beta / (1 - alpha))
    grouped = answers.groupby("annotator", sort=True)
    n = grouped.cumcount().to_numpy() + 1
    k = grouped["correct"].cumsum().to_numpy()
    llr = k * step_right + (n - k) * step_wrong
    walk = pd.DataFrame(
        {
            "annotator": answers["annotator"].to_numpy(),
            "n": n,
            "k": k,
            "llr": llr,
            "decision": np.where(llr >= upper, "flag", np.where(llr <= lower, "pass", "")),
        }
    )
    first = walk[walk["decision"] != ""].groupby("annotator", sort=True).head(1).set_index("annotator")
    last = walk.groupby("annotator", sort=True).tail(1).set_index("annotator")
    out = pd.DataFrame({"gold_n": last["n"], "gold_correct": last["k"]})
    out["llr"] = first["llr"].reindex(out.index).fillna(last["llr"])
    out["decision"] = first["decision"].reindex(out.index).fillna("continue")
    out["decided_after"] = first["n"].reindex(out.index)
    return out.rename_axis("annotator").reset_index()
