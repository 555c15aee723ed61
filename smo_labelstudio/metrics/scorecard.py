"""One annotator's scorecard: their gold accuracy over time, where they differ from consensus, the gold items
they missed and the guideline section that decides each one.

Pure functions over the tidy frames (the pulled labels table, the gold answers, the quality pass's consensus).
`scorecard` keeps only the one annotator's rows before it computes anything, so nothing on a card can come
from another annotator's answers: only their own answers, the gold answers and the consensus (an aggregate).

Which guideline section decides a missed gold item (`deciding_section`), by the generated guideline pages'
headings (labelstudio/guidelines.py, one page per policy in guidelines/):

- a violation gold chose and the annotator did not: that policy's "In scope" (the first such policy in the
  taxonomy's order, which is the order of decision, most severe first);
- else a violation the annotator chose and gold did not: that policy's "Out of scope" (so "hate" given where
  gold says no violation points at what hate does not cover);
- else, when only "no violation" differs: its "In scope";
- else (the same policies, another severity): the "Severity" rubric of gold's first policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smo_labelstudio.core.taxonomy import NO_VIOLATION
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.gold import wilson_interval

IN_SCOPE, OUT_OF_SCOPE, SEVERITY = "In scope", "Out of scope", "Severity"
TIMELINE_COLUMNS = ["n", "at", "task", "correct", "accuracy", "ci_low", "ci_high"]
DIFFERENCE_COLUMNS = ["policy", "consensus_chose", "you_chose", "agreed", "missed", "extra"]
MISSED_COLUMNS = ["task", "what", "given", "gold", "policy", "section"]


def _members(key: str) -> frozenset[str]:
    """A policy set key ("hate+harassment", "(none)") back to its set."""
    return frozenset() if key == qi.NO_POLICY else frozenset(str(key).split("+"))


def gold_timeline(answers: pd.DataFrame, gold: pd.DataFrame, times: pd.Series | None = None) -> pd.DataFrame:
    """One row per gold answer of one annotator, in the order given (time, then annotation id): whether it
    was right and the running accuracy with its 95% Wilson interval (TIMELINE_COLUMNS).

    `answers`: task, label, annotation_id; `gold`: task, label; `times`: annotation id -> created_at."""
    truth = gold.drop_duplicates("task").set_index("task")["label"]
    mine = answers[answers["task"].isin(truth.index)].copy()
    if mine.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    at = times.reindex(mine["annotation_id"]).to_numpy() if times is not None else None
    mine["at"] = pd.to_datetime(at, utc=True) if at is not None else pd.NaT
    mine = mine.sort_values(["at", "annotation_id"], kind="stable", na_position="last")
    correct = (mine["label"].astype(str).to_numpy() == truth.reindex(mine["task"]).astype(str).to_numpy()).astype(int)
    n = np.arange(1, len(mine) + 1)
    k = np.cumsum(correct)
    low, high = wilson_interval(k, n)
    return pd.DataFrame(
        {
            "n": n,
            "at": mine["at"].to_numpy(),
            "task": mine["task"].to_numpy(),
            "correct": correct.astype(bool),
            "accuracy": k / n,
            "ci_low": low,
            "ci_high": high,
        }
    )[TIMELINE_COLUMNS]


def consensus_confusion(answers: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """How one annotator's answers (task, label) fall against consensus (task, label) on the tasks both have:
    counts, consensus labels as rows, the annotator's as columns; only labels that occur."""
    both = answers[["task", "label"]].merge(
        consensus[["task", "label"]].rename(columns={"label": "consensus"}), on="task"
    )
    if both.empty:
        return pd.DataFrame()
    table = pd.crosstab(both["consensus"].astype(str), both["label"].astype(str))
    return table.rename_axis(index="consensus", columns="yours")


