"""`smo simulate` against the real Label Studio: real annotator accounts, answers posted as them,
idempotent re-runs, and a truth that stays in the workspace."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from smo_cli import smo

from smo_labelstudio.core.state import annotator_secret, state_path
from smo_labelstudio.core.workspace import Workspace, slug, write_json, write_parquet
from smo_labelstudio.labelstudio.auth import PAT, token_kind
from smo_labelstudio.labelstudio.client import create_project, import_tasks
from smo_labelstudio.labelstudio.configs import labeling_interface
from smo_labelstudio.labelstudio.users import (
    SessionError,
    annotator_email,
    annotator_password,
    annotator_token_path,
    ensure_annotators,
    login,
    pat_works,
    stored_annotator_token,
)
from smo_labelstudio.simulation.answers import Targets, Truth, accuracy_matrix, answer, rng_for
from smo_labelstudio.simulation.simulate import SimulationSettings, simulate
from smo_labelstudio.simulation.truth import load_saved_truth, read_confusion, read_truth_file, truth_path

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "Have a great day, everyone!",
    "Click here to claim your free prize now!!!",
    "Gracias por compartir esta receta.",
    "Ce vaccin contient des puces, partagez vite !",
    "Wir sehen uns morgen beim Training.",
    "You people are all the same, get out of our town.",
]


def _items(prefix: str, n: int) -> list[dict]:
    return [
        {"external_id": f"{prefix}-{i:03d}", "language": "en", "text": f"{TEXTS[i % len(TEXTS)]} (item {i})"}
        for i in range(n)
    ]


def _project(label_studio, ls_client, title: str, items: list[dict], overlap: int) -> int:
    ui = labeling_interface("text_moderation")
    project_id = create_project(ls_client, title, ui["label_config"])
    resp = httpx.patch(
        f"{label_studio.url}/api/projects/{project_id}",
        headers=label_studio.headers,
        json={"maximum_annotations": overlap, "overlap_cohort_percentage": 100},
        timeout=60,
    )
    resp.raise_for_status()
    assert import_tasks(ls_client, project_id, [{"data": item} for item in items]) == len(items)
    return project_id


def _tasks(label_studio, project_id: int, token: str | None = None) -> list[dict]:
    resp = httpx.get(
        f"{label_studio.url}/api/tasks",
        headers=label_studio.headers_for(token or label_studio.token),
        timeout=60,
        params={"project": project_id, "fields": "all", "page_size": 500},
    )
    resp.raise_for_status()
    return sorted(resp.json()["tasks"], key=lambda t: t["id"])


def _choices(annotation: dict, control: str) -> list[str]:
    return sorted(v for r in annotation["result"] if r["from_name"] == control for v in r["value"]["choices"])


@pytest.fixture(scope="module")
def simulated(label_studio, tmp_path_factory):
    """12 tasks wanting 3 annotators each, answered once by 3 simulated annotators at 80% accuracy."""
    from smo_labelstudio.labelstudio.client import connect

    ls = connect(label_studio.url, label_studio.token)
    items = _items("sim", 12)
    project_id = _project(label_studio, ls, f"simulate {os.urandom(4).hex()}", items, overlap=3)
    workspace = Workspace(tmp_path_factory.mktemp("sim-ws"))
    settings = SimulationSettings(annotators=3, accuracy=0.8, seed=7, lead_time=20)
    summary = simulate(project_id, settings, workspace, label_studio.url, label_studio.token)
    return {"project_id": project_id, "items": items, "workspace": workspace, "summary": summary, "settings": settings}


def test_annotators_are_real_users_and_annotations_are_completed_by_them(label_studio, simulated):
    summary = simulated["summary"]
    assert summary["annotations_written"] == 36 and summary["failed"] == 0
    assert summary["tasks_simulated"] == 12 and summary["already_done"] == 0
    annotators = ensure_annotators(3, label_studio.url, label_studio.token)
    by_id = {a.user_id: a for a in annotators}
    users = httpx.get(f"{label_studio.url}/api/users", headers=label_studio.headers, timeout=60).json()
    emails = {u["id"]: u["email"] for u in users}
    assert [emails[a.user_id] for a in annotators] == [annotator_email(i) for i in (1, 2, 3)]
    for annotator in annotators:  # each token acts as its own user, not as the admin
        me = httpx.get(f"{label_studio.url}/api/current-user/whoami", headers=annotator.headers, timeout=60).json()
        assert me["email"] == annotator.email and annotator.token != label_studio.token
    for task in _tasks(label_studio, simulated["project_id"]):
        authors = [a["completed_by"] for a in task["annotations"]]
        assert sorted(authors) == sorted(by_id), f"task {task['id']}: {authors}"
        assert task["total_annotations"] == 3 and task["is_labeled"]
        for annotation in task["annotations"]:
            assert annotation["lead_time"] > 0 and not annotation["ground_truth"]
            assert _choices(annotation, "policy"), "every answer chooses at least one policy"


def test_rerun_reuses_the_accounts_and_writes_nothing_new(label_studio, simulated):
    before = ensure_annotators(3, label_studio.url, label_studio.token)
    truth_before = pd.read_parquet(truth_path(simulated["workspace"]))
    # More annotators and another seed: the tasks are complete, so still nothing to write.
    again = simulate(
        simulated["project_id"],
        SimulationSettings(annotators=4, seed=99),
        simulated["workspace"],
        label_studio.url,
        label_studio.token,
    )
    assert again["annotations_written"] == 0 and again["already_done"] == 12 and again["tasks_simulated"] == 0
    assert [a.user_id for a in ensure_annotators(3, label_studio.url, label_studio.token)] == [
        a.user_id for a in before
    ]
    assert sum(len(t["annotations"]) for t in _tasks(label_studio, simulated["project_id"])) == 36
    pd.testing.assert_frame_equal(pd.read_parquet(truth_path(simulated["workspace"])), truth_before)


def test_saved_truth_covers_every_task(label_studio, simulated):
    truth = pd.read_parquet(truth_path(simulated["workspace"]))
    assert list(truth.columns) == ["task", "external_id", "control", "label"]
    tasks = _tasks(label_studio, simulated["project_id"])
    policy = truth[truth["control"] == "policy"]
    assert policy["task"].nunique() == len(tasks) == 12
    assert dict(zip(policy["task"], policy["external_id"])) == {t["id"]: t["data"]["external_id"] for t in tasks}
    # Violations carry a severity, no violation none; an 80% annotator agrees with the truth most of the time.
    saved = load_saved_truth(simulated["workspace"])
    assert all((t.severity is None) == (t.labels == ("no_violation",)) for _, t in saved.values())
    answers = [(_choices(a, "policy"), list(saved[t["id"]][1].labels)) for t in tasks for a in t["annotations"]]
    agree = sum(given == true for given, true in answers) / len(answers)
    assert 0.5 < agree < 1.0, agree


def test_annotator_token_reads_tasks_but_no_truth_is_in_label_studio(label_studio, simulated):
    annotator = ensure_annotators(1, label_studio.url, label_studio.token)[0]
    imported = {item["external_id"]: item for item in simulated["items"]}
    tasks = _tasks(label_studio, simulated["project_id"], token=annotator.token)
    assert len(tasks) == 12  # Community: any account reads every project, which is why truth stays out
    for task in tasks:
        one = httpx.get(f"{label_studio.url}/api/tasks/{task['id']}", headers=annotator.headers, timeout=60)
        assert one.status_code == 200
        body = one.json()
        assert body["data"] == imported[body["data"]["external_id"]]  # exactly what was imported
        assert body["meta"] == {} and body["predictions"] == []
    exported = httpx.get(
        f"{label_studio.url}/api/projects/{simulated['project_id']}/export",
        params={"exportType": "JSON"},
        headers=annotator.headers,
        timeout=60,
    )
    assert exported.status_code == 200
    for task in exported.json():
        assert set(task["data"]) == {"external_id", "language", "text"} and not task.get("predictions")


def test_accuracy_one_answers_equal_the_gold_the_truth_file_or_the_drawn_truth(
    label_studio, ls_client, tmp_path, unique
):
    items = _items(f"acc-{unique}", 8)
    project_id = _project(label_studio, ls_client, f"simulate exact {unique}", items, overlap=2)
    truth_file = tmp_path / "truth.csv"
    given = {
        items[0]["external_id"]: ("hate|harassment", "3"),
        items[1]["external_id"]: ("no_violation", ""),
        items[2]["external_id"]: ("spam_scams", "1"),
    }
    pd.DataFrame([{"external_id": k, "labels": v[0], "severity": v[1]} for k, v in given.items()]).to_csv(
        truth_file, index=False
    )
    workspace = Workspace(tmp_path / "ws")
    gold = {items[3]["external_id"]: ("self_harm", "4"), items[4]["external_id"]: ("no_violation", "")}
    write_parquet(
        workspace.gold_answers,
        pd.DataFrame(
            [(k, "policy", v[0]) for k, v in gold.items()] + [(items[3]["external_id"], "severity", "4")],
            columns=["external_id", "control", "label"],
        ),
    )
    summary = simulate(
        project_id,
        SimulationSettings(annotators=2, accuracy=1.0, truth_file=truth_file, seed=3),
        workspace,
        label_studio.url,
        label_studio.token,
    )
    assert summary["annotations_written"] == 16
    assert summary["truth_from_file"] == 3 and summary["truth_from_gold"] == 2
    given |= gold
    saved = load_saved_truth(workspace)
    for external_id, (labels, severity) in given.items():
        task_id = next(t for t, (e, _) in saved.items() if e == external_id)
        assert saved[task_id][1] == Truth(tuple(sorted(labels.split("|"))), int(severity) if severity else None)
    for task in _tasks(label_studio, project_id):
        truth = saved[task["id"]][1]
        assert len(task["annotations"]) == 2
        for annotation in task["annotations"]:
            assert _choices(annotation, "policy") == list(truth.labels)
            severity = _choices(annotation, "severity")
            assert severity == ([str(truth.severity)] if truth.severity else [])


def test_confusion_matrix_rows_replace_the_accuracy(tmp_path):
    policies = ("harassment", "hate", "no_violation", "spam_scams")
    matrix_file = tmp_path / "confusion.csv"
    matrix_file.write_text("truth,hate,harassment\nhate,0,3\n")
    confusion = accuracy_matrix(policies, 1.0)
    confusion.update(read_confusion(matrix_file, policies))
    targets = Targets(policies=policies, to_name="text", span_labels=("hate", "harassment", "spam_scams"))
    for i in range(50):
        hate = answer(Truth(("hate",), 2), targets, confusion, 1.0, rng_for(0, i), "some text here")
        spam = answer(Truth(("spam_scams",), 1), targets, confusion, 1.0, rng_for(1, i), "some text here")
        assert hate[0]["value"]["choices"] == ["harassment"] and spam[0]["value"]["choices"] == ["spam_scams"]
    again = answer(Truth(("hate",), 2), targets, confusion, 1.0, rng_for(0, 1), "some text here")
    assert again == answer(Truth(("hate",), 2), targets, confusion, 1.0, rng_for(0, 1), "some text here")
    matrix_file.write_text("truth,hate,weird\nhate,1,1\n")
    with pytest.raises(ValueError, match="'weird' is not a policy id"):
        read_confusion(matrix_file, policies)


def _smo(home: Path, label_studio, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SMO_HOME": str(home), "SMO_LS_URL": label_studio.url, "SMO_LS_TOKEN": label_studio.token}
    return smo(env, "simulate", *args)


def _kept_tokens(label_studio, home: Path, n: int) -> list[str]:
    """The PATs a run kept for annotators 1..n: each file 0600 in a 0700 folder, each token acting as its
    annotator."""
    tokens = []
    for i in range(1, n + 1):
        path = annotator_token_path(label_studio.url, annotator_email(i), home)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        token = stored_annotator_token(label_studio.url, annotator_email(i), home)
        assert token and token_kind(token) == PAT
        me = httpx.get(
            f"{label_studio.url}/api/current-user/whoami", headers=label_studio.headers_for(token), timeout=60
        )
        assert me.status_code == 200 and me.json()["email"] == annotator_email(i)
        tokens.append(token)
    return tokens


def test_cli_reads_the_project_from_the_workspace(label_studio, ls_client, tmp_path, unique):
    title = f"Simulate CLI {unique}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        (REPO / "specs" / "example.yaml")
        .read_text()
        .replace("title: Text moderation - example batch", f"title: {title}")
    )
    home = tmp_path / "home"

    missing = _smo(home, label_studio, "--spec", str(spec), "--annotators", "2")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [
        f"error: no project for {title!r} yet; run `smo launch --spec {spec}` first"
    ]

    project_id = _project(label_studio, ls_client, title, _items(f"cli-{unique}", 5), overlap=2)
    write_json(
        home / "workspaces" / slug(title) / "project.json",
        {"project_id": project_id, "url": label_studio.url, "title": title, "config": "text_moderation"},
    )
    first = _smo(home, label_studio, "--spec", str(spec), "--annotators", "2", "--limit", "3", "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert {k: summary[k] for k in ("annotators", "tasks", "annotations_written", "already_done")} == {
        "annotators": 2,
        "tasks": 5,
        "annotations_written": 6,
        "already_done": 0,
    }
    assert summary["left_for_later"] == 2 and summary["seconds"] > 0
    # The very PATs the run used: kept in its state folder, 0600, and in none of its output.
    used = _kept_tokens(label_studio, home, 2)
    tokens = [label_studio.token, *used]
    assert not [t for t in tokens if t in first.stdout + first.stderr]

    rest = _smo(home, label_studio, "--spec", str(spec), "--annotators", "2")
    assert rest.returncode == 0, rest.stderr
    assert "4 annotations written" in rest.stdout and "3 of 5 tasks already done" in rest.stdout
    assert not [t for t in tokens if t in rest.stdout + rest.stderr]
    assert _kept_tokens(label_studio, home, 2) == used  # the next process reused them: nothing revoked
    truth = pd.read_parquet(home / "workspaces" / slug(title) / "simulation" / "truth.parquet")
    assert truth["task"].nunique() == 5


def test_truth_file_formats_and_bad_rows(tmp_path):
    policies = ("harassment", "hate", "no_violation", "spam_scams")
    jsonl = tmp_path / "truth.jsonl"
    jsonl.write_text(
        '{"external_id": "a", "labels": ["hate", "harassment"], "severity": 3}\n'
        '{"text": "hello there", "labels": "no_violation"}\n'
    )
    found = read_truth_file(jsonl, policies)
    assert found.find("a", None) == Truth(("harassment", "hate"), 3)
    assert found.find("unknown", "hello there") == Truth(("no_violation",), None)
    assert found.find("unknown", "other text") is None and "nan" not in found.by_external_id
    bad = tmp_path / "bad.csv"
    bad.write_text("external_id,labels,severity\nok,hate,2\nx,no_violation|hate,\n")
    with pytest.raises(ValueError, match=r"bad.csv row 3: no_violation cannot be combined"):
        read_truth_file(bad, policies)
    bad.write_text("external_id,labels,severity\nx,hate,7\n")
    with pytest.raises(ValueError, match=r"bad.csv row 2: severity '7' must be 1, 2, 3 or 4"):
        read_truth_file(bad, policies)


def test_a_rerun_with_more_annotators_never_gives_a_task_to_someone_who_answered_it(
    label_studio, ls_client, tmp_path, unique
):
    project_id = _project(label_studio, ls_client, f"simulate more {unique}", _items(f"more-{unique}", 6), overlap=4)
    workspace = Workspace(tmp_path / "ws")
    first = simulate(
        project_id, SimulationSettings(annotators=2, seed=1), workspace, label_studio.url, label_studio.token
    )
    second = simulate(
        project_id, SimulationSettings(annotators=4, seed=2), workspace, label_studio.url, label_studio.token
    )
    assert first["annotations_written"] == 12 and second["annotations_written"] == 12
    exported = httpx.get(
        f"{label_studio.url}/api/projects/{project_id}/export",
        headers=label_studio.headers,
        params={"exportType": "JSON"},
        timeout=60,
    ).json()
    for task in exported:
        who = [a["completed_by"] for a in task["annotations"]]
        assert len(who) == 4 and len(set(who)) == 4, (task["id"], who)


_CONCURRENT = """
import hashlib, pathlib, sys, time
from smo_labelstudio.labelstudio.users import ensure_annotators, pat_works
annotators = ensure_annotators(2, prefix=sys.argv[1])
print("ready", flush=True)
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.05)
for a in annotators:  # a fresh exchange: a PAT the other process revoked would fail here
    print(a.user_id, pat_works(a.url, a.token), hashlib.sha256(a.token.encode()).hexdigest())
