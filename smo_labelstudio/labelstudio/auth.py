"""Credentials for every httpx call to Label Studio: a legacy token as `Token`, a personal access
token traded for `Bearer` access tokens (refreshed before they expire, and once on a 401).

The pure token logic lives in `labelstudio.tokens` (standard library), shared with `labelstudio.rest`.
httpx logs only URLs; this module never logs, and no token is in a repr or an exception message.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Generator

import httpx

from smo_labelstudio.core.settings import get_settings
from smo_labelstudio.labelstudio.retry import backoff, retry_policy, transient, unavailable
from smo_labelstudio.labelstudio.tokens import (
    LEGACY,
    PAT,
    REFRESH_PATH,
    AccessTokens,
    LabelStudioError,
    rejected,
    shared_access,
    token_kind,
    untrusted_certificate,
)

__all__ = ["LEGACY", "PAT", "TokenAuth", "auth_header", "token_kind"]


class TokenAuth(httpx.Auth):
    """An httpx auth for one Label Studio and one token of either kind.

    A request that already carries an `Authorization` header (an annotator's, set per request) is
    sent as it is.
    """

    def __init__(self, url: str, token: str, verify: ssl.SSLContext | bool = True, timeout: float | None = None):
        self.url = url.rstrip("/")
        self.kind = token_kind(token)
        self._token = token
        self._verify, self._timeout = verify, timeout
        self.access: AccessTokens | None = shared_access(self.url, token, self._exchange) if self.kind == PAT else None

    def __repr__(self) -> str:
        return f"TokenAuth({self.url!r}, kind={self.kind!r})"

    def _exchange(self) -> str:
        """Trade the PAT for an access token (a POST of its own, outside any client's auth). Safe to repeat,
        so it is retried like a GET: on 5xx, 408, 429, timeouts and connection errors, with backoff."""
        attempts, base = retry_policy()
        timeout = self._timeout or get_settings().ls_timeout or 60  # SMO_LS_TIMEOUT, as for every call
        started, last = time.monotonic(), ""
        for attempt in range(1, attempts + 1):
            try:
                resp = httpx.post(
                    self.url + REFRESH_PATH, json={"refresh": self._token}, verify=self._verify, timeout=timeout
                )
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if (untrusted := untrusted_certificate(exc)) is not None:
                    raise untrusted from None  # one line naming SMO_LS_CA_BUNDLE
                last = type(exc).__name__
            else:
                if resp.status_code in (400, 401, 403):
                    raise rejected(resp.status_code, resp.text)
                if not transient(resp.status_code):
                    break
                last = f"HTTP {resp.status_code}"
            if attempt < attempts:
                time.sleep(backoff(attempt, base))
        else:
            raise unavailable("POST", REFRESH_PATH, attempts, time.monotonic() - started, last)
        if resp.status_code >= 300:
            error = LabelStudioError(f"Label Studio answered {resp.status_code} to POST {REFRESH_PATH}")
            error.status = resp.status_code
            raise error
        return str(resp.json()["access"])

    def header(self, stale: str | None = None) -> str:
        """The `Authorization` value to send now."""
        if self.access is None:
            return f"Token {self._token}"
        return f"Bearer {self.access.current(stale)}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" in request.headers:
            yield request
            return
        sent = self.header()
        request.headers["Authorization"] = sent
        response = yield request
        if response.status_code == 401 and self.access is not None:
            request.headers["Authorization"] = self.header(stale=sent.removeprefix("Bearer "))
            yield request  # the second 401, if any, stands


def auth_header(url: str, token: str, verify: ssl.SSLContext | bool = True) -> dict[str, str]:
    """`{"Authorization": ...}` for one request made outside our clients (tests, one-off calls)."""
    return {"Authorization": TokenAuth(url, token, verify).header()}
