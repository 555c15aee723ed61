"""Policy changes against an annotator who claims a newer guideline version, or edits an old answer after the switch
(issue 18). tests/test_relabel.py does the same on the real Label Studio, where the annotator also posts a
`created_at` of their own (Label Studio keeps its own)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from smo_labelstudio.core.guideline_history import read_history, record_version
from smo_labelstudio.core.taxonomy import TAXONOMY_FILE, load_taxonomy
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.pull.completions import tidy
from smo_labelstudio.quality import guideline_versions as gv
from smo_labelstudio.quality.relabel import plan_relabel

V1, V2 = "2026.11.1", "2026.12.1"
SWITCH = datetime(2026, 12, 2, 9, 0, 1, tzinfo=UTC)
CLAIM = {"guideline_version": V2, "meta": {"guideline_version": V2}, "guidelines_version": V2}


@pytest.fixture
def tax(tmp_path):
    import yaml

    raw = yaml.safe_load(TAXONOMY_FILE.read_text())
    raw["version"] = V2
    raw["changelog"].append({"version": V2, "changed": ["hate"]})
    path = tmp_path / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_taxonomy(path)


def _task(created: str, updated: str, **claims) -> dict:
    """One exported task with one annotation choosing hate, the annotator's claims in its JSON."""
    result = [
        {"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": ["hate"]}, **claims},
    ]
    annotation = {"id": 7, "completed_by": 3, "created_at": created, "updated_at": updated, "result": result}
    return {"id": 70, "data": {"item_id": "it-1", "text": "x"}, "annotations": [{**annotation, **claims}]}


def _versions(ws: Workspace, task: dict) -> pd.DataFrame:
    ledger = pd.DataFrame({"item_id": ["it-1"], "external_id": ["w1"], "is_gold": [False], "language": ["en"]})
    annotations, _ = tidy([task], 1, ledger, {3: "a@x.org"})
    return gv.answer_versions(annotations, read_history(ws))


def _answers(versions: pd.DataFrame) -> pd.DataFrame:
    return versions.rename(columns={"external_id": "task"}).assign(
        annotator="a@x.org", label=[frozenset({"hate"})], is_gold=False
    )


def test_a_version_claimed_in_the_answer_json_is_not_read(tmp_path, tax):
    ws = Workspace(tmp_path / "ws")
    record_version(ws, V1, None, None, "launch")
    record_version(ws, V2, None, SWITCH, "relabel")
    versions = _versions(ws, _task("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z", **CLAIM))
    assert versions["guideline_version"].tolist() == [V1]  # given before the switch, whatever it says
    plan = plan_relabel(_answers(versions), pd.DataFrame(columns=["task", "label"]), tax)
    assert list(plan.tasks["task"]) == ["w1"]  # it goes back


def test_an_old_answer_edited_after_the_switch_keeps_its_old_version(tmp_path, tax):
    ws = Workspace(tmp_path / "ws")
    record_version(ws, V1, None, None, "launch")
    record_version(ws, V2, None, SWITCH, "relabel")
    versions = _versions(ws, _task("2026-11-20T10:00:00Z", "2026-12-05T10:00:00Z", **CLAIM))
    assert versions["guideline_version"].tolist() == [V1]
    assert list(plan_relabel(_answers(versions), pd.DataFrame(columns=["task", "label"]), tax).tasks["task"]) == ["w1"]


def test_a_hand_edited_request_for_an_unknown_version_supersedes_nothing(tmp_path, tax):
    """A request naming a version the changelog does not know ranks below every version: no answer is newer than
    nothing, so nothing is dropped by mistake; an unknown answer version never counts as new."""
    rank = gv.version_rank(tax)
    versions = pd.DataFrame({"annotation_id": [1, 2], "external_id": ["w1", "w1"], "guideline_version": [None, "9.9"]})
    requests = pd.DataFrame([{"task": "w1", "version": V2}], columns=gv.REQUEST_COLUMNS)
    assert gv.superseded(versions, requests, rank) == []  # neither answer is under V2: both still count
    bogus = pd.DataFrame([{"task": "w1", "version": "bogus"}], columns=gv.REQUEST_COLUMNS)
    assert gv.superseded(versions, bogus, rank) == []
