"""Personal access tokens (PATs) everywhere: the stack keeps legacy tokens off and issues a PAT; the
clients trade it for access tokens, refresh them before expiry and once on a 401; the whole line runs
on it; a rejected PAT is one line naming the fix. The token logic itself is checked without a server."""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest
from faults import FaultyProxy
from smo_cli import smo, stack_env
from test_launch_pull import _files

from smo_labelstudio.core.state import state_path
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.labelstudio import rest
from smo_labelstudio.labelstudio.auth import LEGACY, PAT, TokenAuth, token_kind
from smo_labelstudio.labelstudio.client import http_client
from smo_labelstudio.labelstudio.tokens import AccessTokens, TokenRejected, jwt_payload, shared_access
from smo_labelstudio.labelstudio.users import jwt_settings, legacy_token, login


def _jwt(**claims) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{part}.c2lnbmF0dXJl"


# -- the token logic, no server ---------------------------------------------------------------
def test_token_kinds_are_told_apart_from_the_payload():
    assert token_kind(_jwt(token_type="refresh", exp=2**40)) == PAT
    assert token_kind(_jwt(token_type="access", exp=2**40)) == LEGACY  # an access token is not a PAT
    assert token_kind("0123456789abcdef0123456789abcdef01234567") == LEGACY
    for junk in ("", "a.b", "a.!!!.c", "a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c", "x.eyJ.y"):
        assert token_kind(junk) == LEGACY and jwt_payload(junk) is None


def test_access_tokens_are_cached_refreshed_before_expiry_and_once_per_refusal():
    now = [1000.0]
    made: list[str] = []

    def exchange() -> str:
        made.append(_jwt(token_type="access", iat=now[0], exp=now[0] + 300, n=len(made)))
        return made[-1]

    tokens = AccessTokens(exchange, clock=lambda: now[0])
    first = tokens.current()
    assert tokens.current() == first and len(made) == 1  # cached
    now[0] += 269  # inside the 30 s margin before exp: still the same one
    assert tokens.current() == first
    now[0] += 2  # 29 s before exp: replaced
    second = tokens.current()
    assert second != first and len(made) == 2
    assert tokens.current(stale=first) == second and len(made) == 2  # refused an old one: already replaced
    third = tokens.current(stale=second)  # the current one refused: refreshed
    assert third != second and len(made) == 3
    assert "eyJ" not in repr(tokens)


def test_one_refresh_at_a_time_across_threads():
    calls = []
    gate = threading.Event()

    def exchange() -> str:
        calls.append(1)
        gate.wait(1)
        return _jwt(token_type="access", exp=time.time() + 300)

    tokens = AccessTokens(exchange)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(tokens.current) for _ in range(8)]
        time.sleep(0.2)
        gate.set()
        assert len({f.result() for f in futures}) == 1
    assert len(calls) == 1


def test_no_token_in_a_repr():
    pat = _jwt(token_type="refresh", exp=2**40, jti="secret-jti")
    for thing in (TokenAuth("http://ls.example", pat), rest.Credentials("http://ls.example", pat)):
        assert pat not in repr(thing) and "secret" not in repr(thing) and "kind='pat'" in repr(thing)


# -- against the stack's Label Studio -------------------------------------------------------------
def test_the_stack_keeps_legacy_tokens_off_and_records_a_pat(label_studio):
    assert token_kind(label_studio.token) == PAT
    settings = httpx.get(f"{label_studio.url}/api/jwt/settings", headers=label_studio.headers, timeout=60)
    assert settings.json() == {"api_tokens_enabled": True, "legacy_api_tokens_enabled": False}
    assert label_studio.headers["Authorization"].startswith("Bearer ")
    # the PAT itself as a legacy token, and the admin's real legacy token: both refused
    with login(label_studio.url, label_studio.email, label_studio.password) as session:
        assert jwt_settings(session)["legacy_api_tokens_enabled"] is False
        legacy = legacy_token(session)
    for value in (label_studio.token, legacy):
        refused = httpx.get(f"{label_studio.url}/api/projects", headers={"Authorization": f"Token {value}"}, timeout=60)
        assert refused.status_code == 401, refused.text
    state = json.loads(state_path(label_studio.home).read_text())
    assert state["label_studio"]["token"] == state["label_studio"]["pat"] == label_studio.token
    assert state["label_studio"]["token_kind"] == "pat" and not state["label_studio"]["legacy_tokens_enabled"]
    assert stat.S_IMODE(state_path(label_studio.home).stat().st_mode) == 0o600


