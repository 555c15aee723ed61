"""The layer contracts (pyproject.toml, [tool.importlinter]) hold on the tree, and really bite: a
forbidden import planted in a temporary copy of the package makes lint-imports fail, naming the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smo_labelstudio.core.paths import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = "Layers: data flows one way, from core up to the CLI"
SDK = "Only labelstudio/ talks to Label Studio (the SDK)"
SIMULATOR = "No production module imports the simulator"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the tree at `root` (its pyproject.toml, its packages first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_tree_keeps_every_contract():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """smo_labelstudio/, flows/ and pyproject.toml copied into a temporary folder."""
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("smo_labelstudio", "flows"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=ignore)
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(path: Path, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + rest if sep else line + "\n" + text, encoding="utf-8")


def test_a_planted_forbidden_import_breaks_the_contracts(copy: Path):
    clean = lint_imports(copy)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    plant(copy / "smo_labelstudio" / "core" / "paths.py", "import smo_labelstudio.cli  # planted")
    plant(copy / "smo_labelstudio" / "quality" / "check.py", "import label_studio_sdk  # planted")
    plant(copy / "smo_labelstudio" / "export" / "neardup.py", "import smo_labelstudio.simulation.truth  # planted")
    broken = lint_imports(copy)
    out = broken.stdout
    assert broken.returncode != 0, out
    assert f"{LAYERS} BROKEN" in out
    assert "smo_labelstudio.core.paths -> smo_labelstudio.cli" in out
    assert f"{SDK} BROKEN" in out
    assert "smo_labelstudio.quality.check -> label_studio_sdk" in out
    assert f"{SIMULATOR} BROKEN" in out
    assert "smo_labelstudio.export.neardup -> smo_labelstudio.simulation.truth" in out
    # The copy was analysed, not the installed tree (which is clean, as the first test shows).
    assert lint_imports(REPO_ROOT).returncode == 0
