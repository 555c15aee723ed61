"""The one module on a legacy token: a Label Studio of its own started as `smo stack up --legacy-token`
does (legacy tokens on, a legacy token issued) runs launch, simulate and pull with it; brought up again
without the flag, the same stack switches legacy tokens off and issues a PAT."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from smo_cli import smo
from test_launch_pull import _files

from smo_labelstudio.labelstudio.auth import LEGACY, PAT, auth_header, token_kind
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.services import Settings


@pytest.fixture(scope="module")
def legacy_stack(tmp_path_factory):
    settings = Settings(
        home=tmp_path_factory.mktemp("legacy-stack"),
        ls_port=procs.free_port(),
        prefect_port=procs.free_port(),
        backend_port=procs.free_port(),
        ls_workers=2,
        legacy_token=True,
    )
    state = stack.up(settings, lambda _m: None, only=("label-studio",))
    yield settings, state
    stack.down(settings, lambda _m: None, only=("label-studio",))


def test_launch_simulate_and_pull_run_on_a_legacy_token(legacy_stack, prefect_api, tmp_path, unique):
    settings, state = legacy_stack
    url, token = f"http://127.0.0.1:{settings.ls_port}", state["label_studio"]["token"]
    assert token_kind(token) == LEGACY and state["label_studio"]["token_kind"] == "legacy"
    jwt = httpx.get(f"{url}/api/jwt/settings", headers={"Authorization": f"Token {token}"}, timeout=60)
    assert jwt.status_code == 200 and jwt.json()["legacy_api_tokens_enabled"] is True
    env = {
        **os.environ,
        "SMO_HOME": str(tmp_path / "home"),
        "SMO_LS_URL": url,
        "SMO_LS_TOKEN": token,
        "SMO_BACKEND_URL": f"http://127.0.0.1:{procs.free_port()}",  # no backend: predictions listed as missing
    }
    spec, data, gold = _files(tmp_path, f"legacy {unique}")
    launched = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
    assert launched.returncode == 0, launched.stderr[-3000:]
    m = json.loads(launched.stdout)
    sim = smo(env, "simulate", "--spec", str(spec), "--annotators", "2", "--json")
    assert sim.returncode == 0, sim.stderr[-3000:]
    written = json.loads(sim.stdout)["annotations_written"]
    assert written > 0
    pulled = smo(env, "pull", "--spec", str(spec), "--json")
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert json.loads(pulled.stdout)["annotations"] == written
    tasks = httpx.get(
        f"{url}/api/projects/{m['project_id']}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
        headers={"Authorization": f"Token {token}"},
        timeout=120,
    ).json()
    assert sum(len(t["annotations"]) for t in tasks) == written


def test_up_without_the_flag_switches_legacy_off_and_issues_a_pat(legacy_stack):
    settings, state = legacy_stack
    url, legacy = f"http://127.0.0.1:{settings.ls_port}", state["label_studio"]["token"]
    switched = stack.up(
        Settings(**{**settings.__dict__, "legacy_token": False}), lambda _m: None, only=("label-studio",)
    )
    pat = switched["label_studio"]["token"]
    assert token_kind(pat) == PAT and switched["label_studio"]["legacy_tokens_enabled"] is False
    assert httpx.get(f"{url}/api/projects", headers={"Authorization": f"Token {legacy}"}, timeout=60).status_code == 401
    assert httpx.get(f"{url}/api/projects", headers=auth_header(url, pat), timeout=60).status_code == 200
    again = stack.up(Settings(**{**settings.__dict__, "legacy_token": False}), lambda _m: None, only=("label-studio",))
    assert again["label_studio"]["token"] == pat  # kept while Label Studio takes it
