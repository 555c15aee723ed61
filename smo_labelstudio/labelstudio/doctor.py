"""`smo doctor`: is this Label Studio, with this token, one smo can work with? Each check asks Label
Studio itself (never guesses from settings we cannot see) and, when it fails, says what is wrong and
the fix, so a team running its own server learns in one command what to change.

The checks, in order (a failed one skips those that need it):
- reachable: `GET /health` answers (else `/api/version`, for proxies that only pass `/api/`);
- version: `/api/version`'s release (smo is tested with 1.23);
- token: legacy token or personal access token (a JWT refresh token, traded at `/api/token/refresh/`),
  and whether it works: `/api/current-user/whoami`;
- create_project: creates a scratch project, deleted at the end (the two checks below need one);
- webhooks: creates an inactive webhook to the ML backend's `/webhook` in it: Label Studio refuses
  URLs on local or private addresses unless its SSRF protection allows them
  (`core/utils/io.py validate_url_for_ssrf`, `SSRF_PROTECTION_ENABLED`, `USE_DEFAULT_BANNED_SUBNETS`);
- ml_backend: connects the ML backend to it (`POST /api/ml/`): Label Studio refuses banned addresses
  when `ML_BLOCK_LOCAL_IP` is on, then calls the backend's `/health` and `/setup` itself, so a
  success proves Label Studio reaches the backend.

The fix advised for a refused backend address keeps SSRF protection on and lets through that one address
(labelstudio/ssrf.py, as `smo stack up` and docker-compose.yml do); turning protection off would let every
member's URL imports reach internal addresses (cloud metadata, the Prefect API, Redis).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from smo_labelstudio.core.paths import LABEL_CONFIGS_DIR
from smo_labelstudio.labelstudio.client import WEBHOOK_ACTIONS, _tls, untrusted_certificate
from smo_labelstudio.labelstudio.tokens import REFRESH_PATH, jwt_payload

CHECKS = ("reachable", "version", "token", "create_project", "webhooks", "ml_backend")
TESTED_WITH = "1.23"
SCRATCH_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="policy" toName="text"><Choice value="ok"/></Choices></View>'
)
ALLOW_ONE = (
    "keep SSRF protection on and let through only the backend's address: on the Label Studio server set "
    "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS=false and LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS to Label "
    "Studio's default list without that address (smo_labelstudio.labelstudio.ssrf.banned_subnets_except; see "
    "Operations > Secrets, SSRF), or put the backend on a public address; never SSRF_PROTECTION_ENABLED=false or "
    "ML_BLOCK_LOCAL_IP=false, which let every member's URL imports reach internal addresses"
)
SSRF_FIX = ALLOW_ONE
ML_FIX = ALLOW_ONE


@dataclass
class Check:
    """One line of the report: `ok` is True, False, or None when the check did not run (skipped)."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        return f"{mark} {self.name:<15} {self.detail}"


def token_kind(token: str) -> str:
    """`personal` (a JWT refresh token: a personal access token), `access` (a short-lived JWT access
    token, not meant to be configured) or `legacy` (Label Studio's 40-character API token)."""
    payload = jwt_payload(token)
    if payload is None:
        return "legacy"
    return "access" if payload.get("token_type") == "access" else "personal"


def _short(resp: httpx.Response) -> str:
    """Label Studio's reason in one short line: `detail`, a field's first error, or the body."""
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}"
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("validation_errors") or body
        if isinstance(detail, dict):
            detail = next(iter(detail.values()), detail)
        if isinstance(detail, list) and detail:
            detail = detail[0]
        return f"HTTP {resp.status_code}: {' '.join(str(detail).split())[:300]}"
    return f"HTTP {resp.status_code}"


def _field(resp: httpx.Response, key: str) -> str | None:
    """A field of a 2xx JSON answer, else None."""
    try:
        body = resp.json() if resp.status_code < 300 else None
    except ValueError:
        return None
    value = body.get(key) if isinstance(body, dict) else None
    return str(value) if value is not None else None


