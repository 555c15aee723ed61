"""Where things live: the repository, the stack's state folder and the shared cache."""

from __future__ import annotations

import os
from pathlib import Path

from smo_labelstudio.core.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS_DIR = REPO_ROOT / "constraints"
LABEL_CONFIGS_DIR = REPO_ROOT / "label_configs"


def state_home() -> Path:
    """The stack's state folder (data, logs, credentials): `$SMO_HOME`, else `.smo/` in the repo."""
    return Path(get_settings().home or REPO_ROOT / ".smo").resolve()


def cache_home() -> Path:
    """Shared, rebuildable cache (side environments, migrated templates), reused across clones."""
    cache_dir = get_settings().cache_dir
    if cache_dir:
        return Path(cache_dir).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "smo-labelstudio"


def list_configs(root: Path = REPO_ROOT) -> list[str]:
    """Label config names (file stems) in `<root>/label_configs/`."""
    return sorted(p.stem for p in (root / "label_configs").glob("*.xml"))
