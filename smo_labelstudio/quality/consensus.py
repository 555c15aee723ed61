"""Consensus labels from many annotators: majority vote and Dawid-Skene (plain or smoothed), with
scikit-learn's verbs.

Same contract as crowd-kit's classification aggregators, with `annotator` for crowd-kit's
`worker`: `fit(data)` returns the estimator, `fit_predict(data)` the label per task,
`fit_predict_proba(data)` the tasks x labels probabilities; what was learned sits in attributes
ending in `_`. Constructor arguments are settings only. Every row is one vote (an annotator who
answered a task twice votes twice, as in crowd-kit); rows with an empty label are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from smo_labelstudio.core.errors import ConfigError, InputError

from ._frame import Ratings, check_choice, encode, factorize_sorted, require_frame, show

__all__ = ["METHODS", "DawidSkene", "MajorityVote", "consensus_frame", "fit_consensus"]

TIE_BREAKS = ("frequency", "sorted")
# Consensus methods by the name users pass (`--method`, flow parameters, JSON keys) and what they are.
METHODS = {"mv": "majority vote", "ds": "Dawid-Skene", "smoothed-ds": "smoothed Dawid-Skene"}
_EPS = 1e-10


def _answers(data: pd.DataFrame | Ratings) -> Ratings:
    r = encode(data)
    if len(r) == 0:
        raise InputError("annotations: no labels to aggregate (the frame is empty or every label is empty)")
    return r


def _probas_frame(probas: np.ndarray, r: Ratings) -> pd.DataFrame:
    return pd.DataFrame(probas, index=r.tasks.rename("task"), columns=r.labels.rename("label"))


def _labels_series(probas: np.ndarray, r: Ratings, rank: np.ndarray | None = None) -> pd.Series:
    """Most probable label per task; among equal maxima the lowest `rank` (default: sorted order)."""
    if rank is None:
        best = probas.argmax(axis=1)
    else:
        top = probas >= probas.max(axis=1, keepdims=True) - 1e-12
        best = np.where(top, rank[None, :], np.iinfo(np.int64).max).argmin(axis=1)
    return pd.Series(r.labels[best], index=r.tasks.rename("task"), name="label")


class MajorityVote:
    """The label most annotators gave; probabilities are vote shares.

    Ties (`tie_break`): "frequency" (default) takes, among the tied labels, the one given most often
    in the whole frame, then the first in sorted order; "sorted" takes the first in sorted order
    (crowd-kit's behaviour, which its published accuracies reflect).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": [1, 1, 1, 2, 2], "annotator": ["a", "b", "c", "a", "b"],
    ...                    "label": ["spam", "spam", "ham", "ham", "spam"]})
    >>> MajorityVote().fit_predict(df).to_dict()
    {1: 'spam', 2: 'spam'}
    >>> MajorityVote(tie_break="sorted").fit_predict(df).to_dict()
    {1: 'spam', 2: 'ham'}
    """

    def __init__(self, tie_break: str = "frequency") -> None:
        self.tie_break = tie_break

    def fit(self, data: pd.DataFrame) -> MajorityVote:
        """Count votes per task and label."""
        check_choice("tie_break", self.tie_break, TIE_BREAKS)
        r = _answers(data)
        votes = r.task_counts().astype(float)
        totals = np.bincount(r.label, minlength=r.n_labels)
        rank = (
            np.arange(r.n_labels)
            if self.tie_break == "sorted"
            else np.argsort(np.argsort(-totals, kind="stable"), kind="stable")
        )
        self.priors_ = pd.Series(totals / max(totals.sum(), 1), index=r.labels.rename("label"), name="prior")
        self.probas_ = _probas_frame(votes / votes.sum(axis=1, keepdims=True), r)
        self.labels_ = _labels_series(votes, r, rank)
        return self

    def fit_predict(self, data: pd.DataFrame) -> pd.Series:
        """Fit, then return the majority label per task."""
        return self.fit(data).labels_

    def fit_predict_proba(self, data: pd.DataFrame) -> pd.DataFrame:
        """Fit, then return the vote shares (tasks x labels)."""
        return self.fit(data).probas_


class DawidSkene:
    """Dawid and Skene (1979): EM over per-annotator confusion matrices and label priors.

    Starts from majority-vote shares, then alternates the E-step (task posteriors from priors and
    confusions) and M-step (confusions and priors from posteriors) as sparse-matrix products, until
    the evidence lower bound per answer gains less than `tol` or after `n_iter` iterations (the
    same schedule as crowd-kit 1.4.2). Gold answers passed to `fit` clamp those tasks' posteriors
    to the gold label at every step, anchoring the confusion estimates. Learned: `probas_`
    (posterior = confidence), `labels_` (most probable, first in sorted order among equals),
    `priors_`, `errors_` (index annotator and given label, one column per true label:
    P(given | true), crowd-kit's layout), `n_iter_`, `loss_history_`.

    `smoothing` > 0 adds that many pseudo-answers per confusion cell (a Dirichlet prior), spread as
    a one-coin model: right with the annotator's overall accuracy, wrong evenly otherwise. With
    few answers per annotator and many labels (policy *sets* give ~20 keys, so hundreds of cells
    per annotator) the plain model overfits and trails majority vote; smoothed, a small batch is
    read almost as one skill per annotator, while a large one still learns who confuses what.
    0 (the default) is crowd-kit's unsmoothed model.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "annotator": list("abcabc"),
    ...                    "label": ["spam", "spam", "ham", "ham", "ham", "ham"]})
    >>> ds = DawidSkene(n_iter=50).fit(df)
    >>> ds.labels_.to_dict()
    {1: 'spam', 2: 'ham'}
    >>> ds.errors_.loc[("c", "ham")].round(2).to_dict()  # P(c says ham | true label): ham whatever the truth
    {'ham': 1.0, 'spam': 1.0}
    """

    def __init__(self, n_iter: int = 100, tol: float = 1e-5, smoothing: float = 0.0) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing

    def fit(self, data: pd.DataFrame, gold: pd.DataFrame | pd.Series | None = None) -> DawidSkene:
        """Run EM on the answers; `gold` (frame task, label or Series by task) anchors those tasks."""
        if not isinstance(self.n_iter, (int, np.integer)) or self.n_iter < 1:
            raise ConfigError(f"n_iter must be a positive integer; got {self.n_iter!r}")
        if not self.tol >= 0:
            raise ConfigError(f"tol must be >= 0; got {self.tol!r}")
        if not self.smoothing >= 0:
            raise ConfigError(f"smoothing must be >= 0; got {self.smoothing!r}")
        r, gold_rows, gold_cols = _with_gold(_answers(data), gold)
        t, k, a = r.n_tasks, r.n_labels, len(r.annotators)
        answers = sparse.csr_matrix((np.ones(len(r)), (r.task, r.annotator * k + r.label)), shape=(t, a * k))
        answers_t = answers.T  # CSC: the M-step scatters task rows into a small array, cache-friendly
        per_task = np.asarray(answers.sum(axis=1)).ravel()

        probas = r.task_counts().astype(float)
        probas /= np.maximum(_row_sum(probas), 1.0)[:, None]
        probas = _clamp(probas, gold_rows, gold_cols)
        ones = np.ones(t) / t
        priors = ones @ probas
        log_errors = np.log(self._m_step(answers_t, probas, a, k, self.smoothing))
        scores = answers @ log_errors  # per task and true label: sum of log P(given | true) over its answers
        loss, history = -np.inf, []
        for _ in range(self.n_iter):
            logits = scores + np.log(np.clip(priors, _EPS, None))
            logits -= _row_max(logits)[:, None]
            probas = np.exp(logits)
            norm = _row_sum(probas)
            probas /= norm[:, None]
            # posterior entropy per task, from the logits: -sum p log p = log Z - sum p * logit
            entropy = np.log(norm) - np.einsum("tk,tk->t", probas, logits)
            probas = _clamp(probas, gold_rows, gold_cols)
            entropy[gold_rows] = 0.0
            priors = ones @ probas
            log_errors = np.log(self._m_step(answers_t, probas, a, k, self.smoothing))
            scores = answers @ log_errors
            new_loss = self._elbo(scores, per_task, probas, priors, entropy) / len(r)
            history.append(new_loss)
            if new_loss - loss < self.tol:
                break
            loss = new_loss
        self.n_iter_ = len(history)
        self.loss_history_ = history
        self.probas_ = _probas_frame(probas, r)
        self.labels_ = _labels_series(probas, r)
        self.priors_ = pd.Series(priors, index=r.labels.rename("label"), name="prior")
        index = pd.MultiIndex.from_product([r.annotators, r.labels], names=["annotator", "label"])
        errors = pd.DataFrame(np.exp(log_errors), index=index, columns=r.labels.rename("label"))
        self.errors_ = errors[np.asarray(answers.sum(axis=0)).ravel() > 0]
        return self

    @staticmethod
    def _m_step(answers_t: sparse.csc_matrix, probas: np.ndarray, a: int, k: int, smoothing: float) -> np.ndarray:
        """P(given | true) per annotator as an (annotators * given) x true matrix, floored at 1e-10."""
        counts = (answers_t @ probas).reshape(a, k, k)
        if smoothing > 0 and k > 1:
            diagonal = np.einsum("akk->a", counts)
            skill = (diagonal + 1.0) / (counts.sum(axis=(1, 2)) + 2.0)  # overall accuracy, Laplace-smoothed
            cell = smoothing * k * ((1 - skill) / (k - 1))[:, None, None]
            counts = counts + np.broadcast_to(cell, counts.shape)
            counts[:, np.arange(k), np.arange(k)] += smoothing * k * skill[:, None] - cell[:, :, 0]
        errors = np.clip(counts, _EPS, None)
        errors /= errors.sum(axis=1, keepdims=True)
        return errors.reshape(a * k, k)

    @staticmethod
    def _elbo(
        scores: np.ndarray, per_task: np.ndarray, probas: np.ndarray, priors: np.ndarray, entropy: np.ndarray
    ) -> float:
        """Expected complete-data log-likelihood plus posterior entropy (crowd-kit's loss, priors per answer)."""
        joint = np.einsum("tk,tk->", probas, scores) + per_task @ (probas @ np.log(np.clip(priors, _EPS, None)))
        return float(joint + entropy.sum())

    def fit_predict(self, data: pd.DataFrame, gold: pd.DataFrame | pd.Series | None = None) -> pd.Series:
        """Fit, then return the most probable label per task."""
        return self.fit(data, gold).labels_

    def fit_predict_proba(self, data: pd.DataFrame, gold: pd.DataFrame | pd.Series | None = None) -> pd.DataFrame:
        """Fit, then return the posterior probabilities (tasks x labels)."""
        return self.fit(data, gold).probas_


def _with_gold(r: Ratings, gold: pd.DataFrame | pd.Series | None) -> tuple[Ratings, np.ndarray, np.ndarray]:
    """Ratings whose label set includes the gold labels, and (task row, label column) of gold tasks."""
    empty = np.zeros(0, dtype=np.int64)
    if gold is None:
        return r, empty, empty
    if isinstance(gold, pd.Series):
        gold = gold.rename("label").rename_axis("task").reset_index()
    gold = require_frame(gold, ("task", "label"), what="gold").dropna(subset=["label"])
    gold = gold.loc[gold["task"].isin(r.tasks), ["task", "label"]].drop_duplicates()
    if gold["task"].duplicated().any():
        task = gold.loc[gold["task"].duplicated(), "task"].iloc[0]
        raise InputError(f"gold: task {show(task)} has more than one gold label")
    new = pd.Index(gold["label"].unique()).difference(r.labels)
    if len(new):
        codes, labels = factorize_sorted(pd.Index(list(r.labels) + list(new)).to_series())
        remap = codes[: len(r.labels)]
        r = Ratings(r.task, r.annotator, remap[r.label], r.tasks, r.annotators, labels, r.n_missing)
    rows = r.tasks.get_indexer(gold["task"])
    cols = r.labels.get_indexer(gold["label"])
    return r, rows.astype(np.int64), cols.astype(np.int64)


def _row_max(x: np.ndarray) -> np.ndarray:
    """Row maxima of a tall, narrow C-ordered array (a loop over columns is ~15x faster than axis=1)."""
    out = x[:, 0].copy()
    for col in range(1, x.shape[1]):
        np.maximum(out, x[:, col], out=out)
    return out


def _row_sum(x: np.ndarray) -> np.ndarray:
    """Row sums of a tall, narrow array (a matrix-vector product beats sum(axis=1) about 5x)."""
    return x @ np.ones(x.shape[1])


def _clamp(probas: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if len(rows):
        probas[rows] = 0.0
        probas[rows, cols] = 1.0
    return probas


def fit_consensus(method: str, data: pd.DataFrame, gold: pd.DataFrame | pd.Series | None = None) -> Any:
    """The fitted estimator for a method name in `METHODS` (smoothed-ds: one pseudo-answer per
    confusion cell); gold anchors both Dawid-Skene variants."""
    check_choice("method", method, tuple(METHODS))
    if method == "mv":
        return MajorityVote().fit(data)
    return DawidSkene(smoothing=1.0 if method == "smoothed-ds" else 0.0).fit(data, gold)


def consensus_frame(estimator: Any) -> pd.DataFrame:
    """A fitted estimator's result as columns task, label, confidence (posterior of the chosen label)."""
    labels = estimator.labels_
    confidence = _row_max(np.ascontiguousarray(estimator.probas_.to_numpy(dtype=float)))
    return pd.DataFrame({"task": labels.index.to_numpy(), "label": labels.to_numpy(), "confidence": confidence})
