"""Consensus on harmful spans: a reliability-weighted vote per character, per policy.

Method (character level). For a task and a policy, every annotator whose answer counts on the task votes
on every character: "harmful under this policy" when one of their spans with that policy covers it, "not"
otherwise (an annotator who chose no span, or spans of other policies only, votes "not" everywhere). A
character's score is the weighted share of the task's counted annotators who cover it:

    score(c) = sum of w_a over annotators a covering c  /  sum of w_a over the task's counted annotators

A consensus span is a maximal run of consecutive characters with score > `threshold` (0.5: a weighted
majority; with two equal annotators one alone never makes a span, both together do), and its confidence is
the mean score over the run, so it lies in (threshold, 1]: 1 when every counted annotator marked every
character of it. Offsets are Label Studio's: character offsets into the item's text in logical (reading
memory) order, end exclusive, so right-to-left text needs nothing special. The weight w_a is the annotator's
reliability; the quality pass takes it from the policy decision (`reliability`: the Laplace-smoothed share
of the annotator's counted answers whose policy set equals the task's consensus), without weights every
annotator weighs 1. Scores are piecewise constant between span boundaries, so the vote runs over those
boundaries, not over every character: huge offsets cost nothing.

Every span reaching the vote was checked first (`span_answers`); the others are refused with a reason
(offsets missing, not whole numbers, negative, start not before end, past the end of the item's text, more
than `MAX_SPANS` spans in one answer, no policy) and never crash the pass. Properties the tests hold it to:
consensus spans lie within the union of the annotators' spans and confidences lie in [0, 1].

>>> import pandas as pd
>>> answers = pd.DataFrame({"task": ["t1"] * 3, "annotator": ["a", "b", "c"],
...     "label": [[(0, 5, "hate")], [(0, 3, "hate")], []]})
>>> SpanVote().fit_predict(answers)[["task", "policy", "start", "end", "confidence"]].to_dict("records")
[{'task': 't1', 'policy': 'hate', 'start': 0, 'end': 3, 'confidence': 0.6666666666666666}]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import ConfigError

from ._frame import require_frame
from .spans import span_f1

__all__ = [
    "MAX_SPANS",
    "SPAN_CONTROL",
    "SPAN_METHOD",
    "SpanVote",
    "consensus_spans",
    "reliability",
    "span_answers",
    "span_summary",
    "task_spans",
    "with_text",
]

SPAN_CONTROL = "spans"  # the label configs' harmful-span control (labelstudio/label_config.py)
MAX_SPANS = 200  # spans one annotator may mark on one task; more is a flood, refused as a whole
MAX_OFFSET = 2**31  # no text is longer; without the item's text this bounds the offsets
SPAN_COLUMNS = ["task", "policy", "start", "end", "text", "confidence", "n_annotators", "n_marked"]
REFUSED_COLUMNS = ["task", "annotator", "policy", "start", "end", "reason"]
SPAN_METHOD = (
    "character-level vote per policy: a character is in a consensus span when a weighted majority (> 0.5) of "
    "the task's counted annotators marked it with that policy, each annotator weighted by the smoothed share of "
    "their answers agreeing with the policy consensus; confidence = the mean weighted share over the span"
)


def _whole(value: Any) -> int | None:
    """An offset as an int when it is a finite whole number, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number != int(number):
        return None
    return int(number)


def _reason(start: Any, end: Any, policy: Any, length: int | None) -> tuple[int, int, str | None]:
    s, e = _whole(start), _whole(end)
    if s is None or e is None:
        return 0, 0, "span offsets missing or not whole numbers"
    if s < 0 or e < 0:
        return s, e, "negative span offset"
    if s >= e:
        return s, e, "span start not before its end"
    if e > (MAX_OFFSET if length is None else length):
        return s, e, f"span end {e} past the end of the item's text ({length} characters)"
    if policy is None or (isinstance(policy, float) and math.isnan(policy)) or str(policy) == "":
        return s, e, "span without a policy"
    return s, e, None


