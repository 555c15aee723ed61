"""Faults against the real components (issue 8): Label Studio answering 5xx or stalling, Label Studio
killed in the middle of an import, the ML backend down during an import, a pull killed half-way, and
damaged workspace files. Each ends either in the right data after a re-run or in one clear line."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from faults import FaultyProxy, kill_label_studio, own_label_studio, restart_label_studio, wait_until
from smo_cli import smo, stack_env
from test_launch_pull import _files, _project_tasks

from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.labelstudio.auth import auth_header
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack import procs


@dataclass
class Annotated:
    """A launched, annotated and pulled project in a workspace of its own."""

    env: dict
    spec: Path
    data: Path
    gold: Path
    home: Path
    ws: Workspace
    project_id: int
    annotations: int


@pytest.fixture(scope="module")
def annotated(label_studio, ml_backend, prefect_api, tmp_path_factory) -> Annotated:
    tmp = tmp_path_factory.mktemp("annotated")
    title = f"faults {secrets.token_hex(4)}"
    spec, data, gold = _files(tmp, title)
    env = stack_env(label_studio, ml_backend, tmp / "home")
    m = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
    assert m.returncode == 0, m.stderr
    sim = smo(env, "simulate", "--spec", str(spec), "--annotators", "2", "--json")
    assert sim.returncode == 0, sim.stderr
    pulled = smo(env, "pull", "--spec", str(spec), "--json")
    assert pulled.returncode == 0, pulled.stderr
    ws = Workspace.for_title(title, tmp / "home")
    return Annotated(
        env,
        spec,
        data,
        gold,
        tmp / "home",
        ws,
        json.loads(m.stdout)["project_id"],
        json.loads(pulled.stdout)["annotations"],
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    """The command failed with one `error: ...` line last on stderr and no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    return last


# -- damaged workspace files ------------------------------------------------------------------
def _damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if how == "truncate" else b"\x00garbage{" + raw[7:40])


@pytest.mark.slow
def test_damaged_workspace_files_end_in_one_line_naming_the_file(annotated, tmp_path):
    a = annotated
    plan_dir = next(a.ws.runs.iterdir())
    out = tmp_path / "export"
    launch_args = ("launch", "--spec", str(a.spec), "--data", str(a.data), "--gold", str(a.gold))
    cases = [  # (file, how, command, words in the advice)
        (a.ws.project_file, "truncate", ("pull", "--spec", str(a.spec)), "smo launch"),
        (a.ws.pull_state, "garble", ("pull", "--spec", str(a.spec)), "smo pull --full"),
        (a.ws.annotations, "truncate", ("report", "--spec", str(a.spec)), "smo pull --full"),
        (a.ws.labels, "garble", ("quality", "--spec", str(a.spec), "--no-adjudicate"), "smo pull --full"),
        (a.ws.gold_answers, "truncate", ("quality", "--spec", str(a.spec), "--no-adjudicate"), "backup"),
        (plan_dir / "plan.parquet", "truncate", launch_args, "backup"),
        (plan_dir / "batches.json", "garble", launch_args, "backup"),
        (plan_dir / "manifest.json", "truncate", ("export", "--spec", str(a.spec), "--out", str(out)), "smo launch"),
    ]

    def case(index: int, path: Path, how: str, command: tuple, advice: str) -> tuple[str, float]:
        """Each case on its own copy of the state folder."""
        home = tmp_path / f"case-{index}"
        shutil.copytree(a.home, home)
        damaged = home / path.relative_to(a.home)
        _damage(damaged, how)
        t0 = time.monotonic()
        result = smo({**a.env, "SMO_HOME": str(home)}, *command)
        line = _one_error_line(result)
        assert str(damaged) in line and "damaged" in line and advice in line, line
        return damaged.name, round(time.monotonic() - t0, 1)

    timings = dict(case(i, *c) for i, c in enumerate(cases))  # in this process, one after another (smo_cli)
    print("damaged-file commands (s):", timings)

    # The stack's state file: the same, through `smo stack`.
    state_home = tmp_path / "stack"
    state_home.mkdir()
    (state_home / "stack.json").write_text('{"label_studio": {"token": "abc"')
    result = smo({**a.env, "SMO_HOME": str(state_home)}, "stack", "status")
    line = _one_error_line(result)
    assert str(state_home / "stack.json") in line and "smo stack up" in line


