"""The pre-annotation model served to Label Studio: a `label_studio_ml` model over the served adapter.

`SERVER` serves what the model store's `serving.json` names (`smo backend use`): the promoted built-in
version, a trusted joblib pipeline or the team's HTTP endpoint, re-read on a change (one `stat` per call;
a promotion or a switch is picked up without a restart). Every batch is bounded by a deadline (the
recorded timeout, else SMO_MODEL_TIMEOUT, else 10 s): a broken or slow model gives a 503 with the reason,
logged, and Label Studio shows the task without a prediction. Never imports Prefect: it runs in the
backend's own environment.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from label_studio_ml.model import LabelStudioMLBase

from smo_labelstudio.labelstudio.label_config import config_labels, control_target
from smo_labelstudio.model.adapters import DEFAULT_TIMEOUT, ModelUnavailable
from smo_labelstudio.model.modelstore import ModelStore
from smo_labelstudio.model.serving import Server, predict_batch, predictions
from smo_labelstudio.model.textmodel import MAX_TEXT_CHARS, NO_VIOLATION

STORE = ModelStore(Path(os.environ.get("SMO_MODEL_DIR", "models")))
SERVER = Server(
    STORE,
    Path(os.environ["SMO_MODEL_FILES"]) if os.environ.get("SMO_MODEL_FILES") else None,
    os.environ.get("SMO_MODEL_TOKEN") or None,
)
log = logging.getLogger("smo.ml_backend")


def _env_timeout() -> float:
    try:
        return float(os.environ.get("SMO_MODEL_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        return DEFAULT_TIMEOUT


class BadRequest(ValueError):
    """A request Label Studio or a flow sent that we cannot serve; carries the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_config(label_config: str | None, labels: list[str]) -> str:
    """The object the policy choices label; refuses configs whose labels the model does not know."""
    if not label_config:
        return "text"
    try:
        found = config_labels(label_config).get("policy")
        target = control_target(label_config, "policy")
    except Exception:  # noqa: BLE001 - any parse failure is the user's config
        raise BadRequest(422, "label_config is not valid XML") from None
    if not found:
        raise BadRequest(422, "label_config has no `policy` choices for this model to predict")
    unknown = sorted(found - set(labels) - {NO_VIOLATION})  # "no violation" is what no policy reaching 0.5 means
    if unknown:
        raise BadRequest(422, f"label_config has labels the model does not know: {', '.join(unknown)}")
    if target == "image":
        raise BadRequest(422, "this model predicts from text; the config's policy choices label an image")
    return target or "text"


def task_texts(tasks) -> list[str]:
    """The text of every task, or a 4xx naming the first task that has none or too much."""
    if not isinstance(tasks, list) or not tasks:
        raise BadRequest(400, 'no tasks: send {"tasks": [{"data": {"text": ...}}, ...]}')
    texts = []
    for i, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        text = data.get("text") if isinstance(data, dict) else None
        name = f"task {task.get('id', i) if isinstance(task, dict) else i}"
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(400, f"{name} has no text (data.text)")
        if len(text) > MAX_TEXT_CHARS:
            raise BadRequest(413, f"{name}: text of {len(text)} characters is over the limit of {MAX_TEXT_CHARS}")
        texts.append(text)
    return texts


def serve(label_config: str | None, tasks) -> tuple[list[dict], str]:
    """Predictions for a batch from the served adapter, within the deadline, and the adapter's version; a model
    that fails or is too slow is a 503 whose reason is logged (never a hung request)."""
    try:
        adapter = SERVER.adapter()
    except ModelUnavailable as exc:
        log.warning("no predictions: %s", exc)
        raise BadRequest(503, str(exc)) from None
    to_name = check_config(label_config, adapter.labels)
    texts = task_texts(tasks)
    try:
        scores = predict_batch(adapter, texts, SERVER.timeout(_env_timeout()))
    except ModelUnavailable as exc:
        log.warning("no predictions for %d task(s): %s", len(texts), exc)
        raise BadRequest(503, str(exc)) from None
    return predictions(adapter, scores, to_name), scores.version or adapter.version


class SafetyModel(LabelStudioMLBase):
    """Multi-label policy predictions with a score per policy, severity and a task-level score."""

    def predict(self, tasks, **kwargs):
        return serve(self.label_config, tasks)[0]