def test_a_rejected_pat_is_one_line_naming_the_fix(label_studio, prefect_api, tmp_path):
    claims = jwt_payload(label_studio.token) or {}
    forged = _jwt(**{**claims, "jti": "0" * 32})  # a PAT's shape, not Label Studio's signature
    with http_client(label_studio.url, forged) as http, pytest.raises(TokenRejected) as raised:
        http.get("/api/projects")
    message = str(raised.value)
    assert "invalid, expired or revoked" in message and "Personal Access Token" in message
    assert forged not in message and label_studio.token not in message
    with pytest.raises(TokenRejected):
        rest.export_project(label_studio.url, forged, 1)
    # the CLI: one line, no traceback, no token
    env = {"SMO_HOME": str(tmp_path), "SMO_LS_URL": label_studio.url, "SMO_LS_TOKEN": forged}
    spec, data, _gold = _files(tmp_path, "rejected pat")
    result = smo(
        {**stack_env(label_studio, _NoBackend, tmp_path), **env}, "launch", "--spec", str(spec), "--data", str(data)
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Personal Access Token" in line and forged not in result.stderr


class _NoBackend:
    url = "http://127.0.0.1:9"
    auth = ("none", "none")


def _refresh_count(proxy: FaultyProxy) -> int:
    return sum(1 for m, p, _a in proxy.seen if m == "POST" and p == "/api/token/refresh/")


def test_pat_runs_launch_simulate_pull_quality_export_and_a_refused_access_token_is_refreshed(
    label_studio, ml_backend, prefect_api, tmp_path, unique
):
    """The line end to end on a PAT; then a full pull whose access token Label Studio refuses once
    mid-pull (the fault proxy answers 401 to the export, after the users page) completes with the
    same counts, having traded the PAT again."""
    spec, data, gold = _files(tmp_path, f"pat line {unique}")
    spec.write_text(spec.read_text().replace("share: 0.2", "share: 1.0"))  # every task gets 3 annotators
    env = stack_env(label_studio, ml_backend, tmp_path / "home")
    assert token_kind(env["SMO_LS_TOKEN"]) == PAT
    launched = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert json.loads(launched.stdout)["gold"] == 3
    sim = smo(env, "simulate", "--spec", str(spec), "--annotators", "3", "--accuracy", "0.9", "--json")
    assert sim.returncode == 0, sim.stderr[-3000:]
    assert json.loads(sim.stdout)["annotations_written"] == 45
    pulled = smo(env, "pull", "--spec", str(spec), "--json")
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert json.loads(pulled.stdout)["annotations"] == 45
    quality = smo(env, "quality", "--spec", str(spec), "--json", "--no-adjudicate")
    assert quality.returncode in (0, 3), quality.stderr[-3000:]
    out = tmp_path / "export"
    exported = smo(env, "export", "--spec", str(spec), "--out", str(out), "--json")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert any(p.is_file() for p in out.rglob("*"))
    for result in (launched, sim, pulled, quality, exported):
        assert label_studio.token not in result.stdout + result.stderr

    refused: list[str] = []

    def once_after_the_first_page(method: str, path: str, n: int) -> str | int:
        if "/export" in path and not refused:
            refused.append(path)
            return 401
        return "forward"

    proxy = FaultyProxy(label_studio.url, once_after_the_first_page)
    try:
        again = smo({**env, "SMO_LS_URL": proxy.url}, "pull", "--spec", str(spec), "--full", "--json")
    finally:
        proxy.close()
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["annotations"] == 45 and refused
    paths = [p for _m, p, _a in proxy.seen]
    assert paths.index(refused[0]) > paths.index("/api/users/")  # refused mid-pull, after the first read
    assert _refresh_count(proxy) == 2  # one trade at the start, one after the 401
    annotations = pd.read_parquet(Workspace.for_title(f"pat line {unique}", tmp_path / "home").annotations)
    assert len(annotations) == 45  # one row per Label Studio annotation (labels holds one per control and value)


def test_the_backends_stdlib_client_refreshes_once_on_a_401(label_studio, ls_client, unique):
    from smo_labelstudio.labelstudio.client import create_project, import_tasks
    from smo_labelstudio.labelstudio.configs import labeling_interface

    project = create_project(ls_client, f"rest {unique}", labeling_interface("text_moderation")["label_config"])
    import_tasks(ls_client, project, [{"data": {"text": "hello", "item_id": "a"}}])
    refusals = {"n": 0}

    def refuse_first_export(method: str, path: str, n: int) -> str | int:
        if path.endswith("/export") and refusals["n"] == 0:
            refusals["n"] += 1
            return 401
        return "forward"

    proxy = FaultyProxy(label_studio.url, refuse_first_export)
    try:
        creds = rest.Credentials(proxy.url, label_studio.token)
        assert creds.access is not None
        creds.access.expire()
        assert rest.export_project(proxy.url, label_studio.token, project) == []  # nothing annotated yet
        assert refusals["n"] == 1 and _refresh_count(proxy) == 2
        # and the httpx client the same way, sharing nothing with it but the server
        auth = TokenAuth(proxy.url, label_studio.token)
        assert auth.access is shared_access(proxy.url, label_studio.token, lambda: "")
        refusals["n"] = 0
        with http_client(proxy.url, label_studio.token) as http:
            assert http.get(f"/api/projects/{project}/export", params={"exportType": "JSON"}).json() == []
        assert refusals["n"] == 1 and _refresh_count(proxy) == 3
        # a second 401 stands: no loop
        always = FaultyProxy(label_studio.url, lambda m, p, n: 401 if p.endswith("/export") else "forward")
        try:
            with http_client(always.url, label_studio.token) as http:
                assert http.get(f"/api/projects/{project}/export").status_code == 401
            assert sum(1 for _m, p, _a in always.seen if p.endswith("/export")) == 2
        finally:
            always.close()
    finally:
        proxy.close()
