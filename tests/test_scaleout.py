"""Scale-out of the quality engine: the task runner chosen by settings (smo_labelstudio.stack.taskrunners) and
the quality-scan flow, one partition per project, giving the same figures on a local Dask cluster as
on threads and as the plain pass (the flow runs on the test's Prefect API)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from quality_data import gold_table, labels_table, truth

from smo_labelstudio.core.spec import EXAMPLE_SPEC, load_spec
from smo_labelstudio.core.workspace import Workspace, write_json, write_parquet
from smo_labelstudio.reports import quality_pass as qp
from smo_labelstudio.stack.taskrunners import runner_settings, task_runner


@pytest.fixture(autouse=True)
def _flush_logs():
    """Send the runs' logs before the session's Prefect server stops (not at interpreter exit)."""
    yield
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def test_runner_from_settings():
    assert runner_settings({}) == {"kind": "thread", "max_workers": 4}
    assert runner_settings({"SMO_TASK_WORKERS": "8"})["max_workers"] == 8
    assert runner_settings({"SMO_TASK_RUNNER": "dask"}) == {
        "kind": "dask",
        "cluster_kwargs": {"n_workers": 2, "processes": True, "threads_per_worker": 1, "dashboard_address": None},
    }
    local = runner_settings({"SMO_TASK_RUNNER": "Dask", "SMO_DASK_WORKERS": "3", "SMO_DASK_PROCESSES": "false"})
    assert local["cluster_kwargs"]["n_workers"] == 3 and local["cluster_kwargs"]["processes"] is False
    # an existing cluster: its address alone is enough
    assert runner_settings({"SMO_DASK_ADDRESS": "tcp://scheduler:8786"}) == {
        "kind": "dask",
        "address": "tcp://scheduler:8786",
    }
    for bad, name in (
        ({"SMO_TASK_RUNNER": "ray"}, "SMO_TASK_RUNNER"),
        ({"SMO_TASK_WORKERS": "0"}, "SMO_TASK_WORKERS"),
        ({"SMO_TASK_RUNNER": "dask", "SMO_DASK_PROCESSES": "maybe"}, "SMO_DASK_PROCESSES"),
        ({"SMO_TASK_RUNNER": "thread", "SMO_DASK_ADDRESS": "tcp://x:8786"}, "SMO_DASK_ADDRESS"),
    ):
        with pytest.raises(ValueError, match=name):
            runner_settings(bad)

    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    assert isinstance(task_runner({}), ThreadPoolTaskRunner)
    remote = task_runner({"SMO_DASK_ADDRESS": "tcp://scheduler:8786"})
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://scheduler:8786"
    assert task_runner({"SMO_TASK_RUNNER": "dask"}).cluster_kwargs["n_workers"] == 2


def _project(tmp_path, home, title: str, seed: int, n: int) -> str:
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["title"] = title
    path = tmp_path / f"spec-{seed}.yaml"
    path.write_text(yaml.safe_dump(data))
    ws = Workspace.for_title(title, home)
    items = truth(n, seed=seed)
    gold_ids = set(items["external_id"].iloc[::5])
    accuracies = {f"ann-{i}": 0.9 for i in range(4)} | {"ann-bad": 0.3 + 0.1 * seed}
    write_parquet(ws.labels, labels_table(items, accuracies, gold_ids=gold_ids, seed=seed + 1, project=seed))
    write_parquet(ws.gold_answers, gold_table(items, gold_ids))
    write_json(ws.project_file, {"project_id": seed, "title": title})
    return str(path)


def _figures(summary: dict) -> dict:
    """A project's summary without where its report was written (a new folder per pass)."""
    return {k: v for k, v in summary.items() if k != "report"}


def test_quality_scan_on_dask_equals_threads_and_the_plain_pass(prefect_api, tmp_path, monkeypatch, unique):
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.quality_scan import QualityScanParams, quality_scan

    home = tmp_path / "home"
    monkeypatch.setenv("SMO_HOME", str(home))
    specs = [_project(tmp_path, home, f"Scan {unique} {seed}", seed, n) for seed, n in ((1, 120), (2, 90), (3, 60))]
    params = QualityScanParams(specs=specs, adjudicate=False, n_boot=40)

    plain = [_figures(qp.run_pass(load_spec(Path(s)), adjudicate=False, n_boot=40).summary()) for s in specs]
    timings, results = {}, {}
    runners = {
        "threads": ThreadPoolTaskRunner(max_workers=2),
        "dask": task_runner({"SMO_TASK_RUNNER": "dask", "SMO_DASK_WORKERS": "2", "SMO_DASK_PROCESSES": "false"}),
    }
    for name, runner in runners.items():
        started = time.perf_counter()
        state = quality_scan.with_options(task_runner=runner)(params, return_state=True)
        timings[name] = time.perf_counter() - started
        assert state.is_completed(), state
        results[name] = state.result()
    for name, result in results.items():
        assert [_figures(p) for p in result["projects"]] == plain, name  # same figures, same project order
        assert result["passed"] is False  # the bad annotators fail their gold gates
    assert [p["title"] for p in results["dask"]["projects"]] == [f"Scan {unique} {s}" for s in (1, 2, 3)]
    assert len({tuple(p["failed_gates"]) for p in results["dask"]["projects"]}) == 3  # each project its own
    print("quality-scan of 3 projects: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


def test_one_failing_partition_does_not_hide_the_others(prefect_api, tmp_path, monkeypatch, unique):
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.quality_scan import QualityScanParams, quality_scan

    home = tmp_path / "home"
    monkeypatch.setenv("SMO_HOME", str(home))
    good = _project(tmp_path, home, f"Scan ok {unique}", 1, 60)
    data = yaml.safe_load(EXAMPLE_SPEC.read_text()) | {"title": f"Never pulled {unique}"}
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump(data))
    state = quality_scan.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
        QualityScanParams(specs=[good, str(tmp_path / "empty.yaml")], adjudicate=False, n_boot=20), return_state=True
    )
    assert state.is_failed()
    message = state.message or str(state.result(raise_on_failure=False))
    assert "1 of 2 project(s)" in message and "run `smo pull` first" in message
    assert len(list(Workspace.for_title(f"Scan ok {unique}", home).reports.glob("quality-*/report.html"))) == 1
