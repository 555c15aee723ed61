"""The pre-annotation text model: multilingual character n-grams, calibrated per-policy probabilities
and a severity classifier. Pure scikit-learn (no Prefect, no Label Studio client), so the ML
backend's environment can import it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

NO_VIOLATION = "no_violation"
MAX_TEXT_CHARS = 20_000


@dataclass
class PolicyModel:
    """Multi-label policy classifier plus severity, over character n-grams (any script, no tokenizer).

    >>> m = PolicyModel(["hate", "spam_scams", "no_violation"]).fit(
    ...     ["win a free prize now", "have a nice day"] * 5, [["spam_scams"], ["no_violation"]] * 5, [2, None] * 5)
    >>> m.predict_proba(["free prize"]).shape
    (1, 3)
    """

    labels: list[str]
    threshold: float = 0.5
    random_state: int = 0
    vectorizer_: TfidfVectorizer | None = field(default=None, repr=False)
    classifiers_: dict = field(default_factory=dict, repr=False)
    severity_: LogisticRegression | None = field(default=None, repr=False)
    constant_: dict = field(default_factory=dict, repr=False)

    def fit(self, texts: list[str], label_sets: list[list[str]], severities: list[int | None]) -> PolicyModel:
        """Learn one calibrated classifier per policy and a severity classifier on violations."""
        if not (len(texts) == len(label_sets) == len(severities)):
            raise ValueError("texts, label_sets and severities must have the same length")
        unknown = {lab for labs in label_sets for lab in labs} - set(self.labels)
        if unknown:
            raise ValueError(f"labels not in the model's label set: {sorted(unknown)}")
        self.vectorizer_ = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 4),
            lowercase=True,
            sublinear_tf=True,
            min_df=1,
            max_features=200_000,
            dtype=np.float32,
        )
        X = self.vectorizer_.fit_transform([t[:MAX_TEXT_CHARS] for t in texts])
        self.classifiers_, self.constant_ = {}, {}
        for label in self.labels:
            y = np.array([label in labs for labs in label_sets], dtype=int)
            positives = int(y.sum())
            if positives < 3 or positives > len(y) - 3:  # too few of one class to calibrate: a constant
                self.constant_[label] = float(y.mean()) if len(y) else 0.0
                continue
            cv = min(3, positives, len(y) - positives)
            clf = CalibratedClassifierCV(LinearSVC(C=0.5, random_state=self.random_state), method="sigmoid", cv=cv)
            self.classifiers_[label] = clf.fit(X, y)
        graded = [(i, s) for i, s in enumerate(severities) if s is not None and s == s]  # None and NaN: no severity
        sev_idx = [i for i, _ in graded]
        sev_y = np.array([int(s) for _, s in graded])
        self.severity_ = None
        if len(set(sev_y.tolist())) >= 2:
            self.severity_ = LogisticRegression(max_iter=1000, C=2.0).fit(X[sev_idx], sev_y)
        self._fallback_severity = int(np.bincount(sev_y).argmax()) if len(sev_y) else 1
        self._compile()
        return self

    def _compile(self) -> None:
        """Fold every calibrated fold into one matrix product: the same probabilities as
        scikit-learn's predict_proba, without its per-call overhead (a single text in well under 1 ms)."""
        if self.vectorizer_ is None:
            raise ValueError("the model is not fitted")
        weights, bias, cal_a, cal_b, fold_owner = [], [], [], [], []
        for j, label in enumerate(self.labels):
            clf = self.classifiers_.get(label)
            for fold in clf.calibrated_classifiers_ if clf is not None else []:
                weights.append(fold.estimator.coef_.ravel())
                bias.append(fold.estimator.intercept_[0])
                cal_a.append(fold.calibrators[0].a_)
                cal_b.append(fold.calibrators[0].b_)
                fold_owner.append(j)
        n_features = len(self.vectorizer_.vocabulary_)
        self.W_ = np.vstack(weights).T.astype(np.float64) if weights else np.zeros((n_features, 0))
        self.b_, self.cal_a_, self.cal_b_ = np.array(bias), np.array(cal_a), np.array(cal_b)
        owner = np.array(fold_owner, dtype=int)
        self.M_ = np.zeros((len(owner), len(self.labels)))
        for j in set(owner.tolist()):
            self.M_[owner == j, j] = 1.0 / (owner == j).sum()
        self.constant_row_ = np.array([self.constant_.get(lab, 0.0) for lab in self.labels])
        self.constant_row_[sorted(set(owner.tolist()))] = 0.0

    def _X(self, texts: list[str]):
        if self.vectorizer_ is None:
            raise ValueError("the model is not fitted")
        return self.vectorizer_.transform([t[:MAX_TEXT_CHARS] for t in texts])

    def predict_proba(self, texts: list[str], X=None) -> np.ndarray:
        """Probability of each policy (columns in `labels` order) for each text."""
        decision = np.asarray((self._X(texts) if X is None else X) @ self.W_) + self.b_
        calibrated = expit(-(self.cal_a_ * decision + self.cal_b_))
        return calibrated @ self.M_ + self.constant_row_

    def predict_labels(self, proba: np.ndarray) -> list[list[str]]:
        """Policies at or above the threshold; "no violation" alone when no violation reaches it."""
        labels = np.array(self.labels)
        violation = labels != NO_VIOLATION
        chosen = []
        for row in proba:
            hits = labels[violation & (row >= self.threshold)].tolist()
            chosen.append(hits or [NO_VIOLATION])
        return chosen

    def predict_severity(self, texts: list[str], X=None) -> tuple[np.ndarray, np.ndarray]:
        """(level, probability of that level) per text."""
        if self.severity_ is None:
            return np.full(len(texts), self._fallback_severity), np.full(len(texts), 1.0)
        X = self._X(texts) if X is None else X
        decision = np.asarray(X @ self.severity_.coef_.T.astype(np.float64)) + self.severity_.intercept_
        if decision.shape[1] == 1:  # two levels: the logistic of one decision
            p1 = expit(decision[:, 0])
            p = np.column_stack([1 - p1, p1])
        else:
            p = softmax(decision, axis=1)
        best = p.argmax(axis=1)
        return self.severity_.classes_[best], p[np.arange(len(texts)), best]

    def score(self, texts: list[str], label_sets: list[list[str]]) -> dict:
        """Held-out micro and macro F1 over the policies (the promotion criterion uses macro F1)."""
        predicted = self.predict_labels(self.predict_proba(texts))
        y_true = np.array([[lab in labs for lab in self.labels] for labs in label_sets], dtype=int)
        y_pred = np.array([[lab in labs for lab in self.labels] for labs in predicted], dtype=int)
        return {
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "n": len(texts),
        }


