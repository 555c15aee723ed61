"""Workspace integrity under concurrency, against the real components: two `smo launch` processes of one workspace
import every row once; a pull that finds the workspace held waits, or ends with one line naming the holder; two
flow runs of one project never overlap (the Prefect concurrency limit, on the real API); a corrected gold file
replaces the saved answers (already imported gold too), the launch says so, and a correct annotator is no longer
flagged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from smo_labelstudio.core.lock import WorkspaceBusy, workspace_lock
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import LABEL_COLUMNS, Workspace

REPO = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, title: str, gold_rate: float = 0.05) -> Path:
    spec = tmp_path / "spec.yaml"
    text = (
        (REPO / "specs/example.yaml").read_text().replace("title: Text moderation - example batch", f"title: {title}")
    )
    spec.write_text(text.replace("gold_rate: 0.05", f"gold_rate: {gold_rate}"))
    return spec


def _env(home: Path, label_studio=None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMO_BACKEND")}
    env.update(SMO_HOME=str(home), **extra)
    if label_studio is not None:
        env.update(SMO_LS_URL=label_studio.url, SMO_LS_TOKEN=label_studio.token)
    return env


def _smo(env: dict, *args: str, stderr=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "smo_labelstudio.cli", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=stderr or subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, text: str, procs: list[subprocess.Popen], seconds: float = 120) -> None:
    """Poll a process's stderr file until it says `text` (no fixed sleep: the processes take what they take)."""
    deadline = time.monotonic() + seconds
    while text not in path.read_text(errors="replace"):
        assert all(p.poll() is None for p in procs), path.read_text()[-2000:]
        assert time.monotonic() < deadline, f"no {text!r} in {path}: {path.read_text()[-2000:]}"
        time.sleep(0.1)


def _task_count(label_studio, project_id: int) -> tuple[int, int]:
    tasks = httpx.get(
        f"{label_studio.url}/api/projects/{project_id}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
        headers=label_studio.headers,
        timeout=300,
    ).json()
    return len(tasks), len({t["data"]["item_id"] for t in tasks})


def test_two_launch_processes_of_one_workspace_import_every_row_once(label_studio, prefect_api, tmp_path, unique):
    title = f"race {unique}"
    spec = _spec(tmp_path, title)
    data = tmp_path / "items.csv"
    data.write_text("id,text,language\n" + "".join(f'r{i},"row {i} of the race {unique}",en\n' for i in range(30)))
    home = tmp_path / "home"
    ws = Workspace.for_title(title, home)
    env = _env(home, label_studio, SMO_LOCK_TIMEOUT="300")
    args = ("launch", "--spec", str(spec), "--data", str(data), "--batch-size", "7", "--json")
    errs = [tmp_path / "a.err", tmp_path / "b.err"]
    # Both start while this test holds the workspace: both are then at the door when it opens.
    with workspace_lock(ws, "test"):
        procs = [_smo(env, *args, stderr=e.open("w")) for e in errs]
        _wait_for(errs[0], "busy", procs)
        _wait_for(errs[1], "busy", procs)
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.read_text()[-3000:] for e in errs]
    manifests = [json.loads(out) for out, _ in outs]
    assert len({m["project_id"] for m in manifests}) == 1  # one project, created once
    assert sorted(m["imported"] for m in manifests) == [0, 30]  # one import; the other found it done
    assert all(m["counts_add_up"] for m in manifests)
    assert _task_count(label_studio, manifests[0]["project_id"]) == (30, 30)


