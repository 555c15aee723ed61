"""The backend's WSGI app: label_studio_ml's Flask app behind a gate (`Gate`) that nothing passes
unchecked, with our routes in place of its broken or unsafe ones (1.0.9 against Label Studio 1.23:
/versions by GET, training jobs, /train writing where its request says, 500s with tracebacks).

Two credentials, both HTTP basic auth:
- predict (SMO_BACKEND_USER / SMO_BACKEND_PASSWORD): the one Label Studio holds (its ML-backend setting
  and the webhook's header, which every member of a Community organization can read). It can only
  predict (/health, /setup, /predict) and send webhook hints (/webhook), which name an event and a
  project and are acted on only for projects an operator connected.
- admin (user `admin`, SMO_BACKEND_ADMIN_PASSWORD): never given to Label Studio; also lists versions
  and connects projects (/versions, /connect).

Served by gunicorn: `gunicorn --chdir ml_backend _wsgi:app`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import json
import logging
import os
from urllib.parse import parse_qs

from flask import jsonify, request
from jobs import enqueue_retrain
from label_studio_ml.api import init_app
from model import SERVER, STORE, BadRequest, SafetyModel, check_config, serve

from smo_labelstudio.model.adapters import ModelUnavailable, display_url

logging.getLogger("label_studio_ml").setLevel(logging.WARNING)  # its debug logs print request bodies
USER = os.environ.get("SMO_BACKEND_USER", "")
PASSWORD = os.environ.get("SMO_BACKEND_PASSWORD", "")
ADMIN_USER = "admin"
ADMIN_PASSWORD = os.environ.get("SMO_BACKEND_ADMIN_PASSWORD", "")
MAX_BODY = 16 * 1024 * 1024  # a /predict batch of 100 tasks at the 20,000-character limit fits
TRAIN_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING"}
PREDICT_ROUTES = {("GET", "/health"), ("POST", "/setup"), ("POST", "/predict"), ("POST", "/webhook")}
ADMIN_ROUTES = PREDICT_ROUTES | {("GET", "/versions"), ("POST", "/connect")}

flask_app = init_app(model_class=SafetyModel, model_dir=os.environ.get("SMO_MODEL_DIR"))


def _json_response(start_response, status: int, message: str, extra: list[tuple[str, str]] | None = None):
    reason = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 413: "Payload Too Large"}
    body = json.dumps({"error": message, "status": status}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + (extra or [])
    start_response(f"{status} {reason[status]}", headers)
    return [body]


def role(environ: dict) -> str | None:
    """`admin`, `predict` or None, from the request's basic-auth header alone (no body read)."""
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep:
        return None
    for name, expected_user, expected_password in (
        ("admin", ADMIN_USER, ADMIN_PASSWORD),
        ("predict", USER, PASSWORD),
    ):
        if (
            expected_user
            and expected_password
            and hmac.compare_digest(user.encode(), expected_user.encode())
            and hmac.compare_digest(password.encode(), expected_password.encode())
        ):
            return name
    return None


