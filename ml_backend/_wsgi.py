"""The backend's WSGI app: label_studio_ml's Flask app with our routes in front of its broken or
unsafe parts (1.0.9 against Label Studio 1.23: /versions by GET, training jobs, 500s with tracebacks).

Every request needs HTTP basic auth (SMO_BACKEND_USER / SMO_BACKEND_PASSWORD); webhooks also need the
shared secret header. Served by gunicorn: `gunicorn --chdir ml_backend _wsgi:app`.
"""

from __future__ import annotations

import hmac
import logging
import os

from flask import jsonify, request
from jobs import enqueue_retrain
from label_studio_ml.api import init_app
from model import STORE, BadRequest, SafetyModel, check_config, task_texts

from smo_labelstudio.model.modelstore import ModelStoreError
from smo_labelstudio.model.textmodel import predict_tasks

logging.getLogger("label_studio_ml").setLevel(logging.WARNING)  # its debug logs print request bodies
USER = os.environ.get("SMO_BACKEND_USER", "")
PASSWORD = os.environ.get("SMO_BACKEND_PASSWORD", "")
WEBHOOK_SECRET = os.environ.get("SMO_WEBHOOK_SECRET", "")
SECRET_HEADER = "X-SMO-Webhook-Secret"
TRAIN_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING"}

app = init_app(model_class=SafetyModel, model_dir=os.environ.get("SMO_MODEL_DIR"))


def _error(status: int, message: str):
    return jsonify({"error": message, "status": status}), status


@app.before_request
def _authenticate():
    auth = request.authorization
    ok = (
        bool(USER and PASSWORD)
        and auth is not None
        and hmac.compare_digest(auth.username or "", USER)
        and hmac.compare_digest(auth.password or "", PASSWORD)
    )
    if not ok:
        response, status = _error(401, "authentication required")
        response.headers["WWW-Authenticate"] = 'Basic realm="smo-ml-backend"'
        return response, status
    if (
        request.path == "/webhook"
        and WEBHOOK_SECRET
        and not hmac.compare_digest(request.headers.get(SECRET_HEADER, ""), WEBHOOK_SECRET)
    ):
        return _error(403, f"webhook without the right {SECRET_HEADER} header")
    return None


def _current():
    try:
        return STORE.current()
    except ModelStoreError as exc:
        raise BadRequest(503, str(exc)) from None


@app.errorhandler(BadRequest)
def _bad_request(exc: BadRequest):
    return _error(exc.status, str(exc))


@app.errorhandler(Exception)
def _unexpected(exc: Exception):
    logging.getLogger("smo.ml_backend").exception("unexpected error")
    return _error(500, f"internal error ({exc.__class__.__name__}); see the backend log")


def predict():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest(400, "the body must be a JSON object with `tasks`")
    version, model = _current()
    to_name = check_config(data.get("label_config"), model.labels)
    results = predict_tasks(model, version, task_texts(data.get("tasks")), to_name)
    return jsonify({"results": results, "model_version": version})


def setup():
    data = request.get_json(silent=True) or {}
    version, model = _current()
    check_config(data.get("schema"), model.labels)
    return jsonify({"model_version": version})


def health():
    version = STORE.current_version()
    return jsonify({"status": "UP", "model_version": version, "v2": True})


def versions():
    return jsonify({"versions": STORE.versions(), "current": STORE.current_version()})


def webhook():
    data = request.get_json(silent=True) or {}
    action = data.get("action")
    project = (data.get("project") or {}).get("id") if isinstance(data.get("project"), dict) else None
    if action not in TRAIN_ACTIONS:
        return jsonify({"ignored": action}), 200
    if not isinstance(project, int):
        raise BadRequest(400, "webhook payload has no project id")
    return jsonify(enqueue_retrain(project)), 201


app.view_functions.update(
    {"_predict": predict, "_setup": setup, "health": health, "webhook": webhook, "get_version": versions}
)
app.add_url_rule("/versions", "versions_get", versions, methods=["GET"])
