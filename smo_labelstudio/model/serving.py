"""Which model the backend serves, and switching it (`smo backend use --model PATH|URL`): the store's
`serving.json` names the built-in model, a trusted joblib file or an HTTP endpoint; `Server` turns it into an
adapter (re-read when the record or the promoted version changes, one stat each) and its scores into Label
Studio predictions carrying the adapter's model version. `use_model` checks a model on the fixed validation
set, writes its model card and only then switches."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.model import card as cards
from smo_labelstudio.model.adapters import (
    DEFAULT_TIMEOUT,
    BuiltinAdapter,
    HttpAdapter,
    ModelAdapter,
    ModelUnavailable,
    Scores,
    SklearnAdapter,
    choose_labels,
    display_url,
    predict_within,
)
from smo_labelstudio.model.modelstore import ModelStore, ModelStoreError
from smo_labelstudio.model.textmodel import NO_VIOLATION, to_prediction
from smo_labelstudio.model.training import validation_set

BUILTIN = "builtin"
CHUNK = 100  # texts per call to a team's model, each call under the deadline
BUILTIN_CHUNK = 10_000


def default_files_dir(store: ModelStore) -> Path:
    """The trusted models folder when none is configured (SMO_MODEL_FILES): `files/` in the model store."""
    return store.root / "files"


class Server:
    """The served adapter of one backend process, re-built only when `serving.json` (or, for the built-in model,
    the promoted version) changed."""

    def __init__(self, store: ModelStore, files_dir: Path | None = None, token: str | None = None):
        self.store = store
        self.files_dir = Path(files_dir) if files_dir else default_files_dir(store)
        self.env_token = token
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._adapter: ModelAdapter | None = None

    def _mtime(self, path: Path) -> int | None:
        try:
            return path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def adapter(self) -> ModelAdapter:
        """The adapter serving now; raises ModelUnavailable when the recorded model cannot be loaded."""
        record_mtime = self._mtime(self.store.serving_path)
        record = self.store.serving()
        if record["kind"] == BUILTIN:
            try:
                version, model = self.store.current()
            except ModelStoreError as exc:
                raise ModelUnavailable(str(exc)) from None
            return BuiltinAdapter(version, model)
        key = (record_mtime, self._mtime(self.store.token_path))
        with self._lock:
            if self._adapter is None or key != self._key:
                self._adapter = self._load(record)
                self._key = key
            return self._adapter

    def _load(self, record: dict) -> ModelAdapter:
        try:
            if record["kind"] == "sklearn":
                return SklearnAdapter.load(record["path"], self.files_dir, record.get("sha256"))
            if record["kind"] == "http":
                return HttpAdapter(
                    record["url"],
                    list(record["labels"]),
                    float(record.get("timeout") or DEFAULT_TIMEOUT),
                    self.store.model_token() or self.env_token,
                    str(record.get("version") or ""),
                )
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise ModelUnavailable(f"the recorded {record.get('kind')} model cannot be served: {exc}") from None
        raise ModelUnavailable(f"unknown model kind {record.get('kind')!r} in {self.store.serving_path}")

    def described(self) -> tuple[str, list[str]]:
        """The served (version, labels) without loading or calling a team's model: what `/setup` needs, which Label
        Studio gives 3 s (a joblib file is loaded on the first prediction instead)."""
        record = self.store.serving()
        if record["kind"] == BUILTIN or not isinstance(record.get("labels"), list):
            adapter = self.adapter()
            return adapter.version, adapter.labels
        return str(record.get("version") or record["kind"]), [str(lab) for lab in record["labels"]]

    def timeout(self, default: float = DEFAULT_TIMEOUT) -> float:
        """Seconds a batch may take (recorded by `smo backend use`, else `default`)."""
        try:
            return float(self.store.serving().get("timeout") or default)
        except (TypeError, ValueError):
            return default


def predictions(adapter: ModelAdapter, scores: Any, to_name: str = "text", threshold: float = 0.5) -> list[dict]:
    """Label Studio predictions from an adapter's scores, each with the model version that made them."""
    version = scores.version or adapter.version
    chosen = choose_labels(adapter.labels, scores.policy, threshold)
    out = []
    for i, row in enumerate(scores.policy):
        level = None if scores.severity is None else scores.severity[i]
        level_p = None if scores.severity_p is None else scores.severity_p[i]
        out.append(to_prediction(adapter.labels, version, row, chosen[i], level, level_p, to_name))
    return out


