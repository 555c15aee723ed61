"""The model adapters, serving switch and model cards without servers (an HTTP endpoint is a local
http.server thread): scores, the JSON contract, deadlines, switching, cards and what changed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer

from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.model import card as cards
from smo_labelstudio.model.adapters import (
    HttpAdapter,
    ModelUnavailable,
    Scores,
    SklearnAdapter,
    can_fit,
    check_url,
    display_url,
    predict_within,
)
from smo_labelstudio.model.modelstore import ModelStore
from smo_labelstudio.model.serving import Server, predictions, use_model
from smo_labelstudio.model.training import ensure_starter_model, starter_data

LABELS = load_taxonomy().ids


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ModelStore:
    s = ModelStore(tmp_path_factory.mktemp("store") / "models")
    ensure_starter_model(s, LABELS)
    (s.root / "files").mkdir(mode=0o700)
    return s


def _answer(texts: list[str], policies: list[str]) -> dict:
    rows = []
    for t in texts:
        scores = {p: 0.01 for p in policies}
        scores["spam_scams" if "prize" in t else "no_violation"] = 0.9
        rows.append({"policy_scores": scores, "severity_scores": {"1": 0.7, "3": 0.3}})
    return {"model_version": "ep-1", "predictions": rows}


class _Endpoint:
    def __init__(self, respond):
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.headers.append(dict(self.headers))
                status, payload = respond(body)
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/score"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_http_adapter_follows_the_json_contract_and_sends_the_token():
    with _Endpoint(lambda b: (200, _answer(b["texts"], b["policies"]))) as ep:
        adapter = HttpAdapter(ep.url, LABELS, timeout=5, token="tok-123")
        scores = adapter.predict_scores(["win a prize", "hello"])
        assert scores.version == "ep-1" and scores.policy.shape == (2, len(LABELS))
        assert list(scores.severity) == [1, 1] and ep.headers[0]["Authorization"] == "Bearer tok-123"
        preds = predictions(adapter, scores)
        assert preds[0]["model_version"] == "ep-1" and preds[0]["result"][0]["value"]["choices"] == ["spam_scams"]
        assert preds[1]["result"][0]["value"]["choices"] == ["no_violation"] and len(preds[1]["result"]) == 1
        assert "tok-123" not in repr(adapter)


@pytest.mark.parametrize(
    "status, payload, words",
    [
        (500, {"error": "boom"}, "answered HTTP 500"),
        (302, b"", "answered HTTP 302"),  # a redirect is not followed (it could carry the token elsewhere)
        (200, b"<html>", "not JSON"),
        (200, {"predictions": []}, "no list of 2 predictions"),
        (200, {"predictions": [{"policy_scores": {"hate": 1.5}}, {"policy_scores": {}}]}, "not a number in [0, 1]"),
        (200, {"predictions": [{"policy_scores": {"hate": True}}, {"policy_scores": {}}]}, "not a number in [0, 1]"),
        (200, {"predictions": [{"nope": 1}, {"policy_scores": {}}]}, "no policy_scores"),
    ],
)
def test_a_bad_answer_is_a_reason_not_a_prediction(status, payload, words):
    with _Endpoint(lambda b: (status, payload)) as ep:
        with pytest.raises(ModelUnavailable, match=words.replace("[", r"\[").replace("]", r"\]")):
            HttpAdapter(ep.url, LABELS, timeout=5).predict_scores(["a", "b"])


def test_a_url_carries_no_credentials_and_is_shown_without_query():
    with pytest.raises(Exception, match="SMO_MODEL_TOKEN"):
        check_url("https://user:pw@models.example/score")
    assert display_url("https://models.example:8443/score?key=secret#x") == "https://models.example:8443/score"
    with pytest.raises(Exception, match="not an http"):
        check_url("file:///etc/passwd")


def test_a_hanging_model_gives_up_at_the_deadline():
    class Hanging:
        kind, version, labels = "fake", "hang-1", LABELS
        release = threading.Event()

        def predict_scores(self, texts):
            self.release.wait(30)
            return Scores(np.zeros((len(texts), len(LABELS))))

    model = Hanging()
    try:
        with pytest.raises(ModelUnavailable, match="did not answer within 0.3 s"):
            predict_within(model, ["x"], 0.3)
    finally:
        model.release.set()


def test_a_multilabel_joblib_bundle_with_severity_serves_its_version(store):
    rows = starter_data(n_per_label=8, seed=2)
    binarizer = MultiLabelBinarizer(classes=LABELS)
    y = binarizer.fit_transform(rows["labels"])
    policy = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)), OneVsRestClassifier(LogisticRegression())
    )
    policy.fit(rows["text"], y)
    graded = rows[rows["severity"].notna()]
    severity = make_pipeline(TfidfVectorizer(analyzer="char_wb"), LogisticRegression(max_iter=300)).fit(
        graded["text"], graded["severity"].astype(int)
    )
    path = store.root / "files" / "multi.joblib"
    joblib.dump({"policy": policy, "labels": LABELS, "severity": severity, "version": "multi-3"}, path)
    adapter = SklearnAdapter.load(path, store.root / "files")
    assert not can_fit(adapter) and adapter.labels == LABELS
    scores = predict_within(adapter, ["click here to claim your free prize now"], 10)
    assert scores.severity is not None and set(scores.severity) <= {1, 2, 3, 4}
    assert LABELS[int(scores.policy[0].argmax())] == "spam_scams"
    preds = predictions(adapter, scores)
    assert preds[0]["model_version"] == "multi-3" and set(preds[0]["result"][0]["label_scores"]) == set(LABELS)


def test_switching_scores_the_model_keeps_its_card_and_workers_follow(store):
    server = Server(store)
    builtin = server.adapter()
    assert builtin.kind == "builtin" and can_fit(builtin)
    with _Endpoint(lambda b: (200, _answer(b["texts"], b["policies"]))) as ep:
        card = use_model(store, ep.url, LABELS, timeout=5, token="tok-9")
        assert store.serving()["kind"] == "http" and store.serving_version() == "ep-1"
        assert (store.token_path.stat().st_mode & 0o777) == 0o600 and "tok-9" not in store.serving_path.read_text()
        assert card["changes"]["previous_version"] == builtin.version and card["changes"]["kind"] == "builtin -> http"
        assert {r["language"] for r in card["by_language"]} >= {"en", "ar"}
        served = server.adapter()  # the next request of a running worker: no restart
        assert served.kind == "http" and served.token == "tok-9"
    card = use_model(store, "builtin", LABELS)
    assert server.adapter().kind == "builtin" and card["version"] == builtin.version and not store.token_path.exists()


def test_a_model_that_hangs_or_fails_is_not_switched_to(store):
    store.set_serving({"kind": "builtin"})
    release = threading.Event()

    def slow(body):
        release.wait(10)
        return 200, _answer(body["texts"], body["policies"])

    with _Endpoint(slow) as ep:
        try:
            with pytest.raises(ModelUnavailable, match="not switched: .*did not answer within 0.5 s"):
                use_model(store, ep.url, LABELS, timeout=0.5)
        finally:
            release.set()
    assert store.serving() == {"kind": "builtin"}


def test_a_broken_recorded_model_is_a_503_reason(store):
    store.set_serving({"kind": "sklearn", "path": str(store.root / "files" / "gone.joblib"), "sha256": "x"})
    try:
        with pytest.raises(ModelUnavailable, match="no such model file"):
            Server(store).adapter()
    finally:
        store.set_serving({"kind": "builtin"})


def test_every_built_in_version_gets_a_card_saying_what_changed(store):
    from smo_labelstudio.model.training import train_version

    first = store.current_version()
    metrics = train_version(store, starter_data(n_per_label=12, seed=7), LABELS, source="more data")
    card = store.card(metrics["version"])
    assert card["changes"]["previous_version"] == first and card["changes"]["same_validation_rows"]
    assert card["training"]["n"] == metrics["n_train"] and card["changes"]["n_train"] < 0  # fewer rows than before
    assert set(card) >= {"by_policy", "by_language", "calibration", "training", "validation", "metrics"}
    assert card["training"]["sources"] == {"base": metrics["n_train"]} and card["training"]["source"] == "more data"


def test_calibration_error_of_perfect_and_overconfident_scores():
    truth = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    assert cards.calibration(truth.astype(float), truth)["ece"] == 0.0
    bad = cards.calibration(np.full((4, 2), 0.95), truth)
    assert bad["ece"] == pytest.approx(0.45) and bad["bins"][-1]["observed"] == 0.5


def test_a_model_that_answers_in_time_gives_its_scores():
    class Quick:
        kind, version, labels = "fake", "q", LABELS

        def predict_scores(self, texts):
            return Scores(np.zeros((len(texts), len(LABELS))), version="q-2")

    assert predict_within(Quick(), ["a"], 5).version == "q-2"


def test_the_operations_report_shows_the_model_card_of_the_versions_it_evaluates(tmp_path, monkeypatch):
    from test_ops_report import NOW, _spec, _workspace

    from smo_labelstudio.core.spec import load_spec
    from smo_labelstudio.metrics import operations as om
    from smo_labelstudio.reports import operations as ops

    spec = load_spec(_spec(tmp_path, "ops cards", overlap={"annotators": 3, "share": 0}))
    made = _workspace(tmp_path, spec.title, n_planned=30, n_answered=24)
    store = ModelStore(tmp_path / "models")
    monkeypatch.setenv("SMO_MODEL_DIR", str(store.root))
    validation = pd.DataFrame(
        {"text": ["a", "b", "c", "d"], "labels": [["hate"], ["no_violation"]] * 2, "language": ["en", "en", "fr", None]}
    )
    proba = np.array([[0.9, 0.1], [0.2, 0.7], [0.4, 0.6], [0.1, 0.8]])
    previous = cards.model_card(
        version="m0",
        kind="builtin",
        source="starter",
        labels=["hate", "no_violation"],
        validation=validation,
        proba=proba,
        predicted=[["hate"], ["no_violation"], ["no_violation"], ["no_violation"]],
        training={"n": 50, "sources": {"base": 50}},
        validation_sha256="v1",
    )
    card = cards.model_card(
        version="m1",
        kind="sklearn",
        source="/models/files/team.joblib",
        labels=["hate", "no_violation"],
        validation=validation,
        proba=proba,
        predicted=[["hate"], ["no_violation"], ["hate"], ["no_violation"]],
        training={"n": 80, "sources": {"team corpus": 80}},
        previous=previous,
        validation_sha256="v1",
        notes='<script>alert(1)</script> =HYPERLINK("x")',
    )
    store.save_card("m1", card)
    assert card["changes"]["n_train"] == 30 and card["changes"]["sources_added"] == ["team corpus"]
    report = om.compute_ops(spec, om.load_ops_inputs(made["ws"]), now=NOW, n_boot=20)
    text = ops.render_markdown(report, {})
    assert "## Model cards" in text and "\n### m1\n" in text and "What changed" in text
    files = ops.write_ops_report(report, tmp_path / "out", cap=200)
    html = files.html.read_text()
    assert "Model cards" in html and "team corpus (80)" in html and "+30 training rows" in html
    assert "model kind builtin -&gt; sklearn" in html and "<script>alert" not in html


def test_a_large_batch_goes_to_a_team_model_in_chunks_each_under_the_deadline():
    from smo_labelstudio.model.serving import predict_batch

    class Counting:
        kind, version, labels = "fake", "c-1", LABELS
        calls: list[int] = []

        def predict_scores(self, texts):
            self.calls.append(len(texts))
            n = len(texts)
            return Scores(np.full((n, len(LABELS)), 0.1), np.full(n, 2), np.full(n, 0.9), "c-1")

    model = Counting()
    scores = predict_batch(model, [f"t{i}" for i in range(250)], 5)
    assert model.calls == [100, 100, 50] and scores.policy.shape == (250, len(LABELS)) and len(scores.severity) == 250


def test_smo_backend_use_switches_from_the_command_line_and_versions_says_so(store, monkeypatch):
    from typer.testing import CliRunner

    from smo_labelstudio.cli import app

    monkeypatch.setenv("SMO_HOME", str(store.root.parent))  # the stack's model store is <home>/models
    monkeypatch.setenv("SMO_MODEL_TOKEN", "cli-token-1")
    monkeypatch.setenv("SMO_MODEL_TIMEOUT", "5")
    try:
        with _Endpoint(lambda b: (200, _answer(b["texts"], b["policies"]))) as ep:
            result = CliRunner().invoke(app, ["backend", "use", "--model", ep.url, "--json"])
            assert result.exit_code == 0, result.stderr
            card = json.loads(result.stdout)
            assert card["version"] == "ep-1" and "cli-token-1" not in result.stdout
            assert ep.headers[0]["Authorization"] == "Bearer cli-token-1" and store.serving()["timeout"] == 5
        listed = CliRunner().invoke(app, ["backend", "versions"])
        assert listed.exit_code == 0 and "serving ep-1 (http;" in listed.stdout
    finally:
        store.set_serving({"kind": "builtin"})
