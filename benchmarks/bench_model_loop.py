"""The model in the loop on real multi-annotator data (LeWiDi 2023, issue 20), printed side by side.

1. Learning curve: the pre-annotation model (smo_labelstudio.model.textmodel.PolicyModel) retrained after every
   round of labeling, macro F1 on a fixed held-out set (MD-Agreement's test split, its majority label of five)
   against the labels spent, for uncertainty-first order against random order (ingest/queue.py's `order_batch`,
   the launch's own ordering), same seeds: both arms start from the same random seed set. Buying an item costs
   three annotators' answers (its first three listed annotators; their majority is the training label).
2. The model as a voter (quality/model_voter.py): consensus accuracy on held-out gold with and without the
   model. The crowd is a random subset of each item's annotators; the truth is the majority of its other
   annotators (never seen by consensus); a tenth of the items are gold that anchors consensus, the rest are
   scored. The model is trained on the data set's train split (its published majority labels).

`python benchmarks/bench_model_loop.py [--seeds N] [--rounds R] [--step S]` (3 seeds, 6 rounds of 200 items
after a seed set of 200 by default). Skips when ../shared/datasets/lewidi2023 is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smo_labelstudio.ingest.queue import order_batch  # noqa: E402
from smo_labelstudio.model.textmodel import PolicyModel, predict_tasks  # noqa: E402
from smo_labelstudio.quality.consensus import fit_consensus  # noqa: E402
from smo_labelstudio.quality.model_voter import model_reliability, with_model  # noqa: E402

LEWIDI = REPO.parent / "shared" / "datasets" / "lewidi2023"
POLICY, NONE = "abusive", "no_violation"
LABELS = [POLICY, NONE]
PER_ITEM = 3  # answers bought per item in the learning curve
VOTER_SETS = {  # data set: annotators in the crowd (the rest give the truth)
    "MD-Agreement": 2,
    "HS-Brexit": 3,
}


def load(name: str, split: str) -> pd.DataFrame:
    """One LeWiDi split as text, annotators (list), answers (list of 0/1), hard label (0/1), language."""
    raw = json.loads((LEWIDI / f"{name}_dataset" / f"{name}_{split}.json").read_text(encoding="utf-8"))
    rows = []
    for key, item in raw.items():
        rows.append(
            {
                "id": f"{name}-{split}-{key}",
                "text": item["text"],
                "language": item.get("lang", "en"),
                "annotators": [a.strip() for a in str(item["annotators"]).split(",")],
                "answers": [int(a) for a in str(item["annotations"]).split(",")],
                "hard": int(item["hard_label"]),
            }
        )
    return pd.DataFrame(rows)


def label_set(positive: int) -> list[str]:
    return [POLICY] if positive else [NONE]


def fit(texts: list[str], positives: list[int], seed: int) -> PolicyModel:
    return PolicyModel(LABELS, random_state=seed).fit(texts, [label_set(p) for p in positives], [None] * len(texts))


def majority(answers: list[int]) -> int:
    return int(sum(answers) * 2 > len(answers))  # a tie is "no violation"


def learning_curve(seeds: int, rounds: int, step: int) -> None:
    """Macro F1 on MD-Agreement's test split against labels spent, uncertainty-first and random, side by side."""
    pool, held = load("MD-Agreement", "train"), load("MD-Agreement", "test")
    pool["bought"] = [majority(a[:PER_ITEM]) for a in pool["answers"]]
    held_sets = [label_set(h) for h in held["hard"]]
    print(
        f"\n1. Learning curve: MD-Agreement, pool {len(pool):,} (train split), held-out {len(held):,} (test split, "
        f"majority of 5); {PER_ITEM} answers per item bought, {step} items a round; macro F1 (2 classes)"
    )
    curves: dict[str, dict[int, list[float]]] = {"uncertainty": {}, "random": {}}
    started = time.perf_counter()
    for seed in range(seeds):
        start = list(np.random.default_rng(seed).choice(len(pool), size=step, replace=False))
        for arm in curves:
            chosen = list(start)
            for r in range(rounds + 1):
                labeled = pool.iloc[chosen]
                model = fit(labeled["text"].tolist(), labeled["bought"].tolist(), seed)
                f1 = model.score(held["text"].tolist(), held_sets)["macro_f1"]
                curves[arm].setdefault(len(chosen) * PER_ITEM, []).append(f1)
                if r == rounds:
                    break
                taken = set(chosen)
                rest = [i for i in range(len(pool)) if i not in taken]
                texts = pool["text"].iloc[rest].tolist()
                preds = predict_tasks(model, "bench", texts) if arm == "uncertainty" else None
                order = order_batch(arm, preds, pool["language"].iloc[rest].tolist(), seed=seed * 1000 + r)
                chosen += [rest[i] for i in order[:step]]
    print(f"{'labels spent':>12} {'uncertainty':>12} {'random':>12} {'ratio':>7}   (mean over {seeds} seeds)")
    for spent in sorted(curves["random"]):
        u, rnd = np.mean(curves["uncertainty"][spent]), np.mean(curves["random"][spent])
        print(f"{spent:>12,} {u:>12.3f} {rnd:>12.3f} {u / rnd:>7.3f}")
    last = max(curves["random"])
    target = np.mean(curves["random"][last])
    reached = [s for s in sorted(curves["uncertainty"]) if np.mean(curves["uncertainty"][s]) >= target]
    note = (
        f"uncertainty reaches random's final F1 ({target:.3f}) at {reached[0]:,} labels"
        if reached
        else (f"uncertainty does not reach random's final F1 ({target:.3f}) within {last:,} labels")
    )
    print(f"{note}; {time.perf_counter() - started:.0f} s")


