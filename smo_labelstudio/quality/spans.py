"""Agreement on text spans: pairwise F1 between annotators, with exact or overlap matching.

A label cell holds the spans one annotator marked on a task: a list of (start, end, label) tuples
(or dicts with those keys), end exclusive as in Label Studio's character offsets; an empty list
means "no span", a missing cell means "did not answer". For a pair of annotators on the tasks both
answered, a span of one counts as matched when the other marked a span with the same label that is
identical (exact) or shares at least one character (overlap). Recall is the share of annotator_a's
spans matched, precision the share of annotator_b's, F1 their harmonic mean; with exact matching
F1 = 2|A & B| / (|A| + |B|). Counts are pooled over tasks (micro-averaged).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import InputError

from ._frame import check_choice, factorize_sorted, group_pairs, per_group, require_frame

__all__ = ["span_agreement", "span_f1"]

MATCHES = ("exact", "overlap")


def _span(value: Any, row: Any) -> tuple[int, int, Any]:
    if isinstance(value, dict) and {"start", "end", "label"} <= value.keys():
        start, end, label = value["start"], value["end"], value["label"]
    elif isinstance(value, (list, tuple)) and len(value) == 3:
        start, end, label = value
    else:
        raise InputError(
            f"label: a span must be (start, end, label) or a dict with those keys; row {row} holds {value!r}"
        )
    if not (isinstance(start, (int, np.integer)) and isinstance(end, (int, np.integer)) and 0 <= start < end):
        raise InputError(f"label: span offsets must be integers with 0 <= start < end; row {row} holds {value!r}")
    return int(start), int(end), label


def _spans(data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cells (task, annotator, n spans) and their distinct spans, one row each."""
    require_frame(data)
    present = data["label"].map(lambda v: isinstance(v, (list, tuple, np.ndarray)))
    bad = ~present & data["label"].notna()
    if bad.any():
        raise InputError(
            f"label: span cells must be lists of spans; row {bad.idxmax()} holds {data['label'][bad].iloc[0]!r}"
        )
    frame = data.loc[present.to_numpy()].drop_duplicates(["task", "annotator"], keep="last")
    task, _ = factorize_sorted(frame["task"])
    annotator, annotators = factorize_sorted(frame["annotator"])
    cells = pd.DataFrame({"cell": np.arange(len(frame)), "task": task, "annotator": annotator})
    rows = [(cell, *_span(span, row)) for cell, (row, spans) in enumerate(frame["label"].items()) for span in spans]
    spans = pd.DataFrame(rows, columns=["cell", "start", "end", "label"]).drop_duplicates()
    spans["task"] = task[spans["cell"].to_numpy()] if len(spans) else np.zeros(0, dtype=np.int64)
    cells["n"] = np.bincount(spans["cell"], minlength=len(cells)) if len(cells) else 0
    cells.attrs["annotators"] = annotators
    return cells, spans


def span_agreement(data: pd.DataFrame, *, match: str = "exact", by: str | None = None) -> pd.DataFrame:
    """Per pair of annotators: shared tasks, span counts, precision, recall and F1 (see module doc)."""
    check_choice("match", match, MATCHES)
    if by is not None:
        return per_group(span_agreement, data, by, match=match)
    cells, spans = _spans(data)
    annotators = cells.attrs["annotators"]
    order = np.argsort(cells["task"].to_numpy(), kind="stable")
    i, j = group_pairs(cells["task"].to_numpy()[order])
    i, j = order[i], order[j]
    ann = cells["annotator"].to_numpy()
    swap = ann[i] > ann[j]
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    pairs = pd.DataFrame({"cell_a": i, "cell_b": j})
    both = spans.merge(spans, on=["task", "label"], suffixes=("_x", "_y"))
    both = both[both["cell_x"] != both["cell_y"]]
    if match == "exact":
        hit = (both["start_x"] == both["start_y"]) & (both["end_x"] == both["end_y"])
    else:
        hit = (both["start_x"] < both["end_y"]) & (both["start_y"] < both["end_x"])
    hits = both.loc[hit, ["cell_x", "cell_y", "start_x", "end_x", "label"]].drop_duplicates()
    matched = hits.groupby(["cell_x", "cell_y"]).size()
    n = cells["n"].to_numpy()
    pairs["n_a"], pairs["n_b"] = n[i], n[j]
    pairs["matched_a"] = matched.reindex(pd.MultiIndex.from_arrays([i, j]), fill_value=0).to_numpy()
    pairs["matched_b"] = matched.reindex(pd.MultiIndex.from_arrays([j, i]), fill_value=0).to_numpy()
    pairs["annotator_a"], pairs["annotator_b"] = ann[i], ann[j]
    out = (
        pairs.groupby(["annotator_a", "annotator_b"], sort=True)
        .agg(
            tasks=("cell_a", "size"),
            spans_a=("n_a", "sum"),
            spans_b=("n_b", "sum"),
            matched_a=("matched_a", "sum"),
            matched_b=("matched_b", "sum"),
        )
        .reset_index()
    )
    out["annotator_a"] = annotators[out["annotator_a"].to_numpy()]
    out["annotator_b"] = annotators[out["annotator_b"].to_numpy()]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["recall"] = out["matched_a"] / out["spans_a"]
        out["precision"] = out["matched_b"] / out["spans_b"]
        out["f1"] = _f1(out["matched_a"], out["spans_a"], out["matched_b"], out["spans_b"])
    return out


def _f1(matched_a: Any, spans_a: Any, matched_b: Any, spans_b: Any) -> Any:
    """Harmonic mean of recall and precision; 0 when only one side marked spans, NaN when neither did."""
    ma, sa, mb, sb = (np.asarray(v, dtype=float) for v in (matched_a, spans_a, matched_b, spans_b))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall, precision = ma / sa, mb / sb
        f1 = np.where(recall + precision > 0, 2 * recall * precision / (recall + precision), 0.0)
    return np.where((sa == 0) & (sb == 0), np.nan, np.where((sa == 0) | (sb == 0), 0.0, f1))


def span_f1(data: pd.DataFrame, *, match: str = "exact", by: str | None = None) -> float | pd.Series:
    """F1 pooled over every annotator pair and shared task; NaN when nobody marked a span."""
    check_choice("match", match, MATCHES)
    if by is not None:
        return per_group(span_f1, data, by, match=match)
    pairs = span_agreement(data, match=match)
    return float(
        _f1(pairs["matched_a"].sum(), pairs["spans_a"].sum(), pairs["matched_b"].sum(), pairs["spans_b"].sum())
    )
