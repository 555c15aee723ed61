"""Label Studio reads with the standard library only, for the ML backend's own environment (no
httpx, no SDK, no pydantic there): the retrain job's export of a project's annotated tasks.

Either kind of token works, as with `labelstudio.auth`: a legacy token is sent as `Token`; a personal
access token is traded for an access token (`labelstudio.tokens`), refreshed before it expires and once
on a 401. No token is ever logged or put in an exception message.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any

from smo_labelstudio.labelstudio.tokens import (
    PAT,
    REFRESH_PATH,
    AccessTokens,
    LabelStudioError,
    rejected,
    shared_access,
    token_kind,
)

CA_BUNDLE = "SMO_LS_CA_BUNDLE"


def tls_context() -> ssl.SSLContext:
    """The system's CAs, plus those of `SMO_LS_CA_BUNDLE` when set (Label Studio behind a private CA)."""
    context = ssl.create_default_context()
    bundle = os.environ.get(CA_BUNDLE, "").strip()
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


def _open(req: urllib.request.Request, timeout: float) -> Any:
    """urlopen with `tls_context()`; an untrusted certificate is one line naming SMO_LS_CA_BUNDLE."""
    try:
        return urllib.request.urlopen(req, timeout=timeout, context=tls_context())  # noqa: S310 - our server
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise LabelStudioError(
                f"Label Studio's TLS certificate is not trusted ({exc.reason.verify_message}); set "
                f"{CA_BUNDLE} to the PEM file of the CA that signed it"
            ) from None
        raise


class Credentials:
    """The `Authorization` header for one Label Studio and one token of either kind."""

    def __init__(self, ls_url: str, token: str, timeout: float = 60):
        self.url = ls_url.rstrip("/")
        self.kind = token_kind(token)
        self._token, self._timeout = token, timeout
        self.access: AccessTokens | None = shared_access(self.url, token, self._exchange) if self.kind == PAT else None

    def __repr__(self) -> str:
        return f"Credentials({self.url!r}, kind={self.kind!r})"

    def _exchange(self) -> str:
        req = urllib.request.Request(
            self.url + REFRESH_PATH,
            data=json.dumps({"refresh": self._token}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with _open(req, self._timeout) as resp:
                return str(json.loads(resp.read())["access"])
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            if exc.code in (400, 401, 403):
                raise rejected(exc.code, body) from None
            error = LabelStudioError(f"Label Studio answered {exc.code} to POST {REFRESH_PATH}")
            error.status = exc.code
            raise error from None

    def header(self, stale: str | None = None) -> str:
        """The `Authorization` value to send now."""
        if self.access is None:
            return f"Token {self._token}"
        return f"Bearer {self.access.current(stale)}"


def get_json(creds: Credentials, path: str, timeout: float = 600) -> Any:
    """GET a path of Label Studio's API as JSON; a PAT's access token refused once (401) is refreshed and
    the request sent again (a second 401 stands)."""
    sent = creds.header()
    for attempt in (1, 2):
        req = urllib.request.Request(creds.url + path, headers={"Authorization": sent})
        try:
            with _open(req, timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and attempt == 1 and creds.access is not None:
                sent = creds.header(stale=sent.removeprefix("Bearer "))
                continue
            error = LabelStudioError(f"Label Studio answered {exc.code} to GET {path.split('?')[0]}")
            error.status = exc.code
            raise error from None
    raise AssertionError("unreachable")


def export_project(ls_url: str, token: str, project_id: int, timeout: float = 600) -> list[dict[str, Any]]:
    """Annotated tasks of a project through Label Studio's export endpoint (one request)."""
    return get_json(Credentials(ls_url, token), f"/api/projects/{int(project_id)}/export?exportType=JSON", timeout)