class Gate:
    """WSGI middleware in front of everything label_studio_ml and Flask do, deciding from the request
    line and headers before any body byte is read: routes we do not serve get 404, requests without
    a known credential 401, the predict credential on an admin route 403, a declared body over
    MAX_BODY 413. Only then is the body read, at most MAX_BODY bytes (a chunked body too), and for a
    POST it must be one JSON object (else 400)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        route = (environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
        if route not in ADMIN_ROUTES:
            return _json_response(start_response, 404, "not found")
        who = role(environ)
        if who is None:
            return _json_response(
                start_response, 401, "authentication required", [("WWW-Authenticate", 'Basic realm="smo-ml-backend"')]
            )
        if who == "predict" and route not in PREDICT_ROUTES:
            return _json_response(start_response, 403, "this credential can only ask for predictions")
        declared = environ.get("CONTENT_LENGTH") or ""
        try:
            length = int(declared) if declared else None
        except ValueError:
            return _json_response(start_response, 400, "bad Content-Length")
        if length is not None and (length < 0 or length > MAX_BODY):
            return _json_response(start_response, 413, f"the body is over {MAX_BODY} bytes")
        stream = environ["wsgi.input"]
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        body = _read(stream, MAX_BODY + 1) if chunked else (stream.read(length) if length else b"")
        if len(body) > MAX_BODY:
            return _json_response(start_response, 413, f"the body is over {MAX_BODY} bytes")
        if route[0] == "POST":
            try:
                parsed = json.loads(body) if body else None
            except (ValueError, RecursionError):
                parsed = None
            if not isinstance(parsed, dict):
                return _json_response(start_response, 400, "the body must be one JSON object")
        environ = dict(environ, CONTENT_LENGTH=str(len(body)), **{"wsgi.input": io.BytesIO(body)})
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["smo.role"] = who
        return self.app(environ, start_response)


def _read(stream, limit: int) -> bytes:
    """Up to `limit` bytes of a body of unknown length."""
    parts, size = [], 0
    while size < limit:
        chunk = stream.read(min(65536, limit - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _error(status: int, message: str):
    return jsonify({"error": message, "status": status}), status


@flask_app.errorhandler(BadRequest)
def _bad_request(exc: BadRequest):
    return _error(exc.status, str(exc))


@flask_app.errorhandler(Exception)
def _unexpected(exc: Exception):
    logging.getLogger("smo.ml_backend").exception("unexpected error")
    return _error(500, f"internal error ({exc.__class__.__name__}); see the backend log")


def _body() -> dict:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}  # the gate let only JSON objects through


def predict():
    data = _body()
    results, version = serve(data.get("label_config"), data.get("tasks"))
    return jsonify({"results": results, "model_version": version})


def setup():
    """Cheap (Label Studio calls it before every batch): checks the config against the served model's labels,
    never calls the model."""
    data = _body()
    try:
        version, labels = SERVER.described()
    except ModelUnavailable as exc:
        raise BadRequest(503, str(exc)) from None
    check_config(data.get("schema"), labels)
    return jsonify({"model_version": version})


def health():
    return jsonify({"status": "UP", "model_version": STORE.serving_version(), "v2": True})


def versions():
    serving = {k: v for k, v in STORE.serving().items() if k in ("kind", "version", "path", "timeout")}
    if "url" in STORE.serving():
        serving["url"] = display_url(STORE.serving()["url"])
    return jsonify({"versions": STORE.versions(), "current": STORE.current_version(), "serving": serving})


def _project_id(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 12:
        return int(value)
    return None


def connect():
    """Admin: record a Label Studio project whose webhook hints may retrain the model."""
    project = _project_id(_body().get("project"))
    if project is None:
        raise BadRequest(400, 'send {"project": <Label Studio project id>}')
    STORE.connect(project)
    return jsonify({"connected": sorted(STORE.connected_projects())})


def webhook():
    """A hint that annotations changed: the project (from `?project=`, else the payload) is retrained
    from what the backend itself reads from Label Studio, and only if an operator connected it."""
    data = _body()
    action = data.get("action")
    query = parse_qs(request.environ.get("QUERY_STRING", "")).get("project", [None])[0]
    named = data.get("project")
    project = (
        _project_id(query)
        if query is not None
        else _project_id((named or {}).get("id") if isinstance(named, dict) else None)
    )
    if action not in TRAIN_ACTIONS:
        return jsonify({"ignored": "not a training event"}), 200
    if project is None:
        raise BadRequest(400, "webhook names no project (?project=<id>)")
    if project not in STORE.connected_projects():
        return jsonify({"ignored": "project not connected to this backend"}), 200
    return jsonify(enqueue_retrain(project)), 202


flask_app.view_functions.update(
    {"_predict": predict, "_setup": setup, "health": health, "webhook": webhook, "get_version": versions}
)
flask_app.add_url_rule("/versions", "versions_get", versions, methods=["GET"])
flask_app.add_url_rule("/connect", "connect", connect, methods=["POST"])
app = Gate(flask_app)