class _Doctor:
    """The checks against one server, sharing one client and the scratch project."""

    def __init__(self, url: str, token: str, backend: tuple[str, tuple[str, str]] | None, timeout: float):
        self.url, self.token, self.backend = url.rstrip("/"), token, backend
        # No retries: a diagnosis reports what it sees at once.
        self.http = httpx.Client(base_url=self.url, verify=_tls(), timeout=timeout)
        self.auth: dict[str, str] = {}
        self.checks: dict[str, Check] = {}

    def set(self, name: str, ok: bool | None, detail: str) -> bool:
        self.checks[name] = Check(name, ok, detail)
        return bool(ok)

    def skip_rest(self, why: str) -> list[Check]:
        for name in CHECKS:
            self.checks.setdefault(name, Check(name, None, f"skipped: {why}"))
        return [self.checks[name] for name in CHECKS]

    def run(self) -> list[Check]:
        with self.http:
            if not self.reachable():
                return self.skip_rest("Label Studio not reachable")
            self.version()
            if not self.token_works():
                return self.skip_rest("the token does not work")
            project = self.create_project()
            if project is None:
                return self.skip_rest("no scratch project to try them in")
            try:
                if self.backend is None:
                    why = "no ML backend configured (SMO_BACKEND_URL, --backend-url, or `smo stack up`)"
                    self.set("webhooks", None, f"skipped: {why}")
                    self.set("ml_backend", None, f"skipped: {why}")
                else:
                    self.webhooks(project)
                    self.ml_backend(project)
            finally:
                self.delete_project(project)
        return [self.checks[name] for name in CHECKS]

    # -- the checks -------------------------------------------------------------------------------
    def reachable(self) -> bool:
        for path in ("/health", "/api/version"):
            try:
                resp = self.http.get(path)
            except httpx.TransportError as exc:
                untrusted = untrusted_certificate(exc)
                if untrusted is not None:
                    return self.set("reachable", False, f"{self.url}: {untrusted}")
                where = f"{self.http.base_url.host}:{self.http.base_url.port or self.http.base_url.scheme}"
                return self.set(
                    "reachable",
                    False,
                    f"cannot connect to {where} ({exc.__class__.__name__}: {' '.join(str(exc).split())[:120]}); "
                    "check SMO_LS_URL (scheme, host, port, path prefix) and that Label Studio is running",
                )
            if resp.status_code == 200:
                return self.set("reachable", True, f"{self.url} answers {path}")
        return self.set(
            "reachable",
            False,
            f"{self.url} answers {resp.status_code} to /health and /api/version: not Label Studio at this address; "
            "check SMO_LS_URL, including the path prefix when it is behind a proxy (https://host/labelstudio)",
        )

    def version(self) -> bool:
        try:
            resp = self.http.get("/api/version")
            release = str(resp.json().get("release") or "") if resp.status_code == 200 else ""
        except (httpx.TransportError, ValueError, AttributeError):
            release = ""
        if not release:
            return self.set("version", False, "/api/version gave no release: is this Label Studio? check SMO_LS_URL")
        if release.startswith(TESTED_WITH + ".") or release == TESTED_WITH:
            return self.set("version", True, f"Label Studio {release}")
        return self.set(
            "version", True, f"Label Studio {release} (smo is tested with {TESTED_WITH}; other versions may differ)"
        )

    def token_works(self) -> bool:
        kind = token_kind(self.token)
        if kind == "access":
            return self.set(
                "token",
                False,
                "SMO_LS_TOKEN is a short-lived access token (expires in minutes); use a personal access token "
                "(Label Studio: Account & Settings > Personal Access Token)",
            )
        if kind == "personal":
            name = "personal access token"
            resp = self.http.post(REFRESH_PATH, json={"refresh": self.token})
            access = _field(resp, "access")
            if not access:
                return self.set(
                    "token",
                    False,
                    f"{name} refused by /api/token/refresh/ ({_short(resp)}): it is revoked, expired, from another "
                    "server, or personal access tokens are off for the organization; create a new one in Label "
                    "Studio (Account & Settings > Personal Access Token) and set SMO_LS_TOKEN",
                )
            self.auth = {"Authorization": f"Bearer {access}"}
        else:
            name = "legacy token"
            self.auth = {"Authorization": f"Token {self.token}"}
        resp = self.http.get("/api/current-user/whoami", headers=self.auth)
        if resp.status_code == 200:
            me = resp.json()
            return self.set(
                "token", True, f"{name}, works: {me.get('email') or me.get('username')} (user {me.get('id')})"
            )
        reason = _short(resp)
        if kind == "legacy" and "legacy token authentication has been disabled" in reason:
            fix = (
                "legacy tokens are off in this organization: use a personal access token (Account & Settings > "
                "Personal Access Token), or have an admin turn legacy tokens on (Organization > API Tokens Settings)"
            )
        elif kind == "legacy":
            fix = "the token is wrong or was reset: copy it again from Label Studio (Account & Settings)"
        else:
            fix = "the token's user cannot sign in (deactivated?); create a new personal access token"
        return self.set("token", False, f"{name} refused by /api/current-user/whoami ({reason}); {fix}")

    def create_project(self) -> int | None:
        body = {
            "title": f"smo doctor scratch {secrets.token_hex(3)}",
            "description": "Created and deleted by `smo doctor`; safe to delete.",
            "label_config": _scratch_config(),
        }
        resp = self.http.post("/api/projects/", json=body, headers=self.auth)
        if resp.status_code >= 300:
            self.set(
                "create_project",
                False,
                f"Label Studio refused to create a project ({_short(resp)}); smo needs a user who may create "
                "projects in the organization: use such a user's token",
            )
            return None
        project = int(resp.json()["id"])
        self.set("create_project", True, f"created scratch project {project} (deleted again)")
        return project

    def delete_project(self, project: int) -> None:
        resp = self.http.delete(f"/api/projects/{project}/", headers=self.auth)
        if resp.status_code >= 300:
            check = self.checks["create_project"]
            check.ok = False
            check.detail = (
                f"created scratch project {project} but could not delete it ({_short(resp)}); delete it by hand"
            )

    def webhooks(self, project: int) -> bool:
        assert self.backend is not None
        hook_url = self.backend[0].rstrip("/") + "/webhook"
        body = {
            "url": hook_url,
            "project": project,
            "send_payload": False,
            "send_for_all_actions": False,
            "actions": WEBHOOK_ACTIONS,
            "is_active": False,  # never delivered: only Label Studio's acceptance of the URL is tried
        }
        resp = self.http.post("/api/webhooks/", json=body, headers=self.auth)
        if resp.status_code < 300:
            self.http.delete(f"/api/webhooks/{resp.json()['id']}/", headers=self.auth)
            return self.set("webhooks", True, f"Label Studio accepts webhooks to {hook_url}")
        reason = _short(resp)
        if "reserved network address" in reason or "not allowed" in reason:
            fix = SSRF_FIX
        elif "resolve hostname" in reason:
            fix = "the backend's host name does not resolve on the Label Studio server: use an address it resolves"
        else:
            fix = "check SMO_BACKEND_URL"
        return self.set("webhooks", False, f"Label Studio refuses webhooks to {hook_url} ({reason}); {fix}")

    def ml_backend(self, project: int) -> bool:
        assert self.backend is not None
        url, (user, password) = self.backend
        body: dict[str, Any] = {"url": url, "project": project, "title": "smo doctor", "is_interactive": False}
        if user or password:
            body |= {"auth_method": "BASIC_AUTH", "basic_auth_user": user, "basic_auth_pass": password}
        resp = self.http.post("/api/ml/", json=body, headers=self.auth)
        if resp.status_code < 300:
            self.http.delete(f"/api/ml/{resp.json()['id']}", headers=self.auth)
            return self.set("ml_backend", True, f"Label Studio reaches the ML backend at {url} (health and setup)")
        reason = _short(resp)
        if "reserved network address" in reason or "not allowed" in reason:
            return self.set("ml_backend", False, f"Label Studio refuses ML backends at {url} ({reason}); {ML_FIX}")
        if "Successfully connected" in reason:  # health passed; only /setup refused the scratch label config
            return self.set(
                "ml_backend",
                True,
                f"Label Studio reaches the ML backend at {url} (its /setup refused the scratch config)",
            )
        if "authentication parameters" in reason:
            fix = (
                "Label Studio reached it but its basic auth was refused: check SMO_BACKEND_USER / SMO_BACKEND_PASSWORD"
            )
        elif "resolve hostname" in reason:
            fix = "the backend's host name does not resolve on the Label Studio server: use an address it resolves"
        else:
            fix = (
                "check the backend runs and that the Label Studio server can reach this address "
                "(SMO_BACKEND_URL must be the address Label Studio sees, not only this machine)"
            )
        return self.set("ml_backend", False, f"Label Studio cannot use the ML backend at {url} ({reason[:200]}); {fix}")


def _scratch_config() -> str:
    """The text moderation config when the repository has one (our backend's /setup accepts it), else a
    minimal one."""
    path = LABEL_CONFIGS_DIR / "text_moderation.xml"
    return path.read_text(encoding="utf-8") if path.exists() else SCRATCH_CONFIG


def diagnose(url: str, token: str, backend: tuple[str, tuple[str, str]] | None, timeout: float = 30.0) -> list[Check]:
    """Run every check against `url` with `token` (and the ML backend, when given); one `Check` each."""
    return _Doctor(url, token, backend, timeout).run()


def as_json(checks: list[Check]) -> dict[str, dict[str, Any]]:
    """One key per check: {"ok": true|false|null, "detail": "..."}."""
    return {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in checks}
