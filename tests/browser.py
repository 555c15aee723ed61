"""Headless Debian chromium for the browser tests (not a test file): where it is, its flags, where screenshots go."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from smo_labelstudio.core.paths import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def artifacts(kind: str) -> Path:
    """The folder a test keeps its screenshots in (`SMO_TEST_ARTIFACTS`, else test-artifacts/), per kind."""
    return Path(os.environ.get("SMO_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts") / kind
