"""The model as a voter (issue 20): consensus counts the pre-annotator as one more, separately modelled voter,
with known answers: a good model helps a weak crowd, a bad one gets low reliability and does not flip a strong
crowd; it is never an annotator in agreement or the annotators' table; the report compares on held-out gold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from quality_data import gold_table, labels_table, truth

from smo_labelstudio.core.spec import Quality
from smo_labelstudio.core.workspace import Workspace, write_parquet
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.check import compute_check
from smo_labelstudio.quality.consensus import fit_consensus
from smo_labelstudio.quality.model_voter import (
    compare_on_gold,
    load_model_answers,
    model_reliability,
    voter_id,
    with_model,
)

LABELS = ["a", "b", "c"]


def crowd(accuracies, model_accuracy, n=300, n_gold=60, seed=0):
    """Answers (task, annotator, label), the model's (task, label), gold (task, label) and the truth."""
    rng = np.random.default_rng(seed)
    true = rng.choice(LABELS, size=n, p=[0.6, 0.25, 0.15])

    def answer(t, accuracy):
        return t if rng.random() < accuracy else rng.choice([x for x in LABELS if x != t])

    tasks = [f"t{i}" for i in range(n)]
    answers = pd.DataFrame(
        [(task, f"ann{j}", answer(t, acc)) for task, t in zip(tasks, true) for j, acc in enumerate(accuracies)],
        columns=["task", "annotator", "label"],
    )
    model = pd.DataFrame({"task": tasks, "label": [answer(t, model_accuracy) for t in true]})
    gold = pd.DataFrame({"task": tasks[:n_gold], "label": true[:n_gold]})
    return answers, model, gold, pd.Series(true, index=tasks)


def accuracy(labels: pd.Series, truth: pd.Series, n_gold=60) -> float:
    open_tasks = truth.index[n_gold:]
    return float((labels.reindex(open_tasks) == truth[open_tasks]).mean())


@pytest.mark.parametrize("method", ["mv", "smoothed-ds", "ds"])
def test_a_good_model_helps_a_weak_crowd(method):
    gains = []
    for seed in range(3):
        answers, model, gold, true = crowd((0.6, 0.6, 0.6), 0.9, seed=seed)
        both, voter = with_model(answers, model)
        alone = accuracy(fit_consensus(method, answers, gold).labels_, true)
        helped = accuracy(fit_consensus(method, both, gold).labels_, true)
        gains.append(helped - alone)
    assert min(gains) > 0.05, gains  # measured: +0.13 (mv) to +0.20 (Dawid-Skene) on average
    if method != "mv":
        estimator = fit_consensus(method, both, gold)
        assert model_reliability(estimator, voter) > 0.8  # learned like an annotator's, close to its 0.9


@pytest.mark.parametrize("model_accuracy", [0.2, 0.5])
def test_a_bad_model_gets_low_reliability_and_does_not_flip_a_strong_crowd(model_accuracy):
    answers, model, gold, true = crowd((0.9, 0.9, 0.9), model_accuracy, seed=1)
    both, voter = with_model(answers, model)
    without = fit_consensus("smoothed-ds", answers, gold)
    with_it = fit_consensus("smoothed-ds", both, gold)
    reliability = model_reliability(with_it, voter)
    humans = [model_reliability(with_it, f"ann{j}") for j in range(3)]
    assert reliability < 0.6 and min(humans) > 0.85  # type: ignore[operator]
    flipped = (without.labels_ != with_it.labels_) & (without.labels_ == true.reindex(without.labels_.index))
    assert flipped.sum() <= 2, flipped[flipped].index.tolist()  # of 300 tasks
    assert accuracy(with_it.labels_, true) >= accuracy(without.labels_, true) - 0.01


def test_the_model_is_one_vote_per_answered_task_under_an_id_no_annotator_has():
    answers = pd.DataFrame({"task": [1, 1, 2], "annotator": ["model", "b", "b"], "label": ["x", "y", "y"]})
    model = pd.DataFrame({"task": [1, 1, 2, 3], "label": ["y", "x", "x", "x"]})  # task 3: no annotator answered
    both, voter = with_model(answers, model)
    assert voter == "model~2" and voter_id(["model", "model~2"]) == "model~3"
    mine = both[both["annotator"] == voter]
    assert mine["task"].tolist() == [1, 2] and mine["label"].tolist() == ["x", "x"]  # one vote a task, the last
    same, none = with_model(answers, None)
    assert none is None and same.equals(answers)
    severity = pd.DataFrame({"task": [1], "annotator": ["b"], "label": [3]})
    both, _ = with_model(severity, pd.DataFrame({"task": [1], "label": ["4"]}))
    assert both["label"].tolist() == [3, 4]  # the model's severity as the annotators' integers