def to_prediction(
    labels: list[str],
    version: str,
    proba_row: np.ndarray,
    chosen: list[str],
    severity: int | None,
    severity_p: float | None,
    to_name: str = "text",
) -> dict:
    """One Label Studio prediction: chosen policies (with every policy's score), severity, task score.

    The task score is the confidence of the weakest chosen decision: the lowest probability among
    the chosen policies, or for "no violation" one minus the highest violation probability.
    """
    scores = {lab: round(float(p), 4) for lab, p in zip(labels, proba_row)}
    if chosen == [NO_VIOLATION]:
        task_score = 1.0 - max((scores[lab] for lab in labels if lab != NO_VIOLATION), default=0.0)
    else:
        task_score = min(scores[c] for c in chosen)
    task_score = round(float(task_score), 4)
    result = [
        {
            "from_name": "policy",
            "to_name": to_name,
            "type": "choices",
            "value": {"choices": chosen},
            "score": task_score,
            "label_scores": scores,
        }
    ]
    if chosen != [NO_VIOLATION] and severity is not None:  # a model without a severity head predicts none
        result.append(
            {
                "from_name": "severity",
                "to_name": to_name,
                "type": "choices",
                "value": {"choices": [str(int(severity))]},
                "score": round(float(severity_p if severity_p is not None else 1.0), 4),
            }
        )
    return {"model_version": version, "score": task_score, "result": result}


def predict_tasks(model: PolicyModel, version: str, texts: list[str], to_name: str = "text") -> list[dict]:
    """Predictions for a batch of texts, in order (one vectorised pass)."""
    if not texts:
        return []
    X = model._X(texts)  # vectorising is most of the cost: once for both heads
    proba = model.predict_proba(texts, X)
    chosen = model.predict_labels(proba)
    levels, level_p = model.predict_severity(texts, X)
    return [
        to_prediction(model.labels, version, proba[i], chosen[i], levels[i], level_p[i], to_name)
        for i in range(len(texts))
    ]
