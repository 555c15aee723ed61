"""The one interface the ML backend serves a model through, and its three kinds: the built-in text model,
a scikit-learn pipeline a model team saved with joblib, and an HTTP endpoint the team already runs.

An adapter scores a batch of texts: a probability per policy (columns in `labels` order) and, when it can,
a severity level with its probability (`Scores`). `fit` is optional (only the built-in model has it; a
team trains its own). `predict_within` bounds every batch by a deadline, so a broken or slow model gives
Label Studio no prediction and a reason (`ModelUnavailable`), never a hung labeling screen. A joblib file
is code (pickle): it is loaded only from the trusted models folder, owned by this user and writable by no
one else (`read_trusted`). No Prefect, no pydantic, no httpx: the backend's environment imports this.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from smo_labelstudio.core.errors import ConfigError, ServiceError
from smo_labelstudio.model.textmodel import MAX_TEXT_CHARS, NO_VIOLATION, PolicyModel

DEFAULT_TIMEOUT = 10.0  # seconds per batch; Label Studio waits far longer for /predict (its ML timeout)
MAX_ANSWER_BYTES = 32 * 1024 * 1024
MAX_VERSION_CHARS = 100


class ModelUnavailable(ServiceError):
    """The serving model gave no usable scores for a batch (failed, too slow, answered nonsense); the message
    is the reason logged and listed, and never holds a credential."""


class UntrustedModelFile(ConfigError):
    """A model file the backend refuses to load: outside the trusted folder, not the user's, or writable by others."""


@dataclass
class Scores:
    """Scores for a batch: `policy` (texts x labels, each in [0, 1]); `severity` level and its probability per
    text, or None when the model has no severity head; `version` when the model named one for this batch."""

    policy: np.ndarray
    severity: np.ndarray | None = None
    severity_p: np.ndarray | None = None
    version: str | None = None


