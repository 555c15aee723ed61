"""Policy changes (issue 18): the taxonomy's changelog and its one-line errors, each answer's guideline version, the
relabel selection on tidy frames (no server), and on the real Label Studio a change to one policy sent back through
`smo relabel`: exactly the affected tasks go back, their new answers replace the old in consensus after the next
pull, the rest is untouched, --dry-run changes nothing, gold the change touches is held for review."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from smo_labelstudio.core import taxonomy as taxonomy_module
from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.guideline_history import read_history, record_version, versions_at
from smo_labelstudio.core.spec import EXAMPLE_SPEC
from smo_labelstudio.core.taxonomy import TAXONOMY_FILE, Taxonomy, TaxonomyError, load_taxonomy
from smo_labelstudio.core.workspace import Workspace, write_json, write_parquet
from smo_labelstudio.quality import guideline_versions as gv
from smo_labelstudio.quality.relabel import plan_relabel

V1, V2, V3 = "2026.11.1", "2026.12.1", "2027.01.1"


def changed_taxonomy(path: Path, entries: list[dict], version: str = V2) -> Path:
    """The repo's taxonomy at `version`, its changelog extended by `entries`, hate's definition reworded."""
    raw = yaml.safe_load(TAXONOMY_FILE.read_text())
    raw["version"] = version
    raw["changelog"] = raw["changelog"] + entries
    for policy in raw["policies"]:
        if policy["id"] == "hate":
            policy["definition"] += " Coded references to a protected group (dog whistles) are in scope."
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path


# --- the changelog ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"version": V2, "changed": ["hatred"]}], "names unknown policy ids hatred"),
        ([{"version": V2, "may_add": {"hate": ["harrasment"]}}], "names unknown policy ids harrasment"),
        ([{"version": V2, "may_add": {"hate": []}}], "may_add.hate lists no policy"),
        ([{"version": V1, "changed": ["hate"]}, {"version": V2}], "is listed twice"),
        ([{"version": "2026.11.2", "changed": ["hate"]}], "the last entry is version '2026.11.2'"),
        ([{"version": V2, "date": "2026-10-01", "changed": ["hate"]}], "before the version above it"),
        ([{"version": V2, "chnaged": ["hate"]}], "Extra inputs are not permitted"),
    ],
)
def test_changelog_mistakes_are_one_line_naming_the_file(tmp_path, entries, message):
    path = changed_taxonomy(tmp_path / "taxonomy.yaml", entries)
    with pytest.raises(TaxonomyError) as err:
        load_taxonomy(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_changelog_orders_versions_and_says_what_each_change_selects(tmp_path):
    entry = {"version": V2, "changed": ["hate"], "may_add": {"harassment": ["hate", "no_violation"]}, "note": "n"}
    tax = load_taxonomy(changed_taxonomy(tmp_path / "t.yaml", [entry]))
    assert tax.versions == [V1, V2] and load_taxonomy().versions == [V1]
    change = tax.changelog[-1]
    assert change.selects({"hate"}) == {"hate", "harassment"}
    assert change.selects({"no_violation"}) == {"harassment"} and change.selects({"spam_scams"}) == set()
    assert tax.fingerprint() != load_taxonomy().fingerprint()  # the reworded definition changes it...
    bare = Taxonomy.model_validate({**yaml.safe_load(TAXONOMY_FILE.read_text()), "changelog": []})
    assert bare.fingerprint() == load_taxonomy().fingerprint()  # ...a changelog alone does not


# --- versions of answers ----------------------------------------------------------------------------------------


def test_versions_at_follows_the_recorded_switches(tmp_path):
    ws = Workspace(tmp_path)
    assert read_history(ws) == [] and record_version(ws, V1, "g1", None, "launch")
    switch = datetime(2026, 12, 2, 9, 0, 1, tzinfo=UTC)
    assert record_version(ws, V2, "g2", switch, "relabel") and not record_version(ws, V2, "g2", switch, "relabel")
    times = pd.Series(["2026-11-05T10:00:00Z", "2026-12-02T09:00:00.999Z", "2026-12-02T09:00:01Z", None])
    assert versions_at(read_history(ws), times).tolist() == [V1, V1, V2, None]


def test_a_first_record_after_answers_marks_the_earlier_ones_unknown(tmp_path):
    ws = Workspace(tmp_path)
    record_version(ws, V2, None, datetime(2026, 12, 2, tzinfo=UTC), "relabel")
    assert [h["version"] for h in read_history(ws)] == [None, V2]
    assert versions_at(read_history(ws), pd.Series(["2026-12-01T00:00:00Z"])).tolist() == [None]


def test_without_a_record_the_first_launch_manifest_names_the_version(tmp_path):
    ws = Workspace(tmp_path)
    for plan, version, created in (("b", V2, 20.0), ("a", V1, 10.0)):
        write_json(ws.runs / plan / "manifest.json", {"versions": {"taxonomy": version}})
        write_json(ws.runs / plan / "plan.json", {"created": created})
    assert [h["version"] for h in read_history(ws)] == [V1]


# --- the selection on tidy frames -------------------------------------------------------------------------------


def _answers(rows: list[tuple]) -> pd.DataFrame:
    """(task, annotator, policies, version[, is_gold]) -> the tidy counted-answers frame."""
    return pd.DataFrame(
        [
            {
                "task": r[0],
                "annotator": r[1],
                "annotation_id": i,
                "label": frozenset(r[2]),
                "guideline_version": r[3],
                "is_gold": r[4] if len(r) > 4 else str(r[0]).startswith("gold:"),
            }
            for i, r in enumerate(rows)
        ]
    )


NO_GOLD = pd.DataFrame(columns=["task", "label"])


@pytest.fixture(scope="module")
def tax(tmp_path_factory) -> Taxonomy:
    path = tmp_path_factory.mktemp("tax") / "taxonomy.yaml"
    entries = [
        {"version": V2, "changed": ["hate"]},
        {"version": V3, "changed": ["spam_scams"], "may_add": {"harassment": ["no_violation"]}},
    ]
    return load_taxonomy(changed_taxonomy(path, entries, V3))


def test_only_tasks_a_newer_change_touches_go_back(tax):
    answers = _answers(
        [
            ("a", "x", {"hate"}, V1),  # hate changed in V2: goes back
            ("a", "y", {"harassment"}, V1),
            ("b", "x", {"harassment"}, V1),  # nothing it chose changed, and no_violation was not chosen
            ("c", "x", {"hate"}, V2),  # given under the new hate wording: stays
            ("d", "x", {"spam_scams"}, V2),  # spam changed in V3
            ("e", "x", {"no_violation"}, V2),  # V3 might add harassment to no_violation items
            ("f", "x", {"hate"}, None),  # an unknown version is older than every change
            ("g", "x", {"spam_scams"}, V3),
        ]
    )
    plan = plan_relabel(answers, NO_GOLD, tax)
    got = dict(zip(plan.tasks["task"], plan.tasks["policies"]))
    assert got == {"a": ["hate"], "d": ["spam_scams"], "e": ["harassment"], "f": ["hate"]}
    assert dict(zip(plan.tasks["task"], plan.tasks["old_answers"])) == {"a": 2, "d": 1, "e": 1, "f": 1}
    counts = {r["policy"]: (r["tasks"], r["old_answers"]) for r in plan.by_policy()}
    assert counts == {"hate": (2, 3), "spam_scams": (1, 1), "harassment": (1, 1)}
    assert plan.version == V3 and plan.changes == [V2, V3]


def test_since_leaves_out_older_changes_and_names_unknown_versions(tax):
    answers = _answers([("a", "x", {"hate"}, V1), ("d", "x", {"spam_scams"}, V1)])
    plan = plan_relabel(answers, NO_GOLD, tax, since=V2)
    assert list(plan.tasks["task"]) == ["d"] and plan.changes == [V3]
    with pytest.raises(ConfigError, match="--since '2025.1' is not a version"):
        plan_relabel(answers, NO_GOLD, tax, since="2025.1")


def test_tasks_sent_for_this_version_are_not_sent_twice(tax):
    answers = _answers([("a", "x", {"hate"}, V1), ("b", "x", {"hate"}, V1)])
    sent = pd.DataFrame([{"task": "a", "task_id": 1, "version": V3}], columns=gv.REQUEST_COLUMNS)
    plan = plan_relabel(answers, NO_GOLD, tax, requests=sent)
    assert list(plan.tasks["task"]) == ["b"] and list(plan.already["task"]) == ["a"]
    older = pd.DataFrame([{"task": "a", "task_id": 1, "version": V2}], columns=gv.REQUEST_COLUMNS)
    assert sorted(plan_relabel(answers, NO_GOLD, tax, requests=older).tasks["task"]) == ["a", "b"]


def test_gold_a_change_touches_is_listed_for_review_not_sent(tax):
    answers = _answers([("gold:g1", "x", {"harassment"}, V1), ("gold:g2", "x", {"spam_scams"}, V3)])
    gold = pd.DataFrame({"task": ["gold:g1", "gold:g2", "gold:g3"], "label": [{"hate"}, {"spam_scams"}, {"self_harm"}]})
    plan = plan_relabel(answers, gold, tax, gold_versions={"gold:g2": V3})
    assert plan.tasks.empty
    assert dict(zip(plan.gold["task"], plan.gold["policies"])) == {"gold:g1": ["hate"]}  # g2 reviewed under V3
    assert {r["policy"]: r["gold"] for r in plan.by_policy()} == {"hate": 1}


def test_superseded_waits_for_an_answer_under_the_new_version():
    rank = {V1: 0, V2: 1}
    versions = pd.DataFrame(
        {
            "annotation_id": [1, 2, 3, 4, 5],
            "external_id": ["a", "a", "b", "c", "c"],
            "guideline_version": [V1, V1, V1, V1, V2],
        }
    )
    requests = pd.DataFrame([{"task": t, "version": V2} for t in "abc"], columns=gv.REQUEST_COLUMNS)
    assert gv.superseded(versions, requests, rank) == [4]  # a, b: nothing new yet, the old answers still count
    assert gv.superseded(versions, requests.head(0), rank) == []


# --- on the real Label Studio -----------------------------------------------------------------------------------

ANSWERS = ["hate"] * 4 + ["harassment"] * 2 + ["spam_scams", "no_violation"] * 2
WORK = {f"t{i:02d}": policy for i, policy in enumerate(ANSWERS)}
GOLD = {"g0": "hate", "g1": "spam_scams"}
SENT_BACK = ["t00", "t01", "t02", "t03"]  # hate was chosen on them; t03's only answer is the hostile one


def _truth_file(path: Path, truth: dict[str, str]) -> Path:
    pd.DataFrame({"external_id": list(truth), "labels": list(truth.values()), "severity": 2}).to_csv(path, index=False)
    return path


def _held(label_studio, project_id: int) -> dict[str, tuple[int, int, bool]]:
    """external id -> (overlap, answers, is_labeled) as Label Studio holds them (tasks in import order)."""
    from smo_labelstudio.labelstudio.client import http_client
    from smo_labelstudio.labelstudio.overlap import task_overlaps

    with http_client(label_studio.url, label_studio.token) as http:
        held = sorted(task_overlaps(http, project_id), key=lambda t: t.task_id)
    keys = [*WORK, *(f"gold:{g}" for g in GOLD)]
    return {k: (t.overlap, t.answers, t.is_labeled) for k, t in zip(keys, held)}


def _files(ws: Workspace) -> dict[str, bytes]:
    return {
        str(p.relative_to(ws.root)): p.read_bytes()
        for p in sorted(ws.root.rglob("*"))
        if p.is_file() and not p.name.startswith("workspace.lock")
    }


def test_a_change_to_one_policy_sends_back_exactly_the_tasks_it_touches(
    label_studio, on_label_studio, tmp_path, monkeypatch, unique
):
    """Ten work tasks (four chose hate, one of them only by a hostile annotator whose answer claims the new version)
    and two gold, labeled by simulated annotators; then hate's definition changes (2026.12.1) and `smo relabel`:
    --dry-run changes nothing; the run sends back exactly the four hate tasks (once, however often it runs), their
    new answers replace the old in consensus after the next pull, the other tasks keep theirs; the gold item whose
    answer is hate is held out of scoring until `--reviewed`; the export states each counted answer's version."""
    from typer.testing import CliRunner

    from smo_labelstudio.cli import app
    from smo_labelstudio.core.spec import load_spec
    from smo_labelstudio.export.dataset import export_workspace
    from smo_labelstudio.labelstudio.client import connect, create_project, http_client, import_json, set_overlap
    from smo_labelstudio.labelstudio.configs import labeling_interface
    from smo_labelstudio.labelstudio.overlap import task_overlaps
    from smo_labelstudio.labelstudio.users import ensure_annotators
    from smo_labelstudio.pull.completions import pull
    from smo_labelstudio.quality.check import load_inputs
    from smo_labelstudio.quality.qualification import counted_check
    from smo_labelstudio.simulation.simulate import SimulationSettings, simulate

    started = time.perf_counter()
    url, token = label_studio.url, label_studio.token
    title = f"Relabel {unique}"
    spec_v1 = tmp_path / "spec-v1.yaml"
    spec_v1.write_text(yaml.safe_dump(yaml.safe_load(EXAMPLE_SPEC.read_text()) | {"title": title}))
    ws = Workspace.for_title(title)
    ui = labeling_interface("text_moderation")
    project_id = create_project(connect(url, token), title, ui["label_config"], instructions=ui["instructions"])
    set_overlap(url, token, project_id, 1, 100)
    keys = [*WORK, *GOLD]
    plan = pd.DataFrame(
        {
            "item_id": [f"it-{unique}-{k}" for k in keys],
            "external_id": keys,
            "is_gold": [k in GOLD for k in keys],
            "language": "en",
            "text": [f"item {k}" for k in keys],
        }
    )
    write_parquet(ws.runs / "p1" / "plan.parquet", plan)  # what a launch keeps (the pull's ledger)
    write_json(ws.runs / "p1" / "manifest.json", {"versions": {"taxonomy": V1}})
    write_json(ws.project_file, {"project_id": project_id, "title": title, "config": "text_moderation"})
    gold = [{"external_id": f"gold:{k}", "control": "policy", "label": v} for k, v in GOLD.items()]
    write_parquet(ws.gold_answers, pd.DataFrame(gold))
    record_version(ws, V1, ui["guidelines_version"], None, "launch")  # as the launch that creates the project does
    rows = [{"data": {"item_id": r.item_id, "text": r.text, "language": "en"}} for r in plan.itertuples()]
    assert import_json(url, token, project_id, rows) == len(keys)

    hostile = ensure_annotators(3, url, token)[0]
    with http_client(url, token) as http:
        ids = dict(zip(keys, sorted(t.task_id for t in task_overlaps(http, project_id))))
    claim = {  # an annotator writes whatever JSON they like: a version field, meta, a creation time
        "result": [{"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": ["hate"]}}],
        "guideline_version": V2,
        "meta": {"guideline_version": V2},
        "created_at": "2030-01-01T00:00:00Z",
    }
    resp = httpx.post(f"{url}/api/tasks/{ids['t03']}/annotations/", headers=hostile.headers, json=claim, timeout=60)
    assert resp.status_code < 300, resp.text
    hostile_id = resp.json()["id"]
    settings = SimulationSettings(annotators=3, accuracy=1.0, seed=3, lead_time=5, span_rate=0.0)
    truth_v1 = _truth_file(tmp_path / "truth-v1.csv", WORK)
    done = simulate(project_id, replace(settings, truth_file=truth_v1), ws, url, token)
    assert done["annotations_written"] == len(keys) - 1 and done["failed"] == 0
    pull(ws, url, token)
    before, _, _ = counted_check(ws, load_spec(spec_v1), method="mv", n_boot=10)
    labeled = time.perf_counter() - started
    print(f"labeled and pulled: {labeled:.1f} s")

    # hate's definition changes in 2026.12.1
    tax_file = changed_taxonomy(tmp_path / "taxonomy.yaml", [{"version": V2, "changed": ["hate"], "note": "n"}])
    monkeypatch.setattr(taxonomy_module, "TAXONOMY_FILE", tax_file)
    spec_v2 = tmp_path / "spec-v2.yaml"
    spec_v2.write_text(yaml.safe_dump(yaml.safe_load(spec_v1.read_text()) | {"guidelines_version": V2}))
    runner = CliRunner()
    held, files = _held(label_studio, project_id), _files(ws)

    dry = runner.invoke(app, ["relabel", "--spec", str(spec_v2), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    s = json.loads(dry.stdout)
    assert s["task_ids"] == SENT_BACK and s["sent"] == 0 and s["dry_run"]
    assert s["by_policy"] == [{"policy": "hate", "tasks": 4, "old_answers": 4, "already_sent": 0, "gold": 1}]
    assert s["gold_to_review"] == [{"task": "gold:g0", "policies": ["hate"]}]
    table = runner.invoke(app, ["relabel", "--spec", str(spec_v2), "--dry-run"])
    assert table.exit_code == 0 and "hate" in table.stdout and "dry run: 4 task(s) would go back" in table.stdout
    assert _held(label_studio, project_id) == held and _files(ws) == files  # the dry run changed nothing

    run = runner.invoke(app, ["relabel", "--spec", str(spec_v2), "--json"])
    assert run.exit_code == 0, run.output
    s = json.loads(run.stdout)
    assert (s["sent"], s["task_ids"], s["guidelines_switched"]) == (4, SENT_BACK, True)
    now = _held(label_studio, project_id)
    assert {k: now[k] for k in SENT_BACK} == dict.fromkeys(SENT_BACK, (2, 1, False))  # served again to someone new
    assert {k: v for k, v in now.items() if k not in SENT_BACK} == {k: v for k, v in held.items() if k not in SENT_BACK}
    project = httpx.get(f"{url}/api/projects/{project_id}", headers=label_studio.headers, timeout=60).json()
    assert f"Guidelines version {V2}+" in project["expert_instruction"] and read_history(ws)[-1]["version"] == V2
    assert gv.pending_gold_review(ws) == {"gold:g0"}
    assert set(load_inputs(ws)["gold"]["external_id"]) == {"gold:g1"}  # not scored until reviewed
    again = json.loads(runner.invoke(app, ["relabel", "--spec", str(spec_v2), "--json"]).stdout)
    assert (again["sent"], again["tasks"], again["already_sent"]) == (0, 0, 4)
    assert _held(label_studio, project_id) == now  # nothing sent twice

    # the hostile annotator edits the old answer after the switch: it stays an answer given under 2026.11.1
    edit = httpx.patch(f"{url}/api/annotations/{hostile_id}/", headers=hostile.headers, json=claim, timeout=60)
    assert edit.status_code < 300, edit.text
    ws.simulated_truth.unlink()  # under the new wording t00 is harassment, not hate
    truth_v2 = _truth_file(tmp_path / "truth-v2.csv", WORK | {"t00": "harassment"})
    done = simulate(project_id, replace(settings, truth_file=truth_v2), ws, url, token)
    assert done["annotations_written"] == 4 and done["failed"] == 0
    pull(ws, url, token)
    print(f"relabeled, answered again and pulled: {time.perf_counter() - started:.1f} s")
    after, _, _ = counted_check(ws, load_spec(spec_v2), method="mv", n_boot=10)

    def policy(result) -> dict[str, str]:
        c = result.consensus
        return dict(zip(c.loc[c["control"] == "policy", "task"], c.loc[c["control"] == "policy", "label"]))

    # majority vote: the one counted answer decides, so the consensus shows which answer counts
    assert policy(before)["t00"] == "hate" and policy(after)["t00"] == "harassment"  # the new answer, not the old
    assert {k: v for k, v in policy(after).items() if k not in SENT_BACK + ["t00"]} == {
        k: v for k, v in policy(before).items() if k not in SENT_BACK + ["t00"]
    }
    assert after.counts["n_annotations"] == before.counts["n_annotations"]  # one counted answer per task, as before
    out = export_workspace(ws, load_spec(spec_v2), tmp_path / "out", n_boot=10, compare=False)
    exported = {r["external_id"]: r for r in map(json.loads, (out.out / "dataset.jsonl").read_text().splitlines())}
    versions = {k: [a["guideline_version"] for a in r["answers"]] for k, r in exported.items()}
    assert {k: versions[k] for k in SENT_BACK} == dict.fromkeys(SENT_BACK, [V2])  # the hostile answer is out
    assert all(v == [V1] for k, v in versions.items() if k not in SENT_BACK)
    third = json.loads(runner.invoke(app, ["relabel", "--spec", str(spec_v2), "--json"]).stdout)
    assert (third["tasks"], third["sent"], third["already_sent"]) == (0, 0, 0)

    reviewed = runner.invoke(app, ["relabel", "--spec", str(spec_v2), "--reviewed", "gold:g0"])
    assert reviewed.exit_code == 0 and "gold:g0: reviewed" in reviewed.stdout
    assert gv.pending_gold_review(ws) == set() and "gold:g0" in set(load_inputs(ws)["gold"]["external_id"])
    unknown = runner.invoke(app, ["relabel", "--spec", str(spec_v2), "--reviewed", "gold:zz"])
    assert unknown.exit_code == 1 and "not a gold item listed for review" in unknown.output
    print(f"relabel on Label Studio: {time.perf_counter() - started:.1f} s (labeled and pulled in {labeled:.1f} s)")
