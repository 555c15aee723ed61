"""The quality pass on real servers: the flow on the Prefect API (artifacts, the gate event) and the
adjudication queue in Label Studio (queued once, decisions override consensus, no gold sent)."""

from __future__ import annotations

import asyncio
import json
import time

import yaml
from quality_data import gold_table, labels_table, truth

from smo_labelstudio.core.spec import EXAMPLE_SPEC, load_spec
from smo_labelstudio.core.workspace import Workspace, workspace_key, write_json, write_parquet

ACCURACIES = {f"ann-{i}": 0.92 for i in range(5)} | {"ann-bad": 0.35}


def _spec(tmp_path, title: str, adjudicators: list[str] | None = None, **quality):
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["title"] = title
    data["adjudicators"] = adjudicators or []
    data["quality"].update(quality)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_spec(path)


def _fill(ws: Workspace, n: int, project: dict | None = None, task_ids: dict | None = None, seed: int = 5):
    items = truth(n, seed=seed)
    gold_ids = set(items["external_id"].iloc[::5])
    labels = labels_table(
        items,
        ACCURACIES,
        gold_ids=gold_ids,
        seed=seed + 1,
        task_ids=task_ids,
        project=(project or {}).get("project_id", 1),
    )
    write_parquet(ws.labels, labels)
    write_parquet(ws.gold_answers, gold_table(items, gold_ids))
    if project:
        write_json(ws.project_file, project)
    return items, labels, gold_ids


async def _artifacts_and_events(flow_run_id, resource: str):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        page = await client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=["smo.quality.gate-failed"]), resource=EventResourceFilter(id=[resource])
            ),
            limit=50,
        )  # the client default 100 is over the server limit
    return artifacts, page.events


def test_flow_posts_artifacts_and_emits_the_gate_event(prefect_api, tmp_path, monkeypatch, unique):
    from flows.quality_check import QualityCheckParams, quality_check
    from smo_labelstudio.core.reportlinks import signed_link

    monkeypatch.setenv("SMO_HOME", str(tmp_path / "home"))
    spec_path, spec = _spec(tmp_path, f"Quality flow {unique}")
    ws = Workspace.for_title(spec.title)
    _fill(
        ws,
        300,
        project={
            "project_id": f"77{int(unique, 16) % 1000}",
            "url": "http://ls.example/projects/1",
            "title": spec.title,
            "config": "text_moderation",
        },
    )
    project_id = ws.project()["project_id"]

    started = time.perf_counter()
    state = quality_check(QualityCheckParams(spec=str(spec_path), adjudicate=False, n_boot=200), return_state=True)
    elapsed = time.perf_counter() - started
    assert state.is_completed(), state
    summary = state.result()
    assert summary["passed"] is False and "gold-accuracy:ann-bad" in summary["failed_gates"]
    report = ws.reports / next(p.name for p in ws.reports.iterdir()) / "report.html"
    assert report.exists() and summary["report"]["html"] == str(report)

    resource = f"smo.project.{project_id}"
    for _ in range(30):  # events reach the API asynchronously
        artifacts, events = asyncio.run(_artifacts_and_events(state.state_details.flow_run_id, resource))
        if events:
            break
        time.sleep(1)
    kinds = {a.key: a.type for a in artifacts}
    key = workspace_key(spec.title)  # the flows key artifacts by the title's slug and hash
    # Prefect stores a link artifact as markdown ("[text](link)")
    assert kinds == {
        f"quality-{key}": "markdown",
        f"quality-annotators-{key}": "table",
        f"quality-report-{key}": "markdown",
    }
    table = next(a for a in artifacts if a.type == "table")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["annotator"]: r["flagged"] for r in rows}["ann-bad"] is True
    link = next(a for a in artifacts if a.key == f"quality-report-{key}")
    assert signed_link(report) in str(link.data)  # the stack's reports service (tests/test_report_links.py)
    assert len(events) == 1
    payload = events[0].payload
    assert "gold-accuracy:ann-bad" in [g["name"] for g in payload["failed_gates"]]
    assert payload["report"] == str(report)
    print(f"flow run over 300 tasks / {len(summary['annotators'])} annotators: {elapsed:.1f} s")

    # the same workspace with lenient thresholds passes and emits nothing more
    lenient_path, _ = _spec(tmp_path, spec.title, min_gold_accuracy=0.1, min_alpha=0.0)
    state = quality_check(QualityCheckParams(spec=str(lenient_path), adjudicate=False, n_boot=50), return_state=True)
    assert state.result()["passed"] is True
    time.sleep(3)
    assert len(asyncio.run(_artifacts_and_events(state.state_details.flow_run_id, resource))[1]) == 1


