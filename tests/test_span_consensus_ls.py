"""Span consensus against a real Label Studio: simulated annotators mark harmful words (English and Arabic) in a
project of our text config, `smo pull`'s code brings them into the labels table, and the quality pass's
consensus spans equal a plain per-character recount from the per-annotator spans in Label Studio's own export.
Also the export's `consensus_spans` field in every file it writes."""

from __future__ import annotations

import json
import os
import time

import httpx
import pandas as pd
import pytest

from smo_labelstudio.core.spec import Quality
from smo_labelstudio.core.workspace import Workspace, write_parquet
from smo_labelstudio.export import dataset as ex
from smo_labelstudio.labelstudio.client import connect, create_project, import_tasks
from smo_labelstudio.labelstudio.configs import labeling_interface
from smo_labelstudio.pull.completions import pull
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.check import compute_check, load_inputs
from smo_labelstudio.quality.span_consensus import reliability
from smo_labelstudio.simulation.simulate import SimulationSettings, simulate

TEXTS = [
    ("en", "you people are vermin and should all be thrown out of this town"),
    ("en", "click this link now to claim the free phone you won today"),
    ("ar", "هؤلاء الناس حثالة ويجب طردهم من المدينة فورا"),
    ("ar", "اضغط على الرابط الآن لتربح هاتفا مجانيا اليوم"),
    ("en", "I will find where you live and make you regret every word"),
    ("ar", "أنت فاشل ولا أحد يريدك هنا اخرج من المجموعة"),
]
TRUTH = ["hate", "spam_scams", "hate", "spam_scams", "harassment", "harassment"]


@pytest.fixture(scope="module")
def spans_project(label_studio, tmp_path_factory):
    """Six tasks wanting 3 answers, answered by 3 simulated annotators who always mark a span on a violation."""
    tmp = tmp_path_factory.mktemp("spans")
    t0 = time.perf_counter()
    ls = connect(label_studio.url, label_studio.token)
    project_id = create_project(
        ls, f"spans {os.urandom(4).hex()}", labeling_interface("text_moderation")["label_config"]
    )
    httpx.patch(
        f"{label_studio.url}/api/projects/{project_id}",
        headers=label_studio.headers,
        json={"maximum_annotations": 3, "overlap_cohort_percentage": 100},
        timeout=60,
    ).raise_for_status()
    items = [
        {"item_id": f"i{i}", "external_id": f"s{i}", "language": lang, "text": text}
        for i, (lang, text) in enumerate(TEXTS)
    ]
    assert import_tasks(ls, project_id, [{"data": item} for item in items]) == len(items)
    ws = Workspace(tmp / "ws")
    ws.record_project({"project_id": project_id, "config": "text_moderation", "title": "spans"})
    write_parquet(ws.runs / "p1" / "plan.parquet", pd.DataFrame(items).assign(is_gold=False, batch=0))
    truth = tmp / "truth.csv"
    pd.DataFrame({"external_id": [i["external_id"] for i in items], "labels": TRUTH, "severity": 2}).to_csv(
        truth, index=False
    )
    settings = SimulationSettings(annotators=3, accuracy=0.9, seed=5, truth_file=truth, span_rate=1.0)
    t1 = time.perf_counter()
    summary = simulate(project_id, settings, ws, label_studio.url, label_studio.token)
    t2 = time.perf_counter()
    assert summary["annotations_written"] == 18, summary
    pulled = pull(ws, label_studio.url, label_studio.token)
    exported = httpx.get(
        f"{label_studio.url}/api/projects/{project_id}/export",
        params={"exportType": "JSON"},
        headers=label_studio.headers,
        timeout=60,
    )
    exported.raise_for_status()
    t3 = time.perf_counter()
    print(f"spans project: set up {t1 - t0:.1f} s, simulate {t2 - t1:.1f} s, pull and export {t3 - t2:.1f} s")
    return {"ws": ws, "pulled": pulled, "export": exported.json(), "items": items}


def _recount(export: list[dict], weights: dict[str, float], emails: dict[int, str]) -> set[tuple]:
    """Consensus spans straight from Label Studio's export: per task and policy, each character's weighted share
    of the task's annotators whose spans cover it; runs above 0.5, with their mean share."""
    out = set()
    for task in export:
        text = task["data"]["text"]
        marks: dict[str, dict[str, set[int]]] = {}
        answered = [emails[a["completed_by"]] for a in task["annotations"] if not a.get("was_cancelled")]
        total = sum(weights.get(a, 1.0) for a in answered)
        for ann in task["annotations"]:
            who = emails[ann["completed_by"]]
            for r in ann["result"]:
                if r["type"] == "labels":
                    assert text[r["value"]["start"] : r["value"]["end"]] == r["value"]["text"]
                    for policy in r["value"]["labels"]:
                        chars = marks.setdefault(policy, {}).setdefault(who, set())
                        chars.update(range(r["value"]["start"], r["value"]["end"]))
        for policy, by in marks.items():
            score = [
                sum(weights.get(a, 1.0) for a, chars in by.items() if c in chars) / total for c in range(len(text))
            ]
            c = 0
            while c < len(text):
                if score[c] <= 0.5:
                    c += 1
                    continue
                end = c
                while end < len(text) and score[end] > 0.5:
                    end += 1
                mean = sum(score[c:end]) / (end - c)
                out.add((task["data"]["external_id"], policy, c, end, text[c:end], round(mean, 9)))
                c = end
    return out


