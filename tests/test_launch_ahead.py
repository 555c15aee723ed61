"""A launch builds the next batch's tasks and asks the ML backend for its pre-annotations while the
current batch's import request is in Label Studio (issue 15: the client's work per batch, the backend's
above all, hidden behind Label Studio's); each batch is still built once and imported once, in order,
and a failed batch leaves nothing built ahead behind (a re-run builds it again). Against the real Label Studio."""

from __future__ import annotations

import threading

import httpx
import pytest
from test_launch_pull import _files

from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.ingest import launch
from smo_labelstudio.labelstudio import client


def _recording(monkeypatch, plan, fail_batch: int | None = None):
    """Record predict calls (batch, thread) and, at each import request, whether the next batch was being built."""
    last = max(launch.pending_batches(plan))
    calls: list[tuple[int, str]] = []
    building = {b: threading.Event() for b in range(16)}
    seen: dict[int, bool] = {}
    real_import = client.import_json

    def fake_predict(backend, label_config, texts):
        items = plan.items
        batches = set(items.loc[items["text"].isin(texts), "batch"])
        if len(batches) > 1:  # the backfill after the last batch asks again for every task still without
            return None, "test backend: no predictions"
        batch = int(batches.pop())
        calls.append((batch, threading.current_thread().name))
        building[batch].set()
        return None, "test backend: no predictions"

    def import_json(url, token, project_id, tasks, timeout=1800):
        items = plan.items
        batch = int(items.loc[items["item_id"] == tasks[0]["data"]["item_id"], "batch"].iloc[0])
        seen[batch] = batch == last or building[batch + 1].wait(10)  # built while this request is under way
        if batch == fail_batch:
            raise client.LabelStudioError("test: Label Studio refused the batch")
        return real_import(url, token, project_id, tasks, timeout)

    monkeypatch.setattr(launch, "predict", fake_predict)
    monkeypatch.setattr(launch.client, "import_json", import_json)
    return calls, seen


def _project_tasks(label_studio, project_id: int) -> list[dict]:
    resp = httpx.get(
        f"{label_studio.url}/api/tasks",
        params={"project": project_id, "fields": "task_only", "page_size": 100},
        headers=label_studio.headers,
        timeout=120,
    )
    return resp.json()["tasks"]


def test_the_next_batch_is_built_while_this_one_imports_each_once_in_order(label_studio, tmp_path, unique, monkeypatch):
    spec_path, data, _gold = _files(tmp_path, f"ahead {unique}")
    spec = load_spec(spec_path).model_copy(update={"gold_rate": 0.0})
    plan = launch.plan_launch(spec, data, label_studio.url, label_studio.token, batch_size=3, home=tmp_path)
    calls, seen = _recording(monkeypatch, plan)
    backend = ("http://127.0.0.1:9", ("u", "p"))  # never called: predict is the test's
    results = launch.import_all(plan, label_studio.url, label_studio.token, backend)
    manifest = launch.finish(plan, results, label_studio.url)

    assert plan.batches == [0, 1, 2, 3] and manifest["complete"] and manifest["imported"] == 12
    assert [b for b, _ in calls] == [0, 1, 2, 3]  # each batch asked for once, in order
    assert {t for b, t in calls if b > 0} != {threading.current_thread().name}  # on a thread of their own
    assert seen == {0: True, 1: True, 2: True, 3: True}
    tasks = _project_tasks(label_studio, plan.project_id)
    sent = {t["data"]["item_id"]: t["data"] for t in tasks}
    expected = {
        r.item_id: {"item_id": r.item_id, "text": r.text, "language": r.language}
        for r in plan.items.itertuples(index=False)
    }
    assert sent == expected  # the tasks built ahead are the plan's rows, nothing more or less
    assert not [k for k in launch._ahead if k[0] == plan.plan_id]


def test_a_failed_batch_leaves_nothing_built_ahead_and_the_re_run_imports_the_rest_once(
    label_studio, tmp_path, unique, monkeypatch
):
    spec_path, data, _gold = _files(tmp_path, f"ahead fail {unique}")
    spec = load_spec(spec_path).model_copy(update={"gold_rate": 0.0})
    plan = launch.plan_launch(spec, data, label_studio.url, label_studio.token, batch_size=3, home=tmp_path)
    backend = ("http://127.0.0.1:9", ("u", "p"))
    with monkeypatch.context() as m:
        calls, _seen = _recording(m, plan, fail_batch=1)
        with pytest.raises(client.LabelStudioError):
            launch.import_all(plan, label_studio.url, label_studio.token, backend)
        # batch 2 was built while batch 1 failed, then dropped; the batches already queued still go in (as before)
        assert [b for b, _ in calls] == [0, 1, 2, 2, 3]
    assert not [k for k in launch._ahead if k[0] == plan.plan_id]

    calls, _seen = _recording(monkeypatch, plan)
    results = launch.import_all(plan, label_studio.url, label_studio.token, backend)
    manifest = launch.finish(plan, results, label_studio.url)
    assert [b for b, _ in calls] == [1]  # batch 1 was started: looked up, absent, built and sent
    assert manifest["complete"] and manifest["tasks_imported_total"] == 12
    ids = [t["data"]["item_id"] for t in _project_tasks(label_studio, plan.project_id)]
    assert len(ids) == len(set(ids)) == 12
