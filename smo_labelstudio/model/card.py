"""Model cards: what a model version was trained on, how it scores by policy and language on the store's fixed
validation set, how well its probabilities are calibrated, and what changed from the version before. Kept with
the model (ModelStore.save_card) and shown in the operations report. Pure numpy/pandas: the backend's
environment imports this too."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

N_BINS = 10


def _prf(tp: int, fp: int, fn: int) -> tuple[float | None, float | None, float | None]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return precision, recall, f1


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def set_metrics(labels: list[str], truth: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """Per-policy precision/recall/F1 (policies with support or predictions), macro and micro F1, exact-set share."""
    rows, tp_all, fp_all, fn_all, f1s = [], 0, 0, 0, []
    for lab in labels:
        t = np.array([lab in s for s in truth])
        p = np.array([lab in s for s in predicted])
        tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        precision, recall, f1 = _prf(tp, fp, fn)
        if tp + fp + fn:
            f1s.append(f1 or 0.0)
            rows.append(
                {
                    "policy": lab,
                    "support": int(t.sum()),
                    "predicted": int(p.sum()),
                    "precision": _r(precision),
                    "recall": _r(recall),
                    "f1": _r(f1),
                }
            )
    exact = float(np.mean([set(a) == set(b) for a, b in zip(truth, predicted)])) if truth else None
    return {
        "n": len(truth),
        "macro_f1": _r(float(np.mean(f1s)) if f1s else None),
        "micro_f1": _r(_prf(tp_all, fp_all, fn_all)[2]),
        "exact": _r(exact),
        "by_policy": rows,
    }


def calibration(proba: np.ndarray, truth: np.ndarray, bins: int = N_BINS) -> dict[str, Any]:
    """Expected calibration error of every (text, policy) probability against whether the policy is true, and the
    reliability table (equal-width bins: mean predicted probability against the observed share)."""
    p, y = np.asarray(proba, float).ravel(), np.asarray(truth, float).ravel()
    if not len(p):
        return {"ece": None, "bins": []}
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        if not n:
            continue
        conf, acc = float(p[inside].mean()), float(y[inside].mean())
        ece += n / len(p) * abs(conf - acc)
        table.append(
            {"low": _r(edges[b]), "high": _r(edges[b + 1]), "n": n, "mean_predicted": _r(conf), "observed": _r(acc)}
        )
    return {"ece": _r(ece), "bins": table, "pairs": len(p)}


def model_card(
    *,
    version: str,
    kind: str,
    source: str,
    labels: list[str],
    validation: pd.DataFrame,
    proba: np.ndarray,
    predicted: list[list[str]],
    training: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
    validation_sha256: str | None = None,
    notes: str | None = None,
) -> dict[str, Any]:
    """The card of one model version from its scores on the fixed validation set (`text`, `labels`, `language`)."""
    truth = [list(x) for x in validation["labels"]]
    languages = validation["language"].fillna("unknown").astype(str) if "language" in validation else None
    by_language = []
    if languages is not None:
        for lang in sorted(set(languages)):
            idx = [i for i, v in enumerate(languages) if v == lang]
            m = set_metrics(labels, [truth[i] for i in idx], [predicted[i] for i in idx])
            by_language.append({"language": lang, **{k: m[k] for k in ("n", "exact", "macro_f1", "micro_f1")}})
    overall = set_metrics(labels, truth, predicted)
    y = np.array([[lab in s for lab in labels] for s in truth], dtype=float)
    card = {
        "version": version,
        "kind": kind,
        "source": source,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": labels,
        "training": training or {"n": None, "sources": {}, "note": "not reported by the model team"},
        "validation": {"n": len(validation), "sha256": validation_sha256},
        "metrics": {k: overall[k] for k in ("macro_f1", "micro_f1", "exact")},
        "by_policy": overall["by_policy"],
        "by_language": by_language,
        "calibration": calibration(proba, y),
        "notes": notes,
    }
    card["changes"] = card_changes(card, previous)
    return card


def training_summary(rows: pd.DataFrame, source: str) -> dict[str, Any]:
    """Size and sources of a training set (its `origin` column: base data or a Label Studio project) and languages."""
    origins = Counter(rows["origin"].fillna("base")) if "origin" in rows else Counter({"base": len(rows)})
    langs = Counter(rows["language"].fillna("unknown").astype(str)) if "language" in rows else Counter()
    return {
        "n": len(rows),
        "source": source,
        "sources": {str(k): int(v) for k, v in sorted(origins.items())},
        "languages": {str(k): int(v) for k, v in sorted(langs.items())},
    }


def card_changes(card: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """What changed from the previous card: kind, training size and sources, macro F1, ECE and each policy's F1
    (differences only when both were measured on the same validation set)."""
    if not previous:
        return {"previous_version": None, "summary": "first version with a card"}
    same_rows = previous.get("validation", {}).get("sha256") == card.get("validation", {}).get("sha256")
    t_now, t_then = card.get("training") or {}, previous.get("training") or {}
    n_now, n_then = t_now.get("n"), t_then.get("n")
    now_sources, then_sources = set(t_now.get("sources") or {}), set(t_then.get("sources") or {})

    def diff(a: Any, b: Any) -> float | None:
        return _r(a - b) if isinstance(a, int | float) and isinstance(b, int | float) and same_rows else None

    f1_then = {r["policy"]: r["f1"] for r in previous.get("by_policy", [])}
    policy_f1 = {
        r["policy"]: diff(r["f1"], f1_then.get(r["policy"]))
        for r in card.get("by_policy", [])
        if diff(r["f1"], f1_then.get(r["policy"])) not in (None, 0.0)
    }
    changes = {
        "previous_version": previous.get("version"),
        "same_validation_rows": same_rows,
        "kind": None if previous.get("kind") == card.get("kind") else f"{previous.get('kind')} -> {card.get('kind')}",
        "n_train": n_now - n_then if isinstance(n_now, int) and isinstance(n_then, int) else None,
        "sources_added": sorted(now_sources - then_sources),
        "sources_removed": sorted(then_sources - now_sources),
        "macro_f1": diff(card["metrics"].get("macro_f1"), previous.get("metrics", {}).get("macro_f1")),
        "ece": diff(card["calibration"].get("ece"), previous.get("calibration", {}).get("ece")),
        "policy_f1": policy_f1,
    }
    parts = []
    if changes["kind"]:
        parts.append(f"model kind {changes['kind']}")
    if changes["n_train"]:
        parts.append(f"{changes['n_train']:+d} training rows")
    if changes["sources_added"]:
        parts.append("new sources " + ", ".join(changes["sources_added"]))
    if changes["macro_f1"] is not None:
        parts.append(f"macro F1 {changes['macro_f1']:+.3f}")
    if changes["ece"] is not None:
        parts.append(f"ECE {changes['ece']:+.3f}")
    if not same_rows:
        parts.append("validation set changed: scores not comparable")
    changes["summary"] = "; ".join(parts) or "no measured change"
    return changes
