"""The quality engine's input frames from a workspace's pulled labels table and gold answers.

The labels table holds one row per annotation, control and chosen value (`workspace.LABEL_COLUMNS`);
the engine wants one answer per (task, annotator). Tasks are keyed by `external_id` everywhere here,
so gold answers, consensus and adjudication join on the same stable id. Pure functions, no I/O.

    policy_sets      one policy set (frozenset of ids, possibly empty) per annotation: multilabel module
    policy_keys      the same set as one nominal label ("hate+harassment"): gold accuracy, consensus
    policy_binary    one row per answer and policy, label True/False: agreement per policy
    severity_answers the ordinal severity 1..4 per annotation
    gold_*           the gold answers in the same shapes
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.workspace import LABEL_COLUMNS

POLICY = "policy"
SEVERITY = "severity"
NO_POLICY = "(none)"  # the key of an empty policy set
ANSWER_KEYS = ["task", "annotator", "language"]


def check_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """The labels table if it has the contract's columns; else a ValueError naming the missing ones."""
    missing = [c for c in ("external_id", "annotation_id", "annotator", "control", "label") if c not in labels.columns]
    if missing:
        raise InputError(f"labels table: missing column(s) {', '.join(missing)}; expected {', '.join(LABEL_COLUMNS)}")
    return labels


def latest_annotations(labels: pd.DataFrame, cancelled: Iterable | None = None) -> pd.DataFrame:
    """Rows of each annotator's latest annotation per task (highest annotation_id), skipping cancelled ones."""
    labels = check_labels(labels)
    labels = labels[labels["external_id"].notna() & labels["annotator"].notna()]
    if cancelled is not None:
        labels = labels[~labels["annotation_id"].isin(list(cancelled))]
    last = labels.groupby(["external_id", "annotator"], sort=False)["annotation_id"].transform("max")
    return labels[labels["annotation_id"] == last]


def _answers(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per kept annotation: task (external id), annotator, language, annotation_id."""
    rows = latest_annotations(labels)
    language = rows["language"] if "language" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    frame = pd.DataFrame(
        {
            "task": rows["external_id"].to_numpy(),
            "annotator": rows["annotator"].to_numpy(),
            "language": language.fillna("unknown").astype(str).to_numpy(),
            "annotation_id": rows["annotation_id"].to_numpy(),
        }
    )
    return frame.drop_duplicates(["task", "annotator"]).sort_values(["task", "annotator"], kind="stable")


def task_languages(labels: pd.DataFrame) -> pd.Series:
    """The language of each task (external id), 'unknown' when the table has none."""
    answers = _answers(labels)
    return answers.groupby("task", sort=True)["language"].first()


def policy_sets(labels: pd.DataFrame) -> pd.DataFrame:
    """task, annotator, language, label: the set of policies each annotator chose (empty when none)."""
    answers = _answers(labels)
    rows = latest_annotations(labels)
    chosen = rows[(rows["control"] == POLICY) & rows["label"].notna()]
    sets = chosen.groupby(["external_id", "annotator"], sort=False)["label"].agg(lambda v: frozenset(map(str, v)))
    keys = pd.MultiIndex.from_frame(answers[["task", "annotator"]])
    label = sets.reindex(keys)
    answers = answers.drop(columns="annotation_id").reset_index(drop=True)
    answers["label"] = [s if isinstance(s, frozenset) else frozenset() for s in label.to_numpy()]
    return answers


def set_key(policies: Iterable[str]) -> str:
    """One nominal label for a policy set: its ids sorted and joined by '+'."""
    members = sorted(policies)
    return "+".join(members) if members else NO_POLICY


def policy_keys(sets: pd.DataFrame) -> pd.DataFrame:
    """`policy_sets` with each set as its nominal key, for gold accuracy and consensus."""
    return sets.assign(label=sets["label"].map(set_key))


def policy_binary(sets: pd.DataFrame, policies: Iterable[str] | None = None) -> pd.DataFrame:
    """task, annotator, language, policy, label (chosen or not): every answer once per policy."""
    universe = sorted(set(policies) if policies is not None else {p for s in sets["label"] for p in s})
    parts = [
        sets[ANSWER_KEYS].assign(policy=p, label=sets["label"].map(lambda s, p=p: p in s).astype(bool))
        for p in universe
    ]
    if not parts:
        return pd.DataFrame(columns=ANSWER_KEYS + ["policy", "label"])
    return pd.concat(parts, ignore_index=True)


def severity_answers(labels: pd.DataFrame) -> pd.DataFrame:
    """task, annotator, language, label (int 1..4) for annotations that chose a severity."""
    rows = latest_annotations(labels)
    rows = rows[(rows["control"] == SEVERITY) & rows["label"].notna()]
    answers = _answers(labels).set_index(["task", "annotator"])["language"]
    frame = pd.DataFrame(
        {
            "task": rows["external_id"].to_numpy(),
            "annotator": rows["annotator"].to_numpy(),
            "label": pd.to_numeric(rows["label"], errors="coerce").to_numpy(),
        }
    )
    frame = frame.dropna(subset=["label"]).drop_duplicates(["task", "annotator"], keep="last")
    frame["label"] = frame["label"].astype(int)
    frame["language"] = answers.reindex(pd.MultiIndex.from_frame(frame[["task", "annotator"]])).to_numpy()
    return frame[ANSWER_KEYS + ["label"]].reset_index(drop=True)


def _gold(gold: pd.DataFrame | None, control: str) -> pd.DataFrame:
    if gold is None or len(gold) == 0:
        return pd.DataFrame(columns=["external_id", "label"])
    missing = [c for c in ("external_id", "control", "label") if c not in gold.columns]
    if missing:
        raise InputError(f"gold answers: missing column(s) {', '.join(missing)}; expected external_id, control, label")
    return gold.loc[(gold["control"] == control) & gold["label"].notna(), ["external_id", "label"]]


def gold_policy_sets(gold: pd.DataFrame | None) -> pd.DataFrame:
    """task, label: the gold policy set of each gold task."""
    rows = _gold(gold, POLICY)
    sets = rows.groupby("external_id", sort=True)["label"].agg(lambda v: frozenset(map(str, v)))
    return pd.DataFrame({"task": sets.index.to_numpy(), "label": sets.to_numpy()})


def gold_policy_keys(gold: pd.DataFrame | None) -> pd.DataFrame:
    """task, label: the gold policy set as its nominal key (as `policy_keys`)."""
    sets = gold_policy_sets(gold)
    return sets.assign(label=sets["label"].map(set_key))


def gold_policy_binary(gold: pd.DataFrame | None, policies: Iterable[str]) -> pd.DataFrame:
    """task, policy, label: per gold task and policy, whether gold chose it."""
    sets = gold_policy_sets(gold)
    parts = [
        pd.DataFrame({"task": sets["task"], "policy": p, "label": sets["label"].map(lambda s, p=p: p in s)})
        for p in sorted(policies)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["task", "policy", "label"])


def gold_severity(gold: pd.DataFrame | None) -> pd.DataFrame:
    """task, label (int): the gold severity of each gold task that has one."""
    rows = _gold(gold, SEVERITY)
    label = pd.to_numeric(rows["label"], errors="coerce")
    frame = pd.DataFrame({"task": rows["external_id"].to_numpy(), "label": label.to_numpy()}).dropna()
    return frame.drop_duplicates("task", keep="last").astype({"label": int}).reset_index(drop=True)
