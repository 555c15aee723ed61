"""Simulated annotators as real Label Studio accounts, each with its own API token; and logged-in
sessions (admin or annotator) for what only a session may do: create personal access tokens and
change the organization's token settings.

Label Studio 1.23.2 Community ignores the password of users created through `/api/users`, so they can
neither log in nor read their token. An annotator here signs up the way a person does, through the
organization's invite link (`/user/signup/?token=<org token>`, read with the admin token from
`/api/invite`), and then, in that session, creates its personal access token (`POST /api/token/`),
or with a legacy admin token reads its legacy token (`/api/current-user/token`). On a re-run it logs in
(`/user/login/`) instead. A user holds one PAT at a time (a second create answers 409) and the PAT is
not written anywhere, so a new process revokes the annotator's PAT (`/api/token/blacklist/` takes the
signature-less form `GET /api/token/` lists) and creates another; within a process it is reused.
The password is derived from the admin token and the email (HMAC), so nothing secret is stored and a
re-run with the same admin token finds the same accounts (a PAT stays the same until it is rotated).
Tokens stay in memory: never logged, printed or written to disk.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from smo_labelstudio.core.errors import ConfigError, ServiceError
from smo_labelstudio.labelstudio.auth import PAT, TokenAuth, token_kind
from smo_labelstudio.labelstudio.client import _tls, connection_settings, http_client
from smo_labelstudio.labelstudio.tokens import TokenRejected

EMAIL_DOMAIN = "smo.local"
EMAIL_PREFIX = "sim-annotator"


class SessionError(ServiceError):
    """A Label Studio account could not log in, or its session was refused."""


class AnnotatorError(SessionError):
    """An annotator account could not be created, logged into, or read its token."""


@dataclass(frozen=True)
class Annotator:
    """One simulated annotator: a Label Studio user and the API token (a PAT, or legacy) that acts as it."""

    email: str
    user_id: int
    token: str = field(repr=False)  # never in a repr, a log line or a traceback's locals display
    url: str = field(default="", repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """`Authorization` for one request as this annotator (a PAT's access token, refreshed when due)."""
        return {"Authorization": TokenAuth(self.url, self.token, verify=_tls()).header()}


def annotator_email(index: int, prefix: str = EMAIL_PREFIX) -> str:
    """`sim-annotator-01@smo.local` for index 1: stable names make re-runs reuse the accounts."""
    return f"{prefix}-{index:02d}@{EMAIL_DOMAIN}"


def annotator_password(admin_token: str, email: str) -> str:
    """The account's password: an HMAC of the email under the admin token (stable, never stored)."""
    digest = hmac.new(admin_token.encode(), f"smo-simulated-annotator:{email}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def ensure_annotators(
    n: int, url: str | None = None, admin_token: str | None = None, prefix: str = EMAIL_PREFIX, workers: int = 4
) -> list[Annotator]:
    """N annotator accounts (created on first use, reused after) with a working token each."""
    if n < 1:
        raise ConfigError(f"--annotators must be at least 1, got {n}")
    url, admin_token = connection_settings(url, admin_token)
    invite = _invite_token(url, admin_token)
    emails = [annotator_email(i, prefix) for i in range(1, n + 1)]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, n))) as pool:
        return list(pool.map(lambda e: ensure_annotator(url, admin_token, e, invite), emails))


def ensure_annotator(url: str, admin_token: str, email: str, invite_token: str | None = None) -> Annotator:
    """One annotator: log in if the account exists, else sign up through the invite link; then its token,
    of the admin token's kind (a PAT made in its session, or its legacy token)."""
    password = annotator_password(admin_token, email)
    with http_client(url, timeout=60, follow_redirects=False) as session:
        if not _form_post(session, "/user/login/", {"email": email, "password": password}):
            invite_token = invite_token or _invite_token(url, admin_token)
            if not _form_post(session, f"/user/signup/?token={invite_token}", {"email": email, "password": password}):
                raise AnnotatorError(
                    f"{email}: cannot log in or sign up; the account exists with another password (made "
                    f"by hand or under another admin token): delete it in Label Studio or use another prefix"
                )
        if token_kind(admin_token) == PAT:
            token = _annotator_pat(url, session, email)
        else:
            # the first read of a token writes it; concurrent sign-ups on SQLite have answered 500 ("database
            # is locked") there, which the client's retries for idempotent requests absorb
            token = _json(session.get("/api/current-user/token"), email)["token"]
    with http_client(url, token, timeout=60) as http:
        me = _json(http.get("/api/current-user/whoami"), email)
    if me.get("email") != email:
        raise AnnotatorError(f"{email}: the token read back belongs to {me.get('email')!r}")
    return Annotator(email=email, user_id=int(me["id"]), token=token, url=url)


