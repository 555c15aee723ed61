"""Generated labels tables in the workspace contract, with known truth: good annotators and one bad one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from smo_labelstudio.core.workspace import LABEL_COLUMNS

POLICIES = ["hate", "harassment", "spam_scams", "misinformation", "no_violation"]
LANGUAGES = ["en", "es", "ar"]


def truth(n_tasks: int, seed: int = 0) -> pd.DataFrame:
    """external_id, language, policies (tuple), severity: what each task really is."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_tasks):
        kind = rng.choice(4, p=[0.45, 0.35, 0.12, 0.08])
        if kind == 0:
            policies = ("no_violation",)
        elif kind == 1:
            policies = (str(rng.choice(POLICIES[:4])),)
        else:
            policies = tuple(sorted(rng.choice(POLICIES[:4], size=2, replace=False).tolist()))
        severity = None if policies == ("no_violation",) else int(rng.integers(1, 5))
        rows.append(
            {
                "external_id": f"item-{i:04d}",
                "language": LANGUAGES[i % len(LANGUAGES)],
                "policies": policies,
                "severity": severity,
            }
        )
    return pd.DataFrame(rows)


def _answer(rng, true: tuple, severity, accuracy: float) -> tuple[tuple, int | None]:
    if rng.random() < accuracy:
        return true, severity
    wrong = (str(rng.choice([p for p in POLICIES if p not in true])),)
    return wrong, (None if wrong == ("no_violation",) else int(rng.integers(1, 5)))


def labels_table(
    items: pd.DataFrame,
    accuracies: dict[str, float],
    *,
    per_task: int = 3,
    seed: int = 1,
    task_ids: dict[str, int] | None = None,
    gold_ids: set[str] = frozenset(),
    overrides: dict[str, dict[str, tuple]] | None = None,
    project: int = 1,
) -> pd.DataFrame:
    """One labels row per annotation, control and value (LABEL_COLUMNS), `per_task` annotators per item.

    `overrides[external_id][annotator] = (policies, severity)` forces an answer (and that annotator).
    """
    rng = np.random.default_rng(seed)
    names = sorted(accuracies)
    rows, annotation_id = [], 1000
    for n, item in enumerate(items.itertuples()):
        forced = (overrides or {}).get(item.external_id, {})
        who = list(forced) or list(rng.choice(names, size=per_task, replace=False))
        for annotator in who:
            annotation_id += 1
            if annotator in forced:
                policies, severity = forced[annotator]
            else:
                policies, severity = _answer(rng, item.policies, item.severity, accuracies[annotator])
            base = {
                "project": project,
                "task": (task_ids or {}).get(item.external_id, 10_000 + n),
                "external_id": item.external_id,
                "annotation_id": annotation_id,
                "annotator": str(annotator),
                "start": None,
                "end": None,
                "is_gold": item.external_id in gold_ids,
                "language": item.language,
            }
            rows += [{**base, "control": "policy", "label": p} for p in policies]
            if severity is not None:
                rows.append({**base, "control": "severity", "label": str(severity)})
            if policies != ("no_violation",) and rng.random() < 0.5:
                rows.append({**base, "control": "spans", "label": policies[0], "start": 0, "end": 5})
    frame = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    return frame.astype({"start": "Int64", "end": "Int64"})


def gold_table(items: pd.DataFrame, gold_ids: set[str]) -> pd.DataFrame:
    """external_id, control, label: the true answers of the gold items."""
    rows = []
    for item in items[items["external_id"].isin(gold_ids)].itertuples():
        rows += [{"external_id": item.external_id, "control": "policy", "label": p} for p in item.policies]
        if item.severity is not None:
            rows.append({"external_id": item.external_id, "control": "severity", "label": str(item.severity)})
    return pd.DataFrame(rows, columns=["external_id", "control", "label"])


def simulator_answers(seed: int, accuracies: list[float], n_tasks: int = 60) -> tuple[pd.DataFrame, pd.Series]:
    """The simulator's own answer model (pure, no Label Studio): answers (task, annotator, label) and
    truth as policy-set keys, one answer per annotator per task."""
    from smo_labelstudio.core.taxonomy import load_taxonomy
    from smo_labelstudio.quality import inputs as qi
    from smo_labelstudio.simulation.answers import Targets, accuracy_matrix, answer, draw_truth, rng_for

    policies = tuple(sorted(load_taxonomy().ids))
    targets = Targets(policies=policies, to_name="text")
    rows, truth = [], {}
    for i in range(n_tasks):
        true = draw_truth(rng_for(seed, "truth", i), policies)
        truth[i] = qi.set_key(true.labels)
        for j, acc in enumerate(accuracies):
            result = answer(true, targets, accuracy_matrix(policies, acc), acc, rng_for(seed, i, j))
            rows.append({"task": i, "annotator": j, "label": qi.set_key(result[0]["value"]["choices"])})
    return pd.DataFrame(rows), pd.Series(truth)


def keys_to_labels(answers: pd.DataFrame, gold_tasks: set) -> pd.DataFrame:
    """`simulator_answers`' keys as a labels table (policy rows only): external_id `item-<task>`."""
    rows = [
        {
            "project": 1,
            "task": int(a.task),
            "external_id": f"item-{a.task:04d}",
            "annotation_id": n,
            "annotator": f"a{a.annotator}",
            "control": "policy",
            "label": policy,
            "start": None,
            "end": None,
            "is_gold": a.task in gold_tasks,
            "language": "en",
        }
        for n, a in enumerate(answers.itertuples())
        for policy in str(a.label).split("+")
    ]
    return pd.DataFrame(rows, columns=LABEL_COLUMNS).astype({"start": "Int64", "end": "Int64"})
