"""The ML backend as Label Studio uses it: a real label-studio-ml service (gunicorn, own environment),
connected to a real Label Studio project, retraining in the background from completed work."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.labelstudio import client, configs
from smo_labelstudio.labelstudio.auth import auth_header
from smo_labelstudio.model import training
from smo_labelstudio.model.modelstore import ModelStore, ModelStoreError
from smo_labelstudio.model.textmodel import MAX_TEXT_CHARS

ENDPOINTS = [("GET", "/health"), ("POST", "/predict"), ("POST", "/setup"), ("GET", "/versions"), ("POST", "/webhook")]


def _versions(backend) -> dict:
    return httpx.get(backend.url + "/versions", auth=backend.admin_auth, timeout=10).json()


def test_requests_without_the_right_credentials_are_refused(ml_backend):
    for method, path in ENDPOINTS:
        assert httpx.request(method, ml_backend.url + path, json={}).status_code == 401, path
        wrong = httpx.request(method, ml_backend.url + path, json={}, auth=(ml_backend.auth[0], "nope"))
        assert wrong.status_code == 401, path
    # the predict-only credential Label Studio holds cannot list versions; the admin one can
    assert httpx.get(ml_backend.url + "/versions", auth=ml_backend.auth).status_code == 403
    assert httpx.get(ml_backend.url + "/versions", auth=ml_backend.admin_auth).status_code == 200


@pytest.mark.parametrize(
    "body, status, words",
    [
        (None, 400, "JSON object"),
        ([{"data": {"text": "a list, not an object"}}], 400, "JSON object"),
        ({}, 400, "no tasks"),
        ({"tasks": []}, 400, "no tasks"),
        ({"tasks": [{"id": 7, "data": {"image": "x.png"}}]}, 400, "task 7 has no text"),
        ({"tasks": [{"id": 8, "data": {"text": "x" * (MAX_TEXT_CHARS + 1)}}]}, 413, "over the limit"),
        (
            {
                "tasks": [{"data": {"text": "hi"}}],
                "label_config": "<View><Text name='text' value='$text'/>"
                "<Choices name='policy' toName='text'><Choice value='gambling'/></Choices></View>",
            },
            422,
            "gambling",
        ),
        (
            {
                "tasks": [{"data": {"text": "hi"}}],
                "label_config": configs.labeling_interface("image_moderation")["label_config"],
            },
            422,
            "image",
        ),
    ],
)
def test_bad_requests_get_a_json_4xx_never_a_500(ml_backend, body, status, words):
    resp = httpx.post(
        ml_backend.url + "/predict",
        auth=ml_backend.auth,
        **(
            {"content": b"not json", "headers": {"content-type": "application/json"}}
            if body is None
            else {"json": body}
        ),
    )
    assert resp.status_code == status, resp.text
    assert words in resp.json()["error"] and "Traceback" not in resp.text


def test_health_setup_and_versions_answer_from_memory(ml_backend):
    current = _versions(ml_backend)["current"]
    assert current
    health = httpx.get(ml_backend.url + "/health", auth=ml_backend.auth).json()
    assert health["status"] == "UP" and health["model_version"] == current
    setup = httpx.post(
        ml_backend.url + "/setup",
        auth=ml_backend.auth,
        json={"project": "1.0", "schema": configs.labeling_interface("social_post")["label_config"]},
    )
    assert setup.status_code == 200 and setup.json()["model_version"] == current
    batch = httpx.post(
        ml_backend.url + "/predict",
        auth=ml_backend.auth,
        json={"tasks": [{"data": {"text": t}} for t in ("free prize, click now", "hello")]},
    ).json()
    assert len(batch["results"]) == 2 and batch["model_version"] == current


def _wait_for_version(model_dir: Path, project: int, consensus_rows: int, timeout: float = 240) -> dict:
    """Metrics of the first kept version trained on `consensus_rows` labelled tasks of `project`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(model_dir.glob("versions/*/metrics.json")):
            metrics = json.loads(path.read_text())
            if metrics.get("project") == project and metrics.get("consensus_rows") == consensus_rows:
                return metrics
        time.sleep(1)
    raise AssertionError(f"no version trained on {consensus_rows} tasks of project {project} in {timeout} s")


