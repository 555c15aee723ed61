"""`smo launch` and `smo pull` against a real Label Studio, ML backend and Prefect API: idempotent
launches, resume after an interrupted import, quarantine, gold kept out of Label Studio, incremental
pulls that reflect updates and deletions."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from faults import FaultyProxy
from smo_cli import smo, stack_env

from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace, write_json
from smo_labelstudio.ingest import launch
from smo_labelstudio.labelstudio import client
from smo_labelstudio.labelstudio.configs import labeling_interface
from smo_labelstudio.pull import completions as pull
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.services import LabelStudio

ROWS = [
    ("r1", "Have a great day everyone", "en"),
    ("r2", "Click here to claim your free prize now", "en"),
    ("r3", "gracias por compartir esta receta", "es"),
    ("r4", "ce vaccin contient des puces", "fr"),
    ("r5", "شكرا لكم على هذا المقال الرائع", "ar"),
    ("r6", "you are worthless and everyone hates you", "en"),
    ("r7", "wir sehen uns morgen beim Training", "de"),
    ("r8", "step by step how to make a weapon at home", "en"),
    ("r9", "the match last night was exciting", "en"),
    ("r10", "your bank account is locked, send your password", "en"),
    ("r11", "שלום לכולם", "he"),
    ("r12", "thanks for the recipe", "en"),
]
GOLD = [
    ("g1", "that ethnic group should be thrown out of the country", "en", "hate", "3"),
    ("g2", "what a lovely morning", "en", "no_violation", ""),
    ("g3", "click to win a free phone now", "en", "spam_scams", "1"),
]


def _files(tmp_path: Path, title: str) -> tuple[Path, Path, Path]:
    data = tmp_path / "items.csv"
    lines = ["id,text,language"] + [f'{i},"{t}",{lang}' for i, t, lang in ROWS]
    lines += [
        'bad1,"",en',
        'bad2,"some text",xx',
        'r1,"Have a great day everyone",en',
        'r13,"HAVE a great  day everyone",en',
    ]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    gold = tmp_path / "gold.csv"
    gold.write_text(
        "id,text,language,policy,severity\n"
        + "\n".join(f'{i},"{t}",{lang},{p},{s}' for i, t, lang, p, s in GOLD)
        + "\n",
        encoding="utf-8",
    )
    spec = tmp_path / "spec.yaml"
    text = Path("specs/example.yaml").read_text().replace("title: Text moderation - example batch", f"title: {title}")
    spec.write_text(text.replace("gold_rate: 0.05", "gold_rate: 0.2"))
    return spec, data, gold


def _project_tasks(label_studio, project_id: int) -> list[dict]:
    return httpx.get(
        f"{label_studio.url}/api/projects/{project_id}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
        headers=label_studio.headers,
        timeout=300,
    ).json()


def test_launch_twice_imports_once_quarantines_bad_rows_and_keeps_gold_out(
    label_studio, ml_backend, prefect_api, tmp_path, unique
):
    spec, data, gold = _files(tmp_path, f"launch {unique}")
    env = stack_env(label_studio, ml_backend, tmp_path / "home")
    first = smo(
        env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--batch-size", "5", "--json"
    )
    assert first.returncode == 0, first.stderr
    m = json.loads(first.stdout)
    assert (m["rows_read"], m["imported"], m["duplicates"], m["quarantined"], m["already_present"]) == (16, 12, 2, 2, 0)
    assert m["counts_add_up"] and m["gold"] == 3 and m["predictions"] == 15 and m["missing_predictions"] == 0
    assert m["versions"]["model"] and m["versions"]["taxonomy"]
    kept = pd.concat(pd.read_parquet(p) for p in (tmp_path / "home").glob("workspaces/*/runs/*/predictions/*.parquet"))
    assert len(kept) == 15 and kept["item_id"].is_unique and set(kept["model_version"]) == {m["versions"]["model"]}
    assert kept["policy"].str.len().gt(0).all() and kept["score"].between(0, 1).all()

    tasks = _project_tasks(label_studio, m["project_id"])
    assert len(tasks) == 15 and len({t["data"]["item_id"] for t in tasks}) == 15
    # Gold answers live only in our workspace: no task carries a gold marker, source id or answer.
    for t in tasks:
        visible = json.dumps({k: t.get(k) for k in ("data", "meta")}, ensure_ascii=False)
        assert "gold" not in visible and "g1" not in visible and set(t["data"]) <= {"item_id", "text", "language"}
    ws = Workspace.for_title(f"launch {unique}", tmp_path / "home")
    answers = pd.read_parquet(ws.gold_answers)
    assert set(answers["external_id"]) == {"gold:g1", "gold:g2", "gold:g3"}
    quarantine = pd.read_csv(ws.quarantine)
    assert sorted(quarantine["reason"].str.split(" ").str[0]) == ["missing", "unknown"]

    again = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
    m2 = json.loads(again.stdout)
    assert again.returncode == 0 and m2["imported"] == 0 and m2["gold"] == 0 and m2["counts_add_up"]
    assert m2["already_present"] == 12 and len(_project_tasks(label_studio, m["project_id"])) == 15

    human = smo(env, "launch", "--spec", str(spec), "--data", str(data))
    assert (
        human.returncode == 0
        and "rows read 16 = imported 0 + duplicates 2 + quarantined 2 + already present 12" in human.stdout
    )
    assert "import: 0 batches" in human.stderr and "\r" not in human.stderr, human.stderr  # plain progress lines

    # A lost workspace takes its project back with --adopt (never by title): Label Studio's own item ids
    # keep the rows out.
    shutil.rmtree(ws.root)
    adopt = ("--adopt", str(m["project_id"]))
    lost = json.loads(
        smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), *adopt, "--json").stdout
    )
    assert (lost["imported"], lost["gold"], lost["already_present"]) == (0, 0, 12) and lost["counts_add_up"]
    assert lost["project_id"] == m["project_id"]
    assert len(_project_tasks(label_studio, m["project_id"])) == 15


def test_an_interrupted_launch_resumes_and_imports_every_row_exactly_once(label_studio, ml_backend, tmp_path, unique):
    spec_path, data, _gold = _files(tmp_path, f"resume {unique}")
    spec = load_spec(spec_path)
    backend = (ml_backend.url, ml_backend.auth)
    plan = launch.plan_launch(spec, data, label_studio.url, label_studio.token, batch_size=4, home=tmp_path)
    assert plan.batches == [0, 1, 2]
    launch.import_batch(plan, 0, label_studio.url, label_studio.token, backend)
    # A crash after Label Studio took batch 1 but before we recorded it: started, imported, not done.
    launch._mark(plan, 1, "started")
    rows = plan.items[plan.items["batch"] == 1]
    client.import_tasks(
        client.connect(label_studio.url, label_studio.token),
        plan.project_id,
        [{"data": {"item_id": r.item_id, "text": r.text}} for r in rows.itertuples()],
    )

    resumed = launch.plan_launch(spec, data, label_studio.url, label_studio.token, batch_size=4, home=tmp_path)
    assert resumed.plan_id == plan.plan_id and launch.pending_batches(resumed) == [1, 2]
    results = launch.import_all(resumed, label_studio.url, label_studio.token, backend)
    assert "already imported" in results[0]["note"]
    manifest = launch.finish(resumed, results, label_studio.url)
    assert manifest["complete"] and manifest["counts_add_up"]
    # the batch in doubt was listed, and the same run's backfill gave its tasks their predictions
    assert manifest["missing_predictions"] == 0 and manifest["missing_predictions_file"] is None
    tasks = _project_tasks(label_studio, plan.project_id)
    items = [t["data"]["item_id"] for t in tasks]
    assert len(items) == len(set(items)) == 12
    headers = label_studio.headers
    versions = [
        [
            p["model_version"]
            for p in httpx.get(
                f"{label_studio.url}/api/predictions/", params={"task": t["id"]}, headers=headers, timeout=60
            ).json()
        ]
        for t in tasks
    ]
    assert all(len(v) == 1 for v in versions), versions
    kept = pd.concat(pd.read_parquet(p) for p in resumed.folder.glob("predictions/*.parquet"))
    assert sorted(kept["item_id"]) == sorted(items)


def test_pull_is_incremental_and_reflects_updates_and_deletions(
    label_studio, prefect_api, ml_backend, tmp_path, unique
):
    spec, data, _gold = _files(tmp_path, f"pull {unique}")
    env = stack_env(label_studio, ml_backend, tmp_path / "home")
    assert smo(env, "pull", "--spec", str(spec)).stderr.strip().endswith("first")  # nothing launched yet
    m = json.loads(smo(env, "launch", "--spec", str(spec), "--data", str(data), "--json").stdout)
    tasks = _project_tasks(label_studio, m["project_id"])
    time.sleep(pull.MARGIN.total_seconds() + 0.5)  # the import is older than the margin a pull re-reads

    def annotate(task: dict, *policies: str) -> int:
        pred = task["predictions"][0] if task["predictions"] else None
        result = [{"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": list(policies)}}]
        resp = httpx.post(
            f"{label_studio.url}/api/tasks/{task['id']}/annotations",
            headers=label_studio.headers,
            timeout=60,
            json={"result": result, "lead_time": 4.2, "parent_prediction": pred},
        )
        resp.raise_for_status()
        return resp.json()["id"]

    ids = [annotate(t, "no_violation") for t in tasks[:4]]
    first = json.loads(smo(env, "pull", "--spec", str(spec), "--json").stdout)
    assert (first["mode"], first["annotations"], first["new"]) == ("full", 4, 4)

    httpx.patch(
        f"{label_studio.url}/api/annotations/{ids[0]}",
        headers=label_studio.headers,
        timeout=60,
        json={
            "result": [
                {
                    "from_name": "policy",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": ["hate", "harassment"]},
                }
            ]
        },
    ).raise_for_status()
    httpx.delete(
        f"{label_studio.url}/api/annotations/{ids[1]}", headers=label_studio.headers, timeout=60
    ).raise_for_status()
    annotate(tasks[5], "spam_scams")
    run = smo(env, "pull", "--spec", str(spec), "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    second = json.loads(run.stdout)
    assert second["mode"] == "incremental" and second["tasks_fetched"] < len(tasks)
    assert (second["annotations"], second["new"], second["updated"], second["deleted"]) == (4, 1, 1, 1)
    assert "tasks_deleted" not in second  # the counts matched: no task listing
    human = smo(env, "pull", "--spec", str(spec))  # not a terminal: progress in plain lines, no carriage returns
    assert human.returncode == 0 and "(incremental pull)" in human.stdout, human.stderr[-3000:]
    assert "pull: 4/4 steps (100%)" in human.stderr and "\r" not in human.stderr, human.stderr

    ws = Workspace.for_title(f"pull {unique}", tmp_path / "home")
    labels = pd.read_parquet(ws.labels)
    assert sorted(labels.loc[labels["annotation_id"] == ids[0], "label"]) == ["harassment", "hate"]
    assert ids[1] not in set(labels["annotation_id"]) and labels["external_id"].notna().all()
    ann = pd.read_parquet(ws.annotations).set_index("annotation_id")
    assert (
        ann.loc[ids[0], "changed_prediction"] and ann.loc[ids[0], "prediction_model_version"] == m["versions"]["model"]
    )
    assert ann["lead_time"].eq(4.2).all() and not ann["is_gold"].any()
    assert json.loads(smo(env, "pull", "--spec", str(spec), "--json").stdout)["new"] == 0  # nothing changed

    # a deleted task takes its annotations with it: the next incremental pull drops them
    httpx.delete(
        f"{label_studio.url}/api/tasks/{tasks[5]['id']}/", headers=label_studio.headers, timeout=60
    ).raise_for_status()
    third = json.loads(smo(env, "pull", "--spec", str(spec), "--json").stdout)
    assert (third["mode"], third["annotations"], third["deleted"], third["tasks_deleted"]) == ("incremental", 3, 1, 1)
    assert tasks[5]["id"] not in set(pd.read_parquet(ws.labels)["task"]) | set(pd.read_parquet(ws.annotations)["task"])


@pytest.mark.parametrize(
    "args, words",
    [
        (["launch", "--spec", "nope.yaml", "--data", "x.csv"], "nope.yaml"),
        (["spec", "new", "--config", "nope", "--title", "t"], "no label config named 'nope'"),
    ],
)
def test_user_mistakes_are_one_line(args, words, tmp_path):
    result = smo({**os.environ, "SMO_HOME": str(tmp_path)}, *args)
    assert result.returncode == 1 and words in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["launch", "pull"])
def test_a_prefect_api_that_does_not_answer_is_one_line(command, tmp_path):
    data = tmp_path / "items.csv"
    data.write_text("id,text,language\n1,hello,en\n", encoding="utf-8")
    args = ["--data", str(data)] if command == "launch" else []
    result = smo(
        {**os.environ, "SMO_HOME": str(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"},
        command,
        "--spec",
        "specs/example.yaml",
        *args,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "Prefect API at http://127.0.0.1:9/api does not answer" in result.stderr


def test_spec_new_writes_a_spec_that_loads(tmp_path):
    out = smo(dict(os.environ), "spec", "new", "--config", "social_post", "--title", "Posts batch 7")
    path = tmp_path / "spec.yaml"
    path.write_text(out.stdout)
    spec = load_spec(path)
    assert spec.title == "Posts batch 7" and spec.columns.text == "text" and spec.columns.image == "image"


def test_launch_simulate_pull_quality_end_to_end_and_gold_hidden_from_annotators(
    label_studio, ml_backend, prefect_api, tmp_path, unique
):
    """The spine: launch with gold, simulated annotators (real users), pull, quality; an annotator's
    token reads the project but no gold answer, marker or source id."""
    from smo_labelstudio.labelstudio.users import ensure_annotators

    spec, data, gold = _files(tmp_path, f"spine {unique}")
    spec.write_text(spec.read_text().replace("share: 0.2", "share: 1.0"))  # every task gets 3 annotators
    env = stack_env(label_studio, ml_backend, tmp_path / "home")
    m = json.loads(smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json").stdout)
    assert m["gold"] == 3
    sim = smo(env, "simulate", "--spec", str(spec), "--annotators", "3", "--accuracy", "0.9", "--json")
    assert sim.returncode == 0, sim.stderr
    assert json.loads(sim.stdout)["annotations_written"] == 45

    pulled = json.loads(smo(env, "pull", "--spec", str(spec), "--json").stdout)
    assert pulled["annotations"] == 45
    ws = Workspace.for_title(f"spine {unique}", tmp_path / "home")
    labels = pd.read_parquet(ws.labels)
    gold_rows = labels[labels["is_gold"]]
    assert set(gold_rows["external_id"]) == {"gold:g1", "gold:g2", "gold:g3"} and gold_rows["annotator"].nunique() == 3
    assert labels["annotator"].str.startswith("sim-annotator-").all()

    quality = smo(env, "quality", "--spec", str(spec), "--json", "--no-adjudicate")
    assert quality.returncode in (0, 3), quality.stderr  # 3: a gate failed, which 15 tasks may well do
    summary = json.loads(quality.stdout)
    assert summary and Path(summary["report"]["html"]).exists()

    annotator = ensure_annotators(1, label_studio.url, label_studio.token)[0]
    seen = httpx.get(
        f"{label_studio.url}/api/projects/{m['project_id']}/export",
        headers=annotator.headers,
        params={"exportType": "JSON", "download_all_tasks": "true"},
        timeout=120,
    )
    assert seen.status_code == 200 and len(seen.json()) == 15  # Community: annotators read everything...
    text = seen.text
    for secret in ("gold:", "g1", "g2", "g3", "is_gold"):
        assert secret not in text, secret  # ...but nothing marks a gold task or carries its answer
    for task in seen.json():
        assert set(task["data"]) == {"item_id", "text", "language"} and not task["meta"]
        assert not any(a["ground_truth"] for a in task["annotations"])
        assert len(task["predictions"]) == 1  # the model's pre-annotation, nothing else


def test_smo_serve_runs_the_flows_as_deployments(label_studio, ml_backend, prefect_api, tmp_path, unique):
    """`smo serve --spec` registers the deployments, the daily pull, quality check and report with that
    spec; a run started through the API (as the Prefect UI does) is picked up and completes."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    spec, data, _gold = _files(tmp_path, f"serve {unique}")
    env = stack_env(label_studio, ml_backend, tmp_path / "home") | {"SMO_SPECS_DIR": str(spec.parent)}  # the dropdown
    assert smo(env, "launch", "--spec", str(spec), "--data", str(data)).returncode == 0
    server = subprocess.Popen(
        [sys.executable, "-m", "smo_labelstudio.cli", "serve", "--spec", str(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:

        async def daily(name: str) -> tuple[list[str], list[dict]]:
            async with get_client() as c:
                d = await c.read_deployment_by_name(name)
                return [s.schedule.cron for s in d.schedules], [s.parameters for s in d.schedules if s.active]

        def ours() -> bool:
            """Whether serve has registered its last deployment with this spec (another test on the same Prefect
            API may have left `smo` deployments of its own: counting them is no sign serve is done)."""
            try:
                params = asyncio.run(daily("pull-completions/smo"))[1]
                for name in ("ops-report", "quality-check", "export-dataset"):  # registered after the pull
                    asyncio.run(daily(f"{name}/smo"))
            except Exception:  # noqa: BLE001 - not registered yet
                return False
            return [Path(p["params"]["spec"]).resolve() for p in params] == [spec.resolve()]

        deadline = time.monotonic() + 120  # serve registers its deployments one by one
        while time.monotonic() < deadline and not ours():
            time.sleep(1)

        crons, params = asyncio.run(daily("pull-completions/smo"))  # the schedule runs for the spec, active
        assert crons == ["0 6 * * *"] and [Path(p["params"]["spec"]).resolve() for p in params] == [spec.resolve()]
        assert asyncio.run(daily("ops-report/smo"))[0] == ["0 7 * * *"]
        assert asyncio.run(daily("export-dataset/smo"))[0] == []
        run = run_deployment("pull-completions/smo", parameters={"params": {"spec": spec.name}}, timeout=180)
        assert run.state.is_completed(), run.state
        assert Workspace.for_title(f"serve {unique}", tmp_path / "home").pull_state.exists()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_with_the_backend_down_tasks_are_imported_and_listed_as_missing_predictions(label_studio, tmp_path, unique):
    spec_path, data, _gold = _files(tmp_path, f"down {unique}")
    spec = load_spec(spec_path)
    dead = (f"http://127.0.0.1:{procs.free_port()}", ("user", "password"))
    plan = launch.plan_launch(spec, data, label_studio.url, label_studio.token, batch_size=5, home=tmp_path)
    results = launch.import_all(plan, label_studio.url, label_studio.token, dead)
    manifest = launch.finish(plan, results, label_studio.url)
    assert manifest["imported"] == 12 and manifest["predictions"] == 0 and manifest["missing_predictions"] == 12
    assert manifest["prediction_problems"] == ["ML backend unreachable (ConnectError)"]
    missing = pd.read_csv(manifest["missing_predictions_file"])
    assert sorted(missing["external_id"]) == sorted(r[0] for r in ROWS) and set(missing["batch"]) == {0, 1, 2}


def test_a_full_pull_reads_a_snapshot_and_falls_back_to_the_export_when_counters_are_stale(
    label_studio, ls_client, test_stack_settings, tmp_path, unique
):
    """The first pull reads an export snapshot of a view of the annotated tasks (kept or skipped), not the export
    endpoint; when Label Studio's per-task counters have gone stale, so the view misses a task, the shortfall against
    the project's exact annotation count sends the pull to the export endpoint, and nothing is missed."""
    project = client.create_project(
        ls_client, f"snapshot pull {unique}", labeling_interface("text_moderation")["label_config"]
    )

    def answer(policy: str, cancelled: bool = False) -> dict:
        choice = {"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": [policy]}}
        return {"ground_truth": False, "was_cancelled": cancelled, "result": [] if cancelled else [choice]}

    tasks = [
        {"data": {"item_id": "a", "text": "one"}, "annotations": [answer("hate"), answer("spam_scams")]},
        {"data": {"item_id": "b", "text": "two"}, "annotations": [answer("no_violation", cancelled=True)]},
        {"data": {"item_id": "c", "text": "three"}, "annotations": [answer("harassment")]},
        {"data": {"item_id": "d", "text": "not annotated"}},
    ]
    assert client.import_json(label_studio.url, label_studio.token, project, tasks) == 4
    ws = Workspace(tmp_path / "ws")
    write_json(
        ws.project_file, {"project_id": project, "url": label_studio.url, "title": "t", "config": "text_moderation"}
    )
    proxy = FaultyProxy(label_studio.url, lambda m, p, n: "forward")
    try:
        first = pull.pull(ws, proxy.url, label_studio.token, full=True)
        paths = [p for _m, p, _a in proxy.seen]
        assert (first["tasks_fetched"], first["annotations"]) == (3, 4)  # the skipped answer counts; "d" is not read
        assert any(p.startswith(f"/api/projects/{project}/exports/") for p in paths)
        assert f"/api/projects/{project}/export" not in paths

        db = sqlite3.connect(LabelStudio(test_stack_settings).data_dir / "label_studio.sqlite3", timeout=30)
        with db:  # Label Studio's counters for task "c" go stale: the view no longer sees it
            db.execute(
                "UPDATE task SET total_annotations = 0, cancelled_annotations = 0 WHERE project_id = ? "
                "AND json_extract(data, '$.item_id') = 'c'",
                (project,),
            )
        db.close()
        proxy.seen.clear()
        again = pull.pull(ws, proxy.url, label_studio.token, full=True)
        assert (again["tasks_fetched"], again["annotations"]) == (3, 4)
        assert f"/api/projects/{project}/export" in [p for _m, p, _a in proxy.seen]  # the fallback ran
    finally:
        proxy.close()
    labels = pd.read_parquet(ws.labels)
    assert sorted(labels["label"]) == ["harassment", "hate", "spam_scams"]
