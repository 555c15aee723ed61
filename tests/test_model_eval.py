"""The model evaluation on frames with known answers: a perfect model, an always-wrong model that
annotators follow (anchoring), calibration, acceptance outcomes."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from smo_labelstudio.metrics import model_eval as me
from smo_labelstudio.quality.inputs import set_key

POLICIES = ["hate", "harassment", "spam_scams", "no_violation"]


def _truth(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "external_id": [f"t{i:03d}" for i in range(n)],
            "language": ["en", "es"] * (n // 2),
            "truth": [frozenset({str(rng.choice(POLICIES))}) for _ in range(n)],
        }
    )


def _preds(truth: pd.DataFrame, model: list[frozenset], scores: list[dict] | None = None) -> pd.DataFrame:
    scores = scores or [{p: float(p in m) for p in POLICIES} for m in model]
    return pd.DataFrame(
        {
            "external_id": truth["external_id"],
            "language": truth["language"],
            "policy": model,
            "label_scores": scores,
            "model_version": "v1",
        }
    )


def _consensus(truth: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": truth["external_id"],
            "control": "policy",
            "label": truth["truth"].map(set_key),
            "confidence": 1.0,
            "source": "consensus",
        }
    )


def _sets(truth: pd.DataFrame, answer, annotators: tuple[str, ...] = ("a1", "a2", "a3")) -> pd.DataFrame:
    rows = [
        {"task": t, "annotator": a, "language": lang, "label": answer(a, s)}
        for t, lang, s in zip(truth["external_id"], truth["language"], truth["truth"])
        for a in annotators
    ]
    return pd.DataFrame(rows)


def test_a_perfect_model_has_f1_one_and_no_calibration_error():
    truth = _truth()
    preds = _preds(truth, list(truth["truth"]))
    result = me.evaluate(preds, _consensus(truth), _sets(truth, lambda a, s: s), None, n_boot=50)
    metrics = result.metrics.set_index("policy")
    assert (metrics["f1"] == 1).all() and (metrics["precision"] == 1).all() and (metrics["recall"] == 1).all()
    assert metrics.loc["(micro)", "f1_low"] == 1 and metrics.loc["(micro)", "support"] == 200
    assert result.ece == pytest.approx(0, abs=1e-9)
    assert (result.languages["exact"] == 1).all() and set(result.languages["language"]) == {"en", "es"}
    conf = result.confusion
    assert np.trace(conf.to_numpy()) == conf.to_numpy().sum() == 200


def test_an_always_wrong_model_followed_by_annotators_shows_anchoring():
    truth = _truth(seed=1)
    wrong = [frozenset({POLICIES[(POLICIES.index(next(iter(s))) + 1) % 4]}) for s in truth["truth"]]
    preds = _preds(truth, wrong)
    # Four annotators answer the truth; a1 copies the model every time.
    model = dict(zip(truth["external_id"], wrong))
    sets = _sets(truth, lambda a, s: s, ("a1", "a2", "a3", "a4", "a5"))
    sets["label"] = [model[t] if a == "a1" else s for t, a, s in zip(sets["task"], sets["annotator"], sets["label"])]
    result = me.evaluate(preds, _consensus(truth), sets, None, n_boot=50)
    assert result.metrics.set_index("policy").loc["(micro)", "f1"] == 0
    # Of each task's four 0/1 probabilities, two are wrong (the suggested policy, the missed true one).
    assert result.ece == pytest.approx(0.5)
    audit = result.anchoring.set_index(["annotator", "model_correct"])
    assert audit.loc[("a1", False), "agree_with_model"] == 1 and audit.loc[("a1", False), "n"] == 200
    assert audit.loc[("a2", False), "agree_with_model"] == 0
    assert audit.loc[("(all)", False), "agree_with_model"] == pytest.approx(1 / 5)
    assert audit.loc[("a1", False), "ci_low"] > 0.95  # Wilson interval on 200 of 200
    assert math.isnan(audit.loc[("a1", True), "agree_with_model"])  # the model is never right


def test_the_anchoring_reference_leaves_the_audited_annotator_out():
    """Two annotators on every task, one copying a wrong model, and a consensus that sided with the
    copier: judged against it, copying would look like agreeing with a right model. Leaving the
    copier out, its reference is the other annotator's answer: the model was wrong every time and
    the copier followed it every time."""
    truth = _truth(n=100, seed=2)
    wrong = [frozenset({POLICIES[(POLICIES.index(next(iter(s))) + 1) % 4]}) for s in truth["truth"]]
    model = dict(zip(truth["external_id"], wrong))
    sets = _sets(truth, lambda a, s: s, ("a1", "a2"))
    sets["label"] = [model[t] if a == "a1" else s for t, a, s in zip(sets["task"], sets["annotator"], sets["label"])]
    consensus = _consensus(truth).assign(label=[me.set_key(model[t]) for t in truth["external_id"]])  # biased
    audit = me.anchoring_audit(sets, _preds(truth, wrong), consensus).set_index(["annotator", "model_correct"])
    assert audit.loc[("a1", False), "n"] == 100 and audit.loc[("a1", False), "agree_with_model"] == 1
    assert audit.loc[("a1", True), "n"] == 0
    assert audit.loc[("a2", True), "n"] == 100 and audit.loc[("a2", True), "agree_with_model"] == 0
    # gold tasks are judged by the gold answer whoever answered
    gold = _consensus(truth).assign(source="gold")
    audit = me.anchoring_audit(sets, _preds(truth, wrong), gold).set_index(["annotator", "model_correct"])
    assert audit.loc[("(all)", False), "n"] == 200


def test_calibration_of_a_well_calibrated_model_is_small_and_the_bins_hold_every_probability():
    rng = np.random.default_rng(3)
    n = 4000
    p = rng.uniform(0, 1, n)
    hit = rng.uniform(0, 1, n) < p
    truth = pd.DataFrame(
        {
            "external_id": [f"t{i}" for i in range(n)],
            "language": "en",
            "truth": [frozenset({"hate"}) if h else frozenset() for h in hit],
        }
    )
    preds = _preds(truth, [frozenset({"hate"}) if x > 0.5 else frozenset() for x in p], [{"hate": x} for x in p])
    ece, table = me.calibration(preds, _consensus(truth))
    assert ece < 0.04 and table["n"].sum() == n and len(table) == 10


def test_f1_intervals_are_seeded_and_contain_the_estimate():
    truth = _truth(seed=2)
    rng = np.random.default_rng(9)
    noisy = [s if rng.random() < 0.7 else frozenset({"spam_scams"}) for s in truth["truth"]]
    preds = _preds(truth, noisy)
    a = me.policy_metrics(preds, _consensus(truth), n_boot=200, random_state=4)
    b = me.policy_metrics(preds, _consensus(truth), n_boot=200, random_state=4)
    pd.testing.assert_frame_equal(a, b)
    ok = a.dropna(subset=["f1"])
    assert ((ok["f1_low"] <= ok["f1"] + 1e-12) & (ok["f1"] <= ok["f1_high"] + 1e-12)).all()
    assert 0.6 < a.set_index("policy").loc["(micro)", "f1"] < 0.85


def test_acceptance_sorts_answers_into_accepted_edited_rejected_skipped():
    preds = pd.DataFrame(
        {
            "external_id": ["t1", "t2", "t3", "t4"],
            "language": "en",
            "model_version": "v1",
            "policy": [
                frozenset({"hate"}),
                frozenset({"hate", "harassment"}),
                frozenset({"hate"}),
                frozenset({"hate"}),
            ],
            "label_scores": [{}] * 4,
        }
    )
    sets = pd.DataFrame(
        {
            "task": ["t1", "t2", "t3"],
            "annotator": "a",
            "language": "en",
            "label": [frozenset({"hate"}), frozenset({"hate"}), frozenset({"spam_scams"})],
        }
    )
    ann = pd.DataFrame(
        {
            "external_id": ["t1", "t2", "t3", "t4"],
            "annotator": "a",
            "annotation_id": [1, 2, 3, 4],
            "was_cancelled": [False, False, False, True],
            "changed_prediction": [False, True, True, None],
            "language": "en",
        }
    )
    out = me.acceptance(ann, sets, preds).set_index("task")["outcome"].to_dict()
    assert out == {"t1": "accepted", "t2": "edited", "t3": "rejected", "t4": "skipped"}
    summary = me.acceptance_summary(me.acceptance(ann, sets, preds))
    assert summary.loc[0, ["accepted", "edited", "rejected", "skipped"]].tolist() == [0.25] * 4


def test_load_predictions_maps_items_to_tasks_and_parses_scores(tmp_path):
    folder = tmp_path / "runs" / "p1" / "predictions"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "item_id": ["i1", "i2"],
            "model_version": "v1",
            "score": [0.9, 0.4],
            "policy": ["hate|spam_scams", ""],
            "severity": ["3", None],
            "label_scores": [json.dumps({"hate": 0.9}), json.dumps({"hate": 0.1})],
        }
    ).to_parquet(folder / "batch-0.parquet")
    ledger = pd.DataFrame({"item_id": ["i1", "i2"], "external_id": ["x1", "gold:g1"], "is_gold": [False, True]})
    plan = pd.DataFrame({"item_id": ["i1", "i2"], "language": ["en", "ar"]})
    preds = me.load_predictions(tmp_path / "runs", ledger, plan)
    assert preds["external_id"].tolist() == ["x1", "gold:g1"] and preds["language"].tolist() == ["en", "ar"]
    assert preds["policy"].tolist() == [frozenset({"hate", "spam_scams"}), frozenset()]
    assert preds["label_scores"][0] == {"hate": 0.9}
