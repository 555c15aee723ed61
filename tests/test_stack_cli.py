"""`smo stack` end to end, as a user runs it: a real Label Studio and Prefect in a fresh state folder."""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from smo_labelstudio.labelstudio.auth import auth_header
from smo_labelstudio.stack import procs

SMO = str(Path(sys.executable).parent / "smo")


STRIP = (
    "PREFECT_API_URL",
    "SMO_POSTGRES_URL",
    "SMO_LS_URL",
    "SMO_LS_TOKEN",
    "SMO_LS_PORT",
    "SMO_PREFECT_PORT",
    "SMO_BACKEND_PORT",
    "SMO_REPORTS_PORT",
)


def smo(home: Path, *args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the installed `smo` as a user would, against the state folder `home`."""
    full_env = {k: v for k, v in os.environ.items() if k not in STRIP} | {"SMO_HOME": str(home)} | (env or {})
    return subprocess.run([SMO, *args], env=full_env, capture_output=True, text=True, timeout=timeout)


def ports() -> dict:
    return {
        "SMO_LS_PORT": str(procs.free_port()),
        "SMO_PREFECT_PORT": str(procs.free_port()),
        "SMO_BACKEND_PORT": str(procs.free_port()),
        "SMO_REPORTS_PORT": str(procs.free_port()),
        "SMO_LS_WORKERS": "2",
    }


def our_processes(home: Path) -> list[int]:
    """Pids of live processes whose command line or environment mention this state folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(home).encode() in blob and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_up_twice_env_status_down(tmp_path):
    home, env = tmp_path / "stack", ports()
    first = smo(home, "stack", "up", env=env)
    assert first.returncode == 0, first.stderr
    assert f"http://127.0.0.1:{env['SMO_LS_PORT']}" in first.stdout
    assert f"http://127.0.0.1:{env['SMO_PREFECT_PORT']}" in first.stdout
    state_file = home / "stack.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = json.loads(state_file.read_text())
    token = state["label_studio"]["token"]
    assert token not in first.stdout + first.stderr  # the token is never printed by `up`
    pids = {n: r["pid"] for n, r in state["services"].items()}

    try:
        # The printed URLs work; the token from `stack env` authenticates.
        exported = smo(home, "stack", "env", env=env)
        assert exported.returncode == 0
        values = dict(line.removeprefix("export ").split("=", 1) for line in exported.stdout.splitlines())
        values = {k: shlex.split(v)[0] for k, v in values.items()}
        assert set(values) == {
            "SMO_LS_URL",
            "SMO_LS_TOKEN",
            "SMO_BACKEND_URL",
            "SMO_BACKEND_USER",
            "SMO_BACKEND_PASSWORD",
            "SMO_BACKEND_ADMIN_PASSWORD",
            "SMO_REPORTS_USER",  # the reports service's managers' login
            "SMO_REPORTS_PASSWORD",
            "PREFECT_API_URL",
        }
        r = httpx.get(
            values["SMO_LS_URL"] + "/api/projects", headers=auth_header(values["SMO_LS_URL"], values["SMO_LS_TOKEN"])
        )
        assert r.status_code == 200
        assert httpx.get(values["PREFECT_API_URL"] + "/health").json() is True
        assert httpx.get(values["PREFECT_API_URL"].removesuffix("/api")).status_code == 200  # the UI

        # The demo through the CLI (launch, simulated annotators, pull, quality, report, export). A second
        # run importing and annotating nothing is what test_launch_pull and test_simulate show per step.
        first_demo = smo(home, "demo", "--json", env=env)
        assert first_demo.returncode == 0, first_demo.stderr
        d1 = json.loads(first_demo.stdout)
        assert d1["imported"] == d1["tasks"] > 0 and d1["quarantined"] == 2 and d1["duplicates"] >= 1
        assert d1["annotations_written"] == d1["annotations"] > d1["tasks"]
        assert Path(d1["report"]).exists() and d1["project_url"].startswith(values["SMO_LS_URL"])
        assert Path(d1["ops_report"]).exists() and "Model evaluation" in Path(d1["ops_report"]).read_text()
        assert (Path(d1["export"]) / "datasheet.md").exists() and (Path(d1["export"]) / "dataset.parquet").exists()

        # A second `up` changes nothing.
        second = smo(home, "stack", "up", env=env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        state2 = json.loads(state_file.read_text())
        assert {n: r["pid"] for n, r in state2["services"].items()} == pids
        assert state2["label_studio"] == state["label_studio"]

        report = json.loads(smo(home, "stack", "status", "--json", env=env).stdout)
        assert {n for n, s in report["services"].items() if s["healthy"]} == {
            "label-studio",
            "prefect",
            "ml-backend",
            "ml-worker",
            "reports",
            "deployments",
        }
        # The deployments service registered every flow (the demo took longer than its registration).
        listed = httpx.post(values["PREFECT_API_URL"] + "/deployments/filter", json={}).json()
        assert {f"{d['name']}" for d in listed} == {"smo"} and len(listed) == 6
        backend = values["SMO_BACKEND_URL"]
        assert httpx.get(backend + "/health").status_code == 401
        assert (
            httpx.get(
                backend + "/health", auth=(values["SMO_BACKEND_USER"], values["SMO_BACKEND_PASSWORD"])
            ).status_code
            == 200
        )
    finally:
        down = smo(home, "stack", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not our_processes(home)
    for record in state["services"].values():
        assert not procs.alive(record)
    stopped = smo(home, "stack", "status", env=env)
    assert stopped.returncode == 3 and "stopped" in stopped.stdout


def _up_while_held(home: Path, env: dict, port: int) -> subprocess.CompletedProcess:
    """`smo stack up` while `port` is taken (by us, unless something else already listens there)."""
    holder = None
    if not procs.port_in_use("127.0.0.1", port):
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen()
    try:
        return smo(home, "stack", "up", env=env)
    finally:
        if holder:
            holder.close()


@pytest.mark.slow
def test_label_studio_port_taken_is_one_line_naming_the_port(tmp_path):
    env = ports()
    env.pop("SMO_LS_PORT")  # the default, 8080
    result = _up_while_held(tmp_path, env, 8080)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "8080" in lines[0] and "label-studio" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not our_processes(tmp_path)


@pytest.mark.slow
def test_failure_after_one_service_started_leaves_nothing_running(tmp_path):
    env = ports()
    result = _up_while_held(tmp_path, env, int(env["SMO_PREFECT_PORT"]))
    assert result.returncode != 0
    assert "prefect" in result.stderr and env["SMO_PREFECT_PORT"] in result.stderr
    assert "label-studio: healthy" in result.stdout  # it had started, and was then stopped
    assert not our_processes(tmp_path)
    assert json.loads((tmp_path / "stack.json").read_text())["services"] == {}


def test_bad_postgres_url_is_a_clear_error(tmp_path):
    result = smo(tmp_path, "stack", "up", "--postgres", "mysql://x@y/z", env=ports())
    assert result.returncode != 0
    assert "postgresql://" in result.stderr and "Traceback" not in result.stderr


def test_env_before_up_says_what_to_do(tmp_path):
    result = smo(tmp_path, "stack", "env")
    assert result.returncode != 0 and "smo stack up" in result.stderr


def test_service_that_fails_to_start_names_its_log(tmp_path):
    (tmp_path / "label-studio").mkdir()
    (tmp_path / "label-studio" / "label_studio.sqlite3").write_text("not a database")
    result = smo(tmp_path, "stack", "up", env=ports())
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: label-studio: init failed with exit code 1 (log: {tmp_path / 'logs' / 'label-studio.log'})"
    )
    assert not our_processes(tmp_path)


def test_bad_port_setting_is_a_clear_error(tmp_path):
    result = smo(tmp_path, "stack", "up", env=ports() | {"SMO_LS_PORT": "eighty"})
    assert result.returncode == 1 and "SMO_LS_PORT must be a positive whole number" in result.stderr


def test_unreachable_postgres_is_one_line(tmp_path):
    url = f"postgresql://root@127.0.0.1:{procs.free_port()}/nothing_here"
    result = smo(tmp_path, "stack", "up", "--postgres", url, env=ports())
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: label-studio: ") and "refused" in lines[0]
    assert not our_processes(tmp_path)
