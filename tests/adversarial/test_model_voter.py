"""Predictions are not annotator-writable in the consensus path (issue 20): the model voter's answers come only
from the launches' own copy in the workspace, so an annotator who names themself `model`, or posts an annotation
whose JSON claims to be the model's prediction, is counted as an annotator, never as the model."""

from __future__ import annotations

import pandas as pd
from quality_data import gold_table, labels_table, truth
from test_model_voter import _model_answers

from smo_labelstudio.core.spec import Quality
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.pull.completions import tidy
from smo_labelstudio.quality.check import compute_check
from smo_labelstudio.quality.model_voter import load_model_answers


def test_an_annotator_named_model_is_an_annotator_and_the_model_votes_under_another_id():
    items = truth(60, seed=21)
    gold_ids = set(items["external_id"][:24])
    labels = labels_table(items, {"a": 0.9, "b": 0.9, "model": 0.1}, per_task=3, seed=22, gold_ids=gold_ids)
    gold = gold_table(items, gold_ids)
    quality = Quality(min_gold_answers=5)

    off = compute_check(labels, gold, quality, n_boot=10)  # quality.model_voter off: nobody is the model
    assert "model_voter" not in off.extra
    assert "model" in off.annotators["annotator"].tolist()  # judged on gold like anyone
    assert bool(off.annotators.set_index("annotator").loc["model", "flagged"])

    on = compute_check(labels, gold, quality, n_boot=10, model=_model_answers(items, 0.9))
    assert on.summary()["model_voter"]["policy"]["voter"] == "model~2"  # the real model, under an id nobody has
    assert on.counts == off.counts and on.annotators["annotator"].tolist() == off.annotators["annotator"].tolist()


def test_an_annotation_claiming_to_be_the_model_is_pulled_as_its_author():
    """A member posts an annotation dressed as a prediction (model_version, origin, a `prediction` block): the
    pull reads who completed it, and the model's answers are read from the workspace, never from the labels."""
    ledger = pd.DataFrame({"item_id": ["i1"], "external_id": ["x1"], "is_gold": [False], "language": ["en"]})
    choice = [
        {
            "from_name": "policy",
            "to_name": "text",
            "type": "choices",
            "origin": "prediction",
            "value": {"choices": ["hate"]},
        }
    ]
    task = {
        "id": 5,
        "data": {"item_id": "i1", "text": "t"},
        "annotations": [
            {
                "id": 9,
                "completed_by": 7,
                "model_version": "model",
                "created_username": "model",
                "prediction": {"model_version": "model", "result": choice},
                "result": choice,
            }
        ],
        "predictions": [{"model_version": "forged", "result": choice}],
    }
    _, labels = tidy([task], 1, ledger, {7: "eve@example.com"})
    assert labels["annotator"].tolist() == ["eve@example.com"]


def test_the_model_answers_come_from_the_workspace_only(tmp_path):
    ws = Workspace.for_title("forged model", tmp_path)
    ws.labels.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"external_id": ["x1"], "annotator": ["model"], "control": ["policy"], "label": ["hate"]}).to_parquet(
        ws.labels
    )
    assert load_model_answers(ws).empty  # nothing launched with a prediction: no model answer, whatever labels say
