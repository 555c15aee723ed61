"""Gold checks: Wilson intervals, the exact binomial test, the minimum, flags with confusions, SPRT."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from smo_labelstudio.quality import flags, gold_accuracy, gold_confusion, sequential_check, wilson_interval

LABELS = ["ok", "hate", "spam"]


def gold_world(seed: int = 0, n_gold: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gold on `n_gold` tasks; `good` right 95 %, `bad` says ok for every hate item, `new` answered 5."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, size=n_gold, p=[0.5, 0.3, 0.2])
    gold = pd.DataFrame({"task": np.arange(n_gold), "label": truth})
    rows = []
    for task, label in enumerate(truth):
        rows.append((task, "good", label if rng.random() < 0.95 else "spam"))
        rows.append((task, "bad", "ok" if label == "hate" else label))
        if task < 5:
            rows.append((task, "new", "ok"))
    rows += [(1000 + t, "good", "ok") for t in range(10)]  # answers on tasks without gold are ignored
    return pd.DataFrame(rows, columns=["task", "annotator", "label"]), gold


def test_wilson_interval_matches_statsmodels():
    k = np.array([0, 1, 5, 17, 20, 33])
    n = np.array([10, 10, 20, 20, 20, 40])
    for confidence in (0.9, 0.95, 0.99):
        low, high = wilson_interval(k, n, confidence)
        ref_low, ref_high = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
        np.testing.assert_allclose(low, ref_low, atol=1e-9)
        np.testing.assert_allclose(high, ref_high, atol=1e-9)
    assert np.isnan(wilson_interval([0], [0])[0][0])


def test_accuracy_test_and_flags():
    answers, gold = gold_world()
    report = gold_accuracy(answers, gold, threshold=0.8, min_answers=20).set_index("annotator")
    assert set(report.index) == {"bad", "good", "new"}
    for _, row in report.iterrows():
        assert row["gold_accuracy"] == pytest.approx(row["gold_correct"] / row["gold_n"])
        assert row["p_value"] == pytest.approx(
            binomtest(row["gold_correct"], row["gold_n"], 0.8, alternative="less").pvalue, rel=1e-12
        )
        assert row["ci_low"] <= row["gold_accuracy"] <= row["ci_high"]
    assert report.loc["bad", "flagged"]
    assert "significantly below 0.8" in report.loc["bad", "reason"]
    assert not report.loc["good", "flagged"] and "not significantly below" in report.loc["good", "reason"]
    assert not report.loc["new", "flagged"]
    assert report.loc["new", "reason"] == "only 5 gold answer(s), need 20 before judging"
    assert report.loc["good", "gold_n"] == 60  # the ten answers on non-gold tasks do not count

    flagged = flags(answers, gold, threshold=0.8, min_answers=20)
    assert [f.annotator for f in flagged] == ["bad"]
    confusion = flagged[0].confusion
    hate_items = int((gold["label"] == "hate").sum())
    assert confusion.loc["hate", "ok"] == hate_items and confusion.loc["hate", "hate"] == 0
    assert int(np.trace(confusion.to_numpy())) == 60 - hate_items
    assert flagged[0].to_dict()["confusion"]["hate"]["ok"] == hate_items
    pd.testing.assert_frame_equal(gold_confusion(answers, gold, "bad"), confusion)


def test_not_enough_gold_answers_is_never_flagged_even_when_all_wrong():
    gold = pd.DataFrame({"task": range(5), "label": ["hate"] * 5})
    answers = pd.DataFrame({"task": range(5), "annotator": ["x"] * 5, "label": ["ok"] * 5})
    row = gold_accuracy(answers, gold, min_answers=6).iloc[0]
    assert row["gold_accuracy"] == 0 and row["p_value"] < 0.001 and not row["flagged"]
    assert gold_accuracy(answers, gold, min_answers=5).iloc[0]["flagged"]


def test_per_label_accuracy_and_grouping():
    answers, gold = gold_world()
    per_label = gold_accuracy(answers, gold, by_label=True).set_index(["annotator", "gold_label"])
    assert per_label.loc[("bad", "hate"), "gold_accuracy"] == 0.0
    assert per_label.loc[("bad", "ok"), "gold_accuracy"] == 1.0
    answers["language"] = np.where(answers["task"] % 2 == 0, "ar", "en")
    by_language = gold_accuracy(answers, gold, by="language")
    assert set(by_language["language"]) == {"ar", "en"}
    assert by_language.groupby("annotator")["gold_n"].sum()["good"] == 60


def test_holm_correction_is_never_smaller():
    answers, gold = gold_world()
    raw = gold_accuracy(answers, gold, min_answers=5).set_index("annotator")["p_value"]
    holm = gold_accuracy(answers, gold, min_answers=5, correction="holm").set_index("annotator")["p_value"]
    assert (holm >= raw - 1e-15).all()
    assert holm.min() == pytest.approx(min(1.0, raw.min() * 3))


def test_sequential_check_flags_bad_passes_good_and_waits_on_few():
    answers, gold = gold_world(n_gold=120)
    result = sequential_check(answers, gold, good=0.8, bad=0.6, alpha=0.05, beta=0.1).set_index("annotator")
    assert result.loc["bad", "decision"] == "flag"
    assert result.loc["good", "decision"] == "pass"
    assert result.loc["new", "decision"] == "continue" and np.isnan(result.loc["new", "decided_after"])
    # Wald's boundaries by hand: all wrong answers flag once n * log(0.4/0.2) >= log(0.9/0.05)
    wrong = pd.DataFrame({"task": range(10), "annotator": ["w"] * 10, "label": ["x"] * 10})
    truth = pd.DataFrame({"task": range(10), "label": ["y"] * 10})
    out = sequential_check(wrong, truth, good=0.8, bad=0.6, alpha=0.05, beta=0.1).iloc[0]
    assert out["decision"] == "flag"
    assert out["decided_after"] == int(np.ceil(np.log(0.9 / 0.05) / np.log(0.4 / 0.2)))


def test_sequential_check_follows_the_order_column():
    gold = pd.DataFrame({"task": range(8), "label": ["y"] * 8})
    answers = pd.DataFrame(
        {
            "task": range(8),
            "annotator": ["a"] * 8,
            "label": ["y"] * 4 + ["x"] * 4,
            "created_at": [8, 7, 6, 5, 4, 3, 2, 1],
        }
    )
    first_wrong = sequential_check(answers, gold, bad=0.5, alpha=0.2, beta=0.2, order="created_at").iloc[0]
    first_right = sequential_check(answers, gold, bad=0.5, alpha=0.2, beta=0.2).iloc[0]
    assert first_wrong["decision"] == "flag" and first_right["decision"] == "pass"


def test_gold_errors():
    answers, gold = gold_world()
    with pytest.raises(ValueError, match="gold: task 0 has more than one gold label"):
        gold_accuracy(answers, pd.concat([gold, pd.DataFrame({"task": [0], "label": ["other"]})]))
    with pytest.raises(ValueError, match="gold: missing column\\(s\\) label"):
        gold_accuracy(answers, gold.rename(columns={"label": "truth"}))
    with pytest.raises(ValueError, match="no gold label equals any answer.*check their types"):
        gold_accuracy(answers.assign(label=1), gold)
    with pytest.raises(ValueError, match="threshold must be between 0 and 1; got 80"):
        gold_accuracy(answers, gold, threshold=80)
    with pytest.raises(ValueError, match="need 0 < bad < good < 1"):
        sequential_check(answers, gold, good=0.6, bad=0.8)
