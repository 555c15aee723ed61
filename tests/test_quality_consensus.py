"""Consensus estimators: tie rules, Dawid-Skene against a loop reference, gold anchoring, public data."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smo_labelstudio import quality
from smo_labelstudio.quality import DawidSkene, MajorityVote, consensus_frame

ZHENG = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "zheng2017"


def simulated(seed: int = 0, n_tasks: int = 300, n_annotators: int = 12) -> tuple[pd.DataFrame, pd.Series]:
    """Five answers per task from annotators with their own confusion; returns answers and truth."""
    rng = np.random.default_rng(seed)
    labels = np.array(["ok", "hate", "spam"])
    truth = rng.choice(3, size=n_tasks, p=[0.6, 0.25, 0.15])
    skill = rng.uniform(0.55, 0.95, size=n_annotators)
    rows = []
    for task in range(n_tasks):
        for annotator in rng.choice(n_annotators, size=5, replace=False):
            label = truth[task] if rng.random() < skill[annotator] else rng.integers(0, 3)
            rows.append((f"t{task:04d}", f"a{annotator:02d}", labels[label]))
    frame = pd.DataFrame(rows, columns=["task", "annotator", "label"])
    return frame, pd.Series(labels[truth], index=[f"t{t:04d}" for t in range(n_tasks)])


def dawid_skene_reference(frame: pd.DataFrame, n_iter: int, tol: float, gold: dict | None = None):
    """Dawid-Skene as crowd-kit 1.4.2 runs it, with plain loops over answers (small data only)."""
    tasks = sorted(frame["task"].unique())
    workers = sorted(frame["annotator"].unique())
    labels = sorted(frame["label"].unique())
    t_of, w_of, l_of = ({v: i for i, v in enumerate(x)} for x in (tasks, workers, labels))
    rows = frame[["task", "annotator", "label"]].itertuples(index=False)
    answers = [(t_of[t], w_of[w], l_of[lab]) for t, w, lab in rows]
    T, W, K = len(tasks), len(workers), len(labels)
    eps = 1e-10

    def clamp(p):
        for task, label in (gold or {}).items():
            p[t_of[task]] = 0.0
            p[t_of[task], l_of[label]] = 1.0
        return p

    def m_step(p):
        e = np.zeros((W, K, K))
        for t, w, lab in answers:
            e[w, lab] += p[t]
        e = np.maximum(e, eps)
        return e / e.sum(axis=1, keepdims=True)

    p = np.zeros((T, K))
    for t, _, lab in answers:
        p[t, lab] += 1
    p = clamp(p / p.sum(axis=1, keepdims=True))
    priors = p.mean(axis=0)
    errors = m_step(p)
    loss, steps = -math.inf, 0
    for _ in range(n_iter):
        logp = np.tile(np.log(np.maximum(priors, eps)), (T, 1))
        for t, w, lab in answers:
            logp[t] += np.log(errors[w, lab])
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
        p = clamp(p / p.sum(axis=1, keepdims=True))
        priors = p.mean(axis=0)
        errors = m_step(p)
        joint = sum(p[t] @ (np.log(errors[w, lab]) + np.log(np.maximum(priors, eps))) for t, w, lab in answers)
        clipped = np.maximum(p, eps)
        new_loss = (joint - (clipped * np.log(clipped)).sum()) / len(answers)
        steps += 1
        if new_loss - loss < tol:
            break
        loss = new_loss
    return p, errors, priors, steps


def test_docstring_examples_run():
    for module in (quality.consensus, quality.krippendorff):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_majority_vote_tie_rules():
    frame = pd.DataFrame(
        {
            "task": [1, 1, 2, 2, 3, 3, 3],
            "annotator": list("ababcab"),
            "label": ["spam", "ham", "spam", "spam", "spam", "ham", "ham"],
        }
    )
    # task 1 ties spam/ham: spam is more frequent overall (4 vs 3); "sorted" picks ham
    assert MajorityVote().fit_predict(frame).to_dict() == {1: "spam", 2: "spam", 3: "ham"}
    assert MajorityVote(tie_break="sorted").fit_predict(frame).to_dict() == {1: "ham", 2: "spam", 3: "ham"}
    mv = MajorityVote().fit(frame)
    assert mv.probas_.loc[1].tolist() == [0.5, 0.5] and mv.probas_.loc[3, "ham"] == pytest.approx(2 / 3)
    assert mv.priors_["spam"] == pytest.approx(4 / 7)
    # equal overall frequency falls back to sorted order
    even = pd.DataFrame({"task": [1, 1], "annotator": ["a", "b"], "label": ["b", "a"]})
    assert MajorityVote().fit_predict(even).tolist() == ["a"]
    assert consensus_frame(mv)["confidence"].tolist() == pytest.approx([0.5, 1.0, 2 / 3])


def test_estimators_follow_the_scikit_learn_contract():
    frame, _ = simulated(1, n_tasks=60)
    ds = DawidSkene(n_iter=7, tol=0.0)
    assert vars(ds) == {"n_iter": 7, "tol": 0.0, "smoothing": 0.0}  # settings only until fit
    assert ds.fit(frame) is ds
    pd.testing.assert_series_equal(DawidSkene(n_iter=7, tol=0.0).fit_predict(frame), ds.labels_)
    pd.testing.assert_frame_equal(DawidSkene(n_iter=7, tol=0.0).fit_predict_proba(frame), ds.probas_)
    assert np.allclose(ds.probas_.sum(axis=1), 1.0)
    assert list(ds.errors_.index.names) == ["annotator", "label"]
    assert np.allclose(ds.errors_.groupby("annotator").sum(), 1.0)  # P(given | true) sums to 1 per true label
    with pytest.raises(ValueError, match="n_iter must be a positive integer; got 0"):
        DawidSkene(n_iter=0).fit(frame)
    with pytest.raises(ValueError, match="tie_break must be one of 'frequency', 'sorted'; got 'random'"):
        MajorityVote(tie_break="random").fit(frame)


@pytest.mark.parametrize("seed", range(3))
def test_dawid_skene_matches_loop_reference(seed):
    frame, _ = simulated(seed, n_tasks=80, n_annotators=8)
    for tol in (1e-5, 1e-7):  # at tol 0 the stop depends on 1e-14 rounding noise
        ds = DawidSkene(n_iter=40, tol=tol).fit(frame)
        probas, errors, priors, steps = dawid_skene_reference(frame, 40, tol)
        assert ds.n_iter_ == steps
        np.testing.assert_allclose(ds.probas_.to_numpy(), probas, atol=1e-9)
        np.testing.assert_allclose(ds.priors_.to_numpy(), priors, atol=1e-12)
        full = ds.errors_.to_numpy().reshape(8, 3, 3)
        np.testing.assert_allclose(full, errors, atol=1e-9)


def test_gold_anchoring_clamps_gold_tasks_and_matches_reference():
    frame, truth = simulated(4, n_tasks=80, n_annotators=8)
    gold = {task: ("spam" if i % 2 else truth[task]) for i, task in enumerate(truth.index[:10])}
    gold_frame = pd.DataFrame({"task": list(gold), "label": list(gold.values())})
    ds = DawidSkene(n_iter=30).fit(frame, gold_frame)
    for task, label in gold.items():
        assert ds.labels_[task] == label and ds.probas_.loc[task, label] == 1.0
    probas, _, _, steps = dawid_skene_reference(frame, 30, 1e-5, gold)
    np.testing.assert_allclose(ds.probas_.to_numpy(), probas, atol=1e-9)
    series = pd.Series(list(gold.values()), index=list(gold))
    pd.testing.assert_frame_equal(DawidSkene(n_iter=30).fit(frame, series).probas_, ds.probas_)


def test_gold_label_unseen_in_answers_is_added():
    frame = pd.DataFrame({"task": [1, 1, 2, 2], "annotator": list("abab"), "label": ["ok", "ok", "ok", "hate"]})
    ds = DawidSkene().fit(frame, pd.DataFrame({"task": [1], "label": ["spam"]}))
    assert list(ds.probas_.columns) == ["hate", "ok", "spam"] and ds.labels_[1] == "spam"


def test_dawid_skene_beats_majority_vote_when_some_annotators_always_say_ok():
    frame, truth = simulated(7, n_tasks=400, n_annotators=10)
    lazy = frame["annotator"].isin(["a00", "a01", "a02", "a03"])
    frame.loc[lazy, "label"] = "ok"
    ds = DawidSkene().fit_predict(frame)
    mv = MajorityVote().fit_predict(frame)
    ds_accuracy, mv_accuracy = (ds == truth[ds.index]).mean(), (mv == truth[mv.index]).mean()
    assert ds_accuracy > mv_accuracy + 0.03 and ds_accuracy > 0.9


def test_empty_labels_are_skipped_and_every_row_votes():
    frame = pd.DataFrame({"task": [1, 1, 1, 1], "annotator": ["a", "a", "b", "c"], "label": ["x", "x", "y", None]})
    assert MajorityVote().fit(frame).probas_.loc[1, "x"] == pytest.approx(2 / 3)


PUBLISHED = {  # crowd-kit (JOSS 2024) on Zheng et al. (2017): (Dawid-Skene, majority vote)
    "d_jn_product": (0.940, 0.897),
    "d_sentiment": (0.960, 0.932),
    "s4_Relevance": (0.615, 0.536),
}


def zheng_accuracy(folder: Path, estimator) -> float:
    answers = pd.read_csv(folder / "answer.csv")
    truth = pd.read_csv(folder / "truth.csv")
    answers.columns = ["task", "annotator", "label"]  # headers differ between data sets
    truth.columns = ["task", "truth"]
    truth = truth[truth["task"].isin(answers["task"])].set_index("task")["truth"]
    labels = estimator.fit_predict(answers)
    return float((labels[truth.index] == truth).mean())


@pytest.mark.skipif(not ZHENG.is_dir(), reason=f"{ZHENG} is absent (public data sets are not on this machine)")
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_zheng_2017_published_accuracies(name):
    ds_published, mv_published = PUBLISHED[name]
    assert zheng_accuracy(ZHENG / name, DawidSkene(n_iter=100, tol=1e-5)) == pytest.approx(ds_published, abs=0.005)
    # crowd-kit's majority vote takes the first label in sorted order on ties
    assert zheng_accuracy(ZHENG / name, MajorityVote(tie_break="sorted")) == pytest.approx(mv_published, abs=0.005)


@pytest.mark.skipif(not ZHENG.is_dir(), reason=f"{ZHENG} is absent (public data sets are not on this machine)")
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_smoothing_keeps_dawid_skene_at_its_published_accuracy_on_large_data_sets(name):
    """The project pass's smoothed Dawid-Skene costs (almost) nothing where there is data to learn
    confusions from: within 0.005 of the plain model, well above majority vote."""
    ds_published, mv_published = PUBLISHED[name]
    smoothed = zheng_accuracy(ZHENG / name, DawidSkene(n_iter=100, tol=1e-5, smoothing=1.0))
    assert smoothed >= ds_published - 0.005 and smoothed > mv_published + 0.01, smoothed


def test_smoothing_must_not_be_negative():
    with pytest.raises(ValueError, match="smoothing must be >= 0"):
        DawidSkene(smoothing=-1).fit(pd.DataFrame({"task": [1], "annotator": ["a"], "label": ["x"]}))