def policy_differences(sets: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """Per policy, on the tasks one annotator shares with consensus: how often consensus and they chose it,
    agreed on it, missed it (consensus chose, they did not) and added it (they chose, consensus did not).

    `sets`: task, label (frozenset of policies); `consensus`: task, label (the policy set key)."""
    truth = {t: _members(k) for t, k in zip(consensus["task"], consensus["label"], strict=True)}
    counts: dict[str, dict[str, int]] = {}
    for task, theirs in zip(sets["task"], sets["label"], strict=True):
        if task not in truth:
            continue
        for policy in theirs | truth[task]:
            row = counts.setdefault(policy, dict.fromkeys(DIFFERENCE_COLUMNS[1:], 0))
            chose, said = policy in truth[task], policy in theirs
            row["consensus_chose"] += chose
            row["you_chose"] += said
            row["agreed"] += chose and said
            row["missed"] += chose and not said
            row["extra"] += said and not chose
    frame = pd.DataFrame([{"policy": p, **c} for p, c in sorted(counts.items())], columns=DIFFERENCE_COLUMNS)
    return frame.sort_values(["missed", "extra", "policy"], ascending=[False, False, True], ignore_index=True)


def deciding_section(gold: frozenset[str], given: frozenset[str], order: Sequence[str]) -> tuple[str, str]:
    """(policy id, guideline section heading) that decides a gold item answered `given` (see the module)."""
    rank = {p: i for i, p in enumerate(order)}

    def first(policies: frozenset[str]) -> str:
        return min(policies, key=lambda p: (rank.get(p, len(rank)), p))

    missed, extra = gold - given - {NO_VIOLATION}, given - gold - {NO_VIOLATION}
    if missed:
        return first(missed), IN_SCOPE
    if extra:
        return first(extra), OUT_OF_SCOPE
    if gold != given:  # only "no violation" differs (chosen beside nothing, or left out)
        return NO_VIOLATION, IN_SCOPE
    return (first(gold) if gold else ""), SEVERITY


def missed_gold(
    sets: pd.DataFrame,
    gold_sets: pd.DataFrame,
    severity: pd.DataFrame,
    gold_severity: pd.DataFrame,
    order: Sequence[str],
) -> pd.DataFrame:
    """One annotator's gold items answered wrong (MISSED_COLUMNS): the policies (or, where those were right,
    the severity) given and gold's, and the guideline section that decides the item (`deciding_section`)."""
    truth = dict(zip(gold_sets["task"], gold_sets["label"], strict=True))
    gold_sev = dict(zip(gold_severity["task"], gold_severity["label"], strict=True))
    their_sev = dict(zip(severity["task"], severity["label"], strict=True))
    rows = []
    for task, given in zip(sets["task"], sets["label"], strict=True):
        if task not in truth:
            continue
        gold = truth[task]
        if given != gold:
            policy, section = deciding_section(gold, given, order)
            rows.append([task, "policy", qi.set_key(given), qi.set_key(gold), policy, section])
        elif task in gold_sev and their_sev.get(task) != gold_sev[task]:
            policy, section = deciding_section(gold, given, order)
            mine = their_sev.get(task)
            rows.append([task, "severity", "none" if mine is None else str(mine), str(gold_sev[task]), policy, section])
    return pd.DataFrame(rows, columns=MISSED_COLUMNS)


@dataclass
class Scorecard:
    """One annotator's figures (frames hold only their own answers against gold and consensus)."""

    annotator: str
    n_answers: int
    timeline: pd.DataFrame
    policy_confusion: pd.DataFrame
    severity_confusion: pd.DataFrame
    differences: pd.DataFrame
    missed: pd.DataFrame

    def summary(self, bar: float, min_answers: int) -> dict[str, Any]:
        """The card's headline: answers, gold answers, accuracy, its interval, and where it stands to the bar."""
        last = self.timeline.iloc[-1] if len(self.timeline) else None
        n = int(last["n"]) if last is not None else 0
        if last is None or n < min_answers:
            standing = "not judged yet"
        elif last["ci_low"] >= bar:
            standing = "above the bar"
        elif last["ci_high"] < bar:
            standing = "below the bar"
        else:
            standing = "not distinguishable from the bar yet"
        return {
            "n_answers": self.n_answers,
            "gold_n": n,
            "gold_accuracy": float(last["accuracy"]) if last is not None else None,
            "ci_low": float(last["ci_low"]) if last is not None else None,
            "ci_high": float(last["ci_high"]) if last is not None else None,
            "bar": bar,
            "standing": standing,
            "missed_gold": len(self.missed),
        }


def scorecard(
    annotator: str,
    labels: pd.DataFrame,
    gold: pd.DataFrame | None,
    consensus: pd.DataFrame,
    order: Sequence[str],
    *,
    times: pd.Series | None = None,
    cancelled: list | None = None,
) -> Scorecard:
    """`annotator`'s scorecard from the labels table (LABEL_COLUMNS), the gold answers (external_id, control,
    label), the quality pass's consensus (task, control, label, source) and the taxonomy's policy order.
    Consensus is compared on the tasks it decided (not gold tasks: those are scored against gold)."""
    rows = qi.latest_annotations(labels, cancelled)
    rows = rows[rows["annotator"].astype(str) == str(annotator)]  # from here on, only their own answers
    sets = qi.policy_sets(rows)
    keys = qi.policy_keys(sets)
    severity = qi.severity_answers(rows)
    ids = rows.drop_duplicates("external_id").set_index("external_id")["annotation_id"]
    gold_keys = qi.gold_policy_keys(gold)
    timeline = gold_timeline(keys.assign(annotation_id=ids.reindex(keys["task"]).to_numpy()), gold_keys, times)
    decided = consensus[consensus["source"] != "gold"]
    policy = decided[decided["control"] == qi.POLICY]
    sev = decided[decided["control"] == qi.SEVERITY]
    return Scorecard(
        annotator=str(annotator),
        n_answers=int(len(sets)),
        timeline=timeline,
        policy_confusion=consensus_confusion(keys, policy),
        severity_confusion=consensus_confusion(severity.assign(label=severity["label"].astype(str)), sev),
        differences=policy_differences(sets, policy),
        missed=missed_gold(sets, qi.gold_policy_sets(gold), severity, qi.gold_severity(gold), order),
    )
