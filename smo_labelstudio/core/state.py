"""The local stack's state file (`<SMO_HOME>/stack.json`): where it is and how to read it.

`stack/` writes it (mode 0600: it holds the admin's password and tokens); Label Studio connection settings
fall back to it after the environment, so reading it lives down here rather than in the stack layer.
Reading it tightens a file left readable by others back to 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.paths import state_home


class StateError(ConfigError):
    """The state file exists but cannot be read; the message names it and what to do."""


def state_path(home: Path) -> Path:
    """The state file of the stack whose home is `home`."""
    return home / "stack.json"


def load_state(home: Path | None = None) -> dict[str, Any]:
    """The stack's state (credentials, started services), `{}` when there is none yet.

    `home` defaults to `state_home()`.
    """
    path = state_path(state_home() if home is None else home)
    if not path.exists():
        return {}
    _private(path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StateError(f"state file {path} is unreadable ({exc}); move it away and run `smo stack up`") from None


def _private(path: Path) -> None:
    """Tighten our own state file to 0600 when others could read it (an older version left it so)."""
    try:
        info = path.stat()
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            path.chmod(0o600)
    except OSError:
        pass  # reading it then says what is wrong


def annotator_secret(home: Path | None = None) -> str | None:
    """The stack's key for simulated annotators' passwords (`label_studio.annotator_secret`, made once by
    `smo stack up`), None without a stack state or before `up` recorded one."""
    value = load_state(home).get("label_studio", {}).get("annotator_secret")
    return value if isinstance(value, str) and value else None