class ModelAdapter(Protocol):
    """What the backend serves: a kind (`builtin`, `sklearn`, `http`), a version and the policies scored."""

    @property
    def kind(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def labels(self) -> list[str]: ...

    def predict_scores(self, texts: list[str]) -> Scores:
        """Scores for the texts, in order; raises ModelUnavailable with a reason when it cannot."""
        ...


def can_fit(adapter: object) -> bool:
    """Whether the adapter trains (`fit(texts, label_sets, severities)`): only the built-in model does."""
    return callable(getattr(adapter, "fit", None))


def choose_labels(labels: list[str], proba: np.ndarray, threshold: float = 0.5) -> list[list[str]]:
    """Policies at or above the threshold; "no violation" alone when no violation reaches it."""
    names = np.array(labels)
    violation = names != NO_VIOLATION
    return [names[violation & (row >= threshold)].tolist() or [NO_VIOLATION] for row in np.asarray(proba)]


# ---------------------------------------------------------------- built-in


@dataclass
class BuiltinAdapter:
    """The model store's promoted text model (smo_labelstudio.model.textmodel)."""

    version: str
    model: PolicyModel
    kind: str = "builtin"

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    def predict_scores(self, texts: list[str]) -> Scores:
        X = self.model._X(texts)  # vectorising is most of the cost: once for both heads
        levels, level_p = self.model.predict_severity(texts, X)
        return Scores(self.model.predict_proba(texts, X), np.asarray(levels), np.asarray(level_p))

    def fit(self, texts: list[str], label_sets: list[list[str]], severities: list[int | None]) -> BuiltinAdapter:
        """Refit the text model in place (the store's `train_version` is what versions and promotes it)."""
        self.model.fit(texts, label_sets, severities)
        return self


# ---------------------------------------------------------------- scikit-learn pipeline (joblib)


def _owner_only(st: os.stat_result, what: str, path: Path) -> None:
    if st.st_uid != os.getuid():
        raise UntrustedModelFile(f"{path}: {what} is not owned by this user (uid {os.getuid()}); refusing to load it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedModelFile(f"{path}: {what} is writable by others; `chmod go-w` it first")


def read_trusted(path: Path | str, folder: Path | str) -> tuple[Path, bytes]:
    """The resolved path and bytes of a model file, only if it lies in the trusted `folder` (symlinks resolved),
    is a regular file owned by this user and neither it nor the folder is writable by others. A joblib file
    runs code when loaded: hash and load these same bytes, never the path again."""
    root = Path(folder).expanduser()
    try:
        root_real = root.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise UntrustedModelFile(
            f"the trusted models folder {root} does not exist; create it and put the model file there"
        ) from None
    if not root_real.is_dir():
        raise UntrustedModelFile(f"the trusted models folder {root} is not a folder")
    _owner_only(root_real.stat(), "the trusted models folder", root_real)
    try:
        real = Path(path).expanduser().resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise UntrustedModelFile(f"{path}: no such model file") from None
    if not real.is_relative_to(root_real):
        raise UntrustedModelFile(
            f"{path}: outside the trusted models folder {root_real} (SMO_MODEL_FILES); a joblib file runs code "
            "when loaded, so only files put there are loaded"
        )
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise UntrustedModelFile(f"{path}: cannot open ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedModelFile(f"{path}: not a regular file")
        _owner_only(st, "the model file", real)
        return real, fh.read()


def _text_labels(value: Any) -> list[str] | None:
    if value is None:
        return None
    labels = [str(v) for v in list(value)]
    return labels if labels and all(isinstance(v, str | np.str_) for v in list(value)) else None


@dataclass
class SklearnAdapter:
    """A scikit-learn estimator (usually a Pipeline over raw texts) with `predict_proba`, saved with joblib.

    The file holds either the estimator (its `classes_` are the policy ids: one policy per text) or a dict
    `{"policy": estimator, "labels": [policy ids in column order], "severity": estimator (optional, classes
    are levels 1-4), "version": str, "training": {"n": int, "sources": {...}}, "notes": str}` (all optional
    but `policy`); a multi-label `predict_proba` may answer one (n, 2) array per label."""

    path: str
    sha256: str
    policy: Any
    labels: list[str]
    severity_model: Any = None
    version: str = ""
    training: dict = field(default_factory=dict)
    notes: str | None = None
    kind: str = "sklearn"

    @classmethod
    def load(cls, path: Path | str, folder: Path | str, expected_sha256: str | None = None) -> SklearnAdapter:
        """Load a trusted joblib file (see `read_trusted`); refuse one that changed since it was checked."""
        import joblib  # noqa: PLC0415 - only when a file is loaded

        real, data = read_trusted(path, folder)
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha256 and digest != expected_sha256:
            raise UntrustedModelFile(f"{real}: changed since `smo backend use` checked it; run it again")
        try:
            obj = joblib.load(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - any failure to unpickle is the file's
            raise ConfigError(
                f"{real}: not a joblib file this environment can load ({exc.__class__.__name__})"
            ) from None
        bundle = obj if isinstance(obj, dict) else {"policy": obj}
        policy = bundle.get("policy")
        if not callable(getattr(policy, "predict_proba", None)):
            raise ConfigError(f"{real}: holds no estimator with predict_proba (a dict needs it under 'policy')")
        labels = _text_labels(bundle.get("labels")) or _text_labels(getattr(policy, "classes_", None))
        if not labels:
            raise ConfigError(f"{real}: name the policy of each column: save a dict with 'labels' (policy ids)")
        severity = bundle.get("severity")
        if severity is not None and not callable(getattr(severity, "predict_proba", None)):
            raise ConfigError(f"{real}: its 'severity' has no predict_proba")
        version = str(bundle.get("version") or f"{real.stem}-{digest[:12]}")[:MAX_VERSION_CHARS]
        training: dict = bundle["training"] if isinstance(bundle.get("training"), dict) else {}
        notes = str(bundle["notes"])[:2000] if bundle.get("notes") else None
        return cls(str(real), digest, policy, labels, severity, version, training, notes)

    def predict_scores(self, texts: list[str]) -> Scores:
        try:
            texts = [t[:MAX_TEXT_CHARS] for t in texts]
            raw = self.policy.predict_proba(texts)
            if isinstance(raw, list):  # multi-output: one (n, 2) array per label
                raw = np.column_stack([np.asarray(a)[:, -1] if np.ndim(a) == 2 else np.asarray(a) for a in raw])
            proba = _probabilities(np.asarray(raw, dtype=float), len(texts), len(self.labels))
            levels = level_p = None
            if self.severity_model is not None:
                sp = np.asarray(self.severity_model.predict_proba(texts), dtype=float)
                best = sp.argmax(axis=1)
                levels = np.asarray(self.severity_model.classes_)[best].astype(int)
                level_p = sp[np.arange(len(texts)), best]
        except ModelUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - the team's model failing is a reason, not a crash
            raise ModelUnavailable(
                f"the scikit-learn model failed ({exc.__class__.__name__}: {str(exc)[:200]})"
            ) from None
        return Scores(proba, levels, level_p)


def _probabilities(proba: np.ndarray, n: int, k: int) -> np.ndarray:
    if proba.shape != (n, k):
        raise ModelUnavailable(f"the model answered scores of shape {proba.shape}, not {n} texts x {k} policies")
    if not np.isfinite(proba).all() or proba.min() < 0 or proba.max() > 1:
        raise ModelUnavailable("the model answered scores outside [0, 1]")
    return proba


# ---------------------------------------------------------------- HTTP endpoint


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a redirect could carry the token elsewhere
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def display_url(url: str) -> str:
    """The URL without credentials, query or fragment: what logs, cards and reports show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_url(url: str) -> str:
    """An http(s) URL without credentials in it (auth comes from settings), else a ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{display_url(url)!r} is not an http(s) URL of a model endpoint")
    if parts.username or parts.password:
        raise ConfigError("put the model endpoint's credential in SMO_MODEL_TOKEN, not in its URL")
    return url


@dataclass
class HttpAdapter:
    """A model the team serves over HTTP (the contract is in ml_backend/README.md):
    `POST url` `{"texts": [...], "policies": [...]}` -> `{"model_version": str, "predictions": [{"policy_scores":
    {policy: p}, "severity_scores": {level: p}}, ...]}`, one per text in order; `Authorization: Bearer <token>`
    when a token is set; answered within `timeout` seconds or not at all."""

    url: str
    labels: list[str]
    timeout: float = DEFAULT_TIMEOUT
    token: str | None = None
    version: str = ""
    kind: str = "http"
    training: dict = field(default_factory=dict)
    notes: str | None = None

    def __post_init__(self) -> None:
        check_url(self.url)
        self.version = self.version or f"http:{urlsplit(self.url).hostname}"

    def __repr__(self) -> str:  # never the token
        return f"HttpAdapter({display_url(self.url)!r}, version={self.version!r})"

    def predict_scores(self, texts: list[str]) -> Scores:
        body = json.dumps({"texts": texts, "policies": self.labels}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        where = display_url(self.url)
        try:
            with _opener.open(request, timeout=self.timeout) as resp:
                raw = resp.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ModelUnavailable(f"the model endpoint {where} answered HTTP {exc.code}") from None
        except TimeoutError:
            raise ModelUnavailable(f"the model endpoint {where} did not answer within {self.timeout:g} s") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise ModelUnavailable(f"the model endpoint {where} did not answer within {self.timeout:g} s") from None
            raise ModelUnavailable(f"the model endpoint {where} is unreachable ({reason.__class__.__name__})") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise ModelUnavailable(f"the model endpoint {where} answered over {MAX_ANSWER_BYTES} bytes")
        return self.parse(raw, len(texts))

    def parse(self, raw: bytes, n: int) -> Scores:
        """Scores from an answer body, or ModelUnavailable saying what is wrong with it."""
        where = display_url(self.url)
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError):
            raise ModelUnavailable(f"the model endpoint {where} answered something that is not JSON") from None
        rows = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(rows, list) or len(rows) != n:
            raise ModelUnavailable(f"the model endpoint {where} answered no list of {n} predictions")
        index = {lab: j for j, lab in enumerate(self.labels)}
        proba = np.zeros((n, len(self.labels)))
        levels, level_p, any_severity = np.zeros(n, dtype=int), np.zeros(n), False
        for i, row in enumerate(rows):
            scores = row.get("policy_scores") if isinstance(row, dict) else None
            if not isinstance(scores, dict):
                raise ModelUnavailable(f"the model endpoint {where}: prediction {i} has no policy_scores object")
            for lab, p in scores.items():
                if lab in index:
                    proba[i, index[lab]] = _score(p, where, i)
            sev = row.get("severity_scores")
            if isinstance(sev, dict) and sev:
                best = max(sev, key=lambda k: _score(sev[k], where, i))
                if not str(best).isdigit():
                    raise ModelUnavailable(f"the model endpoint {where}: prediction {i} has a severity level {best!r}")
                levels[i], level_p[i], any_severity = int(best), _score(sev[best], where, i), True
        version = answer.get("model_version")
        version = str(version)[:MAX_VERSION_CHARS] if isinstance(version, str | int) and str(version) else None
        return Scores(proba, levels if any_severity else None, level_p if any_severity else None, version)


def _score(value: Any, where: str, i: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ModelUnavailable(f"the model endpoint {where}: prediction {i} has a score that is not a number in [0, 1]")
    return float(value)


# ---------------------------------------------------------------- the deadline


_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="smo-model")
_pool_lock = threading.Lock()


def predict_within(adapter: ModelAdapter, texts: list[str], timeout: float) -> Scores:
    """The adapter's scores for a batch, or ModelUnavailable after `timeout` seconds (the request returns;
    a model that hangs keeps one of a bounded pool of threads, never the caller)."""
    with _pool_lock:
        future = _pool.submit(adapter.predict_scores, texts)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise ModelUnavailable(
            f"the {adapter.kind} model {adapter.version} did not answer within {timeout:g} s"
        ) from None
    except ModelUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the model is a reason for no prediction
        raise ModelUnavailable(
            f"the {adapter.kind} model {adapter.version} failed ({exc.__class__.__name__})"
        ) from None
