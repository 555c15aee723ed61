"""Label Studio reads with the standard library only, for the ML backend's own environment (no
httpx, no SDK, no pydantic there): the retrain job's export of a project's annotated tasks."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def export_project(ls_url: str, token: str, project_id: int, timeout: float = 600) -> list[dict[str, Any]]:
    """Annotated tasks of a project through Label Studio's export endpoint (one request)."""
    req = urllib.request.Request(
        f"{ls_url.rstrip('/')}/api/projects/{int(project_id)}/export?exportType=JSON",
        headers={"Authorization": f"Token {token}"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our own configured server
        return json.loads(resp.read())
