"""Qualification and pause against an annotator who games it or a workspace someone edits (issue 17)."""

from __future__ import annotations

import pandas as pd
import pytest

from smo_labelstudio.core.errors import SmoError
from smo_labelstudio.core.spec import Qualification
from smo_labelstudio.core.workspace import Workspace, write_json
from smo_labelstudio.quality import qualification as ql

Q = Qualification()
GOLD = pd.DataFrame({"task": [f"g{i}" for i in range(20)], "label": "hate"})
T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _labels(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    """A pulled labels table: (task, annotator, label, annotation_id)."""
    return pd.DataFrame(
        [
            {"external_id": t, "annotation_id": i, "annotator": a, "control": "policy", "label": lab, "language": "en"}
            for t, a, lab, i in rows
        ]
    )


def test_an_old_answer_edited_while_paused_stops_counting():
    """A counted answer (before the last passing check) edited while paused is an answer given while paused."""
    rows = [(f"g{i}", "a", "hate", i + 1) for i in range(6)]  # qualified at answer 6
    rows += [("w1", "a", "hate", 7)]  # counts
    rows += [(f"g{6 + i}", "a", "hate", 8 + i) for i in range(6)]  # a passing check at answer 13
    rows += [(f"g{12 + i}", "a", "spam_scams", 14 + i) for i in range(3)]  # flagged at answer 16
    labels = _labels(rows)
    times = [T0 + pd.Timedelta(minutes=i) for i in range(1, 17)]
    annotations = pd.DataFrame({"annotation_id": range(1, 17), "created_at": times, "updated_at": times})
    before = ql.decide(ql.policy_answers(labels, annotations, None), GOLD, Q)
    assert before.status("a") == "paused" and 7 not in before.excluded  # before the last passing check: counts
    annotations.loc[annotations["annotation_id"] == 7, "updated_at"] = T0 + pd.Timedelta(minutes=30)
    after = ql.decide(ql.policy_answers(labels, annotations, None), GOLD, Q)
    assert 7 in after.excluded  # edited while paused


def test_answering_only_gold_well_and_reordering_ids_does_not_help():
    """The order is when answers were given, not their ids: ids listed out of order change nothing."""
    rows = [(f"g{i}", "a", "spam_scams", 100 - i) for i in range(3)] + [
        (f"g{3 + i}", "a", "hate", i + 1) for i in range(6)
    ]
    times = {i: T0 + pd.Timedelta(minutes=n) for n, i in enumerate([100, 99, 98, 1, 2, 3, 4, 5, 6])}
    annotations = pd.DataFrame({"annotation_id": list(times), "created_at": list(times.values())})
    d = ql.decide(ql.policy_answers(_labels(rows), annotations, None), GOLD, Q)
    assert d.status("a") == "paused"  # three wrong first: failed before any right answer is read


def test_a_hand_edited_state_file_is_one_clear_error_or_ignored(tmp_path):
    ws = Workspace(tmp_path / "ws")
    write_json(ws.root / "annotators.json", {"annotators": {"a@x.org": {"status": "qualified", "history": []}}})
    assert ql.reinstate(ws, "a@x.org")["changed"] is False  # only a paused annotator is reinstated
    with pytest.raises(SmoError, match="no such annotator"):
        ql.reinstate(ws, "someone-else@x.org")
    # a reinstatement someone writes into the file takes effect only from its own time on
    state = {
        "annotators": {
            "a@x.org": {"status": "paused", "history": [{"status": "reinstated", "at": "2030-01-01T00:00:00+00:00"}]}
        }
    }
    assert ql.reinstatements(state) == {"a@x.org": [pd.Timestamp("2030-01-01T00:00:00+00:00")]}