def _task_prediction(ls_url: str, token: str, task_id: int) -> list[dict]:
    """Open a task as the labeling screen does; Label Studio asks the backend when it has none."""
    task = httpx.get(f"{ls_url}/api/tasks/{task_id}", headers=auth_header(ls_url, token), timeout=60)
    task.raise_for_status()
    return task.json()["predictions"]


def test_label_studio_gets_predictions_and_annotations_retrain_the_model(ml_backend, label_studio, ls_client, unique):
    ui = configs.labeling_interface("text_moderation")
    project = client.create_project(ls_client, f"backend {unique}", ui["label_config"])
    client.connect_backend(
        label_studio.url, label_studio.token, project, ml_backend.url, ml_backend.auth, ml_backend.admin_auth
    )
    # A made-up group, so the test teaches the model something the starter data does not have.
    texts = [f"the Zorblaxian people of sector {i} are a plague and must be removed" for i in range(13)]
    client.import_tasks(ls_client, project, [{"data": {"text": t, "language": "en"}} for t in texts])
    tasks = client.list_tasks(ls_client, project)
    ids = sorted(t["id"] for t in tasks)

    before = _versions(ml_backend)["current"]
    predictions = _task_prediction(label_studio.url, label_studio.token, ids[0])
    assert len(predictions) == 1 and predictions[0]["model_version"] == before
    assert predictions[0]["result"][0]["from_name"] == "policy"

    # Annotators label them as hate; each annotation fires Label Studio's webhook at the backend.
    headers = label_studio.headers
    for task_id in ids[1:13]:
        result = [
            {"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": ["hate"]}},
            {"from_name": "severity", "to_name": "text", "type": "choices", "value": {"choices": ["3"]}},
        ]
        httpx.post(
            f"{label_studio.url}/api/tasks/{task_id}/annotations", headers=headers, json={"result": result}, timeout=60
        ).raise_for_status()

    # Retraining runs in the background; wait for the run that saw all twelve annotations.
    final = _wait_for_version(ml_backend.model_dir, project, consensus_rows=12)
    assert final["promoted"], f"the retrained model was not promoted: {final}"
    assert _versions(ml_backend)["current"] == final["version"] != before

    # The next prediction comes from the new version, and it learned the annotators' label. (A new
    # task: Label Studio predicts every task a task list shows, so the old ones have predictions.)
    client.import_tasks(
        ls_client,
        project,
        [{"data": {"text": "the Zorblaxian people of sector 99 are a plague and must be removed", "language": "en"}}],
    )
    new_id = max(t["id"] for t in client.list_tasks(ls_client, project))
    fresh = _task_prediction(label_studio.url, label_studio.token, new_id)
    assert fresh[0]["model_version"] == final["version"]
    assert "hate" in fresh[0]["result"][0]["value"]["choices"]


def test_without_redis_retraining_runs_in_process(label_studio, ls_client, unique, tmp_path, monkeypatch):
    """No Redis: the webhook's retrain runs in a thread of the backend process, and a burst of
    events while one run is pending trains once."""
    import sys

    from smo_labelstudio.core.paths import REPO_ROOT
    from smo_labelstudio.core.taxonomy import load_taxonomy
    from smo_labelstudio.model.modelstore import ModelStore
    from smo_labelstudio.model.training import ensure_starter_model

    monkeypatch.syspath_prepend(str(REPO_ROOT / "ml_backend"))
    sys.modules.pop("jobs", None)
    import jobs

    store = ModelStore(tmp_path / "models")
    before = ensure_starter_model(store, load_taxonomy().ids)
    monkeypatch.setenv("SMO_MODEL_DIR", str(store.root))
    monkeypatch.setenv("SMO_LS_URL", label_studio.url)
    monkeypatch.setenv("SMO_LS_TOKEN", label_studio.token)
    monkeypatch.setenv("SMO_REDIS_URL", "")

    project = client.create_project(
        ls_client, f"in-process {unique}", configs.labeling_interface("text_moderation")["label_config"]
    )
    store.connect(project)  # what `smo backend connect` does through the backend's /connect
    client.import_tasks(
        ls_client, project, [{"data": {"text": f"buy Quuxcoin {i}, guaranteed 900% return"}} for i in range(10)]
    )
    headers = label_studio.headers
    for task in client.list_tasks(ls_client, project):
        result = [{"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": ["spam_scams"]}}]
        httpx.post(
            f"{label_studio.url}/api/tasks/{task['id']}/annotations",
            headers=headers,
            json={"result": result},
            timeout=60,
        ).raise_for_status()

    burst = [jobs.enqueue_retrain(project) for _ in range(5)]
    assert burst[0] == {"queued": True, "backend": "thread"}
    assert sum(r["queued"] for r in burst) <= 2 and "pending" in burst[-1]["reason"]
    metrics = _wait_for_version(store.root, project, consensus_rows=10, timeout=120)
    assert metrics["promoted"] and metrics["version"] != before
    time.sleep(3)  # let a second run, if the burst queued one, finish
    assert 2 <= len(store.versions()) <= 3
    # the newest promoted version serves: the first retrain's, or the second's when the burst queued one
    assert store.current_version() >= metrics["version"] > before


