"""Bring your own server (issue 15): Label Studio behind a reverse proxy with a path prefix, behind TLS
signed by a private CA (SMO_LS_CA_BUNDLE), and `smo doctor` against the stack's Label Studio, a wrong
token, an unreachable URL and a Label Studio that blocks local ML backends and webhooks (SSRF
protection on, as a team's 1.23 server has it). All against real Label Studio servers."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess

import pytest
from faults import FaultyProxy, make_certificates, own_guarded_label_studio
from smo_cli import smo, stack_env
from test_launch_pull import _files

from smo_labelstudio.core.errors import ServiceError
from smo_labelstudio.labelstudio import rest
from smo_labelstudio.labelstudio.client import LabelStudioError, connect, http_client
from smo_labelstudio.labelstudio.users import legacy_token, login
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack import procs

CHECKS = ["reachable", "version", "token", "create_project", "webhooks", "ml_backend"]


def _doctor(env: dict, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`smo doctor --json` and its report."""
    result = smo(env, "doctor", "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result, json.loads(result.stdout)


def _scratch_projects(url: str, token: str) -> list[str]:
    return [p.title for p in connect(url, token).projects.list() if (p.title or "").startswith("smo doctor scratch")]


def _forward(_method: str, _path: str, _n: int) -> str:
    return "forward"


# -- smo doctor -----------------------------------------------------------------------------------
def test_doctor_against_the_stack_passes_every_check_and_leaves_nothing_behind(label_studio, ml_backend, tmp_path):
    env = stack_env(label_studio, ml_backend, tmp_path / "home")
    result, report = _doctor(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(report) == CHECKS
    assert all(check["ok"] is True for check in report.values()), report
    assert report["version"]["detail"].startswith("Label Studio 1.23")
    assert report["token"]["detail"].startswith(("personal access token, works", "legacy token, works")), report
    assert "reaches the ML backend" in report["ml_backend"]["detail"]

    text = smo(env, "doctor")
    lines = text.stdout.strip().splitlines()
    assert text.returncode == 0 and len(lines) == 6 and all(line.startswith("ok ") for line in lines), text.stdout
    print("\n".join(lines))
    assert _scratch_projects(label_studio.url, label_studio.token) == []


def test_doctor_with_a_wrong_token_names_the_problem_and_the_fix(label_studio, ml_backend, tmp_path):
    env = stack_env(label_studio, ml_backend, tmp_path / "home")
    wrong_legacy = secrets.token_hex(20)
    result, report = _doctor({**env, "SMO_LS_TOKEN": wrong_legacy})
    assert result.returncode == 1
    assert report["reachable"]["ok"] is True and report["version"]["ok"] is True
    token = report["token"]
    assert token["ok"] is False and token["detail"].startswith("legacy token refused"), token
    assert "Invalid token" in token["detail"] and "copy it again from Label Studio" in token["detail"]
    assert all(report[c]["ok"] is None for c in CHECKS[3:]), report

    # The admin's real legacy token while the organization has legacy tokens off (a fresh 1.23's default).
    with login(label_studio.url, label_studio.email, label_studio.password) as session:
        real_legacy = legacy_token(session)
    off = smo({**env, "SMO_LS_TOKEN": real_legacy}, "doctor")
    line = next(line for line in off.stdout.splitlines() if " token " in line)
    assert off.returncode == 1 and line.startswith("FAIL"), off.stdout
    assert "legacy tokens are off in this organization: use a personal access token" in line, line
    print(line)

    # A forged personal access token (a JWT refresh token Label Studio did not sign).
    def part(claims: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    forged = ".".join([part({"alg": "HS256", "typ": "JWT"}), part({"token_type": "refresh", "user_id": 1}), "c2ln"])
    text = smo({**env, "SMO_LS_TOKEN": forged}, "doctor")
    assert text.returncode == 1
    line = next(line for line in text.stdout.splitlines() if " token " in line)
    assert line.startswith("FAIL") and "personal access token refused by /api/token/refresh/" in line, line
    assert "Personal Access Token" in line and "SMO_LS_TOKEN" in line
    assert forged not in text.stdout + text.stderr and wrong_legacy not in result.stdout + result.stderr
    print(line)


def test_doctor_against_an_unreachable_url_says_so_in_one_line(label_studio, ml_backend, tmp_path):
    port = procs.free_port()  # nothing listens there
    env = {**stack_env(label_studio, ml_backend, tmp_path / "home"), "SMO_LS_URL": f"http://127.0.0.1:{port}"}
    text = smo(env, "doctor")
    assert text.returncode == 1, text.stdout
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 6 and lines[0].startswith("FAIL reachable"), text.stdout
    assert f"cannot connect to 127.0.0.1:{port}" in lines[0] and "check SMO_LS_URL" in lines[0]
    assert all(line.startswith("skip") for line in lines[1:]), text.stdout
    print(lines[0])


def test_doctor_against_a_label_studio_that_blocks_local_backends_names_the_settings(ml_backend, tmp_path):
    settings, state = own_guarded_label_studio(tmp_path / "guarded")
    try:
        url = f"http://127.0.0.1:{settings.ls_port}"
        env = {**stack_env(_Server(url, state["label_studio"]["token"]), ml_backend, tmp_path / "home")}
        result, report = _doctor(env)
        assert result.returncode == 1
        assert [report[c]["ok"] for c in CHECKS] == [True, True, True, True, False, False], report
        hooks, ml = report["webhooks"]["detail"], report["ml_backend"]["detail"]
        assert "refuses webhooks to" in hooks and "reserved network address" in hooks, hooks
        for advice in (hooks, ml):  # keep the protection on, let the backend's address through
            assert (
                "LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS" in advice
                and "never SSRF_PROTECTION_ENABLED=false" in advice
            )
        assert f"refuses ML backends at {ml_backend.url}" in ml and "reserved network address" in ml, ml
        assert _scratch_projects(url, state["label_studio"]["token"]) == []
        print(f"webhooks: {hooks}\nml_backend: {ml}")
    finally:
        stack.down(settings, lambda _m: None)


class _Server:
    """stack_env's Label Studio argument for a server of the test's own."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token


# -- a path prefix --------------------------------------------------------------------------------
def test_label_studio_under_a_path_prefix_launch_simulate_pull_and_doctor_keep_it(
    label_studio, ml_backend, prefect_api, tmp_path
):
    proxy = FaultyProxy(label_studio.url, _forward, prefix="/labelstudio")
    try:
        assert proxy.url.endswith("/labelstudio")
        env = {**stack_env(label_studio, ml_backend, tmp_path / "home"), "SMO_LS_URL": proxy.url + "/"}
        result, report = _doctor(env)
        assert result.returncode == 0 and all(c["ok"] for c in report.values()), report

        spec, data, gold = _files(tmp_path, f"prefix {secrets.token_hex(4)}")
        launched = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
        assert launched.returncode == 0, launched.stderr[-3000:]
        m = json.loads(launched.stdout)
        assert m["imported"] == 12 and m["counts_add_up"]
        assert m["project_url"] == f"{proxy.url}/projects/{m['project_id']}/data"
        sim = smo(env, "simulate", "--spec", str(spec), "--annotators", "2", "--json")
        assert sim.returncode == 0, sim.stderr[-3000:]
        pulled = smo(env, "pull", "--spec", str(spec), "--json")
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        assert json.loads(pulled.stdout)["annotations"] > 0

        outside = [s for s in proxy.seen if s[2] != "forward"]
        assert outside == [], outside  # every call kept the prefix
        assert len(proxy.seen) > 20 and any(p.endswith("/import") for _m, p, _a in proxy.seen)

        # Without the prefix: the proxy's 404, and doctor says to check the prefix.
        bare = proxy.url.removesuffix("/labelstudio")
        text = smo({**env, "SMO_LS_URL": bare}, "doctor")
        first = text.stdout.splitlines()[0]
        assert text.returncode == 1 and first.startswith("FAIL reachable") and "path prefix" in first, text.stdout
        print(first)
    finally:
        proxy.close()


# -- TLS with a private CA ------------------------------------------------------------------------
def test_tls_with_a_private_ca_fails_in_one_line_without_the_bundle_and_works_with_it(
    label_studio, ml_backend, prefect_api, tmp_path, monkeypatch
):
    certs = make_certificates(tmp_path / "pki")
    proxy = FaultyProxy(label_studio.url, _forward, tls=certs.server_context())
    try:
        assert proxy.url.startswith("https://")
        env = {**stack_env(label_studio, ml_backend, tmp_path / "home"), "SMO_LS_URL": proxy.url}
        env.pop("SMO_LS_CA_BUNDLE", None)
        spec, data, gold = _files(tmp_path, f"tls {secrets.token_hex(4)}")

        # Without the bundle: doctor, launch (the SDK's client) and a raw client each fail naming it.
        text = smo(env, "doctor")
        assert text.returncode == 1 and text.stdout.startswith("FAIL reachable"), text.stdout
        assert "TLS certificate is not trusted" in text.stdout and "set SMO_LS_CA_BUNDLE" in text.stdout
        refused = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--json")
        last = refused.stderr.strip().splitlines()[-1]
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
        assert last.startswith("error: Label Studio's TLS certificate is not trusted") and "SMO_LS_CA_BUNDLE" in last
        print(last)
        monkeypatch.delenv("SMO_LS_CA_BUNDLE", raising=False)
        with pytest.raises(LabelStudioError, match="SMO_LS_CA_BUNDLE"), http_client(proxy.url, label_studio.token) as h:
            h.get("/api/projects/")
        with pytest.raises(ServiceError, match="SMO_LS_CA_BUNDLE"):  # the backend's stdlib reader
            rest.export_project(proxy.url, label_studio.token, 1)

        # With it: doctor passes, and launch -> pull run over TLS.
        env["SMO_LS_CA_BUNDLE"] = str(certs.ca)
        result, report = _doctor(env)
        assert result.returncode == 0 and all(c["ok"] for c in report.values()), report
        launched = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
        assert launched.returncode == 0, launched.stderr[-3000:]
        m = json.loads(launched.stdout)
        assert m["imported"] == 12 and m["project_url"].startswith(proxy.url)
        pulled = smo(env, "pull", "--spec", str(spec), "--json")
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        monkeypatch.setenv("SMO_LS_CA_BUNDLE", str(certs.ca))
        with http_client(proxy.url, label_studio.token) as h:
            assert h.get(f"/api/projects/{m['project_id']}").status_code == 200
        assert rest.export_project(proxy.url, label_studio.token, m["project_id"]) == []  # nothing annotated yet

        # A bundle that is not there: one line naming the variable.
        missing = smo({**env, "SMO_LS_CA_BUNDLE": str(tmp_path / "nope.pem")}, "doctor")
        assert missing.returncode == 1 and "SMO_LS_CA_BUNDLE=" in missing.stderr + missing.stdout
    finally:
        proxy.close()
