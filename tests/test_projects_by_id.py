"""Projects kept by id (issue 15), against the real Label Studio: the workspace records the project the first
launch created and later launches use that id, never a title lookup. A launch killed right after creating the
project continues in it; a renamed project stays ours (confirmed once with `--adopt <its id>`); someone else's
project with our title is never adopted; a deleted project is one line naming `--adopt`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faults import FaultyProxy, wait_until
from smo_cli import smo, stack_env
from test_launch_pull import _files

from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace, read_json
from smo_labelstudio.ingest import launch
from smo_labelstudio.labelstudio import client
from smo_labelstudio.labelstudio.configs import labeling_interface

ITEMS = 15  # _files: 12 valid rows + 3 gold (gold_rate 0.2)


class _NoBackend:
    """stack_env's backend argument: these launches need no predictions."""

    url = "http://127.0.0.1:9"
    auth = ("", "")


def _projects_titled(label_studio, title: str) -> list[int]:
    """Ids of every project with exactly this title, read from Label Studio directly (not through a proxy)."""
    with client.http_client(label_studio.url, label_studio.token) as http:
        found = http.get("/api/projects/", params={"title": title, "page_size": 100}).json()["results"]
    return sorted(p["id"] for p in found if p["title"] == title)


def _items(label_studio, project_id: int) -> list[str]:
    return list(client.task_ids_by_item(label_studio.url, label_studio.token, project_id))


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    """The command failed with one `error: ...` line last on stderr and no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    return last


def env_home(env: dict) -> Path:
    return Path(env["SMO_HOME"])


def _launch(env: dict, spec: Path, data: Path, gold: Path, *extra: str) -> subprocess.CompletedProcess:
    return smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--batch-size", "5",
               "--json", *extra)  # fmt: skip


@pytest.mark.slow
def test_a_launch_killed_right_after_creating_the_project_continues_in_it(label_studio, prefect_api, tmp_path, unique):
    title = f"killed at creation {unique}"
    spec, data, gold = _files(tmp_path, title)
    env = stack_env(label_studio, _NoBackend, tmp_path / "home")
    # The first import stalls (it never reaches Label Studio); the launch is killed as soon as the project exists.
    proxy = FaultyProxy(
        label_studio.url,
        lambda m, p, n: "stall" if m == "POST" and p.endswith("/import") else "forward",
        stall_seconds=120,
    )
    try:
        argv = [sys.executable, "-m", "smo_labelstudio.cli", "launch", "--spec", str(spec), "--data", str(data),
                "--gold", str(gold), "--batch-size", "5", "--json"]  # fmt: skip
        run = subprocess.Popen(
            argv,
            env={**env, "SMO_LS_URL": proxy.url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until(lambda: bool(_projects_titled(label_studio, title)) or run.poll() is not None, 240, "project")
            assert run.poll() is None, "the launch ended before its project appeared"
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=60)
    finally:
        proxy.close()
    created = _projects_titled(label_studio, title)
    assert len(created) == 1
    print(f"killed with project {created[0]} created; recorded: {Workspace.for_title(title, env_home(env)).project()}")

    again = _launch(env, spec, data, gold)
    assert again.returncode == 0, again.stderr[-3000:]
    m = json.loads(again.stdout)
    assert m["project_id"] == created[0] and m["complete"] and m["counts_add_up"]
    assert _projects_titled(label_studio, title) == created  # exactly one project with that title
    items = _items(label_studio, created[0])
    assert len(items) == len(set(items)) == ITEMS  # every row imported once
    assert not Workspace.for_title(title, env_home(env)).pending_project_file.exists()


def test_killed_between_creating_and_recording_finds_its_own_project_by_marker_not_another_by_title(
    label_studio, tmp_path, unique
):
    """The narrowest window, made deterministic: the project exists (with the marker the launch wrote in
    project.pending.json), nothing is recorded yet, and someone else's project has the same title."""
    title = f"marker {unique}"
    spec_path, _data, _gold = _files(tmp_path, title)
    spec = load_spec(spec_path)
    ws = Workspace.for_title(title, tmp_path / "home")
    ls = client.connect(label_studio.url, label_studio.token)
    config = labeling_interface(spec.config)["label_config"]
    theirs = client.create_project(ls, title, config, description="someone else's")
    ws.root.mkdir(parents=True)
    ws.pending_project_file.write_text(json.dumps({"marker": f"smo-launch-{unique}", "title": title}))
    ours = client.create_project(ls, title, config, description=f"Created by `smo launch` (smo-launch-{unique}).")

    assert launch.ensure_project(spec, label_studio.url, label_studio.token, home=tmp_path / "home") == ours
    assert ws.project()["project_id"] == ours and not ws.pending_project_file.exists()
    assert _projects_titled(label_studio, title) == sorted([theirs, ours])