# -- Label Studio answering 5xx or stalling ----------------------------------------------------
@pytest.mark.slow
def test_label_studio_5xx_and_stalls_are_retried_with_backoff_then_fail_in_one_line(annotated, label_studio, tmp_path):
    a = annotated
    fast = {"SMO_LS_TIMEOUT": "1.5", "SMO_LS_BACKOFF": "0.2"}

    # Two 503s, a stalled answer and one cut off half-way on the first reads: the pull retries through them.
    flaky = FaultyProxy(
        label_studio.url,
        lambda m, p, n: (
            "forward" if p == REFRESH else {1: 503, 2: 503, 3: "stall", 4: "cut"}.get(n - _refreshes(flaky), "forward")
        ),
        stall_seconds=4,
    )
    try:
        t0 = time.monotonic()
        env = {**a.env, **fast, "SMO_LS_RETRIES": "5", "SMO_LS_URL": flaky.url}
        result = smo(env, "pull", "--spec", str(a.spec), "--full", "--json")
        seconds = time.monotonic() - t0
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout)["annotations"] == a.annotations
        reads = [s for s in flaky.seen if s[1] != REFRESH]
        assert flaky.failures() == 4 and reads[4][2] == "forward" and reads[0][1] == reads[4][1]
        print(f"pull through 2x503 + 1 stall + 1 cut body: {seconds:.1f} s, {len(flaky.seen)} requests")
    finally:
        flaky.close()

    # An import answered 502 twice: looked up by item_id, sent again, imported exactly once.
    proxy = FaultyProxy(
        label_studio.url,
        lambda m, p, n: (
            502
            if m == "POST" and p.endswith("/import") and sum(1 for s in proxy.seen if s[1].endswith("/import")) < 2
            else "forward"
        ),
    )
    try:
        spec, data, _gold = _files(tmp_path, f"retry import {secrets.token_hex(4)}")
        env = {**stack_env(label_studio, _NoBackend, tmp_path / "home"), **fast, "SMO_LS_URL": proxy.url}
        result = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--batch-size", "20", "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        m = json.loads(result.stdout)
        assert m["imported"] == 12 and m["counts_add_up"]
        assert [s[2] for s in proxy.seen if s[1].endswith("/import")] == ["502", "502", "forward"]
        items = [t["data"]["item_id"] for t in _project_tasks(label_studio, m["project_id"])]
        assert len(items) == len(set(items)) == 12
    finally:
        proxy.close()

    # Never recovers: a bounded number of attempts, then one line naming the request, not the token.
    down = FaultyProxy(label_studio.url, lambda m, p, n: "forward" if p == REFRESH else 503)
    try:
        t0 = time.monotonic()
        result = smo({**a.env, **fast, "SMO_LS_URL": down.url}, "pull", "--spec", str(a.spec))
        seconds = time.monotonic() - t0
        line = _one_error_line(result)
        assert "GET /api/users/ after 4 attempts" in line and "HTTP 503" in line, line
        assert len([s for s in down.seen if s[1] != REFRESH]) == 4  # four attempts; Prefect does not retry on top
        assert a.env["SMO_LS_TOKEN"] not in result.stderr + result.stdout
        print(f"always 503: failed after {len(down.seen)} attempts in {seconds:.1f} s: {line}")
    finally:
        down.close()

    # The personal access token's exchange is retried the same way (it is safe to repeat), then one line.
    refusing = FaultyProxy(label_studio.url, lambda m, p, n: 503 if p == REFRESH else "forward")
    try:
        result = smo({**a.env, **fast, "SMO_LS_URL": refusing.url}, "pull", "--spec", str(a.spec))
        line = _one_error_line(result)
        assert f"POST {REFRESH} after 4 attempts" in line and "HTTP 503" in line, line
        assert [s[1] for s in refusing.seen] == [REFRESH] * 4
        assert a.env["SMO_LS_TOKEN"] not in result.stderr + result.stdout
    finally:
        refusing.close()

    # A stalled server: timeouts are retried the same way, bounded by SMO_LS_TIMEOUT.
    stalled = FaultyProxy(label_studio.url, lambda m, p, n: "stall", stall_seconds=3)
    try:
        result = smo(
            {**a.env, **fast, "SMO_LS_TIMEOUT": "0.5", "SMO_LS_URL": stalled.url}, "pull", "--spec", str(a.spec)
        )
        line = _one_error_line(result)
        assert "after 4 attempts" in line and "ReadTimeout" in line, line
    finally:
        stalled.close()


