"""The ML backend against hostile clients and hostile Label Studio members (issue 16), on the real
backend (gunicorn, its own environment) and the real Label Studio of the session.

- Only the routes we serve answer; label-studio-ml's own (/train writes where its body says) are 404.
- The gate decides from the request line and headers alone: a client that declares a huge body and
  sends none gets its 401 (or, authenticated, 413) at once.
- Label Studio holds only a predict-only credential; webhooks are hints acted on for connected projects
  only; one account counts once per task; promotion is judged on the fixed validation set.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from smo_labelstudio.labelstudio import client, configs
from smo_labelstudio.model.training import starter_data

pytestmark = pytest.mark.usefixtures("ml_backend")
POLICY = "policy"


def _raw(backend, method: str, path: str, auth=None, body: bytes | None = None) -> tuple[int, dict, str]:
    """One request sent as written (no path normalisation): status, JSON body, raw text."""
    host, port = backend.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = httpx.BasicAuth(*auth)._auth_header
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    return resp.status, json.loads(text), text


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/train"),
        ("GET", "/metrics"),
        ("GET", "/is_training"),
        ("POST", "/is_training"),
        ("GET", "/../etc/passwd"),
        ("POST", "/predict/../train"),
        ("GET", "/predict"),  # a served path with a method we do not serve
        ("GET", "/"),
    ],
)
def test_routes_we_do_not_serve_are_404_without_traceback(ml_backend, method, path):
    for auth in (None, ml_backend.auth, ml_backend.admin_auth):
        status, body, text = _raw(ml_backend, method, path, auth, b"{}" if method == "POST" else None)
        assert status == 404 and body["error"] == "not found", (path, text)
        assert "Traceback" not in text and "File " not in text


def test_train_cannot_write_outside_the_model_folder(ml_backend, tmp_path):
    target = tmp_path / "written-by-train"
    body = json.dumps({"project": str(target), "label_config": "<View/>"}).encode()
    status, _, _ = _raw(ml_backend, "POST", "/train", ml_backend.admin_auth, body)
    assert status == 404 and not target.exists()


def _declare_huge_body(backend, auth=None) -> bytes:
    """Send only headers declaring a 1 TB body; return what the backend answers within 5 s."""
    host, port = backend.url.removeprefix("http://").split(":")
    lines = [
        "POST /predict HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        "Content-Length: 10" + "0" * 11,
    ]
    if auth:
        lines.append("Authorization: " + httpx.BasicAuth(*auth)._auth_header)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096)


def test_authentication_and_the_size_cap_come_before_any_body_is_read(ml_backend):
    started = time.monotonic()
    assert _declare_huge_body(ml_backend).startswith(b"HTTP/1.1 401 ")
    assert _declare_huge_body(ml_backend, ("someone", "guess")).startswith(b"HTTP/1.1 401 ")
    assert _declare_huge_body(ml_backend, ml_backend.auth).startswith(b"HTTP/1.1 413 ")
    assert time.monotonic() - started < 3  # answered at once: nothing waited for the body

    # A chunked body (no length declared) is read only up to the cap, then refused.
    def chunks():
        for _ in range(17):
            yield b" " * (1024 * 1024)

    resp = httpx.post(ml_backend.url + "/predict", auth=ml_backend.auth, content=chunks(), timeout=30)
    assert resp.status_code == 413 and "over" in resp.json()["error"]


@pytest.mark.parametrize("path", ["/webhook", "/setup", "/predict"])
@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'[{"action": "ANNOTATION_CREATED"}]', b'"text"', b"3", b"null", b"{", b""]
)
def test_a_body_that_is_not_one_json_object_is_a_400_json(ml_backend, path, body):
    status, answer, text = _raw(ml_backend, "POST", path, ml_backend.auth, body)
    assert status == 400 and "JSON object" in answer["error"], text


def test_the_credential_label_studio_holds_can_only_predict(ml_backend, label_studio, ls_client, unique):
    project = client.create_project(
        ls_client, f"predict-only {unique}", configs.labeling_interface("text_moderation")["label_config"]
    )
    client.connect_backend(
        label_studio.url, label_studio.token, project, ml_backend.url, ml_backend.auth, ml_backend.admin_auth
    )
    # What every member of the organization can read: the ML backend setting and the webhook.
    headers = label_studio.headers
    seen = json.dumps(
        [
            httpx.get(f"{label_studio.url}/api/ml", params={"project": project}, headers=headers).json(),
            httpx.get(f"{label_studio.url}/api/webhooks/", params={"project": project}, headers=headers).json(),
        ]
    )
    assert ml_backend.admin_auth[1] not in seen
    hooks = json.loads(seen)[1]
    assert len(hooks) == 1 and hooks[0]["send_payload"] is False and set(hooks[0]["headers"]) == {"Authorization"}

    # With it: predictions, yes; versions, connecting, training, no.
    predict = ml_backend.auth
    assert httpx.get(ml_backend.url + "/health", auth=predict).status_code == 200
    ok = httpx.post(ml_backend.url + "/predict", auth=predict, json={"tasks": [{"data": {"text": "hello"}}]})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 1
    assert httpx.get(ml_backend.url + "/versions", auth=predict).status_code == 403
    assert httpx.post(ml_backend.url + "/connect", auth=predict, json={"project": project + 1000}).status_code == 403
    assert httpx.post(ml_backend.url + "/train", auth=predict, json={"project": project}).status_code == 404


def _versions(backend) -> dict:
    return httpx.get(backend.url + "/versions", auth=backend.admin_auth, timeout=10).json()


def test_a_forged_webhook_naming_another_project_changes_nothing(ml_backend, label_studio, ls_client, unique):
    stranger = client.create_project(
        ls_client, f"not connected {unique}", configs.labeling_interface("text_moderation")["label_config"]
    )
    before = _versions(ml_backend)
    for hint in (
        {"url": f"/webhook?project={stranger}", "json": {"action": "ANNOTATION_CREATED"}},
        {"url": "/webhook", "json": {"action": "START_TRAINING", "project": {"id": stranger}}},
        {"url": "/webhook?project=999999", "json": {"action": "ANNOTATION_CREATED"}},
    ):
        resp = httpx.post(ml_backend.url + hint["url"], json=hint["json"], auth=ml_backend.auth)
        assert resp.status_code == 200 and resp.json() == {"ignored": "project not connected to this backend"}
    assert _versions(ml_backend) == before


def _wait_for_version(model_dir: Path, project: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(model_dir.glob("versions/*/metrics.json")):
            metrics = json.loads(path.read_text())
            if metrics.get("project") == project:
                return metrics
        time.sleep(0.5)
    raise AssertionError(f"no version trained from project {project} in {timeout} s")


def _rows(model_dir: Path, version: str) -> list[dict]:
    text = (model_dir / "versions" / version / "training_data.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _choice(label: str) -> list[dict]:
    return [{"from_name": POLICY, "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def _hint(backend, project: int) -> None:
    resp = httpx.post(
        f"{backend.url}/webhook?project={project}", json={"action": "ANNOTATION_CREATED"}, auth=backend.auth
    )
    assert resp.status_code == 202 and resp.json()["queued"] in (True, False), resp.text


def _connected_project(label_studio, ls_client, ml_backend, title: str, tasks: list[dict]) -> tuple[int, list[int]]:
    project = client.create_project(ls_client, title, configs.labeling_interface("text_moderation")["label_config"])
    with httpx.Client(base_url=ml_backend.url, auth=ml_backend.admin_auth) as admin:
        assert admin.post("/connect", json={"project": project}).status_code == 200
    client.import_tasks(ls_client, project, tasks)
    return project, sorted(t["id"] for t in client.list_tasks(ls_client, project))


def test_one_account_posting_many_annotations_on_a_task_counts_once(ml_backend, label_studio, ls_client, unique):
    headers = label_studio.headers
    other = httpx.post(
        f"{label_studio.url}/api/users/",
        headers=headers,
        json={"email": f"second-{unique}@example.org", "username": f"second-{unique}"},
        timeout=60,
    )
    other.raise_for_status()
    texts = [f"outvoted {unique}: Blorvian tea is the finest", f"agreed {unique}: claim your Blorvian prize now"]
    project, (outvoted, agreed) = _connected_project(
        label_studio, ls_client, ml_backend, f"one vote {unique}", [{"data": {"text": t}} for t in texts]
    )

    def annotate(task: int, label: str, user: int | None = None) -> None:
        body = {"result": _choice(label)} | ({"completed_by": user} if user else {})
        httpx.post(
            f"{label_studio.url}/api/tasks/{task}/annotations", headers=headers, json=body, timeout=60
        ).raise_for_status()

    for _ in range(3):  # the admin's account says spam three times; the second account says no violation
        annotate(outvoted, "spam_scams")
    annotate(outvoted, "no_violation", other.json()["id"])
    annotate(agreed, "spam_scams")  # both accounts agree once each
    annotate(agreed, "spam_scams", other.json()["id"])
    _hint(ml_backend, project)
    metrics = _wait_for_version(ml_backend.model_dir, project)
    rows = {
        r["text"]: r for r in _rows(ml_backend.model_dir, metrics["version"]) if r["origin"] == f"project:{project}"
    }
    assert metrics["consensus_rows"] == 1 and set(rows) == {texts[1]}  # 1 vote of 2 is no majority
    assert rows[texts[1]]["labels"] == ["spam_scams"]


def test_a_poisoned_project_cannot_change_the_promoted_model(ml_backend, label_studio, ls_client, unique):
    # Flipped labels on what the model knows well: 80 scam and hate texts of the kind it was trained on
    # (no marker they share), each marked "no violation".
    known = starter_data(seed=7)
    poison = [
        {"data": {"text": text}, "annotations": [{"result": _choice("no_violation")}]}
        for text, labels in zip(known["text"], known["labels"])
        if labels[0] in ("spam_scams", "hate")
    ]
    before = _versions(ml_backend)["current"]
    project, _ = _connected_project(label_studio, ls_client, ml_backend, f"poisoned {unique}", poison)
    _hint(ml_backend, project)
    metrics = _wait_for_version(ml_backend.model_dir, project)
    assert metrics["consensus_rows"] == 80 and metrics["validation"] == "fixed"
    assert not metrics["promoted"] and metrics["macro_f1"] < metrics["previous_macro_f1_same_rows"]
    assert _versions(ml_backend)["current"] == before

    # The poisoned rows do not carry into the next training set: a clean project's retrain builds on
    # the promoted version, not the rejected one.
    clean, _ = _connected_project(
        label_studio,
        ls_client,
        ml_backend,
        f"clean {unique}",
        [
            {
                "data": {"text": f"Quibbleton bonds {unique} {i}: 900% return"},
                "annotations": [{"result": _choice("spam_scams")}],
            }
            for i in range(3)
        ],
    )
    _hint(ml_backend, clean)
    after = _wait_for_version(ml_backend.model_dir, clean)
    trained = _rows(ml_backend.model_dir, after["version"])
    origins = {r["origin"] for r in trained}
    assert f"project:{clean}" in origins and f"project:{project}" not in origins
    validation = (ml_backend.model_dir / "validation.jsonl").read_text().splitlines()
    assert not {json.loads(line)["text"] for line in validation} & {r["text"] for r in trained}