@pytest.mark.slow
def test_a_renamed_project_stays_ours_once_confirmed_with_adopt(label_studio, prefect_api, tmp_path, unique):
    title = f"renamed {unique}"
    spec, data, gold = _files(tmp_path, title)
    env = stack_env(label_studio, _NoBackend, tmp_path / "home")
    first = _launch(env, spec, data, gold)
    assert first.returncode == 0, first.stderr[-3000:]
    pid = json.loads(first.stdout)["project_id"]
    with client.http_client(label_studio.url, label_studio.token) as http:
        assert http.patch(f"/api/projects/{pid}", json={"title": f"{title} (Q3)"}).status_code == 200

    refused = _one_error_line(_launch(env, spec, data, gold))
    assert f"project {pid}" in refused and "now titled" in refused and f"--adopt {pid}" in refused, refused
    print(refused)

    adopted = _launch(env, spec, data, gold, "--adopt", str(pid))
    assert adopted.returncode == 0, adopted.stderr[-3000:]
    m = json.loads(adopted.stdout)
    assert m["project_id"] == pid and m["imported"] == 0 and m["already_present"] == 12 and m["counts_add_up"]
    record = read_json(Workspace.for_title(title, env_home(env)).project_file)
    assert record["ls_title"] == f"{title} (Q3)" and record["adopted"] and record["title"] == title

    later = _launch(env, spec, data, gold)  # the rename is recorded: no refusal, the same project
    assert later.returncode == 0, later.stderr[-3000:]
    assert json.loads(later.stdout)["project_id"] == pid
    assert _projects_titled(label_studio, title) == [] and len(_items(label_studio, pid)) == ITEMS


@pytest.mark.slow
def test_someone_elses_project_with_our_title_is_not_adopted(label_studio, prefect_api, tmp_path, unique):
    title = f"same title {unique}"
    spec, data, gold = _files(tmp_path, title)
    ls = client.connect(label_studio.url, label_studio.token)
    theirs = client.create_project(ls, title, labeling_interface("text_moderation")["label_config"])
    env = stack_env(label_studio, _NoBackend, tmp_path / "home")  # a fresh workspace

    result = _launch(env, spec, data, gold)
    assert result.returncode == 0, result.stderr[-3000:]
    m = json.loads(result.stdout)
    assert m["project_id"] != theirs and m["imported"] == 12
    assert _items(label_studio, theirs) == [] and len(_items(label_studio, m["project_id"])) == ITEMS
    assert _projects_titled(label_studio, title) == sorted([theirs, m["project_id"]])


@pytest.mark.slow
def test_a_deleted_project_is_refused_in_one_line_and_adopt_continues_in_another(
    label_studio, prefect_api, tmp_path, unique
):
    title = f"deleted {unique}"
    spec, data, gold = _files(tmp_path, title)
    env = stack_env(label_studio, _NoBackend, tmp_path / "home")
    first = _launch(env, spec, data, gold)
    assert first.returncode == 0, first.stderr[-3000:]
    pid = json.loads(first.stdout)["project_id"]
    with client.http_client(label_studio.url, label_studio.token) as http:
        assert http.delete(f"/api/projects/{pid}").status_code == 204

    refused = _one_error_line(_launch(env, spec, data, gold))
    assert f"project {pid}" in refused and "gone" in refused and "--adopt PROJECT_ID" in refused, refused
    assert _projects_titled(label_studio, title) == []  # nothing created meanwhile
    print(refused)

    missing = _one_error_line(_launch(env, spec, data, gold, "--adopt", str(pid)))
    assert f"--adopt {pid}" in missing and "no project" in missing, missing

    # An empty project made by hand: adopting it sets the spec's label config and imports every row into it
    # (the old plan's rows went into the deleted project, so they are not "already present" here).
    replacement = client.create_project(client.connect(label_studio.url, label_studio.token), "replacement",
                                        "<View></View>")  # fmt: skip
    adopted = _launch(env, spec, data, gold, "--adopt", str(replacement))
    assert adopted.returncode == 0, adopted.stderr[-3000:]
    m = json.loads(adopted.stdout)
    assert m["project_id"] == replacement and m["imported"] == 12 and m["gold"] == 3 and m["counts_add_up"]
    items = _items(label_studio, replacement)
    assert len(items) == len(set(items)) == ITEMS
    with client.http_client(label_studio.url, label_studio.token) as http:
        detail = http.get(f"/api/projects/{replacement}").json()
    assert "policy" in detail["label_config"] and detail["title"] == "replacement"
    again = _launch(env, spec, data, gold)  # recorded: later launches use it without --adopt
    assert again.returncode == 0 and json.loads(again.stdout)["project_id"] == replacement, again.stderr[-3000:]