_PATS: dict[tuple[str, str], str] = {}  # (url, email) -> the PAT this process made: reused, never written
_PATS_LOCK = threading.Lock()


def _annotator_pat(url: str, session: httpx.Client, email: str) -> str:
    """The annotator's PAT: the one this process made if Label Studio still takes it, else a new one
    (its previous PAT revoked first: one per user)."""
    with _PATS_LOCK:
        known = _PATS.get((url, email))
    if known and pat_works(url, known):
        return known
    token = issue_pat(session)
    with _PATS_LOCK:
        _PATS[(url, email)] = token
    return token


def pat_works(url: str, token: str) -> bool:
    """True when Label Studio trades this PAT for an access token (it is neither revoked nor invalid)."""
    try:
        TokenAuth(url, token, verify=_tls()).header()
    except TokenRejected:
        return False
    return True


# -- sessions: what only a logged-in user may do ---------------------------------------------
@contextlib.contextmanager
def login(url: str, email: str, password: str) -> Iterator[httpx.Client]:
    """A logged-in session (cookies, CSRF) for this account, closed on leaving."""
    with http_client(url, timeout=60, follow_redirects=False) as session:
        if not _form_post(session, "/user/login/", {"email": email, "password": password}):
            raise SessionError(f"{email}: Label Studio refused the login (wrong password, or no such account)")
        yield session


def _csrf(session: httpx.Client) -> dict[str, str]:
    """Headers a session's unsafe API call needs (Django's CSRF check)."""
    return {"X-CSRFToken": session.cookies.get("csrftoken") or "", "Referer": f"{session.base_url}"}


def issue_pat(session: httpx.Client) -> str:
    """A new personal access token for the session's user. Label Studio keeps one per user and answers
    409 to a second: the existing ones are then revoked (blacklisted by the signature-less form that
    `GET /api/token/` lists, which is all anyone has of a lost PAT) and one is created."""
    resp = session.post("/api/token/", headers=_csrf(session))
    if resp.status_code == 409:
        for listed in _json(session.get("/api/token/"), "session"):
            gone = session.post("/api/token/blacklist/", json={"refresh": listed["token"]}, headers=_csrf(session))
            if gone.status_code not in (204, 404):  # 404: already blacklisted
                _json(gone, "session")
        resp = session.post("/api/token/", headers=_csrf(session))
    return str(_json(resp, "session")["token"])


def jwt_settings(session: httpx.Client) -> dict:
    """The organization's token settings: `api_tokens_enabled`, `legacy_api_tokens_enabled`."""
    return _json(session.get("/api/jwt/settings"), "session")


def set_legacy_tokens(session: httpx.Client, enabled: bool) -> dict:
    """Switch the organization's legacy API tokens on or off (PATs stay on); its settings after."""
    current = jwt_settings(session)
    if current.get("legacy_api_tokens_enabled") == enabled and current.get("api_tokens_enabled"):
        return current
    body = {"api_tokens_enabled": True, "legacy_api_tokens_enabled": enabled}
    return _json(session.post("/api/jwt/settings", json=body, headers=_csrf(session)), "session")


def legacy_token(session: httpx.Client) -> str:
    """The session's user's legacy API token (useful only while the organization allows legacy tokens)."""
    return str(_json(session.get("/api/current-user/token"), "session")["token"])


def _invite_token(url: str, admin_token: str) -> str:
    """The organization's invite token (what the "Add people" link carries)."""
    with http_client(url, admin_token, timeout=60) as http:
        return _json(http.get("/api/invite"), "admin")["token"]


def _form_post(session: httpx.Client, path: str, fields: dict[str, str]) -> bool:
    """Submit a Django form the way a browser does (CSRF cookie and Referer); True when it redirects.

    Both login and signup answer 302 on success and 200 with the form's errors on failure.
    """
    page = session.get(path)
    if page.status_code >= 400:
        raise AnnotatorError(f"{path.split('?')[0]} answered {page.status_code}")
    csrf = session.cookies.get("csrftoken")
    resp = session.post(
        path,
        data={**fields, "csrfmiddlewaretoken": csrf or ""},
        headers={"Referer": f"{session.base_url}{path.split('?')[0]}"},
    )
    if resp.status_code >= 400:
        raise AnnotatorError(f"{path.split('?')[0]} answered {resp.status_code}")
    return resp.status_code in (301, 302, 303)


def _json(resp: httpx.Response, who: str) -> dict:
    if resp.status_code >= 400:
        raise AnnotatorError(
            f"{who}: Label Studio answered {resp.status_code} to {resp.request.method} {resp.request.url.path}"
        )
    return resp.json()
