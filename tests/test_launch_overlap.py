"""A launch in many batches holds the project at one annotator per task while its batches go in and
applies the spec's overlap once, after the last: Label Studio re-plans the overlap cohort across the
whole project on every import into a project with a cohort, so per-batch re-plans made big launches
quadratic. Checked against a real Label Studio through a recording proxy."""

from __future__ import annotations

import httpx
import pytest
from faults import FaultyProxy
from test_launch_pull import _files

from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.ingest import launch
from smo_labelstudio.labelstudio import client


def _tasks(label_studio, project_id: int) -> list[dict]:
    resp = httpx.get(
        f"{label_studio.url}/api/tasks",
        params={"project": project_id, "fields": "all", "page_size": 100},
        headers=label_studio.headers,
        timeout=120,
    )
    return resp.json()["tasks"]


def _project(label_studio, project_id: int) -> dict:
    return httpx.get(
        f"{label_studio.url}/api/projects/{project_id}",
        headers=label_studio.headers,
        timeout=120,
    ).json()


def test_overlap_is_applied_once_after_the_last_batch_and_plans_the_spec_cohort(label_studio, tmp_path, unique):
    spec_path, data, _gold = _files(tmp_path, f"overlap {unique}")
    spec = load_spec(spec_path)
    assert launch.overlap_settings(spec) == (3, 20)  # the example spec: a fifth of tasks get three annotators
    proxy = FaultyProxy(label_studio.url, lambda m, p, n: "forward")
    try:
        plan = launch.plan_launch(spec, data, proxy.url, label_studio.token, batch_size=3, home=tmp_path)
        assert plan.batches == [0, 1, 2, 3] and plan.overlap == (3, 20)
        seen_before = len(proxy.seen)
        results = launch.import_all(plan, proxy.url, label_studio.token, None)
        manifest = launch.finish(plan, results, proxy.url)
    finally:
        proxy.close()
    assert manifest["complete"] and manifest["imported"] == 12

    project_path = f"/api/projects/{plan.project_id}"
    steps = [
        "import" if p.endswith("/import") else "overlap"
        for m, p, _a in proxy.seen[seen_before:]
        if (m == "POST" and p.endswith("/import")) or (m == "PATCH" and p.rstrip("/") == project_path)
    ]
    # one change to a single annotator before the first batch, none between batches, the spec's after the last
    assert steps == ["overlap", "import", "import", "import", "import", "overlap"], steps

    project = _project(label_studio, plan.project_id)
    assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (3, 20)
    overlaps = sorted(t["overlap"] for t in _tasks(label_studio, plan.project_id))
    assert len(overlaps) == 12 and overlaps.count(3) == int(12 * 20 / 100 + 0.5) and overlaps.count(1) == 10

    # the same plan again: nothing pending, nothing changed
    again = launch.plan_launch(spec, data, label_studio.url, label_studio.token, batch_size=3, home=tmp_path)
    assert (
        launch.pending_batches(again) == []
        and launch.import_all(again, label_studio.url, label_studio.token, None) == []
    )
    project = _project(label_studio, plan.project_id)
    assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (3, 20)


def test_a_failed_batch_puts_the_spec_overlap_back(label_studio, tmp_path, unique):
    spec_path, data, _gold = _files(tmp_path, f"overlap fail {unique}")
    spec = load_spec(spec_path)
    # the third import is refused (a 4xx is never retried); the batch queued after it still goes in
    proxy = FaultyProxy(
        label_studio.url,
        lambda m, p, n: (
            400
            if m == "POST" and p.endswith("/import") and sum(1 for s in proxy.seen if s[1].endswith("/import")) == 2
            else "forward"
        ),
    )
    try:
        plan = launch.plan_launch(spec, data, proxy.url, label_studio.token, batch_size=3, home=tmp_path)
        with pytest.raises(client.LabelStudioError) as refused:
            launch.import_all(plan, proxy.url, label_studio.token, None)
        assert refused.value.status == 400
    finally:
        proxy.close()
    project = _project(label_studio, plan.project_id)
    assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (3, 20)
    assert launch.pending_batches(plan) == [2]
    overlaps = [t["overlap"] for t in _tasks(label_studio, plan.project_id)]
    assert len(overlaps) == 9 and overlaps.count(3) == int(9 * 20 / 100 + 0.5)

    # the re-run imports the rest and plans the cohort over all twelve
    results = launch.import_all(plan, label_studio.url, label_studio.token, None)
    assert launch.finish(plan, results, label_studio.url)["complete"]
    overlaps = [t["overlap"] for t in _tasks(label_studio, plan.project_id)]
    assert len(overlaps) == 12 and overlaps.count(3) == int(12 * 20 / 100 + 0.5)
