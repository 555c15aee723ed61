"""The pre-annotation model served to Label Studio: a `label_studio_ml` model over our text model.

It reads the promoted version from the model store (one `stat` per call; a promotion is picked up
without a restart) and never imports Prefect: it runs in the backend's own environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from label_studio_ml.model import LabelStudioMLBase

from smo_labelstudio.labelstudio.label_config import config_labels, control_target
from smo_labelstudio.model.modelstore import ModelStore
from smo_labelstudio.model.textmodel import MAX_TEXT_CHARS, predict_tasks

STORE = ModelStore(Path(os.environ.get("SMO_MODEL_DIR", "models")))


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
    unknown = sorted(found - set(labels))
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


class SafetyModel(LabelStudioMLBase):
    """Multi-label policy predictions with a score per policy, severity and a task-level score."""

    def predict(self, tasks, **kwargs):
        version, model = STORE.current()
        to_name = check_config(self.label_config, model.labels)
        return predict_tasks(model, version, task_texts(tasks), to_name)
