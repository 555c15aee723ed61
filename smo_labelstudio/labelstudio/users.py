"""Simulated annotators as real Label Studio accounts, each with its own API token; and logged-in
sessions (admin or annotator) for what only a session may do: create personal access tokens and
change the organization's token settings.

Label Studio 1.23.2 Community ignores the password of users created through `/api/users`, so they can
neither log in nor read their token. An annotator here signs up the way a person does, through the
organization's invite link (`/user/signup/?token=<org token>`, read with the admin token from
`/api/invite`), and then, in that session, creates its personal access token (`POST /api/token/`),
or with a legacy admin token reads its legacy token (`/api/current-user/token`). On a re-run it logs in
(`/user/login/`) instead.

A user holds one PAT at a time (a second create answers 409; the old one must be revoked first), so an
annotator's PAT is kept in the state folder (`<SMO_HOME>/annotator-tokens/`, one file per annotator
and server, mode 0600, folder 0700) and reused while Label Studio takes it; only a PAT it rejects is
replaced, under an `fcntl` lock on the annotator's lock file, so concurrent runs share one PAT instead
of revoking each other's. Tokens are never logged or printed; that file is the only place one is written.

The password is an HMAC of the email under a key: the stack's `label_studio.annotator_secret` (made once
by `smo stack up`, in the 0600 state file), so rotating the admin token or switching token modes leaves
the accounts reachable. Without a stack state (a bring-your-own server) the key is the admin token, as it
was before the stack secret existed, and an account made under the admin token still logs in with it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from smo_labelstudio.core.errors import ConfigError, ServiceError
from smo_labelstudio.core.files import write_json
from smo_labelstudio.core.paths import state_home
from smo_labelstudio.core.state import annotator_secret
from smo_labelstudio.labelstudio.auth import PAT, TokenAuth, token_kind
from smo_labelstudio.labelstudio.client import _tls, connection_settings, http_client
from smo_labelstudio.labelstudio.tokens import TokenRejected

EMAIL_DOMAIN = "smo.local"
EMAIL_PREFIX = "sim-annotator"
TOKENS_DIR = "annotator-tokens"  # under the state folder


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


def annotator_password(key: str, email: str) -> str:
    """The account's password: an HMAC of the email under `key` (see `password_key`; stable, never stored)."""
    digest = hmac.new(key.encode(), f"smo-simulated-annotator:{email}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def password_key(admin_token: str, home: Path | None = None) -> str:
    """What annotator passwords derive from: the stack's annotator secret, else (no stack state, e.g. a
    bring-your-own server) the admin token."""
    return annotator_secret(home) or admin_token


def annotator_token_path(url: str, email: str, home: Path | None = None) -> Path:
    """The file that keeps this annotator's PAT for this server (`home` defaults to the state folder)."""
    server = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9@._-]", "_", email)
    return (state_home() if home is None else home) / TOKENS_DIR / f"{name}.{server}.json"


def stored_annotator_token(url: str, email: str, home: Path | None = None) -> str | None:
    """The PAT kept for this annotator and server, None when there is none (or the file is unreadable)."""
    try:
        record = json.loads(annotator_token_path(url, email, home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = isinstance(record, dict) and record.get("url") == url.rstrip("/") and record.get("email") == email
    token = record.get("token") if same else None
    return token if isinstance(token, str) and token else None


def ensure_annotators(
    n: int,
    url: str | None = None,
    admin_token: str | None = None,
    prefix: str = EMAIL_PREFIX,
    workers: int = 4,
    home: Path | None = None,
) -> list[Annotator]:
    """N annotator accounts (created on first use, reused after) with a working token each; PATs are
    kept in `home`'s state folder (default: `state_home()`)."""
    if n < 1:
        raise ConfigError(f"--annotators must be at least 1, got {n}")
    url, admin_token = connection_settings(url, admin_token)
    emails = [annotator_email(i, prefix) for i in range(1, n + 1)]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, n))) as pool:
        return list(pool.map(lambda e: ensure_annotator(url, admin_token, e, home=home), emails))


def ensure_annotator(
    url: str, admin_token: str, email: str, invite_token: str | None = None, home: Path | None = None
) -> Annotator:
    """One annotator with a token of the admin token's kind: its kept PAT while Label Studio takes it, else
    a PAT made in its session (logged in, or signed up through the invite link); or its legacy token."""
    url = url.rstrip("/")
    if token_kind(admin_token) == PAT:
        token = _kept_pat(url, admin_token, email, invite_token, home)
    else:
        with _annotator_session(url, admin_token, email, invite_token, home) as session:
            # the first read of a token writes it; concurrent sign-ups on SQLite have answered 500 ("database
            # is locked") there, which the client's retries for idempotent requests absorb
            token = str(_json(session.get("/api/current-user/token"), email)["token"])
    user_id = _user_id(url, token, email)
    if user_id is None:
        raise AnnotatorError(f"{email}: the token read back acts as another user")
    return Annotator(email=email, user_id=user_id, token=token, url=url)


def _kept_pat(url: str, admin_token: str, email: str, invite_token: str | None, home: Path | None) -> str:
    """The annotator's kept PAT while Label Studio takes it (and it acts as `email`), else a new one made in
    its session and kept (its previous PAT revoked first: one per user). Under the annotator's file lock, so
    concurrent processes check and replace it one at a time and end up sharing one PAT."""
    path = annotator_token_path(url, email, home)
    with _file_lock(path.with_suffix(".lock")):
        token = stored_annotator_token(url, email, home)
        if token and pat_works(url, token) and _user_id(url, token, email) is not None:
            return token
        with _annotator_session(url, admin_token, email, invite_token, home) as session:
            token = issue_pat(session)
        write_json(path, {"url": url, "email": email, "token": token}, mode=0o600)
        return token


@contextlib.contextmanager
def _annotator_session(
    url: str, admin_token: str, email: str, invite_token: str | None, home: Path | None
) -> Iterator[httpx.Client]:
    """A logged-in session for the annotator: a login (with the password from `password_key`, or the one
    derived from the admin token that accounts made before the stack secret have), else a sign-up."""
    key = password_key(admin_token, home)
    with http_client(url, timeout=60, follow_redirects=False) as session:

        def log_in(k: str) -> bool:
            return _form_post(session, "/user/login/", {"email": email, "password": annotator_password(k, email)})

        if not (log_in(key) or (key != admin_token and log_in(admin_token))):
            invite_token = invite_token or _invite_token(url, admin_token)
            fields = {"email": email, "password": annotator_password(key, email)}
            if not _form_post(session, f"/user/signup/?token={invite_token}", fields):
                raise AnnotatorError(
                    f"{email}: cannot log in or sign up; the account exists with another password (made "
                    f"by hand or under another stack secret or admin token): delete it in Label Studio or use "
                    f"another prefix"
                )
        yield session


def _user_id(url: str, token: str, email: str) -> int | None:
    """The id of the user `token` acts as when that user is `email`; None when it is someone else's."""
    with http_client(url, token, timeout=60) as http:
        me = _json(http.get("/api/current-user/whoami"), email)
    return int(me["id"]) if me.get("email") == email else None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive `flock` on `path` (made 0600, its folder 0700) across processes and threads."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def pat_works(url: str, token: str) -> bool:
    """True when Label Studio trades this PAT for an access token now (it is neither revoked nor invalid):
    the process's cached access token is dropped first, since it outlives a revoked PAT."""
    auth = TokenAuth(url, token, verify=_tls())
    if auth.access is not None:
        auth.access.expire()
    try:
        auth.header()
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
