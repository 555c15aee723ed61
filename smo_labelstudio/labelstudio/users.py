"""Simulated annotators as real Label Studio accounts, each with its own API token.

Label Studio 1.23.2 Community ignores the password of users created through `/api/users`, so they can
neither log in nor read their token. An annotator here signs up the way a person does, through the
organization's invite link (`/user/signup/?token=<org token>`, read with the admin token from
`/api/invite`), and then reads its legacy token from `/api/current-user/token` in that session. On a
re-run it logs in (`/user/login/`) instead. The password is derived from the admin token and the
email (HMAC), so nothing secret is stored and a re-run from any machine with the admin token finds the
same accounts. Tokens stay in memory: never logged, printed or written to disk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from smo_labelstudio.core.errors import ConfigError, ServiceError
from smo_labelstudio.labelstudio.client import connection_settings, http_client

EMAIL_DOMAIN = "smo.local"
EMAIL_PREFIX = "sim-annotator"


class AnnotatorError(ServiceError):
    """An annotator account could not be created, logged into, or read its token."""


@dataclass(frozen=True)
class Annotator:
    """One simulated annotator: a Label Studio user and the legacy API token that acts as it."""

    email: str
    user_id: int
    token: str = field(repr=False)  # never in a repr, a log line or a traceback's locals display

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


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
    """One annotator: log in if the account exists, else sign up through the invite link; read its token."""
    password = annotator_password(admin_token, email)
    with http_client(url, timeout=60, follow_redirects=False) as session:
        if not _form_post(session, "/user/login/", {"email": email, "password": password}):
            invite_token = invite_token or _invite_token(url, admin_token)
            if not _form_post(session, f"/user/signup/?token={invite_token}", {"email": email, "password": password}):
                raise AnnotatorError(
                    f"{email}: cannot log in or sign up; the account exists with another password (made "
                    f"by hand or under another admin token): delete it in Label Studio or use another prefix"
                )
        # the first read of a token writes it; concurrent sign-ups on SQLite have answered 500 ("database
        # is locked") there, which the client's retries for idempotent requests absorb
        token = _json(session.get("/api/current-user/token"), email)["token"]
    with http_client(url, token, timeout=60) as http:
        me = _json(http.get("/api/current-user/whoami"), email)
    if me.get("email") != email:
        raise AnnotatorError(f"{email}: the token read back belongs to {me.get('email')!r}")
    return Annotator(email=email, user_id=int(me["id"]), token=token)


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
