"""Running `smo` as a user does, pointed at the test session's servers (a helper, not a test file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def stack_env(label_studio, ml_backend, home: Path) -> dict:
    """The environment `eval "$(smo stack env)"` would give, for the session's Label Studio and backend."""
    return {
        **os.environ,
        "SMO_HOME": str(home),
        "SMO_LS_URL": label_studio.url,
        "SMO_LS_TOKEN": label_studio.token,
        "SMO_BACKEND_URL": ml_backend.url,
        "SMO_BACKEND_USER": ml_backend.auth[0],
        "SMO_BACKEND_PASSWORD": ml_backend.auth[1],
    }


def smo(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smo_labelstudio.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )
