"""Label Studio reads with the standard library only, for the ML backend's own environment (no
httpx, no SDK, no pydantic there): the retrain job's export of a project's annotated tasks."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any

CA_BUNDLE = "SMO_LS_CA_BUNDLE"


def tls_context() -> ssl.SSLContext:
    """The system's CAs, plus those of `SMO_LS_CA_BUNDLE` when set (Label Studio behind a private CA)."""
    context = ssl.create_default_context()
    bundle = os.environ.get(CA_BUNDLE, "").strip()
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


def export_project(ls_url: str, token: str, project_id: int, timeout: float = 600) -> list[dict[str, Any]]:
    """Annotated tasks of a project through Label Studio's export endpoint (one request). The URL may
    carry a path prefix (`https://host/labelstudio`): it is kept."""
    req = urllib.request.Request(
        f"{ls_url.rstrip('/')}/api/projects/{int(project_id)}/export?exportType=JSON",
        headers={"Authorization": f"Token {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=tls_context()) as resp:  # noqa: S310 - our server
            return json.loads(resp.read())
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise RuntimeError(
                f"Label Studio's TLS certificate is not trusted ({exc.reason.verify_message}); set "
                f"{CA_BUNDLE} to the PEM file of the CA that signed it"
            ) from None
        raise