def _review_tasks(ls, ws: Workspace) -> list:
    from smo_labelstudio.quality.adjudication import review_record

    project = review_record(ws)["project_id"]
    return project, list(ls.tasks.list(project=project, fields="all"))


def test_adjudication_queue_in_label_studio(label_studio, ls_client, tmp_path, on_label_studio, unique):
    from smo_labelstudio.labelstudio.client import create_project, import_tasks, list_tasks
    from smo_labelstudio.labelstudio.configs import labeling_interface
    from smo_labelstudio.reports.quality_pass import run_pass

    _, spec = _spec(tmp_path, f"Quality adjudication {unique}", adjudicators=[label_studio.email])
    ws = Workspace.for_title(spec.title)
    items = truth(120, seed=9)
    source = create_project(ls_client, spec.title, labeling_interface("text_moderation")["label_config"])
    import_tasks(
        ls_client,
        source,
        [
            {"data": {"external_id": e, "language": lang, "text": f"text of {e}"}}
            for e, lang in zip(items["external_id"], items["language"], strict=True)
        ],
    )
    task_ids = {t["data"]["external_id"]: t["id"] for t in list_tasks(ls_client, source)}
    project = {
        "project_id": source,
        "url": f"{label_studio.url}/projects/{source}",
        "title": spec.title,
        "config": "text_moderation",
    }
    _, labels, gold_ids = _fill(ws, 120, project=project, task_ids=task_ids, seed=9)

    started = time.perf_counter()
    first = run_pass(spec, n_boot=50)
    elapsed = time.perf_counter() - started
    low = set(first.result.to_review["task"])
    assert low and first.summary()["adjudication"]["queued"] == len(low)
    review_id, tasks = _review_tasks(ls_client, ws)
    assert {t.data["external_id"] for t in tasks} == low
    assert not low & gold_ids

    # what the adjudicator sees: each annotator's answer under a pseudonym, and nothing from the gold answers
    from smo_labelstudio.core.keys import secret_key
    from smo_labelstudio.quality.adjudication import review_pseudonym

    key = secret_key(ws.root / "export_key")
    gold = set(gold_ids)
    for t in tasks:
        assert t.data["text"] == f"text of {t.data['external_id']}"
        theirs = labels[labels["external_id"] == t.data["external_id"]]
        predictions = [p if isinstance(p, dict) else p.model_dump() for p in t.predictions]
        versions = sorted(p["model_version"] for p in predictions)
        who_is = {review_pseudonym(key, a): a for a in theirs["annotator"].unique()}
        assert versions == sorted(who_is)
        assert not gold & set(json.dumps(t.data).split('"'))
        for prediction in predictions:
            who = who_is[prediction["model_version"]]
            chosen = {c for r in prediction["result"] if r["from_name"] == "policy" for c in r["value"]["choices"]}
            mine = theirs[(theirs["annotator"] == who) & (theirs["control"] == "policy")]
            assert chosen == set(mine["label"])

    second = run_pass(spec, n_boot=50)  # nothing new to queue: a task already queued is not queued twice
    assert second.summary()["adjudication"] == {**first.summary()["adjudication"], "queued": 0}
    assert len(_review_tasks(ls_client, ws)[1]) == len(low)

    decided = sorted(low)[0]
    task_id = next(t.id for t in tasks if t.data["external_id"] == decided)
    ls_client.annotations.create(
        id=task_id,
        result=[
            {"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": ["misinformation"]}},
            {"from_name": "severity", "to_name": "text", "type": "choices", "value": {"choices": ["3"]}},
        ],
    )
    third = run_pass(spec, n_boot=50)
    rows = third.result.consensus[third.result.consensus["task"] == decided]
    assert rows[["control", "label", "source"]].values.tolist() == [
        ["policy", "misinformation", "adjudicated"],
        ["severity", "3", "adjudicated"],
    ]
    assert decided not in set(third.result.to_review["task"])
    assert (ws.root / "adjudicated.parquet").exists()
    assert third.summary()["consensus"]["adjudicated"] == 1
    print(f"adjudication pass over 120 tasks, {len(low)} queued: {elapsed:.1f} s")
