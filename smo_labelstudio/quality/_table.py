"""Tasks as count vectors over label values, identical vectors merged into weighted profiles.

Percent agreement, Fleiss' kappa, Gwet's AC1 and Krippendorff's alpha are all functions of how
many answers each task got for each value. Tasks with the same count vector contribute the same
amount, so we keep each distinct vector once (a profile) with the number of tasks that have it.
Resampling tasks with replacement is then a multinomial draw of profile weights, which makes a
bootstrap over items cost microseconds per replicate instead of a pass over the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._frame import Ratings


@dataclass(frozen=True)
class CountTable:
    """Distinct per-task count vectors (`counts`, profiles x values) and how many tasks have each."""

    counts: np.ndarray
    weights: np.ndarray
    values: pd.Index

    @property
    def n_tasks(self) -> int:
        return int(self.weights.sum())

    def resample(self, n_boot: int, random_state: int | None) -> np.ndarray:
        """Profile weights of `n_boot` resamples of the tasks with replacement (n_boot x profiles)."""
        rng = np.random.default_rng(random_state)
        n = self.n_tasks
        return rng.multinomial(n, self.weights / n, size=n_boot).astype(float)


def table_from_counts(counts: np.ndarray, values: pd.Index, weights: np.ndarray | None = None) -> CountTable:
    """Merge identical rows of a tasks x values count matrix (each row `weights` tasks, default 1)."""
    counts = np.asarray(counts)
    rated = counts.sum(axis=1) > 0
    counts = counts[rated]
    if len(counts) == 0:
        return CountTable(np.zeros((0, len(values)), dtype=np.int64), np.zeros(0), values)
    base = int(counts.max()) + 1
    k = counts.shape[1]
    if k * np.log2(max(base, 2)) < 62:  # each row as one integer: a 1-D unique is much faster
        radix = base ** np.arange(k, dtype=np.int64)
        keys, inverse = np.unique(counts.astype(np.int64) @ radix, return_inverse=True)
        profiles = (keys[:, None] // radix[None, :]) % base
    else:
        profiles, inverse = np.unique(counts, axis=0, return_inverse=True)
    per_row = np.ones(len(counts)) if weights is None else np.asarray(weights, dtype=float)[rated]
    summed = np.bincount(inverse.ravel(), weights=per_row, minlength=len(profiles))
    return CountTable(profiles.astype(np.int64), summed, values)


def count_table(ratings: Ratings) -> CountTable:
    """The count table of (deduplicated) ratings: one row per distinct count vector."""
    return table_from_counts(ratings.task_counts(), ratings.labels)


def binary_table(yes: np.ndarray, rated: np.ndarray, weights: np.ndarray | None = None) -> CountTable:
    """A two-value table (label chosen, not chosen) from per-task counts, for one-vs-rest figures."""
    return table_from_counts(np.column_stack([yes, rated - yes]), pd.Index([True, False]), weights)
