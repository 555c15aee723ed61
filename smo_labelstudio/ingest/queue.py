"""The order a batch's tasks go into Label Studio, which is the order Community serves them in (sequential
sampling: task id order; uncertainty sampling is Enterprise-only). Pure: positions in, positions out.

Orders (`queue.order` in the spec):

- `source`: the plan's order, unchanged (the launch shuffles each plan once, seeded, to spread gold);
- `uncertainty`: lowest model margin first. A task's margin is the distance of its least certain policy
  from the decision threshold, `min |2p - 1|` over the policy probabilities the prediction carries
  (`label_scores`, "no violation" left out when other policies are scored); a prediction without them is
  read through its task score (`|2 * score - 1|`);
- `severity`: most severe predicted level first (a prediction of no violation counts as level 0), then
  the most probable violation first, for fast takedown;
- `random`: a seeded shuffle (the launch's seed and the batch number).

In every order but `source` languages are interleaved: each language's tasks keep their order among
themselves and are spread through the batch in proportion to their count, so a language with few tasks
is served throughout the batch instead of after every other language's. Gold tasks keep their places in
the batch (gold stays spread through it, as the plan put it). Tasks without a prediction (the backend gave
none for the batch, or the model cannot read them) go after the tasks with one, in the plan's order,
languages interleaved among themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from smo_labelstudio.core.spec import QUEUE_ORDERS
from smo_labelstudio.core.taxonomy import NO_VIOLATION

__all__ = ["QUEUE_ORDERS", "interleave", "margin", "order_batch", "severity_key"]


def _policy_result(prediction: dict) -> dict:
    for result in prediction.get("result") or []:
        if isinstance(result, dict) and result.get("from_name") == "policy":
            return result
    return {}


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _scores(prediction: dict) -> dict[str, float]:
    raw = _policy_result(prediction).get("label_scores")
    if not isinstance(raw, dict):
        return {}
    scores = {str(k): v for k, v in ((k, _number(v)) for k, v in raw.items()) if v is not None}
    violations = {k: v for k, v in scores.items() if k != NO_VIOLATION}
    return violations or scores


def margin(prediction: dict | None) -> float | None:
    """How sure the model is of its least certain decision, 0 (a coin toss) to 1; None without a prediction."""
    if not isinstance(prediction, dict):
        return None
    scores = _scores(prediction)
    if scores:
        return min(abs(2 * min(max(p, 0.0), 1.0) - 1) for p in scores.values())
    score = _number(prediction.get("score"))
    return None if score is None else abs(2 * min(max(score, 0.0), 1.0) - 1)


def severity_key(prediction: dict | None) -> tuple[int, float] | None:
    """(predicted severity level, probability of the most probable violation); level 0 for a prediction of no
    violation; None without a prediction."""
    if not isinstance(prediction, dict) or not prediction.get("result"):
        return None
    level = 0
    for result in prediction.get("result") or []:
        if isinstance(result, dict) and result.get("from_name") == "severity":
            choices = (result.get("value") or {}).get("choices") or []
            levels = [int(n) for n in (_number(c) for c in choices) if n is not None]
            level = max(levels, default=0)
    scores = _scores(prediction)
    top = max((p for k, p in scores.items() if k != NO_VIOLATION), default=None)
    if top is None:
        top = _number(prediction.get("score")) or 0.0
    return level, top


def interleave(ranked: Sequence[int], languages: Sequence[object]) -> list[int]:
    """`ranked` (positions, best first) with languages spread in proportion to their counts: the j-th of a
    language's n tasks goes to about (j + 1/2) / n of the way through; ties keep the ranking's order."""
    counts: dict[object, int] = {}
    for i in ranked:
        counts[languages[i]] = counts.get(languages[i], 0) + 1
    seen: dict[object, int] = {}
    keyed = []
    for rank, i in enumerate(ranked):
        j = seen.get(languages[i], 0)
        seen[languages[i]] = j + 1
        keyed.append(((j + 0.5) / counts[languages[i]], rank, i))
    return [i for _, _, i in sorted(keyed)]


def order_batch(
    order: str,
    predictions: Sequence[dict | None] | None,
    languages: Sequence[object],
    *,
    gold: Sequence[bool] | None = None,
    seed: int = 0,
) -> list[int]:
    """The import order of a batch as positions into its rows (see the module docstring); `predictions` None
    when the batch has none. A permutation of range(len(languages))."""
    n = len(languages)
    if order not in QUEUE_ORDERS:
        raise ValueError(f"queue order {order!r} is not one of {', '.join(QUEUE_ORDERS)}")
    if predictions is not None and len(predictions) != n:
        raise ValueError(f"{len(predictions)} predictions for {n} tasks")
    if order == "source" or n < 2:
        return list(range(n))
    langs = ["" if lang is None or lang != lang else str(lang) for lang in languages]  # None and NaN alike
    is_gold = [bool(g) for g in gold] if gold is not None else [False] * n
    movable = [i for i in range(n) if not is_gold[i]]
    preds = list(predictions) if predictions is not None else [None] * n
    if order == "random":
        shuffled = np.random.default_rng(seed).permutation(len(movable))
        ranked, unpredicted = [movable[k] for k in shuffled], []
    elif order == "uncertainty":
        margins = {i: margin(preds[i]) for i in movable}
        ranked = sorted((i for i in movable if margins[i] is not None), key=lambda i: (margins[i], i))
        unpredicted = [i for i in movable if margins[i] is None]
    else:  # severity
        keys = {i: severity_key(preds[i]) for i in movable}
        ranked = sorted(
            (i for i in movable if keys[i] is not None),
            key=lambda i: (-keys[i][0], -keys[i][1], i),  # type: ignore[index]
        )
        unpredicted = [i for i in movable if keys[i] is None]
    queue = iter(interleave(ranked, langs) + interleave(unpredicted, langs))
    return [i if is_gold[i] else next(queue) for i in range(n)]
