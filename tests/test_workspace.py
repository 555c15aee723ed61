"""Workspaces keyed by a stable id (slug + hash of the exact title), the old scheme's folders carried on, the
workspace lock (re-entrant within a run, exclusive across threads and processes, one line on timeout) and gold
answers replaced per item and control."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading

import pandas as pd
import pytest

from smo_labelstudio.core.errors import ConfigError, SmoError
from smo_labelstudio.core.lock import HOLDER_FILE, WorkspaceBusy, holds, workspace_lock
from smo_labelstudio.core.settings import get_settings
from smo_labelstudio.core.workspace import (
    Workspace,
    WorkspaceTitleError,
    slug,
    workspace_key,
    write_json,
    write_parquet,
)
from smo_labelstudio.ingest.launch import _merge_gold_answers


def test_titles_that_slug_alike_or_have_no_latin_letters_get_folders_of_their_own(tmp_path):
    titles = ["Hate speech: Q1", "hate-speech q1", "خطاب الكراهية", "仇恨言论", "Ненависть", "hate speech q1 "]
    assert len({slug(t) for t in titles}) < len(titles)  # what the old scheme got wrong
    roots = {Workspace.for_title(t, tmp_path).root for t in titles}
    assert len(roots) == len(titles)
    assert Workspace.for_title("Hate speech: Q1", tmp_path).root.name == workspace_key("Hate speech: Q1")
    assert workspace_key("Hate speech: Q1").startswith("hate-speech-q1-")
    assert workspace_key("仇恨言论").startswith("project-")
    assert Workspace.for_title("x" * 300, tmp_path).root.name.__len__() <= 69  # 60 + dash + 8


def test_a_folder_recording_another_title_is_refused_in_one_line(tmp_path):
    ws = Workspace.for_title("Hate speech: Q1", tmp_path)
    write_json(ws.root / "workspace.json", {"title": "Something else"})
    with pytest.raises(WorkspaceTitleError) as err:
        Workspace.for_title("Hate speech: Q1", tmp_path)
    assert isinstance(err.value, ConfigError) and "\n" not in str(err.value)
    assert "'Something else'" in str(err.value) and str(ws.root) in str(err.value)


def test_old_scheme_folders_carry_on_when_they_hold_this_title(tmp_path):
    old = tmp_path / "workspaces" / "hate-speech-q1"
    write_json(old / "project.json", {"project_id": 7, "title": "Hate speech: Q1"})
    assert Workspace.for_title("Hate speech: Q1", tmp_path).root == old  # its work carries on where it is
    other = Workspace.for_title("hate-speech q1", tmp_path)  # shared the old folder: now one of its own
    assert other.root != old and other.root.name == workspace_key("hate-speech q1")
    assert not other.root.exists()
    # An old folder recording no title (made before titles were recorded) is taken, then claimed.
    bare = tmp_path / "workspaces" / "project"
    write_parquet(bare / "tables" / "labels.parquet", pd.DataFrame({"a": [1]}))
    assert Workspace.for_title("خطاب", tmp_path).root == bare
    assert Workspace.for_title("仇恨言论", tmp_path).root.name == workspace_key("仇恨言论")
    assert Workspace.for_title("خطاب", tmp_path).root == bare


def test_lock_is_reentrant_within_a_run_and_its_task_threads(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with workspace_lock(ws, "launch"):
        assert holds(ws) and (ws.root / HOLDER_FILE).exists()
        with workspace_lock(ws, "launch", timeout=0):  # a nested step
            pass
        seen = []
        worker = threading.Thread(target=contextvars.copy_context().run, args=(lambda: seen.append(_try(ws)),))
        worker.start()
        worker.join()
        assert seen == ["held"]  # a Prefect task thread (a copied context) re-enters
        other = []
        stranger = threading.Thread(target=lambda: other.append(_try(ws)))
        stranger.start()
        stranger.join()
        assert other[0].startswith("busy: workspace ")  # an unrelated thread queues like a process
    assert not holds(ws) and not (ws.root / HOLDER_FILE).exists()


def _try(ws: Workspace) -> str:
    try:
        with workspace_lock(ws, "pull", timeout=0):
            return "held"
    except WorkspaceBusy as exc:
        return f"busy: {exc}"


HOLD = """
import sys
from smo_labelstudio.core.lock import workspace_lock
with workspace_lock(sys.argv[1], "pull"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_another_process_waits_then_fails_with_one_line_naming_the_holder(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("SMO_LOCK_TIMEOUT", "0.3")
        with pytest.raises(WorkspaceBusy) as err:
            with workspace_lock(root, "launch"):
                pass
        message = str(err.value)
        assert isinstance(err.value, SmoError) and "\n" not in message
        assert f"pid {holder.pid}" in message and "pull" in message and str(root) in message
        assert "waited 0.3 s" in message and "SMO_LOCK_TIMEOUT" in message
        monkeypatch.setenv("SMO_LOCK_TIMEOUT", "0")
        with pytest.raises(WorkspaceBusy):
            with workspace_lock(root, "launch"):
                pass
    finally:
        holder.communicate("\n", timeout=30)
    with workspace_lock(root, "launch", timeout=0):  # released when the holder ended
        pass


def test_a_dead_holder_leaves_no_lock(tmp_path):
    root = tmp_path / "ws"
    kill = "import os, sys\nfrom smo_labelstudio.core.lock import workspace_lock\n"
    kill += "with workspace_lock(sys.argv[1], 'pull'):\n    os._exit(9)\n"
    assert subprocess.run([sys.executable, "-c", kill, str(root)], check=False).returncode == 9
    with workspace_lock(root, "pull", timeout=0):
        pass


def test_lock_timeout_setting():
    assert get_settings({}).lock_timeout == 600
    assert get_settings({"SMO_LOCK_TIMEOUT": "0"}).lock_timeout == 0
    with pytest.raises(ConfigError, match="SMO_LOCK_TIMEOUT"):
        get_settings({"SMO_LOCK_TIMEOUT": "-1"})
    with pytest.raises(ConfigError, match="SMO_LOCK_TIMEOUT"):
        get_settings({"SMO_LOCK_TIMEOUT": "soon"})


def _answers(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"external_id": f"gold:{i}", "item_id": f"i-{i}", "control": c, "label": lab} for i, c, lab in rows],
        columns=["external_id", "item_id", "control", "label"],
    )


