"""Model versions on disk: every version kept with its metrics; `current` names the promoted one.

Layout: `<dir>/versions/<version>/{model.joblib,metrics.json}` and `<dir>/current` (a version name,
replaced atomically). Readers re-load only when `current` changes, so a promotion reaches every
worker process without a restart.
"""

from __future__ import annotations

import json
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
