"""Agreement on multi-label answers (a cell holds a set or list of policy ids, possibly empty).

Two views: per policy as a binary choice (chosen or not, by everyone who answered the task), and
overall with Krippendorff's alpha under the MASI distance (Passonneau 2006), which gives partial
credit to overlapping sets. MASI distance = 1 - J * M, J the Jaccard index, M = 1 for equal sets,
2/3 when one contains the other, 1/3 when they overlap otherwise, 0 when disjoint. Two empty sets
are equal: distance 0 (an annotator who chose nothing agrees with another who chose nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import InputError

from ._frame import factorize_sorted, per_group, require_frame
from ._table import table_from_counts
from .agreement import binary_figures
from .krippendorff import MAX_DELTA_VALUES, alpha_from_table

__all__ = ["masi_alpha", "masi_distance", "multilabel_agreement"]


def masi_distance(a: Iterable[Any], b: Iterable[Any]) -> float:
    """MASI distance between two label sets; 0 for two empty sets."""
    a, b = set(a), set(b)
    if a == b:
        return 0.0
    union = len(a | b)
    inter = len(a & b)
    monotonicity = 2 / 3 if (a <= b or b <= a) else (1 / 3 if inter else 0.0)
    return 1.0 - (inter / union) * monotonicity


def _as_set(value: Any, row: int) -> frozenset:
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return frozenset(value)
    raise InputError(f"label: multi-label cells must be lists or sets of label ids; row {row} holds {value!r}")


def _cells(data: pd.DataFrame) -> pd.DataFrame:
    """One non-missing cell per (task, annotator): the last answer, as frozensets."""
    require_frame(data)
    present = data["label"].map(lambda v: v is not None and not (isinstance(v, float) and np.isnan(v)))
    frame = data.loc[present.to_numpy(), ["task", "annotator", "label"]]
    frame = frame.drop_duplicates(["task", "annotator"], keep="last")
    sets = [_as_set(v, i) for i, v in zip(frame.index, frame["label"], strict=True)]
    return pd.DataFrame(
        {
            "task": frame["task"].to_numpy(),
            "annotator": frame["annotator"].to_numpy(),
            "label": pd.Series(sets, dtype=object).to_numpy(),
        }
    )


def multilabel_agreement(data: pd.DataFrame, *, by: str | None = None) -> pd.DataFrame:
    """Per policy id: prevalence, percent agreement, Fleiss' kappa, Gwet's AC1 and alpha as binary."""
    if by is not None:
        return per_group(multilabel_agreement, data, by)
    cells = _cells(data)
    task, _ = factorize_sorted(cells["task"])
    rated = np.bincount(task, minlength=task.max() + 1 if len(task) else 0)
    exploded = pd.DataFrame({"task": task, "label": cells["label"].map(list)}).explode("label").dropna()
    label_code, labels = factorize_sorted(exploded["label"])
    yes = np.zeros((len(rated), len(labels)), dtype=np.int64)
    np.add.at(yes, (exploded["task"].to_numpy(dtype=np.int64), label_code), 1)
    return binary_figures(yes, rated, labels)


def _masi_matrix(sets: list[frozenset]) -> np.ndarray:
    members = sorted({x for s in sets for x in s}, key=str)
    position = {x: i for i, x in enumerate(members)}
    onehot = np.zeros((len(sets), len(members)))
    for row, s in enumerate(sets):
        onehot[row, [position[x] for x in s]] = 1.0
    inter = onehot @ onehot.T
    size = onehot.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(union > 0, inter / union, 1.0)
    equal = (inter == size[:, None]) & (inter == size[None, :])
    nested = (inter == size[:, None]) | (inter == size[None, :])
    mono = np.where(equal, 1.0, np.where(nested, 2 / 3, np.where(inter > 0, 1 / 3, 0.0)))
    return 1.0 - jaccard * mono


def masi_alpha(data: pd.DataFrame, *, by: str | None = None) -> float | pd.Series:
    """Krippendorff's alpha over label sets with the MASI distance (each distinct set is one value)."""
    if by is not None:
        return per_group(masi_alpha, data, by)
    cells = _cells(data)
    task, _ = factorize_sorted(cells["task"])
    value, sets = pd.factorize(cells["label"])
    if len(sets) > MAX_DELTA_VALUES:
        raise InputError(
            f"label: {len(sets):,} distinct label sets is too many for MASI alpha (limit {MAX_DELTA_VALUES:,})"
        )
    n_tasks = task.max() + 1 if len(task) else 0
    counts = np.bincount(task * len(sets) + value, minlength=n_tasks * len(sets)).reshape(n_tasks, len(sets))
    table = table_from_counts(counts, pd.Index(range(len(sets))))
    return float(alpha_from_table(table, _masi_matrix(list(sets)))[0])