def test_a_second_pull_ends_with_one_line_naming_the_holder(prefect_api, tmp_path, unique):
    title = f"pull race {unique}"
    spec = _spec(tmp_path, title)
    home = tmp_path / "home"
    ws = Workspace.for_title(title, home)
    with workspace_lock(ws, "pull"):
        at_once = _smo(_env(home, SMO_LOCK_TIMEOUT="0"), "pull", "--spec", str(spec))
        _out, err = at_once.communicate(timeout=300)
        assert at_once.returncode == 1
        lines = [line for line in err.strip().splitlines() if line.startswith("error:")]  # Prefect logs its run too
        assert len(lines) == 1 and err.strip().endswith(lines[0])
        assert lines[0].startswith(f"error: workspace {ws.root} is busy: pull (pid {os.getpid()}")
        assert "SMO_LOCK_TIMEOUT" in lines[0]


def test_two_flow_runs_of_one_project_do_not_overlap_on_the_prefect_api(prefect_api, tmp_path, monkeypatch):
    """Two machines (two homes: no shared file lock) running the same project: the Prefect limit alone keeps
    their flow runs apart."""
    from prefect import flow, get_client

    from flows.project_slot import limit_name, project_slot

    title = f"slot {tmp_path.name}"
    here, there = Workspace.for_title(title, tmp_path / "a"), Workspace.for_title(title, tmp_path / "b")
    assert limit_name(here) == limit_name(there)
    entered, release, spans = threading.Event(), threading.Event(), {}

    @flow(name="smo-test-slot")
    def hold(ws_root: str, name: str, wait_for_release: bool) -> str:
        with project_slot(Workspace(Path(ws_root)), "pull"):
            spans[name] = [time.monotonic()]
            entered.set()
            if wait_for_release:
                release.wait(120)
            spans[name].append(time.monotonic())
        return name

    monkeypatch.setenv("SMO_LOCK_TIMEOUT", "120")
    first = threading.Thread(target=hold, args=(str(here.root), "first", True))
    first.start()
    assert entered.wait(60)
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name(here))
    assert (limit.limit, limit.active_slots) == (1, 1)

    monkeypatch.setenv("SMO_LOCK_TIMEOUT", "0")
    with pytest.raises(WorkspaceBusy, match=f"Prefect concurrency limit {limit_name(here)}"):
        hold(str(there.root), "refused", False)

    monkeypatch.setenv("SMO_LOCK_TIMEOUT", "120")
    second = threading.Thread(target=hold, args=(str(there.root), "second", False))
    second.start()
    second.join(3)  # bounded: it must still be waiting for the slot the first run holds
    assert second.is_alive() and "second" not in spans
    release.set()
    first.join(60)
    second.join(60)
    assert spans["second"][0] >= spans["first"][1]  # no overlap
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(here)).active_slots == 0


HOLD_SLOT = """
import sys
from pathlib import Path
from flows.project_slot import project_slot
from smo_labelstudio.core.workspace import Workspace
with project_slot(Workspace(Path(sys.argv[1])), "pull"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_run_killed_holding_the_slot_leaves_nothing_held(prefect_api, tmp_path, monkeypatch):
    from prefect import get_client

    from flows.project_slot import limit_name, project_slot

    ws = Workspace.for_title(f"killed slot {tmp_path.name}", tmp_path)
    run = subprocess.Popen(
        [sys.executable, "-c", HOLD_SLOT, str(ws.root)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout.readline().strip() == "held"
    run.kill()  # SIGKILL: no finally runs, the lease stays on the server
    run.wait(30)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(ws)).active_slots == 1
    monkeypatch.setenv("SMO_LOCK_TIMEOUT", "0")
    with project_slot(ws, "quality"):  # at once: the dead run's lease is given back, not waited out
        pass
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(ws)).active_slots == 0


GOLD_IDS = [f"g{i}" for i in range(10)]


def _gold_file(path: Path, corrected: set[str]) -> Path:
    rows = [
        f'{g},"gold text number {g} for the correction",en,{"spam_scams" if g in corrected else "hate"},'
        f"{1 if g in corrected else 3}"
        for g in GOLD_IDS
    ]
    path.write_text("id,text,language,policy,severity\n" + "\n".join(rows) + "\n")
    return path


def _gold_labels(annotator: str, answers: dict[str, str], project_id: int) -> pd.DataFrame:
    """What `smo pull` writes for one annotator's answers on the gold tasks."""
    rows = []
    for n, (gold_id, policy) in enumerate(answers.items()):
        base = {"project": project_id, "task": n + 1, "external_id": f"gold:{gold_id}", "annotation_id": 100 + n}
        base |= {"annotator": annotator, "start": None, "end": None, "is_gold": True, "language": "en"}
        rows.append({**base, "control": "policy", "label": policy})
    return pd.DataFrame(rows, columns=LABEL_COLUMNS).astype({"start": "Int64", "end": "Int64"})


