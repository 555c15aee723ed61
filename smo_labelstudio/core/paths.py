"""Where things live: the repository, the stack's state folder and the shared cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS_DIR = REPO_ROOT / "constraints"
LABEL_CONFIGS_DIR = REPO_ROOT / "label_configs"


def state_home() -> Path:
    """The stack's state folder (data, logs, credentials): `$SMO_HOME`, else `.smo/` in the repo."""
    return Path(os.environ.get("SMO_HOME") or REPO_ROOT / ".smo").resolve()


def cache_home() -> Path:
    """Shared, rebuildable cache (side environments, migrated templates), reused across clones."""
    if os.environ.get("SMO_CACHE_DIR"):
        return Path(os.environ["SMO_CACHE_DIR"]).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "smo-labelstudio"
