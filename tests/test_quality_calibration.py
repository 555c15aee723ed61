"""Consensus confidence calibrated on held-out gold: honest on weak teams, harmless on strong ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import quality_data as qd

from smo_labelstudio.core.spec import Quality
from smo_labelstudio.quality.calibration import MIN_GOLD, fit_calibration, held_out_gold, reliability
from smo_labelstudio.quality.check import compute_check


def test_reliability_is_the_weighted_gap_between_confidence_and_accuracy():
    ece, table = reliability(np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55]), np.array([1, 1, 0, 0, 1, 0]))
    assert ece == pytest.approx((4 * 0.45 + 2 * 0.05) / 6)
    assert table["n"].tolist() == [2, 4] and table["accuracy"].tolist() == [0.5, 0.5]


def test_held_out_gold_reads_each_gold_task_from_a_model_not_anchored_on_it():
    # four annotators say "spam" on g0 whose gold is "ham": anchored, g0 would be ham with confidence 1
    answers = pd.DataFrame(
        [(f"g{t}", f"a{a}", "spam" if t == 0 else "ham") for t in range(6) for a in range(4)],
        columns=["task", "annotator", "label"],
    )
    gold = pd.DataFrame({"task": [f"g{t}" for t in range(6)], "label": "ham"})
    held = held_out_gold("smoothed-ds", answers, gold).set_index("task")
    assert not held.at["g0", "correct"] and held.loc["g1":, "correct"].all()
    assert held["confidence"].between(0, 1).all() and held.at["g0", "confidence"] > 0.5


def test_too_little_gold_leaves_posteriors_as_they_are_and_enough_moves_them_only_as_far_as_it_shows():
    few = pd.DataFrame({"task": range(MIN_GOLD - 1), "confidence": 0.99, "correct": [True, False] * 9 + [True]})
    cal = fit_calibration(few)
    assert not cal.applied and "fewer than" in cal.reason
    assert cal.transform(np.array([0.3, 0.99])).tolist() == [0.3, 0.99]
    perfect = fit_calibration(pd.DataFrame({"task": range(40), "confidence": 0.99, "correct": True}))
    assert perfect.applied and perfect.transform(np.array([0.99]))[0] >= 0.99
    half = fit_calibration(pd.DataFrame({"task": range(40), "confidence": 0.99, "correct": [True, False] * 20}))
    assert 0.5 < half.transform(np.array([0.99]))[0] < 0.8  # evidence against 0.99, shrunk toward it


def test_calibration_is_monotone_and_never_inverts_the_ranking():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1, 200)
    cal = fit_calibration(pd.DataFrame({"task": range(200), "confidence": conf, "correct": rng.random(200) < conf}))
    assert cal.applied and cal.slope > 0
    assert (np.diff(cal.transform(np.linspace(0.01, 0.999, 50))) >= 0).all()
    noise = fit_calibration(
        pd.DataFrame({"task": range(200), "confidence": conf, "correct": rng.random(200) < 1.5 - conf})
    )
    assert 0 <= noise.slope < 0.3  # a posterior that ranks backwards is flattened, never inverted


def _pass(accuracies: list[float], seed: int, n_tasks: int = 400, n_gold: int = 60):
    """A quality pass over the simulator's answers with the first `n_gold` tasks as gold."""
    answers, truth = qd.simulator_answers(seed, accuracies, n_tasks)
    truth.index = [f"item-{t:04d}" for t in truth.index]
    gold_ids = list(truth.index[:n_gold])
    gold = pd.DataFrame(
        [{"external_id": e, "control": "policy", "label": p} for e in gold_ids for p in truth[e].split("+")]
    )
    result = compute_check(
        qd.keys_to_labels(answers, set(range(n_gold))), gold, Quality(), n_boot=10, random_state=seed
    )
    open_ = result.consensus[(result.consensus["control"] == "policy") & (result.consensus["source"] == "consensus")]
    correct = open_["label"].to_numpy() == truth.reindex(open_["task"]).to_numpy()
    return result, open_, correct


@pytest.mark.parametrize(
    "team,better", [([0.7, 0.6, 0.6], True), ([0.95, 0.9, 0.85, 0.9], False)], ids=["weak", "strong"]
)
def test_calibrated_confidence_matches_accuracy_against_the_simulations_truth(team, better):
    """Five seeded batches of 400 tasks with 60 gold, answered by the simulator's annotators: on a
    weak team the posteriors claim far more than they deliver and calibration closes most of the gap
    (and the 0.7 gate lets fewer wrong labels through); on a strong team it changes little."""
    raw, cal, gate_raw, gate_cal = [], [], [], []
    for seed in range(5):
        result, open_, correct = _pass(team, seed)
        info = result.summary()["consensus"]["calibration"]["policy"]
        assert info["n_gold"] == 60 and (info["applied"] or not better), info
        raw.append(reliability(open_["posterior"].to_numpy(), correct)[0])
        cal.append(reliability(open_["confidence"].to_numpy(), correct)[0])
        passed = open_["confidence"].to_numpy() >= 0.7
        gate_raw.append(correct[open_["posterior"].to_numpy() >= 0.7].mean())
        gate_cal.append(correct[passed].mean() if passed.any() else np.nan)
        assert set(result.to_review["task"]) == set(open_.loc[~passed, "task"])  # the gate reads the calibrated figure
    print(
        f"{team}: ECE posterior {np.mean(raw):.3f} calibrated {np.mean(cal):.3f}; accuracy of tasks passing "
        f"0.7: posterior {np.mean(gate_raw):.3f} calibrated {np.nanmean(gate_cal):.3f}"
    )
    if better:
        assert np.mean(cal) < 0.6 * np.mean(raw), (raw, cal)
        assert np.nanmean(gate_cal) > np.mean(gate_raw) + 0.03
    else:
        assert np.mean(cal) < np.mean(raw) + 0.02, (raw, cal)


def test_the_quality_report_shows_the_calibration_as_a_reliability_diagram(tmp_path):
    from smo_labelstudio.reports.quality import build_plots, render_markdown

    result, _open, _correct = _pass([0.7, 0.6, 0.6], seed=0)
    plots = build_plots(result)
    assert plots["confidence-calibration.png"].startswith(b"\x89PNG")
    text = render_markdown(result, "weak team", plots)
    assert "![Consensus confidence against gold](confidence-calibration.png)" in text
    assert "Confidence of policy: calibrated on 60 held-out gold tasks" in text
    (tmp_path / "calibration.png").write_bytes(plots["confidence-calibration.png"])
    few, _, _ = _pass([0.7, 0.6, 0.6], seed=0, n_tasks=100, n_gold=10)  # too little gold: no diagram, a reason
    assert "confidence-calibration.png" not in build_plots(few)
    assert "fewer than 20" in render_markdown(few, "few gold", build_plots(few))
