"""The quality pass without servers: input frames from the labels table, the check, the report, the CLI."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from quality_data import gold_table, labels_table, truth
from typer.testing import CliRunner

from smo_labelstudio.core.spec import Quality, load_spec
from smo_labelstudio.core.workspace import LABEL_COLUMNS, workspace_key
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.check import compute_check
from smo_labelstudio.reports.quality import write_report


def _rows(*rows: tuple) -> pd.DataFrame:
    """(external_id, annotation_id, annotator, control, label, language) rows in the labels contract."""
    frame = pd.DataFrame(
        [
            {
                "project": 1,
                "task": 7,
                "external_id": e,
                "annotation_id": a,
                "annotator": w,
                "control": c,
                "label": v,
                "start": None,
                "end": None,
                "is_gold": False,
                "language": lang,
            }
            for e, a, w, c, v, lang in rows
        ]
    )
    return frame[LABEL_COLUMNS]


def test_policy_sets_keep_each_annotators_latest_answer_and_empty_sets():
    labels = _rows(
        ("x", 1, "ann", "policy", "hate", "en"),
        ("x", 2, "ann", "policy", "spam_scams", "en"),  # a later answer replaces the first
        ("x", 2, "ann", "policy", "harassment", "en"),
        ("x", 3, "bob", "severity", "2", "en"),  # an answer with no policy is the empty set
        ("y", 4, "ann", "policy", "no_violation", None),
    )
    sets = qi.policy_sets(labels)
    got = {(r.task, r.annotator): r.label for r in sets.itertuples()}
    assert got == {
        ("x", "ann"): frozenset({"spam_scams", "harassment"}),
        ("x", "bob"): frozenset(),
        ("y", "ann"): frozenset({"no_violation"}),
    }
    assert dict(zip(sets["task"], sets["language"])) == {"x": "en", "y": "unknown"}
    assert sorted(qi.policy_keys(sets)["label"]) == ["(none)", "harassment+spam_scams", "no_violation"]
    binary = qi.policy_binary(sets, ["hate", "harassment"])
    assert len(binary) == 6
    assert binary.loc[(binary["task"] == "x") & (binary["annotator"] == "ann"), "label"].tolist() == [
        True,
        False,
    ]  # harassment, hate (sorted)
    severity = qi.severity_answers(labels)
    assert severity[["task", "annotator", "label"]].values.tolist() == [["x", "bob", 2]]


def test_cancelled_annotations_are_left_out():
    labels = _rows(("x", 1, "ann", "policy", "hate", "en"), ("x", 2, "ann", "policy", "spam_scams", "en"))
    kept = qi.latest_annotations(labels, cancelled=[2])
    assert kept["label"].tolist() == ["hate"]


def test_gold_frames_by_external_id():
    gold = pd.DataFrame(
        {
            "external_id": ["a", "a", "b", "b"],
            "control": ["policy", "policy", "policy", "severity"],
            "label": ["hate", "harassment", "no_violation", "3"],
        }
    )
    assert qi.gold_policy_keys(gold).values.tolist() == [["a", "harassment+hate"], ["b", "no_violation"]]
    assert qi.gold_severity(gold).values.tolist() == [["b", 3]]
    binary = qi.gold_policy_binary(gold, ["hate"])
    assert binary.values.tolist() == [["a", "hate", True], ["b", "hate", False]]
    with pytest.raises(ValueError, match="control"):
        qi.gold_policy_keys(gold.drop(columns="control"))


@pytest.fixture(scope="module")
def project_data():
    items = truth(450, seed=3)
    gold_ids = set(items["external_id"].iloc[::5])
    accuracies = {f"ann-{i}": 0.92 for i in range(5)} | {"ann-bad": 0.35}
    labels = labels_table(items, accuracies, gold_ids=gold_ids, seed=4)
    return items, labels, gold_table(items, gold_ids), gold_ids


def test_check_flags_the_bad_annotator_and_gates_on_the_spec(project_data):
    items, labels, gold, gold_ids = project_data
    result = compute_check(
        labels, gold, Quality(min_gold_accuracy=0.8, min_gold_answers=10, min_alpha=0.6, min_confidence=0.7), n_boot=200
    )
    flagged = result.annotators.loc[result.annotators["flagged"], "annotator"].tolist()
    assert flagged == ["ann-bad"]
    assert list(result.confusions) == ["ann-bad"]
    failed = {g.name for g in result.failed_gates}
    assert "gold-accuracy:ann-bad" in failed and not any(
        g.startswith("gold-accuracy:ann-") and g != "gold-accuracy:ann-bad" for g in failed
    )
    assert set(result.language_agreement["language"]) == {"en", "es", "ar"}
    # per policy on gold: the bad annotator is the least accurate on every policy gold covers
    by_policy = result.gold_by_policy
    assert set(by_policy["policy"]) <= set(result.policy_agreement["policy"]) and by_policy["gold_n"].gt(0).all()
    worst = by_policy.loc[by_policy.groupby("policy")["gold_accuracy"].idxmin(), "annotator"]
    assert (worst == "ann-bad").mean() >= 0.5 and (by_policy["ci_low"] <= by_policy["gold_accuracy"]).all()
    assert set(result.policy_agreement["policy"]) == set(qi.policy_binary(qi.policy_sets(labels))["policy"])
    # gold tasks keep their gold label and never go to adjudication
    assert not result.to_review["task"].isin(gold_ids).any()
    gold_rows = result.consensus[result.consensus["source"] == "gold"]
    truth_keys = dict(zip(items["external_id"], items["policies"].map(qi.set_key)))
    policy_rows = gold_rows[gold_rows["control"] == "policy"]
    assert (policy_rows["label"] == policy_rows["task"].map(truth_keys)).all()
    # consensus recovers the truth on most non-gold tasks despite one bad annotator in three
    consensus = result.consensus[
        (result.consensus["control"] == "policy") & (result.consensus["source"] == "consensus")
    ]
    assert (consensus["label"] == consensus["task"].map(truth_keys)).mean() > 0.9
    assert (result.to_review["confidence"] < 0.7).all() and len(result.to_review) > 0

    lenient = compute_check(labels, gold, Quality(min_gold_accuracy=0.2, min_gold_answers=10, min_alpha=0.0), n_boot=50)
    assert lenient.failed_gates == [] and lenient.summary()["passed"] is True


def test_severity_is_gated_only_when_the_spec_sets_min_severity_alpha(project_data):
    _, labels, gold, _ = project_data
    names = lambda result: [g.name for g in result.gates]  # noqa: E731
    assert "alpha:severity" not in names(compute_check(labels, gold, Quality(), n_boot=20))
    alpha = (
        compute_check(labels, gold, Quality(), n_boot=20)
        .severity_agreement.set_index("language")
        .at["all", "krippendorff_alpha"]
    )
    strict = compute_check(labels, gold, Quality(min_severity_alpha=min(alpha + 0.05, 1)), n_boot=20)
    gate = next(g for g in strict.gates if g.name == "alpha:severity")
    assert (
        gate.value == pytest.approx(alpha)
        and gate.passed is False
        and "alpha:severity" in strict.summary()["failed_gates"]
    )
    assert (
        next(
            g
            for g in compute_check(labels, gold, Quality(min_severity_alpha=alpha - 0.05), n_boot=20).gates
            if g.name == "alpha:severity"
        ).passed
        is True
    )


def test_adjudicated_labels_override_consensus(project_data):
    _, labels, gold, _ = project_data
    before = compute_check(labels, gold, Quality(), n_boot=20)
    task = before.to_review["task"].iloc[0]
    adjudicated = pd.DataFrame(
        {"external_id": [task, task], "control": ["policy", "policy"], "label": ["misinformation", "hate"]}
    )
    after = compute_check(labels, gold, Quality(), adjudicated=adjudicated, n_boot=20)
    rows = after.consensus[after.consensus["task"] == task]
    assert rows[["control", "label", "confidence", "source"]].values.tolist() == [
        ["policy", "hate+misinformation", 1.0, "adjudicated"]
    ]  # no severity: the adjudicator chose none
    assert task not in set(after.to_review["task"])
    assert after.summary()["consensus"]["adjudicated"] == 1


def test_report_is_self_contained_and_shows_gates(project_data, tmp_path):
    _, labels, gold, _ = project_data
    result = compute_check(labels, gold, Quality(), n_boot=50)
    files = write_report(result, tmp_path / "reports", "Demo <batch>", project_url="http://ls/projects/3")
    text = files.markdown.read_text()
    assert "**FAILED**" in text and "gold-accuracy:ann-bad" in text and "min_gold_accuracy 0.8" in text
    for name in (
        "gold-accuracy.png",
        "agreement-by-policy.png",
        "agreement-by-language.png",
        "alpha-policy-language.png",
        "confidence-calibration.png",
        "confusion-ann-bad.png",
    ):
        assert (files.folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text
    html = files.html.read_text()
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table>" in html and "Demo &lt;batch&gt;" in html and "<script" not in html
    assert '"passed": false' in files.summary.read_text()


def test_cli_spec_without_pulled_tables_is_one_line(tmp_path, monkeypatch):
    from smo_labelstudio.cli import app
    from smo_labelstudio.core.spec import EXAMPLE_SPEC

    monkeypatch.setenv("SMO_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["quality", "--spec", str(EXAMPLE_SPEC), "--json"])
    assert result.exit_code == 1
    folder = tmp_path / "workspaces" / workspace_key(load_spec(EXAMPLE_SPEC).title)
    assert result.output.strip().splitlines() == [
        f"error: no labels table at {folder}/tables/labels.parquet: run `smo pull` first"
    ]
    assert CliRunner().invoke(app, ["quality", "--json"]).exit_code == 1