def voter(seeds: int) -> None:
    """Consensus accuracy on held-out gold, annotators only against with the model voter."""
    print(
        "\n2. The model as a voter: accuracy on held-out truth (majority of the annotators not in the crowd), "
        "10 % gold anchoring, the rest scored"
    )
    head = f"{'data set':<13} {'crowd':>5} {'method':<12} {'annotators':>10} {'+ model':>8} {'ratio':>6}"
    print(f"{head} {'model alone':>11} {'reliability':>11} {'tasks':>6}")
    for name, k in VOTER_SETS.items():
        train, test = load(name, "train"), load(name, "test")
        test = test[test["answers"].map(len) >= k + 1].reset_index(drop=True)
        model = fit(train["text"].tolist(), train["hard"].tolist(), 0)
        predicted = predict_tasks(model, "bench", test["text"].tolist())
        model_votes = pd.DataFrame(
            {"task": test["id"], "label": [p["result"][0]["value"]["choices"][0] for p in predicted]}
        )
        for method in ("mv", "smoothed-ds"):
            figures = []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                rows, truth = [], {}
                for item in test.itertuples():
                    picked = set(rng.choice(len(item.answers), size=k, replace=False).tolist())
                    rows += [(item.id, item.annotators[j], label_set(item.answers[j])[0]) for j in sorted(picked)]
                    others = [a for j, a in enumerate(item.answers) if j not in picked]
                    truth[item.id] = label_set(majority(others))[0]
                answers = pd.DataFrame(rows, columns=["task", "annotator", "label"])
                truth_s = pd.Series(truth)
                gold_ids = rng.choice(truth_s.index.to_numpy(), size=len(truth_s) // 10, replace=False)
                gold = pd.DataFrame({"task": gold_ids, "label": truth_s[gold_ids].to_numpy()})
                scored = truth_s.index.difference(gold_ids)
                alone = fit_consensus(method, answers, gold).labels_
                both, voter_id = with_model(answers, model_votes)
                estimator = fit_consensus(method, both, gold)
                figures.append(
                    (
                        float((alone.reindex(scored) == truth_s[scored]).mean()),
                        float((estimator.labels_.reindex(scored) == truth_s[scored]).mean()),
                        float((model_votes.set_index("task")["label"].reindex(scored) == truth_s[scored]).mean()),
                        model_reliability(estimator, voter_id or "") if method != "mv" else np.nan,
                        len(scored),
                    )
                )
            a, w, m, n = (float(np.mean([f[i] for f in figures])) for i in (0, 1, 2, 4))
            rel = "-" if method == "mv" else f"{np.mean([f[3] for f in figures]):.3f}"  # majority vote learns none
            print(f"{name:<13} {k:>5} {method:<12} {a:>10.3f} {w:>8.3f} {w / a:>6.3f} {m:>11.3f} {rel:>11} {n:>6.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--step", type=int, default=200)
    args = parser.parse_args()
    if not LEWIDI.is_dir():
        print(f"skipped: {LEWIDI} is absent")
        return 0
    voter(args.seeds)
    learning_curve(args.seeds, args.rounds, args.step)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
