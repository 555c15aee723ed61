"""Which guideline version a project's annotators worked under, and since when: the workspace's record.

Label Studio keeps no guideline version with an answer, and everything an annotator posts (the result, its meta,
any extra field) is theirs to write, so an answer's version is never read from the answer. The workspace keeps
`guidelines.json` instead: each time our tooling sets a project's guidelines (a launch that creates or adopts the
project, `smo relabel`), the taxonomy version and the moment it took effect, on Label Studio's clock where we
have it. An answer was given under the version in force when Label Studio created it (`created_at`, set by the
server: an annotator cannot choose it; an edit keeps the version the answer was first given under).

    {"history": [{"version": "2026.11.1", "guidelines": "2026.11.1+1a2b3c4d", "since": null, "by": "launch"},
                 {"version": "2026.12.1", "guidelines": "...", "since": "2026-12-02T09:00:01+00:00", "by": "relabel"}]}

A project launched before this record existed has no file: its answers were given under the taxonomy version its
first launch manifest names (`runs/*/manifest.json`), else an unknown version (None), which every change is newer
than.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from smo_labelstudio.core.workspace import Workspace, read_json, write_json


def history_path(ws: Workspace) -> Path:
    """Where the project's guideline versions are recorded (`guidelines.json` in the workspace)."""
    return ws.root / "guidelines.json"


def launched_version(ws: Workspace) -> str | None:
    """The taxonomy version the workspace's first launch (by plan creation time) was planned under, if any."""
    found: list[tuple[float, str]] = []
    for manifest in ws.runs.glob("*/manifest.json"):
        version = ((read_json(manifest) or {}).get("versions") or {}).get("taxonomy")
        created = (read_json(manifest.with_name("plan.json")) or {}).get("created", 0.0)
        if version:
            found.append((float(created or 0.0), str(version)))
    return min(found)[1] if found else None


def read_history(ws: Workspace) -> list[dict[str, Any]]:
    """The recorded versions, oldest first; without a record, the first launch's version from the beginning (or
    nothing when there is no launch either)."""
    recorded = (read_json(history_path(ws)) or {}).get("history") or []
    if recorded:
        return list(recorded)
    version = launched_version(ws)
    return [{"version": version, "guidelines": None, "since": None, "by": "launch manifest"}] if version else []


def current_version(ws: Workspace) -> str | None:
    """The version the project's guidelines are at now (None when nothing is known)."""
    history = read_history(ws)
    return history[-1]["version"] if history else None


def record_version(ws: Workspace, version: str, guidelines: str | None, since: datetime | None, by: str) -> bool:
    """Record that the project's guidelines are at `version` from `since` on (None: from the beginning, as when
    the project is created); idempotent: False when that version is already the current one."""
    history = read_history(ws)
    if history and history[-1]["version"] == version:
        return False
    if not history and since is not None:  # before this switch: unknown, which every change is newer than
        history = [{"version": None, "guidelines": None, "since": None, "by": "unknown (before the first record)"}]
    entry = {"version": version, "guidelines": guidelines, "since": since.isoformat() if since else None, "by": by}
    write_json(history_path(ws), {"history": [*history, entry]})
    return True


def versions_at(history: list[dict[str, Any]], times: pd.Series) -> pd.Series:
    """The version in force at each time (UTC timestamps; before the first switch: the first entry's version;
    a missing time or no history: None). Pure."""
    out = pd.Series([None] * len(times), index=times.index, dtype=object)
    if not history:
        return out
    at = pd.to_datetime(times, utc=True, errors="coerce", format="ISO8601")
    out[at.notna()] = history[0]["version"]
    for entry in history[1:]:
        since = pd.Timestamp(entry["since"]) if entry.get("since") else None
        if since is None:
            continue
        out[at >= (since.tz_localize("UTC") if since.tzinfo is None else since)] = entry["version"]
    return out
