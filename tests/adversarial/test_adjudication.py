"""Adjudication insiders cannot game (issue 16), against the session's Label Studio.

Every Label Studio Community member can create projects, import tasks into any project and annotate any task.
Here one member builds a decoy project with the review project's title and answers in it, and also plants a
task in the real review project; a member not listed as adjudicator (and the admin) answers real review tasks.
None of it reaches the consensus: only the review project recorded in the workspace is read, only on the tasks
we queued, only annotations by the spec's `adjudicators`. Review tasks show pseudonyms, never e-mails.
"""

from __future__ import annotations

import json
import re

import httpx
import yaml
from quality_data import gold_table, labels_table, truth

from smo_labelstudio.core.spec import EXAMPLE_SPEC, load_spec
from smo_labelstudio.core.workspace import Workspace, write_json, write_parquet

ACCURACIES = {f"ann-{i}": 0.92 for i in range(5)} | {"ann-bad": 0.35}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
ANSWER = [
    {"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": ["misinformation"]}},
    {"from_name": "severity", "to_name": "text", "type": "choices", "value": {"choices": ["4"]}},
]


def _spec(tmp_path, title: str, adjudicators: list[str]):
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data.update(title=title, adjudicators=adjudicators)
    path = tmp_path / f"spec-{len(adjudicators)}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def _post(label_studio, who: dict, path: str, body) -> dict | list:
    resp = httpx.post(f"{label_studio.url}{path}", json=body, headers=who, timeout=60)
    assert resp.status_code < 300, (path, resp.status_code, resp.text[:200])
    return resp.json()


def _answer(label_studio, who: dict, task_id: int) -> None:
    _post(label_studio, who, f"/api/tasks/{task_id}/annotations/", {"result": ANSWER})


def test_only_the_recorded_review_project_and_the_listed_adjudicators_count(
    label_studio, ls_client, tmp_path, on_label_studio, unique
):
    from smo_labelstudio.labelstudio.client import create_project, import_tasks, list_tasks
    from smo_labelstudio.labelstudio.configs import labeling_interface
    from smo_labelstudio.labelstudio.users import ensure_annotators
    from smo_labelstudio.quality.adjudication import review_record, review_title
    from smo_labelstudio.reports import quality_pass as qp
    from smo_labelstudio.reports.quality_pass import run_pass

    adjudicator_account, outsider_account = ensure_annotators(2, label_studio.url, label_studio.token)
    adjudicator, outsider = adjudicator_account.headers, outsider_account.headers  # each as its own account
    title = f"Adjudication insiders {unique}"
    spec = _spec(tmp_path, title, [adjudicator_account.email.upper()])  # e-mails match whatever their case
    ws = Workspace.for_title(title)

    # the source project and its pulled tables; annotators are e-mails, as a pull records them
    config = labeling_interface("text_moderation")["label_config"]
    items = truth(60, seed=9)
    source = create_project(ls_client, title, config)
    import_tasks(
        ls_client, source, [{"data": {"text": f"text of {e}", "language": "en"}} for e in items["external_id"]]
    )
    task_ids = dict(zip(items["external_id"], sorted(t["id"] for t in list_tasks(ls_client, source)), strict=True))
    gold_ids = set(items["external_id"].iloc[::5])
    labels = labels_table(items, ACCURACIES, gold_ids=gold_ids, seed=10, task_ids=task_ids, project=source)
    labels["annotator"] = labels["annotator"] + f"@corp-{unique}.example.org"
    write_parquet(ws.labels, labels)
    write_parquet(ws.gold_answers, gold_table(items, gold_ids))
    write_json(ws.project_file, {"project_id": source, "url": f"{label_studio.url}/projects/{source}", "title": title})

    # a member's decoy, made first: the review project's title, every task, an answer on each
    decoy = _post(label_studio, outsider, "/api/projects/", {"title": review_title(title), "label_config": config})
    _post(
        label_studio,
        outsider,
        f"/api/projects/{decoy['id']}/import",
        [{"external_id": e, "text": "decoy"} for e in items["external_id"]],
    )
    for task in list_tasks(ls_client, decoy["id"])[:5]:
        _answer(label_studio, outsider, task["id"])

    first = run_pass(spec, n_boot=20)
    review = review_record(ws)["project_id"]
    low = set(first.result.to_review["task"])
    assert review != decoy["id"] and low and first.summary()["adjudication"]["queued"] == len(low)
    assert first.summary()["consensus"]["adjudicated"] == 0  # nothing from the decoy
    assert "note" not in first.summary()["adjudication"]

    # what an annotator reads of the review tasks: pseudonyms, no e-mail anywhere
    seen = httpx.get(
        f"{label_studio.url}/api/projects/{review}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
        headers=outsider,
        timeout=60,
    ).json()
    listed = httpx.get(
        f"{label_studio.url}/api/tasks/",
        params={"project": review, "fields": "all", "page_size": 500},
        headers=outsider,
        timeout=60,
    ).json()["tasks"]
    assert len(seen) == len(listed) == len(low)
    assert not EMAIL.search(json.dumps([seen, listed])), EMAIL.search(json.dumps([seen, listed]))
    versions = {p["model_version"] for t in listed for p in t["predictions"]}
    assert versions and all(re.fullmatch(r"annotator-[0-9a-f]{8}", v) for v in versions)
    assert len(versions) == labels[labels["external_id"].isin(low)]["annotator"].nunique()

    by_external = {t["data"]["external_id"]: t["id"] for t in seen}
    by_outsider, by_admin, by_adjudicator, planted_for = sorted(low)[:4]
    _answer(label_studio, outsider, by_external[by_outsider])  # a member not listed
    ls_client.annotations.create(id=by_external[by_admin], result=ANSWER)  # the admin is not listed either
    _answer(label_studio, adjudicator, by_external[by_adjudicator])  # the one who counts
    # a planted task in the real review project, carrying a queued task's external id, answered by the adjudicator
    planted = _post(
        label_studio,
        outsider,
        f"/api/projects/{review}/import?return_task_ids=true",
        [{"external_id": planted_for, "text": "planted"}],
    )
    _answer(label_studio, adjudicator, planted["task_ids"][0])

    # the pass's read-back and check (the report is the same as above)
    assert qp.read_back(ws, spec, ls_client) == 1
    second, inputs = qp.check(ws, spec, n_boot=20)
    decided = second.consensus[second.consensus["source"] == "adjudicated"]
    assert set(decided["task"]) == {by_adjudicator}
    assert decided[["control", "label"]].values.tolist() == [["policy", "misinformation"], ["severity", "4"]]
    assert {by_outsider, by_admin, planted_for} <= set(second.to_review["task"])
    assert qp.queue(ws, spec, second, inputs, ls_client, "")["queued"] == 0  # planted and decoy tasks queue nothing

    # no adjudicators listed: no answer is accepted (what was read before no longer counts), said in one line
    unlisted = _spec(tmp_path, title, [])
    assert qp.read_back(ws, unlisted, ls_client) == 0
    assert qp.check(ws, unlisted, n_boot=20)[0].summary()["consensus"]["adjudicated"] == 0
    assert qp.adjudicators_note(ls_client, unlisted.adjudicators) == (
        "no `adjudicators:` in the spec, so no answer in the review project is accepted"
    )
