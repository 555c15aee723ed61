"""The disagreement in the export (issue 18): every counted answer under its pseudonym, soft labels per policy
and severity level, the consensus model's posterior per policy. Hand-made frames with known answers; the
real Label Studio check is in test_export.py (its simulated project exports these columns)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from test_export import KEY, _items, _labels
from warehouse_data import synthetic_workspace

from smo_labelstudio.core.spec import Quality, load_spec
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.export import dataset as ex
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.check import compute_check

A, B, C, D = "a@smo.local", "b@smo.local", "c@smo.local", "d@smo.local"
POLICIES = ["hate", "harassment", "spam_scams", "no_violation"]
LEVELS = [1, 2, 3, 4]


def _p(who: str) -> str:
    return ex.pseudonym(KEY, who)


def _soft(labels: pd.DataFrame, cancelled=None, excluded=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    answers = ex.answer_table(ex.counted_labels(labels, cancelled, excluded), KEY)
    return answers, ex.soft_labels(answers, POLICIES, LEVELS)


def test_soft_labels_are_the_share_of_counted_annotators_per_policy_and_severity_level():
    labels = _labels(
        [
            ("t1", A, ["hate"], 3),
            ("t1", B, ["hate", "harassment"], 2),
            ("t1", C, ["no_violation"], None),
            ("t1", D, ["hate"], 3),
            ("t2", A, ["spam_scams"], 1),
            ("t2", B, ["no_violation"], None),
        ]
    )
    answers, soft = _soft(labels)
    assert soft.loc["t1", ["soft_hate", "soft_harassment", "soft_spam_scams", "soft_no_violation"]].tolist() == [
        0.75,
        0.25,
        0.0,
        0.25,
    ]
    assert soft.loc["t1", ["soft_severity_1", "soft_severity_2", "soft_severity_3", "soft_severity_4"]].tolist() == [
        0.0,
        0.25,
        0.5,
        0.0,
    ]
    assert soft.loc["t2", ["soft_spam_scams", "soft_no_violation", "soft_severity_1"]].tolist() == [0.5, 0.5, 0.5]
    t1 = answers[answers["task"] == "t1"]
    assert t1["annotator"].tolist() == sorted(_p(w) for w in (A, B, C, D))  # sorted by pseudonym
    got = {r.annotator: (r.policies, r.severity) for r in t1.itertuples()}
    assert got == {
        _p(A): (["hate"], 3),
        _p(B): (["harassment", "hate"], 2),
        _p(C): (["no_violation"], None),
        _p(D): (["hate"], 3),
    }
    assert "@" not in json.dumps(answers.to_dict(orient="records"))


def test_answers_that_do_not_count_are_left_out_and_the_latest_answer_counts():
    labels = _labels(
        [
            ("t1", A, ["hate"], 3),  # annotation 1: replaced by A's later answer (4)
            ("t1", B, ["hate"], 3),  # 2: cancelled
            ("t1", C, ["spam_scams"], 1),  # 3: given while C was qualifying or paused (does not count)
            ("t1", A, ["no_violation"], None),  # 4
            ("t1", D, ["hate"], 2),  # 5
        ]
    )
    answers, soft = _soft(labels, cancelled=[2], excluded=[3])
    assert {r.annotator: (r.policies, r.severity) for r in answers.itertuples()} == {
        _p(A): (["no_violation"], None),
        _p(D): (["hate"], 2),
    }
    assert soft.loc["t1", "soft_hate"] == 0.5 and soft.loc["t1", "soft_no_violation"] == 0.5
    assert soft.loc["t1", "soft_spam_scams"] == 0.0 and soft.loc["t1", "soft_severity_2"] == 0.5
    assert soft.loc["t1", ["soft_severity_1", "soft_severity_3"]].sum() == 0.0
    # consensus reads exactly these answers: with majority vote the posterior per policy is the soft label
    result = compute_check(labels, None, Quality(), method="mv", cancelled=[2], excluded=[3], n_boot=10)
    post = ex.policy_posteriors(result.posteriors[qi.POLICY], POLICIES)
    pd.testing.assert_series_equal(
        post.loc["t1"].rename(lambda c: c.replace("posterior_", "soft_")),
        soft.loc["t1", [f"soft_{p}" for p in POLICIES]],
    )


def test_posterior_per_policy_sums_the_policy_sets_that_hold_it():
    probas = pd.DataFrame(
        [[0.1, 0.5, 0.3, 0.1], [0.0, 0.0, 0.0, 1.0]],
        index=pd.Index(["t1", "t2"], name="task"),
        columns=pd.Index([qi.NO_POLICY, "hate", "harassment+hate", "no_violation"], name="label"),
    )
    post = ex.policy_posteriors(probas, POLICIES)
    assert post.loc["t1", "posterior_hate"] == pytest.approx(0.8)
    assert post.loc["t1", "posterior_harassment"] == pytest.approx(0.3)
    assert post.loc["t1", "posterior_no_violation"] == pytest.approx(0.1)
    assert post.loc["t1", "posterior_spam_scams"] == 0.0
    assert post.loc["t2"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert list(ex.policy_posteriors(None, POLICIES).columns) == [f"posterior_{p}" for p in POLICIES]


def _rows_with_disagreement() -> pd.DataFrame:
    labels = _labels(
        [
            ("t1", A, ["hate"], 3),
            ("t1", B, ["hate", "harassment"], 2),
            ("t1", C, ["hate"], 3),
            ("t2", A, ["no_violation"], None),
            ("t2", B, ["spam_scams"], 1),
            ("t2", C, ["no_violation"], None),
        ]
    )
    result = compute_check(labels, None, Quality(), n_boot=10)
    rows = ex.build_rows(
        _items(["t1", "t2"]), labels, result.consensus, gold=None, predictions=None, versions=None, key=KEY
    )
    tax = load_taxonomy()
    sheet = ex.disagreement_sheet(tax)
    answers = ex.answer_table(ex.counted_labels(labels), KEY)
    rows = ex.add_disagreement(rows, answers, result.posteriors[qi.POLICY], sheet["policies"], sheet["severity_levels"])
    return ex.assign_splits(rows, min_confidence=0.0)


def _sheet(rows: pd.DataFrame, disagreement: dict | None) -> dict:
    return {
        "title": "t",
        "method": "smoothed-ds",
        "seed": 0,
        "pull_watermark": "w",
        "n_annotators": 3,
        "gates": {"min_confidence": 0.0},
        "versions": {},
        "counts": {"tasks": len(rows), "by_split": rows["split"].value_counts().to_dict()},
        "label_distribution": ex.label_distribution(rows),
        "agreement": ex.agreement_summary(rows, None),
        "gold": ex.gold_summary(rows, None, KEY),
        "disagreement": disagreement or {"included": False},
    }


def test_every_file_carries_the_answers_soft_labels_and_posteriors_and_the_datasheet_explains_them(tmp_path):
    rows = _rows_with_disagreement()
    disagreement = ex.disagreement_sheet(load_taxonomy())
    assert list(rows.columns) == ex.COLUMNS + disagreement["columns"]  # today's columns first, unchanged
    ex.write_dataset(rows, tmp_path / "a", _sheet(rows, disagreement))
    ex.write_dataset(rows, tmp_path / "b", _sheet(rows, disagreement))
    for f in (tmp_path / "a").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    jsonl = {r["external_id"]: r for r in map(json.loads, (tmp_path / "a" / "dataset.jsonl").read_text().splitlines())}
    parquet = pd.read_parquet(tmp_path / "a" / "dataset.parquet").set_index("external_id")
    with (tmp_path / "a" / "dataset.csv").open(encoding="utf-8", newline="") as f:
        flat = {r["external_id"]: r for r in csv.DictReader(f)}
    t1 = jsonl["t1"]
    assert t1["answers"] == [
        {"annotator": p, "policies": pol, "severity": sev}
        for p, pol, sev in sorted([(_p(A), ["hate"], 3), (_p(B), ["harassment", "hate"], 2), (_p(C), ["hate"], 3)])
    ]
    assert json.loads(flat["t1"]["answers"]) == t1["answers"]
    assert [
        {"annotator": e["annotator"], "policies": list(e["policies"]), "severity": e["severity"]}
        for e in parquet.loc["t1", "answers"]
    ] == t1["answers"]
    assert t1["soft_hate"] == 1.0 and t1["soft_harassment"] == pytest.approx(1 / 3)
    assert t1["soft_severity_3"] == pytest.approx(2 / 3) and t1["soft_severity_2"] == pytest.approx(1 / 3)
    assert float(flat["t1"]["soft_harassment"]) == pytest.approx(1 / 3, abs=1e-6)
    assert parquet.loc["t2", "soft_no_violation"] == pytest.approx(2 / 3)
    for rec in jsonl.values():  # the posterior per policy: a probability, highest where most chose it
        posts = {k: v for k, v in rec.items() if k.startswith("posterior_")}
        assert len(posts) == len(disagreement["policies"]) and all(0.0 <= v <= 1.0 for v in posts.values())
    assert jsonl["t1"]["posterior_hate"] > 0.5 and jsonl["t2"]["posterior_no_violation"] > 0.5
    md = (tmp_path / "a" / "datasheet.md").read_text()
    for words in ("`soft_<policy>`", "`posterior_<policy>`", "`answers`", "cross-entropy", "Perspectivist", "LeWiDi"):
        assert words in md, words
    assert "@smo.local" not in "".join(f.read_text(errors="replace") for f in (tmp_path / "a").iterdir())


def test_consensus_only_keeps_todays_shape(tmp_path):
    """export_workspace(consensus_only=True): exactly today's columns, no answers, no datasheet section; the
    full shape adds its columns after them and changes none of today's values."""
    ws = synthetic_workspace(tmp_path / "home")
    spec = load_spec(Path("specs/example.yaml"))
    steps: list[tuple[int, int]] = []
    full = ex.export_workspace(ws, spec, tmp_path / "full", n_boot=10, progress=lambda *step: steps.append(step))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]  # what `smo export`'s progress bar shows
    only = ex.export_workspace(ws, spec, tmp_path / "only", n_boot=10, consensus_only=True)
    assert list(only.rows.columns) == ex.COLUMNS and only.sheet["disagreement"] == {"included": False}
    assert "Disagreement" not in (tmp_path / "only" / "datasheet.md").read_text()
    assert "Disagreement" in (tmp_path / "full" / "datasheet.md").read_text()
    assert full.sheet["columns"] == ex.COLUMNS + full.sheet["disagreement"]["columns"]
    pd.testing.assert_frame_equal(full.rows[ex.COLUMNS], only.rows)
    back = pd.read_parquet(tmp_path / "only" / "dataset.parquet")
    assert list(back.columns) == ex.COLUMNS
    pseudonyms = {e["annotator"] for entries in full.rows["answers"] for e in entries}
    assert pseudonyms == {p for ps in full.rows["annotators"] for p in ps}
    assert all(re.fullmatch(r"ann-[0-9a-f]{12}", p) for p in pseudonyms)


def test_the_consensus_only_flag_reaches_the_export(monkeypatch, tmp_path):
    """`smo export --consensus-only` asks export_workspace for the consensus-only shape; without it, the full one."""
    from typer.testing import CliRunner

    from smo_labelstudio.cli import app

    asked = []

    def fake(ws, spec, out, **kwargs):
        asked.append(kwargs["consensus_only"])
        raise ex.ExportError("stop here")

    monkeypatch.setenv("SMO_HOME", str(tmp_path))
    monkeypatch.setattr(ex, "export_workspace", fake)
    base = ["export", "--spec", "specs/example.yaml", "--out", str(tmp_path / "out")]
    for args in (base + ["--consensus-only"], base):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and "stop here" in result.output
    assert asked == [True, False]