def test_consensus_spans_equal_a_recount_from_the_per_annotator_spans_in_label_studio(label_studio, spans_project):
    ws, export = spans_project["ws"], spans_project["export"]
    assert spans_project["pulled"]["labels_quarantined"] == 0
    inputs = load_inputs(ws)
    labels = inputs["labels"]
    assert (labels["control"] == "spans").sum() == sum(
        1 for t in export for a in t["annotations"] for r in a["result"] if r["type"] == "labels"
    )
    result = compute_check(labels, None, Quality(), n_boot=10, texts=inputs["texts"])
    keys = qi.policy_keys(qi.policy_sets(qi.latest_annotations(labels)))
    weights = reliability(keys, result.consensus[result.consensus["control"] == qi.POLICY])
    users = httpx.get(f"{label_studio.url}/api/users", headers=label_studio.headers, timeout=60).json()
    expected = _recount(export, weights, {u["id"]: u["email"] for u in users})
    got = {
        (r.task, r.policy, r.start, r.end, r.text, round(r.confidence, 9))
        for r in result.span_consensus.itertuples(index=False)
    }
    print("consensus spans:", sorted(got))
    assert got == expected
    assert len(got) >= 3 and {t for t, *_ in got} & {"s2", "s3", "s5"}  # Arabic (right-to-left) tasks among them
    figures = result.summary()["spans"]
    assert figures["n_consensus_spans"] == len(got) and figures["refused"] == 0
    by_policy = {p["policy"]: p for p in figures["policies"]}
    assert by_policy["all"]["spans"] == int((labels["control"] == "spans").sum())
    assert 0 < by_policy["all"]["f1_overlap"] <= 1 and by_policy["all"]["f1_exact"] <= by_policy["all"]["f1_overlap"]


def test_the_export_carries_consensus_spans_in_every_file(spans_project, tmp_path):
    ws = spans_project["ws"]
    inputs = load_inputs(ws)
    result = compute_check(inputs["labels"], None, Quality(), n_boot=10, texts=inputs["texts"])
    items = pd.DataFrame(spans_project["items"]).assign(is_gold=False, source=None, image=None)
    rows = ex.build_rows(
        items,
        inputs["labels"],
        result.consensus,
        gold=None,
        predictions=None,
        versions=None,
        key=b"k" * 32,
        spans=ex.task_spans(result.span_consensus),
    )
    rows = ex.assign_splits(rows, 0.0)
    sheet = {
        "title": "spans",
        "method": "smoothed-ds",
        "seed": 0,
        "pull_watermark": None,
        "n_annotators": 3,
        "gates": {"min_confidence": 0.0},
        "versions": {},
        "counts": {"tasks": len(rows), "by_split": {}},
        "label_distribution": [],
        "agreement": {"tasks_with_2plus_annotators": 0, "mean_pair_agreement": None, "ci_low": None, "ci_high": None}
        | {"per_policy": []},
        "gold": {"n_gold_tasks": 0, "n_gold_answers": 0, "answer_accuracy": None, "ci_low": None, "ci_high": None}
        | {"annotators": []},
        "spans": {"method": ex.SPAN_METHOD, **result.span_figures()},
    }
    ex.write_dataset(rows, tmp_path, sheet)
    want = {r.task: [] for r in result.span_consensus.itertuples()} | ex.task_spans(result.span_consensus)
    records = {r["external_id"]: r for r in map(json.loads, (tmp_path / "dataset.jsonl").read_text().splitlines())}
    csv = pd.read_csv(tmp_path / "dataset.csv").set_index("external_id")
    parquet = pd.read_parquet(tmp_path / "dataset.parquet").set_index("external_id")
    for task, rec in records.items():
        spans = want.get(task, [])
        assert rec["consensus_spans"] == spans
        assert json.loads(csv.at[task, "consensus_spans"]) == spans
        assert [dict(s) for s in parquet.at[task, "consensus_spans"]] == spans
        for s in spans:
            assert rec["text"][s["start"] : s["end"]] == s["text"] and 0.5 < s["confidence"] <= 1
    tasks = json.loads((tmp_path / "labelstudio.json").read_text())
    predicted = [r for t in tasks for r in t["predictions"][0]["result"] if r["from_name"] == "spans"]
    assert len(predicted) == sum(map(len, want.values())) > 0
    sheet_md = (tmp_path / "datasheet.md").read_text()
    assert "## Harmful spans" in sheet_md and "consensus_spans" in sheet_md
