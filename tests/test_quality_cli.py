"""`smo quality compute` through the real CLI, and the analyst entry point behind it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from smo_cli import smo as run_smo
from typer.testing import CliRunner

from smo_labelstudio.cli.quality import app
from smo_labelstudio.quality import krippendorff_alpha, run_quality

KEYS = {
    "n_tasks",
    "n_annotators",
    "n_annotations",
    "percent_agreement",
    "fleiss_kappa",
    "krippendorff_alpha",
    "krippendorff_alpha_ci",
    "gwet_ac1",
    "cohen_kappa_mean",
    "annotators",
}
ANNOTATOR_KEYS = {"annotator", "gold_n", "gold_accuracy", "ci_low", "ci_high", "p_value", "flagged"}


def smo(*args: str) -> subprocess.CompletedProcess:
    return run_smo(dict(os.environ), "quality", "compute", *args)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A small labeled batch: 6 annotators, 3-point severity, one careless annotator, gold on 40 tasks."""
    folder = tmp_path_factory.mktemp("quality")
    rng = np.random.default_rng(0)
    truth = rng.choice([0, 1, 2], size=150, p=[0.6, 0.25, 0.15])
    rows = []
    for task in range(150):
        for annotator in rng.choice(6, size=3, replace=False):
            careless = annotator == 5
            label = truth[task] if rng.random() < (0.2 if careless else 0.92) else rng.integers(0, 3)
            rows.append((f"t{task}", f"ann{annotator}", "" if rng.random() < 0.03 else str(label)))
    annotations = pd.DataFrame(rows, columns=["task", "annotator", "label"])
    paths = {"annotations": folder / "A.csv", "gold": folder / "G.csv"}
    annotations.to_csv(paths["annotations"], index=False)
    pd.DataFrame({"task": [f"t{t}" for t in range(60)], "label": truth[:60]}).to_csv(paths["gold"], index=False)
    (folder / "text.csv").write_text("task,annotator,label\n1,a,hate\n1,b,spam\n")
    (folder / "nolabel.csv").write_text("task,annotator\n1,a\n")
    (folder / "empty.csv").write_text("")
    paths.update({name: folder / f"{name}.csv" for name in ("text", "nolabel", "empty")})
    paths["folder"] = folder
    return paths


def test_json_output_has_every_key_and_writes_consensus(files, tmp_path):
    out = tmp_path / "out"
    result = smo(
        "--annotations",
        str(files["annotations"]),
        "--gold",
        str(files["gold"]),
        "--level",
        "ordinal",
        "--method",
        "ds",
        "--out",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert KEYS <= summary.keys()
    assert summary["n_tasks"] == 150 and summary["n_annotators"] == 6
    assert summary["n_annotations"] + summary["n_missing"] == 450
    low, high = summary["krippendorff_alpha_ci"]
    assert low <= summary["krippendorff_alpha"] <= high
    frame = pd.read_csv(files["annotations"], dtype=str, keep_default_na=False, na_values=[""])
    assert summary["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(frame, "ordinal"), abs=1e-12)
    assert summary["cohen_kappa_weights"] == "linear"
    annotators = {a["annotator"]: a for a in summary["annotators"]}
    assert all(ANNOTATOR_KEYS <= a.keys() for a in annotators.values())
    assert annotators["ann5"]["flagged"] and not annotators["ann0"]["flagged"]
    assert [f["annotator"] for f in summary["flagged"]] == ["ann5"]
    consensus = pd.read_csv(out / "consensus.csv")
    assert list(consensus.columns) == ["task", "label", "confidence"] and len(consensus) == 150
    assert consensus["confidence"].between(0, 1).all()


def test_readable_summary_and_majority_vote(files):
    result = smo("--annotations", str(files["annotations"]), "--method", "mv")
    assert result.returncode == 0, result.stderr
    for phrase in (
        "percent agreement",
        "Gwet's AC1",
        "Fleiss' kappa",
        "Krippendorff alpha",
        "gold: none given",
        "consensus (majority vote)",
    ):
        assert phrase in result.stdout


ERRORS = [
    (["--annotations", "{folder}/missing.csv"], "missing.csv: no such file"),
    (["--annotations", "{nolabel}"], "missing column(s) label; expected task, annotator, label"),
    (["--annotations", "{text}", "--level", "interval"], "level 'interval' needs numeric labels"),
    (["--annotations", "{empty}"], "empty file"),
    (["--annotations", "{annotations}", "--level", "ordinl"], "level must be one of nominal, ordinal, interval, ratio"),
    (["--annotations", "{annotations}", "--method", "em"], "method must be one of 'mv', 'ds', 'smoothed-ds'; got 'em'"),
    (["--annotations", "{annotations}", "--gold", "{nolabel}"], "missing column(s) label; expected task, label"),
    (["--annotations", "{annotations}", "--out", "{annotations}"], "cannot write consensus.csv"),
]


def _args(files: dict[str, Path], args: list[str]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in args] + ["--json"]


def _one_error_line(stderr: str, message: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("args, message", ERRORS[:3])
def test_bad_input_is_one_line_and_exit_1(files, args, message):
    result = smo(*_args(files, args))
    assert result.returncode == 1 and result.stdout == ""
    _one_error_line(result.stderr, message)


@pytest.mark.parametrize("args, message", ERRORS[3:])
def test_more_bad_input_in_process(files, args, message):
    """The same contract as above, through CliRunner (no interpreter start-up per case)."""
    result = CliRunner().invoke(app, ["compute", *_args(files, args)])
    assert result.exit_code == 1 and result.stdout == ""
    _one_error_line(result.stderr, message)


def test_typer_app_directly(files):
    result = CliRunner().invoke(app, ["compute", "--annotations", str(files["text"]), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["n_annotations"] == 2


def test_run_quality_groups_and_determinism():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "task": np.repeat(np.arange(200), 3),
            "annotator": rng.choice(list("abcdefg"), 600),
            "label": rng.choice(["ok", "hate"], 600, p=[0.8, 0.2]),
        }
    )
    frame = frame.drop_duplicates(["task", "annotator"])
    frame["language"] = np.where(frame["task"] < 100, "en", "ar")
    first = run_quality(frame, method="mv", n_boot=200, random_state=5, by="language")
    again = run_quality(frame, method="mv", n_boot=200, random_state=5, by="language")
    assert first.to_json() == again.to_json()
    assert set(first.summary["groups"]) == {"ar", "en"}
    en = frame[frame["language"] == "en"]
    assert first.summary["groups"]["en"]["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(en))
    json.loads(first.to_json())  # NaN-free, plain JSON
    assert all(a["reason"] == "no gold answers" for a in first.summary["annotators"])