def predict_batch(adapter: ModelAdapter, texts: list[str], timeout: float, chunk: int = CHUNK) -> Scores:
    """The adapter's scores for a batch of any size: chunks of `chunk` texts (Label Studio's labeling screen sends
    at most 100 at once; a launch a whole batch), each under the deadline; the first chunk that fails or is too
    slow fails the batch at once (ModelUnavailable)."""
    chunk = BUILTIN_CHUNK if adapter.kind == BUILTIN else chunk  # in process and vectorised: one pass is fastest
    parts = [predict_within(adapter, texts[i : i + chunk], timeout) for i in range(0, len(texts), chunk)]
    if len(parts) == 1:
        return parts[0]
    severities = [p.severity for p in parts]
    has_severity = all(s is not None for s in severities)
    return Scores(
        np.vstack([p.policy for p in parts]),
        np.concatenate([p.severity for p in parts if p.severity is not None]) if has_severity else None,
        np.concatenate([p.severity_p for p in parts if p.severity_p is not None]) if has_severity else None,
        next((p.version for p in parts if p.version), None),
    )


def score_validation(adapter: ModelAdapter, texts: list[str], timeout: float) -> tuple[np.ndarray, str | None]:
    """The adapter's policy probabilities on every validation text (in chunks, each under the deadline)."""
    scores = predict_batch(adapter, texts, timeout)
    return scores.policy, scores.version


def _validation_sha(store: ModelStore) -> str | None:
    try:
        return hashlib.sha256(store.validation_path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def card_for(
    store: ModelStore,
    adapter: ModelAdapter,
    source: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    training: dict | None = None,
    previous: dict | None = None,
    notes: str | None = None,
) -> dict:
    """The model card of an adapter, scored on the store's fixed validation set (labels the adapter does not
    score count as never predicted)."""
    fixed = validation_set(store)
    if fixed is None:
        raise ModelStoreError(
            f"no fixed validation set in {store.root}: `smo backend train` (or `smo stack up`) freezes one first"
        )
    proba, version = score_validation(adapter, fixed["text"].tolist(), timeout)
    labels = adapter.labels
    return cards.model_card(
        version=version or adapter.version,
        kind=adapter.kind,
        source=source,
        labels=labels,
        validation=fixed,
        proba=proba,
        predicted=choose_labels(labels, proba),
        training=training,
        previous=previous,
        validation_sha256=_validation_sha(store),
        notes=notes,
    )


def use_model(
    store: ModelStore,
    target: str,
    known_labels: list[str],
    *,
    files_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    token: str | None = None,
) -> dict:
    """Switch the served model to `target` (`builtin`, a joblib file in the trusted folder, or an http(s) URL)
    after scoring it on the fixed validation set; its model card is kept in the store. Returns the card."""
    previous_version = store.serving_version()
    previous = store.card(previous_version) if previous_version else None
    files = Path(files_dir) if files_dir else default_files_dir(store)
    adapter: ModelAdapter
    training: dict | None = None
    notes: str | None = None
    if target == BUILTIN:
        version, model = store.current()
        adapter = BuiltinAdapter(version, model)
        card = store.card(version)
        if card is None:
            metrics = store.metrics(version)
            made: dict[str, Any] = {"n": metrics.get("n_train"), "source": metrics.get("source"), "sources": {}}
            card = card_for(store, adapter, str(metrics.get("source")), timeout=timeout, training=made)
        record: dict[str, Any] = {"kind": BUILTIN}
        if previous and previous.get("version") != version:
            card = {**card, "changes": cards.card_changes(card, previous)}
        store.save_card(version, card)
        store.set_serving(record)
        return card
    if target.startswith(("http://", "https://")):
        adapter = HttpAdapter(target, list(known_labels), timeout, token)
        source = display_url(target)
        record = {"kind": "http", "url": target, "labels": list(known_labels), "timeout": timeout}
    else:
        adapter = SklearnAdapter.load(target, files)
        unknown = sorted(set(adapter.labels) - set(known_labels) - {NO_VIOLATION})
        if unknown:
            raise ConfigError(f"{target}: scores policies the taxonomy does not have: {', '.join(unknown)}")
        source = adapter.path
        record = {
            "kind": "sklearn",
            "path": adapter.path,
            "sha256": adapter.sha256,
            "labels": adapter.labels,
            "timeout": timeout,
        }
        training, notes = adapter.training or None, adapter.notes
    try:
        card = card_for(store, adapter, source, timeout=timeout, training=training, previous=previous, notes=notes)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"not switched: {exc}") from None
    record["version"] = card["version"]
    store.save_card(card["version"], card)
    store.set_serving(record, token if record["kind"] == "http" else None)
    return card
