"""Model versions on disk: every version kept with its metrics; `current` names the promoted one.

Layout: `<dir>/versions/<version>/{model.joblib,metrics.json,training_data.jsonl,card.json}`, `<dir>/current`
(a version name, replaced atomically), `<dir>/validation.jsonl` (the fixed validation set promotions are
judged on), `<dir>/projects.json` (the Label Studio projects an operator connected: the only ones a
webhook may retrain from), `<dir>/serving.json` (which model the backend serves: the built-in one, a
joblib file or an HTTP endpoint; `smo backend use`), `<dir>/cards/<version>.json` (the model card of a
model that is not a built-in version) and `<dir>/model_token` (0600: the HTTP endpoint's credential).
Readers re-load only when `current` changes, so a promotion reaches every worker process without a restart.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import joblib

from smo_labelstudio.core.errors import ServiceError
from smo_labelstudio.core.files import atomic_write
from smo_labelstudio.model.textmodel import PolicyModel


class ModelStoreError(ServiceError):
    """No usable model in the store; the message says which folder and what to do."""


class ModelStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._loaded: tuple[str, PolicyModel] | None = None
        self._seen_mtime: float | None = None

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def validation_path(self) -> Path:
        return self.root / "validation.jsonl"

    @property
    def projects_path(self) -> Path:
        return self.root / "projects.json"

    @property
    def serving_path(self) -> Path:
        return self.root / "serving.json"

    @property
    def token_path(self) -> Path:
        return self.root / "model_token"

    def serving(self) -> dict:
        """Which model the backend serves (`kind` builtin, sklearn or http, and how to reach it); builtin by default."""
        try:
            record = json.loads(self.serving_path.read_text())
        except FileNotFoundError:
            return {"kind": "builtin"}
        return record if isinstance(record, dict) and record.get("kind") else {"kind": "builtin"}

    def set_serving(self, record: dict, token: str | None = None) -> None:
        """Switch the served model (picked up by every worker on its next request); the endpoint's token, if any,
        goes to its own 0600 file, never into the record."""
        if token:
            atomic_write(self.token_path, lambda tmp: Path(tmp).write_text(token), mode=0o600)
        else:
            self.token_path.unlink(missing_ok=True)
        atomic_write(self.serving_path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2, sort_keys=True)))

    def model_token(self) -> str | None:
        try:
            return self.token_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def serving_version(self) -> str | None:
        """The version the backend serves now: the promoted built-in one, or the external model's."""
        record = self.serving()
        return self.current_version() if record["kind"] == "builtin" else record.get("version")

    def card_path(self, version: str) -> Path:
        """Where a version's model card lives: beside a built-in version, else under cards/."""
        if (self.versions_dir / version).is_dir() and not version.startswith("."):
            return self.versions_dir / version / "card.json"
        slug = re.sub(r"[^A-Za-z0-9._-]", "_", version).lstrip(".")[:120] or "_"
        return self.root / "cards" / f"{slug}.json"

    def save_card(self, version: str, card: dict) -> Path:
        path = self.card_path(version)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2, sort_keys=True)))
        return path

    def card(self, version: str) -> dict | None:
        """A version's model card, or None when it has none (versions from before model cards)."""
        try:
            card = json.loads(self.card_path(version).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return card if isinstance(card, dict) and card.get("version") == version else None

    def connected_projects(self) -> set[int]:
        """Label Studio project ids an operator connected (`smo backend connect`)."""
        try:
            return {int(p) for p in json.loads(self.projects_path.read_text()).get("projects", [])}
        except FileNotFoundError:
            return set()

    def connect(self, project_id: int) -> None:
        """Record a project as connected: its webhooks' hints may now retrain the model."""
        with self._lock:
            projects = sorted(self.connected_projects() | {int(project_id)})
            atomic_write(self.projects_path, lambda tmp: Path(tmp).write_text(json.dumps({"projects": projects})))

    def new_version_name(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return f"v{stamp}"

    def save(self, version: str, model: PolicyModel, metrics: dict) -> Path:
        """Write a version (model and metrics) without promoting it."""
        folder = self.versions_dir / version
        tmp = self.versions_dir / f".{version}.tmp"
        tmp.mkdir(parents=True, exist_ok=False)
        joblib.dump(model, tmp / "model.joblib")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        tmp.rename(folder)
        return folder

    def metrics(self, version: str) -> dict:
        return json.loads((self.versions_dir / version / "metrics.json").read_text())

    def versions(self) -> list[str]:
        if not self.versions_dir.exists():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if not p.name.startswith("."))

    def current_version(self) -> str | None:
        try:
            return (self.root / "current").read_text().strip() or None
        except FileNotFoundError:
            return None

    def promote(self, version: str) -> None:
        if not (self.versions_dir / version / "model.joblib").exists():
            raise ModelStoreError(f"no model version {version!r} in {self.versions_dir}")
        atomic_write(self.root / "current", lambda tmp: Path(tmp).write_text(version + "\n"))

    def load(self, version: str) -> PolicyModel:
        return joblib.load(self.versions_dir / version / "model.joblib")

    def current(self) -> tuple[str, PolicyModel]:
        """The promoted (version, model), re-read only when `current` changed on disk (one stat)."""
        pointer = self.root / "current"
        try:
            mtime = pointer.stat().st_mtime_ns
        except FileNotFoundError:
            raise ModelStoreError(f"no promoted model in {self.root}; train one with `smo backend train`") from None
        loaded = self._loaded
        if loaded is None or mtime != self._seen_mtime:
            with self._lock:
                loaded = self._loaded
                if loaded is None or mtime != self._seen_mtime:
                    version = self.current_version()
                    if version is None:  # an empty `current` file
                        raise ModelStoreError(f"no promoted model in {self.root}; train one with `smo backend train`")
                    loaded = self._loaded = (version, self.load(version))  # swapped in one assignment
                    self._seen_mtime = mtime
        return loaded