def span_answers(
    labels: pd.DataFrame,
    texts: Mapping[Any, str] | None = None,
    *,
    control: str = SPAN_CONTROL,
    max_spans: int = MAX_SPANS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From label rows that count (one latest annotation per task and annotator, keyed by `external_id`): the
    tidy span frame `task, annotator, label` (a list of (start, end, policy), empty when the annotator marked
    none) for every counted answer, and the refused spans with a reason each (module doc).

    `texts` maps a task to its item's text; offsets past its end are refused (tasks missing from it are
    checked against MAX_OFFSET only). An answer with more than `max_spans` spans is left out of that task's
    span vote altogether (we cannot tell what its author meant), each of its spans refused."""
    columns = ["external_id", "annotator", "control", "label", "start", "end"]
    missing = [c for c in columns if c not in labels.columns]
    if missing:
        raise ConfigError(f"labels table: missing column(s) {', '.join(missing)} for spans")
    rows = labels[labels["external_id"].notna() & labels["annotator"].notna()]
    answers = rows[["external_id", "annotator"]].drop_duplicates().sort_values(["external_id", "annotator"])
    marked = rows[rows["control"] == control]
    cells: dict[tuple[Any, Any], set[tuple[int, int, str]]] = {}
    refused: list[dict[str, Any]] = []
    flooded: set[tuple[Any, Any]] = set()
    sizes = marked.groupby(["external_id", "annotator"], sort=False).size()
    for key in sizes[sizes > max_spans].index:
        flooded.add(key)
    texts = texts or {}
    for task, annotator, policy, start, end in zip(
        marked["external_id"], marked["annotator"], marked["label"], marked["start"], marked["end"]
    ):
        text = texts.get(task)
        s, e, reason = _reason(start, end, policy, len(text) if isinstance(text, str) else None)
        if (task, annotator) in flooded:
            reason = f"more than {max_spans} spans in one answer"
        if reason is None:
            cells.setdefault((task, annotator), set()).add((s, e, str(policy)))
        else:
            refused.append(
                {
                    "task": task,
                    "annotator": annotator,
                    "policy": None if policy is None else str(policy),
                    "start": _whole(start),
                    "end": _whole(end),
                    "reason": reason,
                }
            )
    keep = [(t, a) for t, a in zip(answers["external_id"], answers["annotator"]) if (t, a) not in flooded]
    frame = pd.DataFrame(
        {
            "task": [t for t, _ in keep],
            "annotator": [a for _, a in keep],
            "label": [sorted(cells.get(k, ())) for k in keep],
        },
        columns=["task", "annotator", "label"],
    )
    return frame.reset_index(drop=True), pd.DataFrame(refused, columns=REFUSED_COLUMNS)


def reliability(keys: pd.DataFrame, consensus: pd.DataFrame) -> dict[Any, float]:
    """Per annotator: (answers equal to the task's consensus policy set + 1) / (answers + 2), from the policy
    decision (`keys`: task, annotator, label as set keys; `consensus`: task, label for the policy control)."""
    if keys.empty or consensus.empty:
        return {}
    decided = consensus.drop_duplicates("task", keep="last").set_index("task")["label"]
    agree = keys["label"].to_numpy() == decided.reindex(keys["task"]).to_numpy()
    frame = pd.DataFrame({"annotator": keys["annotator"].to_numpy(), "agree": agree})
    counts = frame.groupby("annotator", sort=True)["agree"].agg(["sum", "size"])
    return {a: float((r["sum"] + 1) / (r["size"] + 2)) for a, r in counts.iterrows()}


class SpanVote:
    """The character-level weighted vote of the module doc, with scikit-learn's verbs.

    `fit(data, weights)` takes the tidy span frame (`span_answers`: task, annotator, label = list of
    (start, end, policy)) and optional weights per annotator (missing ones weigh 1; negative or
    non-finite ones are a ConfigError); `spans_` holds one row per consensus span (SPAN_COLUMNS without
    text: task, policy, start, end, confidence, n_annotators counted, n_marked: annotators whose spans
    touch the run)."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def fit(self, data: pd.DataFrame, weights: Mapping[Any, float] | None = None) -> SpanVote:
        """Vote every task and policy; what was found lands in `spans_`."""
        if not 0 <= self.threshold < 1:
            raise ConfigError(f"threshold must be in [0, 1); got {self.threshold!r}")
        require_frame(data)
        weights = dict(weights or {})
        for annotator, w in weights.items():
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise ConfigError(f"weights: annotator {annotator!r} has weight {w!r}; expected a number >= 0")
        rows: list[dict[str, Any]] = []
        data = data.drop_duplicates(["task", "annotator"], keep="last").reset_index(drop=True)
        weight = data["annotator"].map(lambda a: float(weights.get(a, 1.0))).astype(float)
        totals = weight.groupby(data["task"]).sum()  # every counted annotator of a task, marked or not
        counts = data.groupby("task").size()
        marked = data["label"].map(lambda v: isinstance(v, (list, tuple, np.ndarray)) and len(v) > 0)
        for task, part in data[marked.to_numpy()].groupby("task", sort=True):  # only tasks with spans can have one
            total = float(totals[task])
            if total <= 0:
                continue
            by_policy: dict[str, list[tuple[int, int, float, int]]] = {}
            for i, (spans, w) in enumerate(zip(part["label"], weight[part.index])):
                for start, end, policy in spans:
                    by_policy.setdefault(str(policy), []).append((int(start), int(end), w, i))
            for policy in sorted(by_policy):
                rows += [
                    {"task": task, "policy": policy, **run, "n_annotators": int(counts[task])}
                    for run in _runs(by_policy[policy], total, self.threshold)
                ]
        columns = [c for c in SPAN_COLUMNS if c != "text"]
        self.spans_ = pd.DataFrame(rows, columns=columns).astype(
            {"start": "int64", "end": "int64", "confidence": "float64", "n_annotators": "int64", "n_marked": "int64"}
        )
        return self

    def fit_predict(self, data: pd.DataFrame, weights: Mapping[Any, float] | None = None) -> pd.DataFrame:
        """Fit, then return `spans_`."""
        return self.fit(data, weights).spans_


def _runs(spans: list[tuple[int, int, float, int]], total: float, threshold: float) -> list[dict[str, Any]]:
    """Maximal runs above the threshold for one task and policy; an annotator's overlapping spans count once."""
    points = sorted({p for s, e, _, _ in spans for p in (s, e)})
    if len(points) < 2:
        return []
    left = np.array(points[:-1], dtype=np.int64)
    right = np.array(points[1:], dtype=np.int64)
    cover = np.zeros((len(left), 1 + max(i for *_, i in spans)), dtype=bool)
    weight = np.zeros(cover.shape[1])
    for s, e, w, i in spans:
        cover[(left >= s) & (right <= e), i] = True
        weight[i] = w
    score = (cover * weight).sum(axis=1) / total
    above = score > threshold
    out = []
    k = 0
    while k < len(left):
        if not above[k]:
            k += 1
            continue
        j = k
        while j + 1 < len(left) and above[j + 1] and right[j] == left[j + 1]:
            j += 1
        lengths = (right[k : j + 1] - left[k : j + 1]).astype(float)
        confidence = float(np.dot(score[k : j + 1], lengths) / lengths.sum())
        out.append(
            {
                "start": int(left[k]),
                "end": int(right[j]),
                "confidence": min(confidence, 1.0),
                "n_marked": int(cover[k : j + 1].any(axis=0).sum()),
            }
        )
        k = j + 1
    return out


def with_text(spans: pd.DataFrame, texts: Mapping[Any, str] | None) -> pd.DataFrame:
    """`spans` with the `text` each covers in its item (None when the item's text is unknown)."""
    texts = texts or {}
    out = spans.copy()
    out["text"] = [
        texts[t][s:e] if isinstance(texts.get(t), str) else None
        for t, s, e in zip(out["task"], out["start"], out["end"])
    ]
    return out[SPAN_COLUMNS]


def task_spans(spans: pd.DataFrame) -> dict[Any, list[dict[str, Any]]]:
    """Per task, its consensus spans as the export writes them: [{policy, start, end, text, confidence}]
    sorted by start, end and policy."""
    out: dict[Any, list[dict[str, Any]]] = {}
    if spans is None or spans.empty:
        return out
    for r in spans.sort_values(["task", "start", "end", "policy"], kind="stable").itertuples(index=False):
        out.setdefault(r.task, []).append(
            {
                "policy": str(r.policy),
                "start": int(r.start),
                "end": int(r.end),
                "text": None if r.text is None else str(r.text),
                "confidence": float(r.confidence),
            }
        )
    return out


def _only(answers: pd.DataFrame, policy: str) -> pd.DataFrame:
    return answers.assign(label=[[s for s in spans if s[2] == policy] for spans in answers["label"]])


def span_summary(answers: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """Per policy marked by anyone (and `all`): tasks where someone marked it, annotators' spans, pairwise F1
    with exact and with overlap matching (quality/spans.py, pooled over pairs and tasks), consensus spans and
    their mean confidence."""
    columns = ["policy", "tasks", "spans", "f1_exact", "f1_overlap", "consensus_spans", "mean_confidence"]
    policies = sorted({s[2] for cell in answers["label"] for s in cell})
    rows = []
    for policy in [*policies, "all"] if policies else []:
        part = answers if policy == "all" else _only(answers, policy)
        mine = spans if policy == "all" else spans[spans["policy"] == policy]
        n = part["label"].map(len)
        rows.append(
            {
                "policy": policy,
                "tasks": int(part.loc[n > 0, "task"].nunique()),
                "spans": int(n.sum()),
                "f1_exact": span_f1(part, match="exact"),
                "f1_overlap": span_f1(part, match="overlap"),
                "consensus_spans": len(mine),
                "mean_confidence": float(mine["confidence"].mean()) if len(mine) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def consensus_spans(
    labels: pd.DataFrame,
    texts: Mapping[Any, str] | None,
    keys: pd.DataFrame | None = None,
    policy_consensus: pd.DataFrame | None = None,
    *,
    threshold: float = 0.5,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The quality pass's span figures from label rows that count: consensus spans (SPAN_COLUMNS, weighted by
    `reliability` when the policy decision's keys and consensus are given), the per-policy summary, and the
    refused spans."""
    answers, refused = span_answers(labels, texts)
    weights = reliability(keys, policy_consensus) if keys is not None and policy_consensus is not None else None
    spans = with_text(SpanVote(threshold).fit_predict(answers, weights), texts)
    return spans, span_summary(answers, spans), refused
