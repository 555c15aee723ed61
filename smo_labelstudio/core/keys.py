"""Random secret keys kept in files (mode 0600, made once) and the keyed hashes derived from them.

Two keys: the deployment's item-id key (`$SMO_HOME/keys/item_ids.key`), under which every task's
`item_id` and every text-hash external id is an HMAC, so an annotator who knows the code, the text
and the source id cannot recompute them (and so cannot tell gold from work); and each workspace's
pseudonym key (`<workspace>/export_key`), under which annotators appear in exports and review tasks.
Neither is ever sent to Label Studio, logged or exported; losing one changes the ids made after it
(items already imported keep the ids their plans recorded).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from smo_labelstudio.core.paths import state_home

ITEM_KEY = Path("keys") / "item_ids.key"


def secret_key(path: Path) -> bytes:
    """The 32-byte key in `path`, created (random, mode 0600) on first use. Two processes creating it at
    once agree: the file appears whole (linked from a finished temporary file) or not at all."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: theirs is the key
        finally:
            tmp.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # a key copied in with a looser mode is tightened, not trusted as is
    return bytes.fromhex(path.read_text().strip())


def item_key(home: Path | None = None) -> bytes:
    """The deployment's item-id key (`$SMO_HOME/keys/item_ids.key`)."""
    return secret_key((home or state_home()) / ITEM_KEY)


def keyed_hex(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 under `key` of the parts (NUL-separated), in hex: not recomputable without the key."""
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()
