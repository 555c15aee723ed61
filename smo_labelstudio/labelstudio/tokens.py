"""Label Studio's two kinds of API token, told apart and kept usable, with the standard library only
(the ML backend's environment shares this through `labelstudio.rest`: no httpx, no SDK there).

A personal access token (PAT) is a JWT refresh token (payload `token_type: "refresh"`): it is traded
at `/api/token/refresh/` for a short-lived access token sent as `Bearer`. Anything else is a legacy
token, sent as `Token`. Tokens never appear in a repr, an exception message or a log record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from smo_labelstudio.core.errors import ServiceError

LEGACY = "legacy"
PAT = "pat"
REFRESH_PATH = "/api/token/refresh/"
REFRESH_MARGIN = 30.0  # seconds before an access token's `exp` when it is replaced
NEW_PAT_HINT = (
    "create a new one in Label Studio (Account & Settings -> Personal Access Token) and set SMO_LS_TOKEN to it"
)


class LabelStudioError(ServiceError):
    """Label Studio refused a request; the message carries its status and reason."""

    status: int = 0  # the HTTP status when Label Studio answered one


class TokenRejected(LabelStudioError):
    """Label Studio refused to trade the personal access token for an access token."""


def jwt_payload(token: str) -> dict[str, Any] | None:
    """A JWT's claims, decoded without verifying the signature (Label Studio does that); None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):  # binascii.Error and JSONDecodeError are ValueErrors
        return None
    return payload if isinstance(payload, dict) else None


def token_kind(token: str) -> str:
    """`PAT` for a JWT refresh token (a personal access token), `LEGACY` for anything else."""
    return PAT if (jwt_payload(token) or {}).get("token_type") == "refresh" else LEGACY


def rejected(status: int, body: str) -> TokenRejected:
    """The error for a PAT Label Studio would not refresh: invalid, expired or revoked (never the token)."""
    try:
        detail = str(json.loads(body).get("detail") or "")
    except (ValueError, AttributeError):
        detail = ""
    error = TokenRejected(
        f"Label Studio refused the personal access token in SMO_LS_TOKEN (HTTP {status}"
        f"{': ' + detail[:120] if detail else ''}): it is invalid, expired or revoked; {NEW_PAT_HINT}"
    )
    error.status = status
    return error


class AccessTokens:
    """The current access token for one PAT: cached with its `exp`, replaced `REFRESH_MARGIN` seconds
    before it, or when a caller reports it refused (`stale`); one refresh at a time across threads."""

    def __init__(self, exchange: Callable[[], str], clock: Callable[[], float] = time.time):
        self._exchange, self._clock = exchange, clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._renew_at = 0.0
        self.refreshes = 0  # how many exchanges were made (tests and diagnostics)

    def __repr__(self) -> str:
        return f"AccessTokens(refreshes={self.refreshes})"

    def current(self, stale: str | None = None) -> str:
        """A usable access token; `stale` is one Label Studio just refused (refreshed unless already replaced)."""
        with self._lock:
            if self._access is not None and self._access != stale and self._clock() < self._renew_at:
                return self._access
            access = self._exchange()
            claims = jwt_payload(access) or {}
            now = self._clock()
            exp = float(claims.get("exp") or now + 60)
            lifetime = exp - float(claims.get("iat") or now)
            self._access, self._renew_at = access, exp - min(REFRESH_MARGIN, max(lifetime, 0) / 4)
            self.refreshes += 1
            return access

    def expire(self) -> None:
        """Forget the cached access token, so the next request refreshes (tests, and after a rotation)."""
        with self._lock:
            self._access, self._renew_at = None, 0.0


_SHARED: dict[tuple[str, str], AccessTokens] = {}
_SHARED_LOCK = threading.Lock()


def shared_access(url: str, token: str, exchange: Callable[[], str]) -> AccessTokens:
    """The process-wide `AccessTokens` for this server and PAT: every client of a run shares one
    access token instead of trading the PAT again per client (keyed by a hash: no token kept as a key).
    The newest client's `exchange` is the one used, so a changed setting (SMO_LS_CA_BUNDLE) takes effect."""
    key = (url.rstrip("/"), hashlib.sha256(token.encode()).hexdigest())
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = AccessTokens(exchange)
        _SHARED[key]._exchange = exchange
        return _SHARED[key]


def untrusted_certificate(exc: BaseException) -> LabelStudioError | None:
    """The one-line error for a Label Studio whose TLS certificate this machine does not trust (None when
    `exc` is another failure): retrying cannot help, a CA bundle can."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" not in text and not isinstance(exc.__cause__, ssl.SSLCertVerificationError):
        return None
    reason = text.split("certificate verify failed:")[-1].split("(_ssl")[0].strip(" )")
    return LabelStudioError(
        f"Label Studio's TLS certificate is not trusted ({reason}); set SMO_LS_CA_BUNDLE to the PEM file "
        "of the CA that signed it"
    )
