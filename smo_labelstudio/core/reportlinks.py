"""Links to the reports the stack serves over HTTP (the `reports` service, reports/server.py): which files are
reports, the URL path of each, and the per-path signature that opens exactly one of them.

A report file lives in a workspace's `reports/` folder and has one of the names in `REPORT_FILES`:

    quality-<stamp>/ and ops-<stamp>/   report.html, report.md, summary.json, *.png
    scorecards/                          index.html (the PM's map, e-mails in it), scorecards.json,
                                         pages/annotator-<hex>.html (one annotator's page)
    datasheet/                           datasheet.md, datasheet.json (a copy of the last export's)

Its URL path is `/w/<workspace folder>/<path under reports/>`. A link is signed with HMAC-SHA256 of that path under
the stack's reports key (`$SMO_HOME/keys/reports.key`, core/keys.py): `?sig=<32 hex>`. A signature opens that
one path and nothing else (not another annotator's page, not the folder); deleting the key and restarting the
`reports` service revokes every link given out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path
from urllib.parse import quote

# Only the standard library at import: the reports service imports this module and starts in a fraction of a
# second; pydantic (settings, paths, keys) loads only where a link is made.

REPORTS_KEY = Path("keys") / "reports.key"
DEFAULT_PORT = 4280
_STAMPED = r"(?:quality|ops)-[0-9]{8}T[0-9]{6,12}Z"
REPORT_FILES = re.compile(
    rf"^(?:{_STAMPED}/(?:report\.html|report\.md|summary\.json|[a-z0-9][a-z0-9-]{{0,120}}\.png)"
    r"|scorecards/(?:index\.html|scorecards\.json|pages/annotator-[0-9a-f]{4,64}\.html)"
    r"|datasheet/datasheet\.(?:md|json))$"
)
WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")
LATEST = ("quality", "ops")  # /w/<workspace>/latest/<kind>: the newest report of a kind (managers only)


def is_report_path(workspace: str, relative: str) -> bool:
    """True when `relative` (a path under a workspace's reports/, `/`-separated) names a report file by its shape."""
    return bool(WORKSPACE_NAME.match(workspace)) and bool(REPORT_FILES.match(relative))


def url_path(workspace: str, relative: str) -> str:
    """The URL path the reports service serves a report file at."""
    return f"/w/{quote(workspace)}/{quote(relative)}"


def reports_key(home: Path) -> bytes:
    """The stack's key for report links (made on first use, mode 0600)."""
    from smo_labelstudio.core.keys import secret_key  # noqa: PLC0415 - start-up time of the service (above)

    return secret_key(Path(home) / REPORTS_KEY)


def load_key(home: Path) -> bytes:
    """The key as the service reads it: the file the stack made, else made now (core.keys)."""
    try:
        return bytes.fromhex((Path(home) / REPORTS_KEY).read_text().strip())
    except (OSError, ValueError):
        return reports_key(home)


def signature(key: bytes, path: str) -> str:
    """The signature of one URL path: 128 bits of HMAC-SHA256 (core.keys.keyed_hex's construction), hex."""
    return hmac.new(key, f"report-link\x00{path}".encode(), hashlib.sha256).hexdigest()[:32]


def signature_ok(key: bytes, path: str, given: str) -> bool:
    """True when `given` is `path`'s signature (compared in constant time)."""
    return hmac.compare_digest(signature(key, path).encode(), given.encode("ascii", "replace"))


def _home(home: Path | None) -> Path:
    from smo_labelstudio.core.paths import state_home  # noqa: PLC0415 - start-up time of the service (above)

    return Path(home) if home is not None else state_home()


def base_url(home: Path | None = None) -> str:
    """Where the reports service is reached: SMO_REPORTS_URL (a proxy in front of it), else the address the
    running stack recorded, else 127.0.0.1 on SMO_REPORTS_PORT."""
    from smo_labelstudio.core.settings import get_settings  # noqa: PLC0415 - pydantic only when a link is made
    from smo_labelstudio.core.state import load_state  # noqa: PLC0415 - likewise

    settings = get_settings()
    if settings.reports_url:
        return settings.reports_url.rstrip("/")
    recorded = load_state(_home(home)).get("services", {}).get("reports", {}).get("url")
    return str(recorded or f"http://127.0.0.1:{settings.reports_port}").rstrip("/")


def _split(file: Path, home: Path) -> tuple[str, str] | None:
    workspaces = os.path.realpath(home / "workspaces")
    real = os.path.realpath(file)
    if not real.startswith(workspaces + os.sep):
        return None
    parts = Path(real[len(workspaces) + 1 :]).parts
    if len(parts) < 3 or parts[1] != "reports":
        return None
    workspace, relative = parts[0], "/".join(parts[2:])
    return (workspace, relative) if is_report_path(workspace, relative) else None


def signed_link(file: Path, home: Path | None = None) -> str | None:
    """A link that opens this one report file over HTTP; None when it is not a report file of a workspace."""
    home = _home(home)
    found = _split(Path(file), home)
    if found is None:
        return None
    path = url_path(*found)
    return f"{base_url(home)}{path}?sig={signature(reports_key(home), path)}"


def manager_link(workspace_root: Path, kind: str = "quality", home: Path | None = None) -> str:
    """An unsigned link to a workspace's newest report of `kind`: it opens only after the managers' login."""
    return f"{base_url(home)}/w/{quote(Path(workspace_root).name)}/latest/{kind}"
