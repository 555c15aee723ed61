"""Validate tidy `task, annotator, label` frames and encode them as integer codes, once per pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import ConfigError, InputError

LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")
ANSWER_COLUMNS = ("task", "annotator", "label")
MAX_TABLE_CELLS = 100_000_000  # tasks x label values in a dense count table (800 MB of int64)


def require_frame(data: Any, columns: tuple[str, ...] = ANSWER_COLUMNS, what: str = "annotations") -> pd.DataFrame:
    """Check `data` is a DataFrame holding `columns`; raise a ValueError naming what is missing."""
    if not isinstance(data, pd.DataFrame):
        raise ValueError(
            f"{what}: expected a pandas DataFrame with columns {', '.join(columns)}, got {type(data).__name__}"
        )
    missing = [c for c in columns if c not in data.columns]
    if missing:
        crowdkit = "annotator" in missing and "worker" in data.columns
        hint = " (crowd-kit's 'worker' is called 'annotator' here)" if crowdkit else ""
        raise InputError(
            f"{what}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}, "
            f"got {', '.join(map(str, data.columns)) or 'no columns'}{hint}"
        )
    return data


def check_level(level: str) -> str:
    """Return `level` if it is a measurement level we know, else raise a ValueError listing them."""
    if level not in LEVELS:
        raise ConfigError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    return level


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Return `value` if it is one of `choices`, else raise a ValueError naming the setting."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def show(value: Any) -> str:
    """A value as a user would type it: repr of the plain Python value (no np.int64(...))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _examples(values: pd.Series, n: int = 3) -> str:
    return ", ".join(show(v) for v in pd.unique(values)[:n])


def numeric_labels(labels: pd.Series, level: str) -> pd.Series:
    """Labels as floats for ordinal, interval and ratio levels; a ValueError names non-numeric ones."""
    if pd.api.types.is_bool_dtype(labels):
        return labels.astype(float)
    numbers = pd.to_numeric(labels, errors="coerce")
    bad = numbers.isna() & labels.notna()
    if bad.any():
        raise InputError(
            f"label: level {level!r} needs numeric labels; got {int(bad.sum())} non-numeric "
            f"value(s) such as {_examples(labels[bad])} (use level 'nominal' for categories)"
        )
    numbers = numbers.astype(float)
    if np.isinf(numbers).any():
        raise InputError(f"label: level {level!r} needs finite numbers; got {_examples(labels[np.isinf(numbers)])}")
    if level == "ratio" and (numbers < 0).any():
        raise InputError(f"label: level 'ratio' needs values >= 0; got {_examples(labels[numbers < 0])}")
    return numbers


def factorize_sorted(values: pd.Series | np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and the sorted distinct values (mixed types sort by their text)."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(values)
        order = np.argsort([str(u) for u in uniques], kind="stable")
        remap = np.empty(len(order), dtype=np.int64)
        remap[order] = np.arange(len(order))
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
        uniques = uniques[order]
    return codes.astype(np.int64), pd.Index(uniques)


def _reject_collections(labels: pd.Series) -> None:
    if labels.dtype == object and len(labels):
        kind = pd.api.types.infer_dtype(labels, skipna=True)
        if kind == "mixed" and labels.map(lambda v: isinstance(v, (list, tuple, set, frozenset, dict))).any():
            raise InputError(
                "label: cells hold lists or sets (multi-label or spans); use "
                "quality.multilabel or quality.spans for those"
            )


@dataclass(frozen=True)
class Ratings:
    """Answers as integer codes (non-missing labels only), with the values each code stands for."""

    task: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    tasks: pd.Index
    annotators: pd.Index
    labels: pd.Index
    n_missing: int = 0

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.task)

    def task_counts(self) -> np.ndarray:
        """The tasks x labels matrix of how many answers gave each label (dense; checked for size)."""
        cells = self.n_tasks * self.n_labels
        if cells > MAX_TABLE_CELLS:
            raise InputError(
                f"label: {self.n_labels:,} distinct values over {self.n_tasks:,} tasks is too many "
                f"for a count table ({cells:,} cells, limit {MAX_TABLE_CELLS:,}); bin or round the labels"
            )
        return np.bincount(self.task * self.n_labels + self.label, minlength=cells).reshape(self.n_tasks, self.n_labels)

    def deduplicated(self) -> Ratings:
        """One answer per (task, annotator), the last one given (a coder has one value per unit); sorted by task."""
        return self._deduplicated

    @cached_property
    def _deduplicated(self) -> Ratings:
        key = self.task * max(len(self.annotators), 1) + self.annotator
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        keep = order[np.r_[ordered[1:] != ordered[:-1], True]]
        if len(keep) == len(key) and np.array_equal(order, np.arange(len(key))):
            return self
        return Ratings(
            self.task[keep],
            self.annotator[keep],
            self.label[keep],
            self.tasks,
            self.annotators,
            self.labels,
            self.n_missing,
        )


