"""Inter-annotator agreement: percent agreement, Cohen's, Fleiss' and Gwet's coefficients, alpha, CIs.

All functions take a tidy `task, annotator, label` frame (empty labels are missing and skipped)
and count each annotator's last answer per task. Percent agreement, Fleiss' kappa and Gwet's AC1
are nominal; Krippendorff's alpha takes a level; Cohen's kappa can be weighted for ordinal scales.
Report them side by side: with rare violations kappa and alpha drop while raw agreement stays high
(the prevalence paradox), and AC1 is the figure that resists it. Every function takes `by=` (a
column such as language or policy) and then returns one figure per group.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import ConfigError

from ._frame import check_choice, encode, factorize_sorted, group_pairs, per_group, require_frame
from ._table import CountTable, binary_table, count_table
from .krippendorff import alpha_from_table, krippendorff_alpha

__all__ = [
    "agreement_summary",
    "bootstrap_ci",
    "cohen_kappa_mean",
    "fleiss_kappa",
    "gwet_ac1",
    "krippendorff_alpha",
    "krippendorff_alpha_ci",
    "pairwise_cohen_kappa",
    "per_label_agreement",
    "percent_agreement",
]

KAPPA_WEIGHTS = (None, "linear", "quadratic")


# --- coefficients of a count table, vectorised over rows of bootstrap weights -----------------


def _weights(table: CountTable, weights: np.ndarray | None) -> np.ndarray:
    return table.weights[None, :] if weights is None else np.atleast_2d(weights)


def _observed(table: CountTable, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-task pairwise agreement P_i of pairable tasks, their weights, and the mean P-bar."""
    counts = table.counts.astype(float)
    m = counts.sum(axis=1)
    keep = m >= 2
    counts, m = counts[keep], m[keep]
    p_task = (counts * (counts - 1.0)).sum(axis=1) / (m * (m - 1.0))
    wk = w[:, keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bar = (wk @ p_task) / wk.sum(axis=1)
    return counts, wk, p_bar


def percent_agreement_table(table: CountTable, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean over tasks with >= 2 answers of the share of annotator pairs that agree."""
    return _observed(table, _weights(table, weights))[2]


def fleiss_kappa_table(table: CountTable, weights: np.ndarray | None = None) -> np.ndarray:
    """Fleiss' kappa; with unequal numbers of answers per task, Fleiss' formula over pairable tasks."""
    counts, wk, p_bar = _observed(table, _weights(table, weights))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_cat = wk @ counts
        p_cat = p_cat / p_cat.sum(axis=1, keepdims=True)
        p_exp = (p_cat * p_cat).sum(axis=1)
        return np.where(p_exp < 1, (p_bar - p_exp) / (1.0 - p_exp), np.nan)


def gwet_ac1_table(table: CountTable, weights: np.ndarray | None = None, n_categories: int | None = None) -> np.ndarray:
    """Gwet's AC1 (Gwet 2014): p_a over tasks with >= 2 answers, pi_k averaged over all rated tasks."""
    w = _weights(table, weights)
    counts = table.counts.astype(float)
    m = counts.sum(axis=1)
    q = n_categories or counts.shape[1]
    _, _, p_a = _observed(table, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        pi = (w @ (counts / m[:, None])) / w.sum(axis=1, keepdims=True)
        p_e = (pi * (1.0 - pi)).sum(axis=1) / (q - 1.0) if q > 1 else np.full(len(w), np.nan)
        return np.where(p_e < 1, (p_a - p_e) / (1.0 - p_e), np.nan)


def _table(data: pd.DataFrame, level: str = "nominal") -> CountTable:
    return count_table(encode(data, level).deduplicated())


# --- public figures on tidy frames ------------------------------------------------------------


def percent_agreement(data: pd.DataFrame, *, by: str | None = None) -> float | pd.Series:
    """Share of agreeing annotator pairs, averaged over tasks with at least two answers."""
    if by is not None:
        return per_group(percent_agreement, data, by)
    return float(percent_agreement_table(_table(data))[0])


def fleiss_kappa(data: pd.DataFrame, *, by: str | None = None) -> float | pd.Series:
    """Fleiss' kappa (1971); equals statsmodels' `fleiss_kappa` when every task has the same number of answers."""
    if by is not None:
        return per_group(fleiss_kappa, data, by)
    return float(fleiss_kappa_table(_table(data))[0])


def gwet_ac1(data: pd.DataFrame, *, n_categories: int | None = None, by: str | None = None) -> float | pd.Series:
    """Gwet's AC1, robust to skewed label prevalence; q = labels seen unless `n_categories` is given."""
    if by is not None:
        return per_group(gwet_ac1, data, by, n_categories=n_categories)
    return float(gwet_ac1_table(_table(data), n_categories=n_categories)[0])


def _kappa_weights(k: int, weights: str | None) -> np.ndarray:
    check_choice("weights", weights, KAPPA_WEIGHTS)
    idx = np.arange(k, dtype=float)
    if weights is None:
        return 1.0 - np.eye(k)
    diff = np.abs(idx[:, None] - idx[None, :])
    return diff if weights == "linear" else diff**2


def pairwise_cohen_kappa(
    data: pd.DataFrame, *, weights: str | None = None, level: str = "nominal", by: str | None = None
) -> pd.DataFrame:
    """Cohen's kappa for every pair of annotators who share a task (`annotator_a` < `annotator_b`).

    `weights` None, "linear" or "quadratic" (disagreement weights by the distance between positions
    in the sorted label list, as scikit-learn's `cohen_kappa_score` with `labels=` all labels).
    Use level="ordinal" to sort numeric severities by value rather than as text. Columns:
    annotator_a, annotator_b, n (shared tasks), agreement (observed), kappa (NaN when undefined).
    """
    if by is not None:
        return per_group(pairwise_cohen_kappa, data, by, weights=weights, level=level)
    r = encode(data, "nominal" if level == "nominal" else "ordinal").deduplicated()
    k = r.n_labels
    w_matrix = _kappa_weights(k, weights)
    if np.all(r.task[1:] >= r.task[:-1]):
        i, j = group_pairs(r.task)
    else:
        order = np.argsort(r.task, kind="stable")
        i, j = group_pairs(r.task[order])
        i, j = order[i], order[j]
    a, b, la, lb = r.annotator[i], r.annotator[j], r.label[i], r.label[j]
    swap = a > b
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    la, lb = np.where(swap, lb, la), np.where(swap, la, lb)
    key = a * len(r.annotators) + b
    if len(r.annotators) ** 2 <= 20_000_000:  # a lookup table is faster than sorting the pairs
        pair_key = np.flatnonzero(np.bincount(key, minlength=len(r.annotators) ** 2))
        lookup = np.zeros(len(r.annotators) ** 2, dtype=np.int64)
        lookup[pair_key] = np.arange(len(pair_key))
        pair_id = lookup[key]
    else:
        pair_key, pair_id = np.unique(key, return_inverse=True)
    n_pairs = len(pair_key)
    kappa = np.full(n_pairs, np.nan)
    agree = np.full(n_pairs, np.nan)
    n = np.bincount(pair_id, minlength=n_pairs)
    step = max(1, 20_000_000 // max(1, k * k))
    for lo in range(0, n_pairs, step):  # chunks of pairs keep the pairs x k x k table bounded
        hi = min(n_pairs, lo + step)
        if lo == 0 and hi == n_pairs:
            cells = pair_id * k * k + la * k + lb
        else:
            sel = (pair_id >= lo) & (pair_id < hi)
            cells = (pair_id[sel] - lo) * k * k + la[sel] * k + lb[sel]
        conf = np.bincount(cells, minlength=(hi - lo) * k * k).reshape(hi - lo, k, k).astype(float)
        total = conf.sum(axis=(1, 2))
        expected = np.einsum("pi,pj->pij", conf.sum(axis=2), conf.sum(axis=1)) / total[:, None, None]
        num = (conf * w_matrix).sum(axis=(1, 2))
        den = (expected * w_matrix).sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            kappa[lo:hi] = np.where(den > 0, 1.0 - num / den, np.nan)
        agree[lo:hi] = np.trace(conf, axis1=1, axis2=2) / total
    n_ann = len(r.annotators)
    return pd.DataFrame(
        {
            "annotator_a": r.annotators[pair_key // n_ann],
            "annotator_b": r.annotators[pair_key % n_ann],
            "n": n,
            "agreement": agree,
            "kappa": kappa,
        }
    )


def cohen_kappa_mean(
    data: pd.DataFrame,
    *,
    weights: str | None = None,
    level: str = "nominal",
    min_overlap: int = 1,
    by: str | None = None,
) -> float | pd.Series:
    """Mean Cohen's kappa over annotator pairs sharing at least `min_overlap` tasks (defined kappas only)."""
    if by is not None:
        return per_group(cohen_kappa_mean, data, by, weights=weights, level=level, min_overlap=min_overlap)
    pairs = pairwise_cohen_kappa(data, weights=weights, level=level)
    kappas = pairs.loc[pairs["n"] >= min_overlap, "kappa"].dropna()
    return float(kappas.mean()) if len(kappas) else float("nan")


# --- confidence intervals ---------------------------------------------------------------------


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _check_boot(n_boot: int, confidence: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1; got {confidence!r}")


def agreement_table_summary(
    table: CountTable,
    level: str = "nominal",
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: int | None = 0,
) -> pd.DataFrame:
    """Estimates and percentile bootstrap intervals of the count-table coefficients (see agreement_summary)."""
    _check_boot(n_boot, confidence)
    resampled = table.resample(n_boot, random_state)
    figures: dict[str, Callable[..., np.ndarray]] = {
        "percent_agreement": percent_agreement_table,
        "fleiss_kappa": fleiss_kappa_table,
        "gwet_ac1": gwet_ac1_table,
        "krippendorff_alpha": lambda t, w=None: alpha_from_table(t, level, w),
    }
    rows = {}
    for name, figure in figures.items():
        estimate = float(figure(table)[0])
        rows[name] = (estimate, *_interval(figure(table, resampled), confidence))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "ci_low", "ci_high"])


def agreement_summary(
    data: pd.DataFrame,
    level: str = "nominal",
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: int | None = 0,
    by: str | None = None,
) -> pd.DataFrame:
    """Percent agreement, Fleiss, AC1 and alpha with bootstrap intervals over tasks, from the same resamples.

    Resampling tasks with replacement is done as a multinomial draw over distinct task profiles,
    exact and fast; results are deterministic given `random_state`.
    """
    if by is not None:
        return per_group(
            agreement_summary, data, by, level=level, n_boot=n_boot, confidence=confidence, random_state=random_state
        )
    out = agreement_table_summary(
        _table(data, level), level, n_boot=n_boot, confidence=confidence, random_state=random_state
    )
    return out.rename_axis("figure").reset_index()


def krippendorff_alpha_ci(
    data: pd.DataFrame,
    level: str = "nominal",
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: int | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval over tasks for Krippendorff's alpha."""
    _check_boot(n_boot, confidence)
    table = _table(data, level)
    return _interval(alpha_from_table(table, level, table.resample(n_boot, random_state)), confidence)


def bootstrap_ci(
    data: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], float],
    *,
    n_boot: int = 200,
    confidence: float = 0.95,
    random_state: int | None = 0,
) -> tuple[float, float]:
    """Percentile interval of any statistic of a tidy frame, resampling tasks with replacement.

    A task drawn twice appears as two tasks. Slower than the count-table intervals (the statistic
    runs once per replicate); use it for figures such as span F1 or mean pairwise kappa.
    """
    _check_boot(n_boot, confidence)
    require_frame(data, ("task",))
    codes, _ = factorize_sorted(data["task"])
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    rng = np.random.default_rng(random_state)
    values = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(sizes), len(sizes))
        lengths = sizes[pick]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = order[np.repeat(starts[pick], lengths) + offsets]
        sample = data.iloc[rows].copy()
        sample["task"] = np.repeat(np.arange(len(pick)), lengths)
        values[b] = statistic(sample)
    return _interval(values, confidence)


# --- one-vs-rest figures per label ------------------------------------------------------------


def binary_figures(
    yes: np.ndarray, rated: np.ndarray, labels: pd.Index, weights: np.ndarray | None = None
) -> pd.DataFrame:
    """Per label, answers as chosen / not chosen: prevalence, percent agreement, Fleiss, AC1, alpha.

    `yes` is tasks (or profiles) x labels, `rated` the answers per task, `weights` tasks per row.
    """
    rows = []
    w = np.ones(len(rated)) if weights is None else np.asarray(weights, dtype=float)
    total = w @ rated
    for index, label in enumerate(labels):
        table = binary_table(yes[:, index], rated, w)
        rows.append(
            {
                "label": label,
                "prevalence": float(w @ yes[:, index] / total) if total else float("nan"),
                "percent_agreement": float(percent_agreement_table(table)[0]),
                "fleiss_kappa": float(fleiss_kappa_table(table)[0]),
                "gwet_ac1": float(gwet_ac1_table(table, n_categories=2)[0]),
                "krippendorff_alpha": float(alpha_from_table(table, "nominal")[0]),
            }
        )
    return pd.DataFrame(
        rows, columns=["label", "prevalence", "percent_agreement", "fleiss_kappa", "gwet_ac1", "krippendorff_alpha"]
    )


def per_label_table(table: CountTable) -> pd.DataFrame:
    """`binary_figures` for every value of a count table, straight from its profiles."""
    return binary_figures(table.counts, table.counts.sum(axis=1), table.values, table.weights)


def per_label_agreement(data: pd.DataFrame, *, by: str | None = None) -> pd.DataFrame:
    """For each label value, agreement on "chose it or not": shows which policies annotators disagree on."""
    if by is not None:
        return per_group(per_label_agreement, data, by)
    return per_label_table(_table(data))