"""


def test_concurrent_runs_share_the_kept_pats_instead_of_revoking_each_others(label_studio, tmp_path, unique):
    env = {**os.environ, "SMO_HOME": str(tmp_path / "home"), "SMO_LS_URL": label_studio.url}
    env["SMO_LS_TOKEN"] = label_studio.token  # through the environment: argv is visible to `ps`
    go, prefix = tmp_path / "go", f"conc-{unique}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, prefix, str(go)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]  # both hold their tokens
        go.touch()
        outputs = [p.communicate(timeout=120)[0].splitlines() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1] and len(outputs[0]) == 2  # the same users and the same PATs
    assert all(line.split()[1] == "True" for line in outputs[0]), "a process's PAT was revoked by the other"


def test_a_kept_pat_is_replaced_only_when_label_studio_rejects_it(label_studio, tmp_path, unique):
    home, other_home, prefix = tmp_path / "home", tmp_path / "other", f"keep-{unique}"
    email = annotator_email(1, prefix)
    first = ensure_annotators(1, label_studio.url, label_studio.token, prefix=prefix, home=home)[0]
    assert stored_annotator_token(label_studio.url, email, home) == first.token
    again = ensure_annotators(1, label_studio.url, label_studio.token, prefix=prefix, home=home)[0]
    assert again.token == first.token and pat_works(label_studio.url, first.token)  # reused, nothing revoked

    # Another state folder makes its own PAT, which revokes ours (one per user): ours is then replaced.
    theirs = ensure_annotators(1, label_studio.url, label_studio.token, prefix=prefix, home=other_home)[0]
    assert theirs.token != first.token and not pat_works(label_studio.url, first.token)
    replaced = ensure_annotators(1, label_studio.url, label_studio.token, prefix=prefix, home=home)[0]
    assert replaced.token not in (first.token, theirs.token) and replaced.user_id == first.user_id
    assert stored_annotator_token(label_studio.url, email, home) == replaced.token

    # A damaged file is replaced too, still 0600.
    path = annotator_token_path(label_studio.url, email, home)
    path.write_text("{not json")
    fixed = ensure_annotators(1, label_studio.url, label_studio.token, prefix=prefix, home=home)[0]
    assert pat_works(label_studio.url, fixed.token) and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored_annotator_token(label_studio.url, email, home) == fixed.token


def test_annotator_passwords_come_from_the_stack_secret_not_the_admin_token(label_studio, tmp_path, unique):
    assert annotator_secret(label_studio.home)  # `smo stack up` made one, in the 0600 state file
    secret, home = f"stack-secret-{unique}", tmp_path / "stack"
    write_json(state_path(home), {"label_studio": {"annotator_secret": secret}})
    prefix = f"pw-{unique}"
    email = annotator_email(1, prefix)
    made = ensure_annotators(1, label_studio.url, label_studio.token, prefix=prefix, home=home)[0]
    with login(label_studio.url, email, annotator_password(secret, email)):
        pass
    with pytest.raises(SessionError):
        with login(label_studio.url, email, annotator_password(label_studio.token, email)):
            pass

    # Another admin token (here another account's PAT): the account still logs in to make a new PAT.
    rotated = ensure_annotators(1, label_studio.url, label_studio.token, prefix=f"pw2-{unique}", home=home)[0].token
    annotator_token_path(label_studio.url, email, home).unlink()
    back = ensure_annotators(1, label_studio.url, rotated, prefix=prefix, home=home)[0]
    assert back.user_id == made.user_id and back.token != made.token

    # Without a stack state the admin token is the key; such an account still works once there is one.
    old, bare = f"pwold-{unique}", tmp_path / "bare"
    before = ensure_annotators(1, label_studio.url, label_studio.token, prefix=old, home=bare)[0]
    with login(
        label_studio.url, annotator_email(1, old), annotator_password(label_studio.token, annotator_email(1, old))
    ):
        pass
    after = ensure_annotators(1, label_studio.url, label_studio.token, prefix=old, home=home)[0]
    assert after.user_id == before.user_id
