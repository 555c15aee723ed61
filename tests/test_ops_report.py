"""The operations report: unit figures with known answers on a generated workspace, the `smo report`
command, and (against the real Label Studio and Prefect) launch -> simulate -> pull -> report, whose
HTML is opened in headless Chromium with every plot loaded (screenshot kept as a test artifact)."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from browser import CHROMIUM, FLAGS, artifacts
from quality_data import gold_table, labels_table, truth
from smo_cli import smo, stack_env

from smo_labelstudio.core.spec import EXAMPLE_SPEC, SpecError, load_spec
from smo_labelstudio.core.workspace import Workspace, workspace_key, write_json, write_parquet
from smo_labelstudio.metrics import operations as om
from smo_labelstudio.metrics.progress import progress
from smo_labelstudio.reports import operations as ops

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ACCURACIES = {"ann-a": 0.95, "ann-b": 0.9, "ann-c": 0.6}
ARTIFACTS = artifacts("reports")


def _spec(tmp_path: Path, title: str, **changes) -> Path:
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["title"] = title
    for key, value in changes.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _workspace(home: Path, title: str, n_planned: int = 60, n_answered: int = 45, seed: int = 3) -> dict:
    """A launched-and-pulled workspace: n_planned tasks in two batches, the first n_answered answered by 3
    annotators each over two days (10 s lead time each), gold on every 5th task, a model right 2/3 of the time."""
    ws = Workspace.for_title(title, home)
    items = truth(n_planned, seed=seed)
    answered = items.iloc[:n_answered]
    gold_ids = set(answered["external_id"].iloc[::5])
    labels = labels_table(answered, ACCURACIES, gold_ids=gold_ids, seed=seed + 1)
    write_parquet(ws.labels, labels)
    write_parquet(ws.gold_answers, gold_table(answered, gold_ids))
    plan = pd.DataFrame(
        {
            "item_id": [f"i-{e}" for e in items["external_id"]],
            "external_id": items["external_id"],
            "text": "x",
            "language": items["language"],
            "source": None,
            "is_gold": False,
            "batch": [0 if i < n_planned // 2 else 1 for i in range(n_planned)],
        }
    )
    folder = ws.runs / "plan1"
    write_parquet(folder / "plan.parquet", plan)
    write_json(folder / "plan.json", {"plan_id": "plan1", "created": (NOW - timedelta(days=2)).timestamp()})
    rng = np.random.default_rng(seed)
    model = [p if rng.random() < 2 / 3 else ("spam_scams",) for p in items["policies"]]
    write_parquet(
        folder / "predictions" / "batch-0.parquet",
        pd.DataFrame(
            {
                "item_id": plan["item_id"],
                "model_version": "m1",
                "score": 0.8,
                "policy": ["|".join(m) for m in model],
                "severity": "2",
                "label_scores": [
                    json.dumps(
                        {
                            p: (0.8 if p in m else 0.1)
                            for p in ["hate", "harassment", "spam_scams", "misinformation", "no_violation"]
                        }
                    )
                    for m in model
                ],
            }
        ),
    )
    ann = labels.drop_duplicates("annotation_id")[
        ["project", "task", "external_id", "annotation_id", "annotator", "is_gold", "language"]
    ].reset_index(drop=True)
    # Answers spread over the 24 hours before NOW: two UTC days (the 19th and the 20th).
    created = [NOW - timedelta(hours=24) + timedelta(hours=23.9 * i / max(len(ann) - 1, 1)) for i in range(len(ann))]
    ann["created_at"] = pd.to_datetime(created, utc=True)
    ann["updated_at"] = ann["created_at"]
    ann["lead_time"] = 10.0
    ann["was_cancelled"] = False
    ann["prediction_model_version"] = "m1"
    pred_by = dict(zip(items["external_id"], model))
    given = labels[labels["control"] == "policy"].groupby("annotation_id")["label"].agg(lambda v: tuple(sorted(v)))
    ann["changed_prediction"] = [
        given.get(a) != tuple(sorted(pred_by[e])) for a, e in zip(ann["annotation_id"], ann["external_id"])
    ]
    write_parquet(ws.annotations, ann)
    write_json(ws.project_file, {"project_id": 5, "url": "http://ls.example/projects/5/data", "title": title})
    return {"ws": ws, "items": items, "labels": labels, "annotations": ann, "gold_ids": gold_ids, "model": model}


def test_progress_counts_planned_tasks_times_overlap(tmp_path):
    spec = load_spec(_spec(tmp_path, "ops progress", overlap={"annotators": 3, "share": 0}))
    made = _workspace(tmp_path, spec.title, n_planned=60, n_answered=45)
    ann = made["annotations"]
    # One more task answered by one annotator only: in progress, two answers short.
    extra = ann.iloc[[0]].assign(external_id=made["items"]["external_id"].iloc[50], annotation_id=99_999)
    prog, tasks = progress(om.load_ops_inputs(made["ws"])["plan"], pd.concat([ann, extra]), spec)
    total = prog.set_index("language").loc["(all)"]
    assert (total["tasks"], total["done"], total["in_progress"], total["not_started"]) == (60, 45, 1, 14)
    assert total["answers_needed"] == 180 and total["answers_given"] == 136 and total["answers_remaining"] == 44
    assert prog[prog["language"] != "(all)"]["tasks"].sum() == 60


def test_overlap_share_puts_the_most_answered_tasks_in_the_extra_cohort(tmp_path):
    spec = load_spec(_spec(tmp_path, "ops share", overlap={"annotators": 1, "share": 0.5, "extra_annotators": 3}))
    made = _workspace(tmp_path, spec.title, n_planned=60, n_answered=30)
    prog, tasks = progress(om.load_ops_inputs(made["ws"])["plan"], made["annotations"], spec)
    total = prog.set_index("language").loc["(all)"]
    assert total["answers_needed"] == 30 * 3 + 30 * 1 and total["done"] == 30 and total["answers_remaining"] == 30


def test_throughput_eta_wellness_trend_and_model_section(tmp_path):
    spec_path = _spec(
        tmp_path,
        "ops figures",
        overlap={"annotators": 3, "share": 0},
        deadline="2026-11-21",
        wellness={"high_severity": 3, "max_high_severity_per_day": 4},
    )
    spec = load_spec(spec_path)
    made = _workspace(tmp_path, spec.title, n_planned=60, n_answered=45)
    inputs = om.load_ops_inputs(made["ws"])
    report = om.compute_ops(spec, inputs, now=NOW, n_boot=50)

    thr = report.throughput.set_index("annotator")
    assert thr["answers"].sum() == 135 and (thr["labeling_hours"] * 3600 == thr["answers"] * 10).all()
    assert report.eta["remaining_answers"] == 45
    rate = 135 / 24  # 135 answers, the first 24 h before NOW
    assert report.eta["answers_per_hour"] == pytest.approx(rate, rel=1e-6)
    assert pd.Timestamp(report.eta["eta"]) == pytest.approx(
        pd.Timestamp(NOW) + pd.Timedelta(hours=45 / rate), abs=pd.Timedelta(seconds=1)
    )
    assert report.eta["on_track"] is True  # 8 h to go, deadline the end of the 21st

    # Wellness, counted by hand: answers on items whose gold or consensus severity is >= 3.
    cons = report.model is not None
    assert cons
    w = report.wellness
    assert w["answers"].sum() == 135 and set(w["day"]) == {"2026-11-19", "2026-11-20"}
    assert (w["exceeded"] == (w["high_severity"] > 4)).all() and len(report.alerts) == int(w["exceeded"].sum()) > 0
    event = ops.wellness_event(report, None)
    assert event["event"] == "smo.wellness.cap-exceeded" and event["resource"]["prefect.resource.id"] == "smo.project.5"
    assert len(event["payload"]["exceeded"]) == len(report.alerts)

    # Quality over time: the weak annotator is lower on gold and on agreement, every day.
    trend = report.trend.groupby("annotator")[["gold_accuracy", "agreement"]].mean()
    assert trend.loc["ann-c", "agreement"] < trend.loc["ann-a", "agreement"]
    assert report.trend["gold_n"].sum() == 27  # 9 gold tasks x 3 answers

    m = report.model
    assert m.n_tasks == 45 and 0.4 < m.summary()["micro_f1"] < 0.95
    assert set(report.retrospective["batch"]) == {0, 1}
    retro = report.retrospective.set_index("batch")
    assert retro.loc[0, "done"] == 1 and retro.loc[1, "tasks"] == 30 and retro.loc[1, "done"] == pytest.approx(15 / 30)
    files = ops.write_ops_report(report, tmp_path / "out", cap=4)
    html = files.html.read_text()
    assert html.count("data:image/png;base64,") >= 8 and "WELLNESS ALERT" in html and 'src="' in html
    summary = json.loads(files.summary.read_text())
    assert summary["totals"]["answers_remaining"] == 45 and summary["model"]["n_tasks"] == 45


def test_stale_tasks_are_in_progress_and_idle_for_the_threshold(tmp_path):
    spec = load_spec(_spec(tmp_path, "ops stale", overlap={"annotators": 3, "share": 0}))
    made = _workspace(tmp_path, spec.title, n_planned=20, n_answered=20)
    ann = made["annotations"]
    first = ann["external_id"].iloc[0]
    ann = ann[~((ann["external_id"] == first) & (ann["annotator"] != ann["annotator"].iloc[0]))]
    inputs = om.load_ops_inputs(made["ws"]) | {"annotations": ann}
    report = om.compute_ops(spec, inputs, now=NOW + timedelta(hours=30), stale_hours=24, n_boot=20)
    assert report.stale["external_id"].tolist() == [first] and report.stale["answers"].tolist() == [1]
    assert om.compute_ops(spec, inputs, now=NOW, stale_hours=25, n_boot=20).stale.empty  # idle 24 h only


def test_the_wellness_section_of_a_spec_is_strict(tmp_path):
    assert load_spec(EXAMPLE_SPEC).wellness.max_high_severity_per_day == 200
    with pytest.raises(SpecError, match="max_high_severity_per_dya"):
        load_spec(_spec(tmp_path, "x", wellness={"max_high_severity_per_dya": 3}))
    with pytest.raises(SpecError, match="high_severity"):
        load_spec(_spec(tmp_path, "y", wellness={"high_severity": 7}))


def test_smo_report_cli_writes_the_report_and_exits_4_over_the_wellness_cap(tmp_path):
    env = {**os.environ, "SMO_HOME": str(tmp_path / "home")}
    spec = _spec(tmp_path, "ops cli", wellness={"max_high_severity_per_day": 1})
    assert smo(env, "report", "--spec", str(spec)).stderr.startswith("error: no launch plan")
    _workspace(tmp_path / "home", "ops cli")
    run = smo(env, "report", "--spec", str(spec), "--out", str(tmp_path / "out"), "--json")
    assert run.returncode == 4, run.stderr
    summary = json.loads(run.stdout)
    assert summary["wellness_alerts"] and Path(summary["report"]["html"]).parent.parent == tmp_path / "out"
    calm = _spec(tmp_path, "ops cli", wellness={"max_high_severity_per_day": 10_000})
    human = smo(env, "report", "--spec", str(calm))
    assert human.returncode == 0 and "tasks done" in human.stdout and "model: micro F1" in human.stdout


def test_launch_simulate_pull_report_flow_event_and_the_html_in_chromium(
    label_studio, ml_backend, prefect_api, tmp_path, unique, monkeypatch
):
    """The real line: launch (with the backend's pre-annotations) -> 3 simulated annotators -> pull ->
    `smo report`, then the flow on the Prefect API (artifacts, the wellness event with a tiny cap); the
    HTML opens in headless Chromium with every plot decoded."""
    import asyncio

    from playwright.sync_api import sync_playwright
    from test_launch_pull import _files

    spec, data, gold = _files(tmp_path, f"ops {unique}")
    text = spec.read_text().replace("share: 0.2", "share: 1.0")
    spec.write_text(text + "\n" if "wellness:" in text else text)
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["wellness"] = {"high_severity": 1, "max_high_severity_per_day": 2}
    spec.write_text(yaml.safe_dump(spec_data))
    home = tmp_path / "home"
    env = stack_env(label_studio, ml_backend, home)
    started = time.perf_counter()
    launched = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
    assert launched.returncode == 0, launched.stderr
    assert json.loads(launched.stdout)["predictions"] == 15
    sim = smo(
        env, "simulate", "--spec", str(spec), "--annotators", "3", "--accuracy", "0.9", "--lead-time", "20", "--json"
    )
    assert sim.returncode == 0 and json.loads(sim.stdout)["annotations_written"] == 45, sim.stderr
    assert json.loads(smo(env, "pull", "--spec", str(spec), "--json").stdout)["annotations"] == 45

    run = smo(env, "report", "--spec", str(spec), "--json")
    assert run.returncode == 4, run.stderr  # a cap of 2 high-severity items a day is exceeded
    s = json.loads(run.stdout)
    assert s["totals"]["tasks"] == 15 and s["totals"]["done"] == 15 and s["totals"]["answers_remaining"] == 0
    assert s["totals"]["answers_needed"] == 45 and sum(a["answers"] for a in s["throughput"]) == 45
    assert s["model"]["n_tasks"] == 15 and s["model"]["micro_f1"] is not None
    assert sum(row["n"] for row in s["model"]["acceptance"]) == 45
    assert s["lead_time"]["n"] == 45 and s["wellness_alerts"]
    html = Path(s["report"]["html"])

    monkeypatch.setenv("SMO_HOME", str(home))
    from flows.ops_report import OpsReportParams, ops_report

    state = ops_report(OpsReportParams(spec=str(spec), n_boot=100), return_state=True)
    assert state.is_completed(), state
    project_id = json.loads(launched.stdout)["project_id"]

    async def events_and_artifacts():
        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        async with get_client() as c:
            arts = await c.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
            page = await c.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=["smo.wellness.cap-exceeded"]),
                    resource=EventResourceFilter(id=[f"smo.project.{project_id}"]),
                ),
                limit=50,
            )
        return arts, page.events

    for _ in range(30):
        arts, events = asyncio.run(events_and_artifacts())
        if events:
            break
        time.sleep(1)
    key = workspace_key(f"ops {unique}")
    kinds = {a.key: a.type for a in arts}  # Prefect stores a link artifact as markdown
    assert kinds == {
        f"ops-{key}": "markdown",
        f"ops-progress-{key}": "table",
        f"ops-wellness-{key}": "table",
        f"ops-report-{key}": "markdown",
    }, kinds
    assert events
    assert events[0].payload["exceeded"]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
            page.screenshot(path=str(ARTIFACTS / "ops-report.png"), full_page=True)
            page.locator("h2", has_text="Model evaluation").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "ops-report-model.png"))
        finally:
            browser.close()
    names = {alt for alt, _, _ in images}
    assert {
        "Progress by language",
        "Throughput",
        "Lead times",
        "Wellness",
        "Reliability diagram",
        "F1 per policy",
        "Anchoring",
    } <= names, names
    assert all(done and width > 0 for _, done, width in images), images
    assert (ARTIFACTS / "ops-report.png").stat().st_size > 10_000
    print(f"real-server report test: {time.perf_counter() - started:.1f} s, {len(images)} plots")


def test_a_launched_project_with_nothing_pulled_yet_reports_all_remaining(tmp_path):
    spec = load_spec(_spec(tmp_path, "ops empty", overlap={"annotators": 2, "share": 0}, deadline="2026-11-21"))
    made = _workspace(tmp_path, spec.title, n_planned=10, n_answered=5)
    made["ws"].annotations.unlink()
    made["ws"].labels.unlink()
    report = om.compute_ops(spec, om.load_ops_inputs(made["ws"]), now=NOW, n_boot=20)
    total = report.progress.set_index("language").loc["(all)"]
    assert (total["not_started"], total["answers_remaining"]) == (10, 20)
    assert report.eta["eta"] is None and report.eta["on_track"] is False and report.model is None
    files = ops.write_ops_report(report, tmp_path / "out", cap=200)
    assert "No task has both a pre-annotation and a consensus yet" in files.markdown.read_text()


def test_progress_of_a_pulled_project_nobody_has_answered_yet(tmp_path):
    """A pull with no annotations gives an empty, typed table: progress must not trip on it."""
    from smo_labelstudio.core.spec import load_spec
    from smo_labelstudio.core.workspace import ANNOTATION_COLUMNS

    plan = pd.DataFrame({"external_id": ["a", "b"], "language": ["en", None]})
    empty = pd.DataFrame(columns=ANNOTATION_COLUMNS).astype({"created_at": "datetime64[ns, UTC]"})
    by_language, per_task = progress(plan, empty, load_spec(Path("specs/example.yaml")))
    assert per_task["answers"].tolist() == [0, 0] and per_task["last_answer"].isna().all()