REFRESH = "/api/token/refresh/"  # the personal access token's exchange, made once per process before any read


def _refreshes(proxy: FaultyProxy) -> int:
    return sum(1 for s in proxy.seen if s[1] == REFRESH)


class _NoBackend:
    """stack_env's backend argument for a launch without an ML backend."""

    url = "http://127.0.0.1:9"
    auth = ("", "")


@pytest.mark.parametrize(("answer", "words"), [("late", "HTTP 504"), ("late-drop", "connection broke")])
def test_an_import_a_proxy_gave_up_on_is_never_sent_again_and_the_re_run_imports_once(
    label_studio, prefect_api, tmp_path, answer, words
):
    """A proxy in front of Label Studio that stops waiting (a 504, or the connection closed) while Label Studio
    imports on. A lookup made then cannot see the batch yet, so the launch never sends it again: it ends in one line
    saying to re-run, and the re-run finds the batch in Label Studio and imports nothing twice."""
    proxy = FaultyProxy(
        label_studio.url,
        lambda m, p, n: (
            answer
            if m == "POST" and p.endswith("/import") and not any(s[1].endswith("/import") for s in proxy.seen)
            else "forward"
        ),
        stall_seconds=3,
    )
    spec, data, _gold = _files(tmp_path, f"late import {secrets.token_hex(4)}")
    env = {**stack_env(label_studio, _NoBackend, tmp_path / "home"), "SMO_LS_BACKOFF": "0.2"}
    launch = ("launch", "--spec", str(spec), "--data", str(data), "--batch-size", "20", "--json")
    try:
        line = _one_error_line(smo({**env, "SMO_LS_URL": proxy.url}, *launch))
        assert words in line and "may still be importing" in line and "re-run the launch" in line, line
        assert [s[2] for s in proxy.seen if s[1].endswith("/import")] == [answer]  # sent once, never again
        for late in proxy.late:  # Label Studio gets the batch after the launch has given up on it
            late.join(60)
    finally:
        proxy.close()
    again = smo(env, *launch)
    assert again.returncode == 0, again.stderr[-3000:]
    m = json.loads(again.stdout)
    assert m["counts_add_up"] and m["complete"]
    items = [t["data"]["item_id"] for t in _project_tasks(label_studio, m["project_id"])]
    assert len(items) == len(set(items)) == 12


# -- the ML backend down during an import ------------------------------------------------------
def _predictions_per_task(label_studio, project_id: int) -> dict[str, list]:
    """Model versions of each task's predictions, read per task from the predictions API."""
    headers = label_studio.headers
    return {
        t["data"]["item_id"]: sorted(
            p["model_version"]
            for p in httpx.get(
                f"{label_studio.url}/api/predictions/", params={"task": t["id"]}, headers=headers, timeout=60
            ).json()
        )
        for t in _project_tasks(label_studio, project_id)
    }


