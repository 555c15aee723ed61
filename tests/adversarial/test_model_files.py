"""A joblib model file is code (pickle runs whatever it names when loaded). `smo backend use --model PATH` and the
backend load one only from the trusted models folder, owned by this user and writable by no one else, and only the
bytes that were checked: a file outside the folder (by path, `..` or symlink), someone else's, a writable one or one
swapped after the check never runs. The endpoint's token never reaches the record, the card or an error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
import pytest

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.model.adapters import ModelUnavailable, SklearnAdapter, UntrustedModelFile, read_trusted
from smo_labelstudio.model.modelstore import ModelStore
from smo_labelstudio.model.serving import Server, use_model

LABELS = load_taxonomy().ids


class Payload:
    """Unpickling this writes a marker file: proof that the file's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    trusted = tmp_path / "models" / "files"
    trusted.mkdir(parents=True, mode=0o700)
    return trusted


def _evil(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Payload(marker), path)
    os.chmod(path, 0o600)
    return path


def test_a_file_outside_the_trusted_folder_never_runs(tmp_path, folder):
    marker = tmp_path / "ran"
    outside = _evil(tmp_path / "elsewhere" / "model.joblib", marker)
    for attempt in (outside, folder / ".." / ".." / "elsewhere" / "model.joblib"):
        with pytest.raises(UntrustedModelFile, match="outside the trusted models folder"):
            SklearnAdapter.load(attempt, folder)
    (folder / "link.joblib").symlink_to(outside)  # a symlink inside pointing out
    with pytest.raises(UntrustedModelFile, match="outside the trusted models folder"):
        SklearnAdapter.load(folder / "link.joblib", folder)
    store = ModelStore(folder.parent)
    with pytest.raises(UntrustedModelFile):
        use_model(store, str(outside), LABELS, files_dir=folder)
    assert not marker.exists() and store.serving() == {"kind": "builtin"}


def test_a_file_writable_by_others_or_in_a_writable_folder_never_runs(tmp_path, folder):
    marker = tmp_path / "ran"
    path = _evil(folder / "model.joblib", marker)
    os.chmod(path, 0o666)
    with pytest.raises(UntrustedModelFile, match="writable by others"):
        SklearnAdapter.load(path, folder)
    os.chmod(path, 0o600)
    os.chmod(folder, 0o777)
    with pytest.raises(UntrustedModelFile, match="folder .* writable by others"):
        SklearnAdapter.load(path, folder)
    os.chmod(folder, 0o700)
    assert not marker.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owned_by_someone_else_never_runs(tmp_path, folder):
    marker = tmp_path / "ran"
    path = _evil(folder / "theirs.joblib", marker)
    os.chown(path, 65534, 65534)
    with pytest.raises(UntrustedModelFile, match="not owned by this user"):
        SklearnAdapter.load(path, folder)
    assert not marker.exists()


def test_a_file_swapped_after_the_check_is_refused_by_the_backend(tmp_path, folder):
    """The backend loads the recorded file only if its bytes hash to what `smo backend use` checked."""
    marker = tmp_path / "ran"
    good = folder / "model.joblib"
    joblib.dump({"not": "a model"}, good)
    with pytest.raises(ConfigError, match="predict_proba"):  # and a dict without an estimator is refused
        SklearnAdapter.load(good, folder)
    record = {"kind": "sklearn", "path": str(good), "sha256": "0" * 64, "version": "v"}
    _evil(good, marker)  # the file is replaced by one that runs code
    store = ModelStore(folder.parent)
    store.set_serving(record)
    with pytest.raises(ModelUnavailable, match="changed since"):
        Server(store, folder).adapter()
    assert not marker.exists()


def test_only_the_checked_bytes_are_loaded(tmp_path, folder):
    (folder / "x").write_bytes(b"abc")
    os.chmod(folder / "x", 0o600)
    real, data = read_trusted(folder / ".." / "files" / "x", folder)
    assert real == (folder / "x").resolve() and data == b"abc"
    with pytest.raises(UntrustedModelFile, match="no such model file"):
        read_trusted(folder / "missing.joblib", folder)
    with pytest.raises(UntrustedModelFile, match="does not exist"):
        read_trusted(folder / "x", tmp_path / "no-such-folder")


def test_the_endpoint_token_never_reaches_the_record_card_or_reasons(tmp_path):
    store = ModelStore(tmp_path / "models")
    secret = "s3cr3t-model-token"
    with pytest.raises(ConfigError, match="SMO_MODEL_TOKEN") as err:
        use_model(store, f"https://bob:{secret}@models.example/score", LABELS)
    assert secret not in str(err.value)
    store.set_serving({"kind": "http", "url": "http://127.0.0.1:9/score", "labels": LABELS, "version": "x"}, secret)
    assert secret not in store.serving_path.read_text() and (store.token_path.stat().st_mode & 0o777) == 0o600
    adapter = Server(store).adapter()
    with pytest.raises(ModelUnavailable) as err:
        adapter.predict_scores(["hello"])
    assert secret not in str(err.value) and secret not in repr(adapter)
    assert secret not in json.dumps(store.serving())


def test_smo_backend_use_refuses_an_untrusted_file_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from smo_labelstudio.cli import app

    marker = tmp_path / "ran"
    outside = _evil(tmp_path / "downloads" / "model.joblib", marker)
    monkeypatch.setenv("SMO_HOME", str(tmp_path / "home"))
    trusted = tmp_path / "home" / "models" / "files"
    trusted.mkdir(parents=True, mode=0o700)
    result = CliRunner().invoke(app, ["backend", "use", "--model", str(outside)])
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "outside the trusted models folder" in lines[0]
    assert not marker.exists() and not (tmp_path / "home" / "models" / "serving.json").exists()