def encode(data: pd.DataFrame | Ratings, level: str = "nominal", *, what: str = "annotations") -> Ratings:
    """Validate a tidy frame and encode it; numeric levels sort labels by value, nominal by label."""
    if isinstance(data, Ratings):
        return data
    check_level(level)
    frame = require_frame(data, what=what)
    labels = frame["label"]
    present = labels.notna().to_numpy()
    n_missing = int((~present).sum())
    if n_missing:
        frame = frame.loc[present]
        labels = frame["label"]
    if frame["task"].isna().any() or frame["annotator"].isna().any():
        raise InputError(
            f"{what}: task and annotator must not be empty "
            f"({int(frame['task'].isna().sum())} empty task(s), "
            f"{int(frame['annotator'].isna().sum())} empty annotator(s))"
        )
    _reject_collections(labels)
    if level != "nominal":
        labels = numeric_labels(labels, level)
    task, tasks = factorize_sorted(frame["task"])
    annotator, annotators = factorize_sorted(frame["annotator"])
    label, values = factorize_sorted(labels)
    return Ratings(task, annotator, label, tasks, annotators, values, n_missing)


def per_group(func: Callable[..., Any], data: pd.DataFrame, by: str, **kwargs: Any) -> pd.Series | pd.DataFrame:
    """Apply `func` to each group of rows sharing a value of column `by` (e.g. language, policy)."""
    if by not in data.columns:
        raise ConfigError(f"by: no column {by!r} in the data; columns are {', '.join(map(str, data.columns))}")
    results = {key: func(part, **kwargs) for key, part in data.groupby(by, sort=True, dropna=False)}
    if results and all(isinstance(r, pd.DataFrame) for r in results.values()):
        return pd.concat(results, names=[by]).reset_index(level=0).reset_index(drop=True)
    if results and all(isinstance(r, pd.Series) for r in results.values()):
        return pd.DataFrame(results).T.rename_axis(by)
    return pd.Series(results, name=getattr(func, "__name__", "value"), dtype=float).rename_axis(by)


def group_pairs(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j, of entries sharing a group id; `group` must be sorted ascending.

    Small groups (the usual 2 to 10 answers per task) are paired by comparing the array with itself
    shifted by 1, 2, ... places: a few vector passes, whatever the number of groups.
    """
    n = len(group)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, n])
    if sizes.max() <= 64:
        left: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        right: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        for shift in range(1, int(sizes.max())):
            same = np.flatnonzero(group[:-shift] == group[shift:])
            left.append(same)
            right.append(same + shift)
        return np.concatenate(left).astype(np.int64), np.concatenate(right).astype(np.int64)
    size_of = np.repeat(sizes, sizes)  # large groups: enumerate each group's square, keep i < j
    i = np.repeat(np.arange(n), size_of)
    block_start = np.repeat(np.cumsum(size_of) - size_of, size_of)
    j = np.repeat(np.repeat(starts, sizes), size_of) + (np.arange(len(i)) - block_start)
    keep = i < j
    return i[keep], j[keep]