@pytest.mark.slow
def test_backend_down_tasks_imported_and_listed_then_a_later_run_adds_predictions(
    label_studio, ml_backend, prefect_api, tmp_path, unique
):
    spec, data, gold = _files(tmp_path, f"backfill {unique}")
    env = stack_env(label_studio, ml_backend, tmp_path / "home")
    args = ("launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--batch-size", "5", "--json")
    down = smo({**env, "SMO_BACKEND_URL": f"http://127.0.0.1:{procs.free_port()}"}, *args)
    assert down.returncode == 0, down.stderr[-3000:]
    m1 = json.loads(down.stdout)
    assert (m1["imported"], m1["gold"], m1["predictions"], m1["missing_predictions"]) == (12, 3, 0, 15)
    missing = pd.read_csv(m1["missing_predictions_file"])
    assert len(missing) == 15 and missing["reason"].str.startswith("ML backend unreachable").all()
    assert all(v == [] for v in _predictions_per_task(label_studio, m1["project_id"]).values())

    up = smo(env, *args)  # the backend answers again: the same launch adds what is missing
    assert up.returncode == 0, up.stderr[-3000:]
    m2 = json.loads(up.stdout)
    assert (m2["imported"], m2["predictions"], m2["missing_predictions"]) == (0, 15, 0)
    assert m2["missing_predictions_file"] is None and m2["prediction_problems"] == [] and m2["counts_add_up"]
    per_task = _predictions_per_task(label_studio, m1["project_id"])
    assert len(per_task) == 15 and all(v == [m2["versions"]["model"]] for v in per_task.values()), per_task
    ws = Workspace.for_title(f"backfill {unique}", tmp_path / "home")
    kept = pd.concat(pd.read_parquet(p) for p in ws.runs.glob("*/predictions/*.parquet"))
    assert sorted(kept["item_id"]) == sorted(per_task) and kept["policy"].str.len().gt(0).all()

    again = json.loads(smo(env, *args).stdout)  # nothing twice
    assert (again["imported"], again["predictions"], again["missing_predictions"]) == (0, 15, 0)
    assert _predictions_per_task(label_studio, m1["project_id"]) == per_task


# -- Label Studio killed in the middle of an import -------------------------------------------
def _many_rows(path: Path, n: int) -> Path:
    lines = ["id,text,language"] + [
        f'k{i},"item {i} says something about topic {i * 7919 % 10007}",en' for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _done_batches(home: Path) -> int:
    files = list(home.glob("workspaces/*/runs/*/batches.json"))
    if not files:
        return 0
    try:
        return len(json.loads(files[0].read_text()).get("done", []))
    except ValueError:
        return 0


@pytest.mark.slow
def test_label_studio_killed_mid_import_then_restarted_and_rerun_imports_every_row_once(prefect_api, tmp_path, unique):
    settings, state = own_label_studio(tmp_path / "own-ls")
    url, token = f"http://127.0.0.1:{settings.ls_port}", state["label_studio"]["token"]
    try:
        rows = 800
        spec, _data, _gold = _files(tmp_path, f"killed {unique}")
        data = _many_rows(tmp_path / "many.csv", rows)
        env = {
            **os.environ,
            "SMO_HOME": str(tmp_path / "home"),
            "SMO_LS_URL": url,
            "SMO_LS_TOKEN": token,
            "SMO_BACKEND_URL": f"http://127.0.0.1:{procs.free_port()}",
            "SMO_LS_BACKOFF": "0.2",
        }
        argv = [
            sys.executable,
            "-m",
            "smo_labelstudio.cli",
            "launch",
            "--spec",
            str(spec),
            "--data",
            str(data),
            "--batch-size",
            "40",
            "--json",
        ]
        run = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: _done_batches(tmp_path / "home") >= 2 or run.poll() is not None, 240, "2 batches")
        assert run.poll() is None, "the launch finished before Label Studio could be killed: make it bigger"
        killed_after = _done_batches(tmp_path / "home")
        kill_label_studio(settings)
        out, err = run.communicate(timeout=300)
        assert run.returncode == 1 and "Traceback" not in err, err[-3000:]
        line = err.strip().splitlines()[-1]
        assert line.startswith("error: ") and any(
            words in line for words in ("Label Studio did not answer", "cannot reach", "may still be importing")
        ), line
        assert token not in err + out
        print(f"killed after {killed_after} of {rows // 40} batches: {line}")

        restart_label_studio(settings)
        again = smo(env, *argv[3:])
        assert again.returncode == 0, again.stderr[-3000:]
        m = json.loads(again.stdout)
        assert m["complete"] and m["counts_add_up"] and m["rows_read"] == rows and m["pending"] == 0
        assert m["imported"] + m["already_present"] == rows and m["tasks_imported_total"] == rows
        resp = httpx.get(
            f"{url}/api/projects/{m['project_id']}/export",
            timeout=300,
            params={"exportType": "JSON", "download_all_tasks": "true"},
            headers=auth_header(url, token),
        )
        items = [t["data"]["item_id"] for t in resp.json()]
        assert len(items) == len(set(items)) == rows
    finally:
        stack.down(settings, lambda _m: None)


