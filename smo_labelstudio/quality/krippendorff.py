"""Krippendorff's alpha from the coincidence matrix, for any metric, vectorised over bootstrap weights.

alpha = 1 - D_o / D_e = 1 - (n - 1) * sum(o_ck * delta_ck) / sum(n_c * n_k * delta_ck), where o is the
coincidence matrix (each task with m >= 2 values adds (n_u n_u' - diag n_u) / (m - 1)), n_c its
margins and n the number of pairable values (Krippendorff 2011, "Computing Krippendorff's
Alpha-Reliability"). Tasks with fewer than two values are not pairable and drop out, which is how
missing data is allowed. The sums are taken per profile of the count table (see `_table`), so a
weight matrix of shape (replicates x profiles) yields every bootstrap replicate in one product.
For interval and ordinal data the metric is a squared difference of one coordinate (the value, or
for ordinal data its mid-rank among the pairable values: delta_ck = (a_k - a_c)^2 with
a_c = sum_{g<c} n_g + n_c / 2), so no values x values matrix is needed there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import ConfigError, InputError

from ._frame import encode, per_group
from ._table import CountTable, count_table

ALPHA_LEVELS = ("nominal", "ordinal", "interval", "ratio")
MAX_DELTA_VALUES = 5_000
_CHUNK_CELLS = 20_000_000


def nominal_delta(k: int) -> np.ndarray:
    """0 on the diagonal, 1 elsewhere."""
    return 1.0 - np.eye(k)


def ratio_delta(values: np.ndarray) -> np.ndarray:
    """((c - k) / (c + k))^2, 0 where both values are 0."""
    v = np.asarray(values, dtype=float)
    total = v[:, None] + v[None, :]
    diff = v[:, None] - v[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(total == 0, 0.0, (diff / np.where(total == 0, 1.0, total)) ** 2)
    return delta


def _pairable(table: CountTable, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = table.counts.astype(float)
    m = counts.sum(axis=1)
    keep = m >= 2
    w = table.weights[None, :] if weights is None else np.atleast_2d(weights)
    return counts[keep], m[keep], w[:, keep]


def _finish(observed: np.ndarray, expected: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (n - 1.0) * observed / expected
    return np.where((expected > 0) & (n >= 2), alpha, np.nan)


def _alpha_delta(counts: np.ndarray, m: np.ndarray, w: np.ndarray, delta: np.ndarray) -> np.ndarray:
    per_task = np.einsum("pk,pk->p", counts @ delta, counts) / (m - 1.0)
    nc = w @ counts
    expected = np.einsum("bk,bk->b", nc @ delta, nc)
    return _finish(w @ per_task, expected, nc.sum(axis=1))


def _alpha_coordinate(
    counts: np.ndarray, m: np.ndarray, w: np.ndarray, coord: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Alpha for delta_ck = (x_c - x_k)^2 where x = coord(margins) may differ per replicate."""
    out = np.empty(len(w))
    step = max(1, _CHUNK_CELLS // max(1, counts.shape[0] + counts.shape[1]))
    for lo in range(0, len(w), step):
        wb = w[lo : lo + step]
        nc = wb @ counts  # replicate margins
        n = nc.sum(axis=1)
        x = coord(nc)
        with np.errstate(invalid="ignore", divide="ignore"):
            x = x - ((nc * x).sum(axis=1) / n)[:, None]  # centre: fewer digits lost below
        s1 = x @ counts.T  # per task: sum of x over its values
        s2 = (x * x) @ counts.T
        spread = 2.0 * (m * s2 - s1 * s1) / (m - 1.0)  # sum over ordered pairs of (x_c - x_k)^2 / (m - 1)
        observed = (wb * spread).sum(axis=1)
        expected = 2.0 * (n * (nc * x * x).sum(axis=1) - (nc * x).sum(axis=1) ** 2)
        out[lo : lo + step] = _finish(observed, expected, n)
    return out


def _midranks(nc: np.ndarray) -> np.ndarray:
    return np.cumsum(nc, axis=1) - nc / 2.0


def alpha_from_table(
    table: CountTable, metric: str | np.ndarray = "nominal", weights: np.ndarray | None = None
) -> np.ndarray:
    """Alpha for each row of `weights` (default: the table's own weights, one value) and a metric.

    `metric` is a level name or a values x values distance matrix (e.g. MASI for sets).
    """
    counts, m, w = _pairable(table, weights)
    if counts.shape[0] == 0:
        return np.full(len(w), np.nan)
    if isinstance(metric, np.ndarray):
        return _alpha_delta(counts, m, w, metric)
    k = len(table.values)
    if metric == "nominal":
        # sum_ck n_c n_k (1 - [c = k]) = m^2 - sum_c n_c^2: no k x k matrix needed
        per_task = (m * m - (counts * counts).sum(axis=1)) / (m - 1.0)
        nc = w @ counts
        n = nc.sum(axis=1)
        return _finish(w @ per_task, n * n - (nc * nc).sum(axis=1), n)
    if metric == "interval":
        values = np.asarray(table.values, dtype=float)
        return _alpha_coordinate(counts, m, w, lambda nc: np.broadcast_to(values, nc.shape))
    if metric == "ordinal":
        return _alpha_coordinate(counts, m, w, _midranks)
    if metric == "ratio":
        if k > MAX_DELTA_VALUES:
            raise InputError(
                f"label: {k:,} distinct values is too many for the ratio metric "
                f"(limit {MAX_DELTA_VALUES:,}); bin or round the labels"
            )
        return _alpha_delta(counts, m, w, ratio_delta(np.asarray(table.values, dtype=float)))
    raise ConfigError(f"level must be one of {', '.join(ALPHA_LEVELS)} or a distance matrix; got {metric!r}")


def krippendorff_alpha(data: pd.DataFrame, level: str = "nominal", *, by: str | None = None) -> float | pd.Series:
    """Krippendorff's alpha of a tidy frame at a measurement level; missing labels allowed.

    Each annotator's last answer per task counts (a coder has one value per unit). With `by`, one
    alpha per value of that column.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": [1, 1, 2, 2, 3, 3], "annotator": list("ababab"), "label": [1, 1, 2, 2, 4, 3]})
    >>> round(krippendorff_alpha(df, "nominal"), 3), round(krippendorff_alpha(df, "interval"), 3)
    (0.615, 0.878)
    """
    if by is not None:
        return per_group(krippendorff_alpha, data, by, level=level)
    ratings = encode(data, level).deduplicated()
    return float(alpha_from_table(count_table(ratings), level)[0])