def test_compare_on_gold_reads_held_out_gold_with_and_without_the_model():
    answers, model, gold, _ = crowd((0.6, 0.6, 0.6), 0.9, seed=2)
    figures = compare_on_gold("smoothed-ds", answers, model, gold)
    assert figures["voter"] == "model"
    assert figures["annotators"]["n_gold"] == figures["with_model"]["n_gold"] == 60
    assert figures["with_model"]["accuracy"] > figures["annotators"]["accuracy"]
    assert 0.7 < figures["model_alone"]["accuracy"] <= 1 and 0.8 < figures["model_reliability"] < 1
    low, high = figures["with_model"]["ci_low"], figures["with_model"]["ci_high"]
    assert low < figures["with_model"]["accuracy"] < high
    empty = compare_on_gold("smoothed-ds", answers, None, gold)
    assert empty["voter"] is None and empty["with_model"]["n_gold"] == 0


def _model_answers(items: pd.DataFrame, accuracy: float, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for item in items.itertuples():
        right = rng.random() < accuracy
        policies = item.policies if right else ("spam_scams",) if item.policies != ("spam_scams",) else ("hate",)
        rows.append({"external_id": item.external_id, "control": "policy", "label": qi.set_key(policies)})
        severity = item.severity if right else 2
        if severity is not None and policies != ("no_violation",):
            rows.append({"external_id": item.external_id, "control": "severity", "label": str(severity)})
    return pd.DataFrame(rows).assign(model_version="m-test")


def test_the_check_counts_the_model_in_consensus_only_and_the_report_compares():
    from smo_labelstudio.reports.quality import render_markdown

    items = truth(120, seed=3)
    gold_ids = set(items["external_id"][:40])
    labels = labels_table(items, {"a": 0.55, "b": 0.6, "c": 0.6}, per_task=3, seed=4, gold_ids=gold_ids)
    gold = gold_table(items, gold_ids)
    quality = Quality(min_gold_answers=5)
    without = compute_check(labels, gold, quality, n_boot=20)
    voted = compute_check(labels, gold, quality, n_boot=20, model=_model_answers(items, 0.9))

    assert "model_voter" not in without.extra
    assert voted.counts == without.counts  # the model is no annotator: same answers, annotators, tasks
    assert voted.annotators["annotator"].tolist() == without.annotators["annotator"].tolist() == ["a", "b", "c"]
    pd.testing.assert_frame_equal(voted.policy_agreement, without.policy_agreement)
    assert [g.name for g in voted.gates] == [g.name for g in without.gates]
    truth_keys = dict(zip(items["external_id"], items["policies"].map(qi.set_key)))

    def right(result):
        c = result.consensus[(result.consensus["control"] == "policy") & (result.consensus["source"] == "consensus")]
        return float((c["label"] == c["task"].map(truth_keys)).mean())

    assert right(voted) > right(without) + 0.05
    figures = voted.summary()["model_voter"]
    assert figures["model_versions"] == ["m-test"]
    assert figures["policy"]["with_model"]["accuracy"] > figures["policy"]["annotators"]["accuracy"]
    text = render_markdown(voted, "voter test", {})
    assert "## The model as a voter" in text and "annotators + the model voter" in text and "m-test" in text
    assert "## The model as a voter" not in render_markdown(without, "voter test", {})


def test_load_model_answers_reads_the_launches_own_predictions(tmp_path):
    ws = Workspace.for_title("voter load", tmp_path)
    run = ws.runs / "plan1"
    plan = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "external_id": ["x1", "x2", "g1"],
            "is_gold": [False, False, True],
            "language": ["en", "en", "es"],
            "batch": [0, 0, 0],
        }
    )
    write_parquet(run / "plan.parquet", plan)
    write_parquet(
        run / "predictions" / "batch-00000.parquet",
        pd.DataFrame(
            {
                "item_id": ["i1", "i2", "i3"],
                "model_version": ["m1"] * 3,
                "score": [0.9, 0.8, 0.7],
                "policy": ["hate|harassment", "no_violation", "spam_scams"],
                "severity": ["3", None, "2"],
                "label_scores": ["{}"] * 3,
            }
        ),
    )
    write_parquet(  # a backfill of i2 later: it wins
        run / "predictions" / "batch-00000-backfill-1.parquet",
        pd.DataFrame(
            {
                "item_id": ["i2"],
                "model_version": ["m2"],
                "score": [0.6],
                "policy": ["hate"],
                "severity": ["1"],
                "label_scores": ["{}"],
            }
        ),
    )
    model = load_model_answers(ws)
    policy = model[model["control"] == "policy"].set_index("external_id")["label"].to_dict()
    assert policy == {"x1": "harassment+hate", "x2": "hate", "gold:g1": "spam_scams"}
    severity = model[model["control"] == "severity"].set_index("external_id")["label"].to_dict()
    assert severity == {"x1": "3", "x2": "1", "gold:g1": "2"}
    assert load_model_answers(Workspace.for_title("nothing launched", tmp_path)).empty
