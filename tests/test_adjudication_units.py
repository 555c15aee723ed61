"""Adjudication without servers (issue 16): the spec's `adjudicators`, review pseudonyms, and which exported
annotations count (only queued tasks, only listed accounts); the live cases: tests/adversarial/test_adjudication.py.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import yaml

from smo_labelstudio.core.spec import EXAMPLE_SPEC, SpecError, load_spec
from smo_labelstudio.core.workspace import Workspace, write_json
from smo_labelstudio.quality.adjudication import (
    ReviewProjectGone,
    ensure_review_project,
    read_adjudicated,
    review_pseudonym,
)


def _spec(tmp_path, adjudicators):
    data = yaml.safe_load(EXAMPLE_SPEC.read_text()) | {"adjudicators": adjudicators}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    return load_spec(tmp_path / "spec.yaml")


def test_adjudicators_are_e_mails_normalised_and_default_to_none(tmp_path):
    assert load_spec(EXAMPLE_SPEC).adjudicators == []
    assert _spec(tmp_path, [" Lead@Corp.example ", "lead@corp.example", "b@x.org"]).adjudicators == [
        "b@x.org",
        "lead@corp.example",
    ]
    with pytest.raises(SpecError, match="'lead' is not an e-mail address"):
        _spec(tmp_path, ["lead"])


def test_review_pseudonyms_are_stable_keyed_and_carry_no_e_mail():
    key, other = os.urandom(32), os.urandom(32)
    name = review_pseudonym(key, "ann@corp.example")
    assert name == review_pseudonym(key, "ann@corp.example") != review_pseudonym(other, "ann@corp.example")
    assert name.startswith("annotator-") and len(name) == 18 and "@" not in name and "ann" not in name[10:]
    assert name != review_pseudonym(key, "bob@corp.example")


def _annotation(aid: int, who, updated: str, choice: str, cancelled: bool = False) -> dict:
    result = [{"from_name": "policy", "type": "choices", "value": {"choices": [choice]}}]
    return {"id": aid, "completed_by": who, "updated_at": updated, "was_cancelled": cancelled, "result": result}


def test_only_listed_adjudicators_on_queued_tasks_count():
    exported = [
        {
            "id": 1,
            "data": {"external_id": "a"},
            "annotations": [_annotation(10, 7, "1", "hate"), _annotation(11, 9, "2", "spam")],
        },
        {"id": 2, "data": {"external_id": "b"}, "annotations": [_annotation(12, {"id": 9}, "1", "spam")]},
        {"id": 3, "data": {"external_id": "a"}, "annotations": [_annotation(13, 7, "9", "spam")]},  # planted
        {"id": 4, "data": {"external_id": "c"}, "annotations": [_annotation(14, 7, "1", "hate", cancelled=True)]},
    ]
    body = json.dumps(exported).encode()
    ls = SimpleNamespace(projects=SimpleNamespace(exports=SimpleNamespace(download_sync=lambda **_: [body])))
    decided = read_adjudicated(ls, 5, {1: "a", 2: "b", 4: "c"}, {7: "lead@corp.example"})
    assert decided[["external_id", "label", "adjudicator", "annotation_id"]].values.tolist() == [
        ["a", "hate", "lead@corp.example", 10]
    ]
    assert read_adjudicated(ls, 5, {1: "a", 2: "b"}, {}).empty


def test_the_review_project_is_the_recorded_one_never_one_found_by_title(tmp_path):
    class NotFound(Exception):
        status_code = 404

    def get(id):
        if id != 41:
            raise NotFound()
        return SimpleNamespace(id=41)

    created = []
    projects = SimpleNamespace(
        get=get,
        list=lambda **_: pytest.fail("the review project is never looked up by title"),
        create=lambda **kw: created.append(kw) or SimpleNamespace(id=41),
    )
    ws = Workspace(tmp_path / "ws")
    assert ensure_review_project(SimpleNamespace(projects=projects), ws, "T", "<View/>") == 41
    assert created[0]["title"] == "T - adjudication"
    assert ensure_review_project(SimpleNamespace(projects=projects), ws, "T", "<View/>") == 41 and len(created) == 1
    write_json(ws.root / "review.json", {"project_id": 40, "tasks": {}})
    with pytest.raises(ReviewProjectGone, match="review project 40 .* is gone from Label Studio"):
        ensure_review_project(SimpleNamespace(projects=projects), ws, "T", "<View/>")