# -- a pull killed half-way ---------------------------------------------------------------------
def _ls_annotations(label_studio, project_id: int) -> set[int]:
    return {a["id"] for t in _project_tasks(label_studio, project_id) for a in t["annotations"]}


@pytest.mark.slow
def test_a_pull_killed_half_way_then_the_next_pull_neither_loses_nor_duplicates(annotated, label_studio, tmp_path):
    a = annotated
    before_state = json.loads(a.ws.pull_state.read_text())
    headers = label_studio.headers
    tasks = _project_tasks(label_studio, a.project_id)
    time.sleep(1.5)  # past the watermark's margin
    # New work since the last pull: one more answer, one changed, one deleted.
    done = [t for t in tasks if t["annotations"]]
    answer = [{"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": ["hate"]}}]
    httpx.post(
        f"{label_studio.url}/api/tasks/{tasks[0]['id']}/annotations",
        headers=headers,
        timeout=60,
        json={"result": answer},
    ).raise_for_status()
    httpx.patch(
        f"{label_studio.url}/api/annotations/{done[1]['annotations'][0]['id']}",
        headers=headers,
        timeout=60,
        json={"result": answer},
    ).raise_for_status()
    httpx.delete(
        f"{label_studio.url}/api/annotations/{done[2]['annotations'][0]['id']}", headers=headers, timeout=60
    ).raise_for_status()

    for stage in ("/exports/", "/download"):  # killed while the snapshot is made, then while it is read
        proxy = FaultyProxy(
            label_studio.url, lambda m, p, n, stage=stage: "delay" if p.endswith(stage) else "forward", stall_seconds=30
        )
        try:
            run = subprocess.Popen(
                [sys.executable, "-m", "smo_labelstudio.cli", "pull", "--spec", str(a.spec)],
                env={**a.env, "SMO_LS_URL": proxy.url},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            wait_until(
                lambda stage=stage, proxy=proxy, run=run: (
                    any(p.endswith(stage) for _m, p, _a in proxy.seen) or run.poll() is not None
                ),
                120,
                f"the pull to reach {stage}",
            )
            assert run.poll() is None
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            proxy.close()
        assert json.loads(a.ws.pull_state.read_text()) == before_state  # the watermark did not move

    result = smo(a.env, "pull", "--spec", str(a.spec), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["mode"] == "incremental" and (summary["new"], summary["updated"], summary["deleted"]) == (1, 1, 1)
    table = pd.read_parquet(a.ws.annotations)
    assert table["annotation_id"].is_unique and set(table["annotation_id"]) == _ls_annotations(
        label_studio, a.project_id
    )
    labels = pd.read_parquet(a.ws.labels)
    assert set(labels["annotation_id"]) <= set(table["annotation_id"])
    after_state = json.loads(a.ws.pull_state.read_text())
    assert after_state["watermark"] > before_state["watermark"]
    full = json.loads(smo(a.env, "pull", "--spec", str(a.spec), "--full", "--json").stdout)
    assert full["annotations"] == len(table)
    assert (
        pd.read_parquet(a.ws.labels)
        .sort_values(["annotation_id", "control", "label"])
        .reset_index(drop=True)
        .equals(labels.sort_values(["annotation_id", "control", "label"]).reset_index(drop=True))
    )