def test_gold_answers_are_replaced_per_item_and_control_and_the_change_reported(tmp_path):
    ws = Workspace(tmp_path / "ws")
    first = _answers([("a", "policy", "hate"), ("a", "severity", "3"), ("b", "policy", "spam_scams")])
    first = pd.concat([first, _answers([("c", "policy", "hate"), ("c", "policy", "harassment")])])
    assert _merge_gold_answers(ws, first) == {"corrected": 0, "corrected_items": []}
    # a corrected: policy hate -> harassment (severity not given again: kept); b unchanged; c loses a label.
    second = _answers([("a", "policy", "harassment"), ("b", "policy", "spam_scams"), ("c", "policy", "hate")])
    assert _merge_gold_answers(ws, second) == {"corrected": 2, "corrected_items": ["gold:a", "gold:c"]}
    saved = pd.read_parquet(ws.gold_answers)
    got = {(r.item_id, r.control): set() for r in saved.itertuples()}
    for r in saved.itertuples():
        got[(r.item_id, r.control)].add(r.label)
    assert got == {
        ("i-a", "policy"): {"harassment"},
        ("i-a", "severity"): {"3"},
        ("i-b", "policy"): {"spam_scams"},
        ("i-c", "policy"): {"hate"},
    }
    assert _merge_gold_answers(ws, second)["corrected"] == 0  # the same answers again change nothing
