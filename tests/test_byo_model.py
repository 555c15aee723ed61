"""Bring your own model (issue 20) on the real components: the session's ML backend (gunicorn, its own
environment) serving a team's scikit-learn pipeline saved with joblib and a team's HTTP endpoint started here,
both pre-annotating a launch batch into the real Label Studio; an endpoint that hangs leaves the tasks without
predictions, listed in missing_predictions.csv, and the launch completes; the labeling screen opens the task."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import joblib
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from smo_labelstudio.core.paths import REPO_ROOT
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.ingest import launch
from smo_labelstudio.labelstudio import client
from smo_labelstudio.model.modelstore import ModelStore
from smo_labelstudio.model.serving import use_model
from smo_labelstudio.model.training import starter_data

LABELS = load_taxonomy().ids
TOKEN = "team-endpoint-token-7c1f"
ROWS = [
    ("a1", "click here to claim your free prize now", "en"),
    ("a2", "have a great day everyone", "en"),
    ("a3", "gracias por compartir esta receta", "es"),
    ("a4", "your bank account is locked, send your password", "en"),
    ("a5", "the match last night was exciting", "en"),
    ("a6", "ce vaccin contient des puces", "fr"),
]


class Endpoint:
    """A team's model endpoint (the JSON contract of ml_backend/README.md), or one that hangs until released."""

    def __init__(self, hang: bool = False):
        self.seen: list[dict] = []
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.seen.append({"auth": self.headers.get("Authorization"), "n": len(body["texts"])})
                if hang:
                    endpoint.release.wait(60)
                    return
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send_response(401)
                    self.end_headers()
                    return
                predictions = []
                for text in body["texts"]:
                    spam = any(w in text.lower() for w in ("prize", "password", "click"))
                    scores = {p: 0.02 for p in body["policies"]}
                    scores["spam_scams" if spam else "no_violation"] = 0.93
                    predictions.append({"policy_scores": scores, "severity_scores": {"1": 0.8, "2": 0.2}})
                answer = json.dumps({"model_version": "team-http-7", "predictions": predictions}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/score"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(ml_backend):
    """The session backend's model store; the built-in model is served again afterwards."""
    store = ModelStore(ml_backend.model_dir)
    yield store
    store.set_serving({"kind": "builtin"})


def _launch(label_studio, ml_backend, tmp_path: Path, title: str) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / f"{title}.csv"
    data.write_text("id,text,language\n" + "".join(f'{i},"{t}",{lang}\n' for i, t, lang in ROWS), encoding="utf-8")
    spec_file = tmp_path / f"{title}.yaml"
    text = (REPO_ROOT / "specs" / "example.yaml").read_text()
    spec_file.write_text(text.replace("title: Text moderation - example batch", f"title: {title}"))
    plan = launch.plan_launch(
        load_spec(spec_file), data, label_studio.url, label_studio.token, batch_size=6, home=tmp_path / "home"
    )
    backend = (ml_backend.url, ml_backend.auth)
    results = launch.import_all(plan, label_studio.url, label_studio.token, backend)
    return launch.finish(plan, results, label_studio.url)


def _kept_predictions(tmp_path: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in (tmp_path / "home").glob("workspaces/*/runs/*/predictions/*.parquet"))


def test_a_joblib_pipeline_and_an_http_endpoint_pre_annotate_and_a_hanging_one_is_listed(
    served, ml_backend, label_studio, tmp_path, unique
):
    # 1. A scikit-learn pipeline the model team saved with joblib, in the trusted folder the stack made.
    rows = starter_data(n_per_label=12, seed=5)
    pipeline = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)), LogisticRegression(C=50, max_iter=1000)
    )
    pipeline.fit(rows["text"], rows["labels"].map(lambda labels: labels[0]))
    files = ml_backend.model_dir / "files"
    joblib.dump(
        {"policy": pipeline, "version": f"team-sk-{unique}", "training": {"n": len(rows), "sources": {"team": 1}}},
        files / f"team-{unique}.joblib",
    )
    card = use_model(served, str(files / f"team-{unique}.joblib"), LABELS, files_dir=files, timeout=20)
    assert card["version"] == f"team-sk-{unique}" and card["kind"] == "sklearn"
    assert card["changes"]["kind"] and card["by_language"] and card["calibration"]["ece"] is not None
    assert served.card(card["version"]) == card  # kept with the model

    m = _launch(label_studio, ml_backend, tmp_path / "sk", f"byo sk {unique}")
    assert (m["imported"], m["predictions"], m["missing_predictions"]) == (6, 6, 0), m
    kept = _kept_predictions(tmp_path / "sk")
    assert set(kept["model_version"]) == {f"team-sk-{unique}"}
    by_item = dict(zip(kept["item_id"], kept["policy"]))
    assert len(by_item) == 6 and "spam_scams" in set(by_item.values())
    assert all(set(json.loads(s)) == set(LABELS) for s in kept["label_scores"])  # a score for every policy

    # 2. The team's HTTP endpoint, with its token from settings (SMO_MODEL_TOKEN -> the store, 0600).
    team = Endpoint()
    hanging = Endpoint(hang=True)
    try:
        card = use_model(served, team.url, LABELS, timeout=20, token=TOKEN)
        assert card["version"] == "team-http-7" and card["kind"] == "http"
        assert TOKEN not in json.dumps(card) and TOKEN not in served.serving_path.read_text()
        m = _launch(label_studio, ml_backend, tmp_path / "http", f"byo http {unique}")
        assert (m["imported"], m["predictions"], m["missing_predictions"]) == (6, 6, 0), m
        assert set(_kept_predictions(tmp_path / "http")["model_version"]) == {"team-http-7"}
        assert {s["auth"] for s in team.seen} == {f"Bearer {TOKEN}"}
        versions = httpx.get(ml_backend.url + "/versions", auth=ml_backend.admin_auth, timeout=10).json()
        assert versions["serving"]["kind"] == "http" and TOKEN not in json.dumps(versions)

        # 3. An endpoint that hangs: each batch gets no predictions after the 1 s budget; the launch completes.
        served.set_serving({"kind": "http", "url": hanging.url, "labels": LABELS, "timeout": 1, "version": "hang"})
        m = _launch(label_studio, ml_backend, tmp_path / "hang", f"byo hang {unique}")
        assert (m["imported"], m["predictions"], m["missing_predictions"]) == (6, 0, 6), m
        assert any("did not answer within 1 s" in p for p in m["prediction_problems"]), m["prediction_problems"]
        missing = pd.read_csv(m["missing_predictions_file"])
        assert sorted(missing["external_id"]) == sorted(r[0] for r in ROWS)
        assert missing["reason"].str.contains("did not answer within 1 s").all()

        # The labeling screen: Label Studio asks the backend for the opened task, gets a 503, shows it without one.
        project = m["project_id"]
        client.connect_backend(
            label_studio.url, label_studio.token, project, ml_backend.url, ml_backend.auth, ml_backend.admin_auth
        )
        task_id = min(t["id"] for t in client.list_tasks(client.connect(label_studio.url, label_studio.token), project))
        opened = httpx.get(f"{label_studio.url}/api/tasks/{task_id}", headers=label_studio.headers, timeout=60)
        assert opened.status_code == 200 and opened.json()["predictions"] == []
        assert len(hanging.seen) >= 2
    finally:
        team.close()
        hanging.close()