def test_a_corrected_gold_file_replaces_imported_answers_and_says_so(label_studio, prefect_api, tmp_path, unique):
    from smo_labelstudio.ingest import launch
    from smo_labelstudio.quality.check import compute_check

    title = f"gold fix {unique}"
    spec_path = _spec(tmp_path, title, gold_rate=0.5)
    spec, home = load_spec(spec_path), tmp_path / "home"
    data = tmp_path / "items.csv"
    data.write_text("id,text,language\n" + "".join(f'r{i},"item {i} of {unique}",en\n' for i in range(12)))
    url, token = label_studio.url, label_studio.token
    plan = launch.plan_launch(spec, data, url, token, _gold_file(tmp_path / "gold-v1.csv", set()), home=home)
    launch.finish(plan, launch.import_all(plan, url, token, None), url)
    assert plan.items["is_gold"].sum() == 10  # every gold item imported with the answer `hate`

    fixed = {"g0", "g2", "g3", "g5", "g7", "g8"}
    gold = _gold_file(tmp_path / "gold-v2.csv", fixed)
    proc = _smo(_env(home, label_studio), "launch", "--spec", str(spec_path), "--data", str(data), "--gold", str(gold))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    shown = ", ".join(f"gold:{g}" for g in sorted(fixed))
    assert f"gold answers corrected: 6 item(s) ({shown})" in out
    assert "imported 0" in out  # nothing sent again: the gold items are in Label Studio already

    ws = Workspace.for_title(title, home)
    answers = pd.read_parquet(ws.gold_answers)
    policy = answers[answers["control"] == "policy"].groupby("external_id")["label"].agg(set)
    assert policy.to_dict() == {f"gold:{g}": {"spam_scams" if g in fixed else "hate"} for g in GOLD_IDS}
    severity = answers[answers["control"] == "severity"].set_index("external_id")["label"]
    assert severity.to_dict() == {f"gold:{g}": "1" if g in fixed else "3" for g in GOLD_IDS}
    manifest = json.loads(next(p for p in ws.runs.glob("*/manifest.json") if p.parent.name != plan.plan_id).read_text())
    assert manifest["gold_corrected"] == 6 and manifest["gold_corrected_items"] == shown.split(", ")

    # An annotator who gives the corrected answers is right on every gold task; with the union of old and new
    # answers (what the workspace kept before), the same annotator is flagged.
    truth = {g: "spam_scams" if g in fixed else "hate" for g in GOLD_IDS}
    labels = _gold_labels("careful", truth, plan.project_id)
    gold_now = answers[answers["control"] == "policy"][["external_id", "control", "label"]]
    union = pd.concat(
        [gold_now, gold_now[gold_now["external_id"].isin([f"gold:{g}" for g in fixed])].assign(label="hate")]
    )
    quality = spec.quality.model_copy(update={"min_gold_answers": 5})
    now = compute_check(labels, gold_now, quality, n_boot=20).annotators.set_index("annotator")
    before = compute_check(labels, union, quality, n_boot=20).annotators.set_index("annotator")
    assert now.loc["careful", "gold_accuracy"] == 1.0 and not now.loc["careful", "flagged"]
    assert before.loc["careful", "gold_accuracy"] < 0.8 and before.loc["careful", "flagged"]