def test_consensus_counts_each_account_once():
    def ann(ann_id: int, who, label: str, cancelled: bool = False) -> dict:
        result = [{"from_name": "policy", "value": {"choices": [label]}}]
        return {"id": ann_id, "completed_by": who, "result": result, "was_cancelled": cancelled}

    export = [
        # one account says spam three times, another says no violation: 1 vote of 2, no majority
        {
            "data": {"text": "a"},
            "annotations": [
                ann(1, 7, "spam_scams"),
                ann(2, 7, "spam_scams"),
                ann(3, 7, "spam_scams"),
                ann(4, 8, "no_violation"),
            ],
        },
        # an account's latest annotation is its vote (the expanded `completed_by` form too)
        {
            "data": {"text": "b"},
            "annotations": [ann(5, {"id": 7}, "hate"), ann(6, 7, "spam_scams"), ann(7, 8, "spam_scams")],
        },
        # a later cancellation withdraws the account's vote
        {"data": {"text": "c"}, "annotations": [ann(8, 7, "hate"), ann(9, 7, "hate", cancelled=True)]},
    ]
    df = training.consensus_from_export(export)
    assert df["text"].tolist() == ["b"] and df["labels"].tolist() == [["spam_scams"]]


def test_promotion_is_judged_on_a_fixed_validation_set_kept_out_of_training(tmp_path):
    labels = load_taxonomy().ids
    store = ModelStore(tmp_path / "models")
    first = training.train_version(store, training.starter_data(n_per_label=15), labels)["version"]  # freezes a fifth
    frozen = training.validation_set(store)
    assert frozen is not None and len(frozen) >= 10

    def trained_texts(version: str) -> set[str]:
        return set(pd.read_json(store.versions_dir / version / "training_data.jsonl", lines=True)["text"])

    assert not trained_texts(first) & set(frozen["text"])
    # Retraining from a project: only a connected one; a repeated hint with nothing new trains nothing.
    export = [
        {
            "data": {"text": t},
            "annotations": [{"completed_by": 1, "result": [{"from_name": "policy", "value": {"choices": ["hate"]}}]}],
        }
        for t in frozen["text"][:5]
    ]
    with pytest.raises(ModelStoreError, match="not connected"):
        training.retrain_from_export(str(store.root), export, 41)
    store.connect(41)
    once = training.retrain_from_export(str(store.root), export, 41)
    assert once["n_test"] == len(frozen) and once["consensus_rows"] == 5
    assert not trained_texts(once["version"]) & set(frozen["text"])  # validation rows never train
    again = training.retrain_from_export(str(store.root), export, 41)
    assert "unchanged" in again["skipped"] and len(store.versions()) == 2
    # An operator's file replaces the set; every later promotion is judged on it.
    own = training.starter_data(n_per_label=2, seed=5)
    replaced = training.train_version(store, training.starter_data(n_per_label=15, seed=3), labels, validation=own)
    assert replaced["n_test"] == len(own) and training.validation_set(store)["text"].tolist() == own["text"].tolist()


def test_connect_with_a_state_from_before_the_admin_password_is_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from smo_labelstudio.cli.backend import app
    from smo_labelstudio.stack import control

    monkeypatch.setenv("SMO_HOME", str(tmp_path))
    control.save_state(tmp_path, {"backend": {"user": "u", "password": "p", "webhook_secret": "old"}})
    result = CliRunner().invoke(app, ["connect", "--project", "1"])
    assert result.exit_code == 1 and "run `smo stack up` once" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
