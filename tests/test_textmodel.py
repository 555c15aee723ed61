"""The pre-annotation model, its version store and training, without servers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.model.modelstore import ModelStore, ModelStoreError
from smo_labelstudio.model.textmodel import PolicyModel, predict_tasks
from smo_labelstudio.model.training import (
    TrainingDataError,
    consensus_from_export,
    ensure_starter_model,
    read_training_file,
    starter_data,
    train_version,
)

LABELS = load_taxonomy().ids


@pytest.fixture(scope="module")
def model() -> PolicyModel:
    d = starter_data()
    return PolicyModel(LABELS).fit(d.text.tolist(), d.labels.tolist(), d.severity.tolist())


def test_compiled_probabilities_equal_scikit_learns(model):
    texts = ["free prize, click now", "شكرا لكم", "you are worthless", "the match was great"] * 5
    X = model._X(texts)
    reference = np.column_stack(
        [
            model.classifiers_[lab].predict_proba(X)[:, 1]
            if lab in model.classifiers_
            else np.full(len(texts), model.constant_.get(lab, 0.0))
            for lab in LABELS
        ]
    )
    assert np.abs(reference - model.predict_proba(texts)).max() < 1e-9
    levels, _ = model.predict_severity(texts)
    assert (levels == model.severity_.predict(X)).all()


def test_predictions_are_in_label_studio_format(model):
    preds = predict_tasks(model, "v1", ["Click here to claim your free prize now", "Have a great day everyone"])
    spam, fine = preds
    assert spam["model_version"] == "v1" and 0 <= spam["score"] <= 1
    policy = spam["result"][0]
    assert policy["from_name"] == "policy" and policy["type"] == "choices"
    assert policy["value"]["choices"] == ["spam_scams"]
    assert set(policy["label_scores"]) == set(LABELS)  # a score for every policy
    assert spam["result"][1]["from_name"] == "severity" and spam["result"][1]["value"]["choices"][0] in "1234"
    assert fine["result"][0]["value"]["choices"] == ["no_violation"] and len(fine["result"]) == 1
    json.dumps(preds)  # plain JSON types only


def test_versions_are_kept_and_a_worse_model_is_not_promoted(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(ModelStoreError, match="smo backend train"):
        store.current()
    first = ensure_starter_model(store, LABELS)
    assert store.current()[0] == first and ensure_starter_model(store, LABELS) == first
    # Labels scrambled: the held-out score drops, so the version is kept but not promoted.
    bad = starter_data(seed=1)
    bad["labels"] = bad["labels"].sample(frac=1, random_state=0).to_list()
    metrics = train_version(store, bad, LABELS, source="scrambled")
    assert not metrics["promoted"] and metrics["macro_f1"] < metrics["previous_macro_f1_same_rows"]
    assert store.current_version() == first and len(store.versions()) == 2
    assert (store.versions_dir / metrics["version"] / "metrics.json").exists()
    good = train_version(store, starter_data(seed=2), LABELS, source="more data")
    assert good["promoted"] and store.current()[0] == good["version"]  # the swap reaches readers


def test_training_file_errors_name_row_and_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,labels,severity\nhello,no_violation,\nbad,gambling,2\n")
    with pytest.raises(TrainingDataError, match=r"train.csv: row 3: labels \['gambling'\]"):
        read_training_file(path, LABELS)
    path.write_text("body,labels\nx,hate\n")
    with pytest.raises(TrainingDataError, match="missing column"):
        read_training_file(path, LABELS)
    rows = "\n".join(json.dumps({"text": f"t{i}", "labels": ["hate", "harassment"], "severity": 3}) for i in range(12))
    (tmp_path / "ok.jsonl").write_text(rows)
    df = read_training_file(tmp_path / "ok.jsonl", LABELS)
    assert len(df) == 12 and df.labels[0] == ["hate", "harassment"]


def test_consensus_from_an_export():
    def ann(choices, severity=None, cancelled=False):
        result = [{"from_name": "policy", "value": {"choices": choices}}]
        if severity:
            result.append({"from_name": "severity", "value": {"choices": [str(severity)]}})
        return {"result": result, "was_cancelled": cancelled}

    export = [
        {
            "data": {"text": "a", "language": "en"},
            "annotations": [ann(["hate"], 3), ann(["hate", "harassment"], 2), ann(["no_violation"])],
        },
        {"data": {"text": "b"}, "annotations": [ann(["spam_scams"], 1, cancelled=True)]},  # nothing left
        {"data": {"text": "c"}, "annotations": [ann(["no_violation"]), ann(["no_violation"])]},
    ]
    df = consensus_from_export(export)
    assert df["text"].tolist() == ["a", "c"]
    assert df["labels"].tolist() == [["hate"], ["no_violation"]]
    assert df["severity"].iloc[0] == 2 and pd.isna(df["severity"].iloc[1])  # the lower median of 3 and 2
    assert df["language"].iloc[0] == "en"


def test_smo_backend_train_and_versions_from_the_command_line(tmp_path):
    """`smo backend train --data FILE` trains from a user's file; bad files get one clear line."""
    import os
    import subprocess

    from smo_cli import smo as run_smo

    env = {**os.environ, "SMO_HOME": str(tmp_path / "home")}

    def smo(*args: str) -> subprocess.CompletedProcess:
        return run_smo(env, "backend", *args)

    good = tmp_path / "train.jsonl"
    starter_data(seed=3).to_json(good, orient="records", lines=True, force_ascii=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,labels\n" + "hello,no_violation\n" * 12 + "buy now,gambling\n")

    assert "no model versions" in smo("versions").stdout
    first = smo("train", "--data", str(good), "--json")
    assert first.returncode == 0, first.stderr
    trained = json.loads(first.stdout)
    assert trained["promoted"] and trained["source"] == str(good)
    refused = smo("train", "--data", str(bad))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "row 14" in refused.stderr and "gambling" in refused.stderr
    listed = json.loads(smo("versions", "--json").stdout)
    assert listed["current"] == trained["version"] and [v["version"] for v in listed["versions"]] == [
        trained["version"]
    ]
