"""`smo export`: an evaluated dataset from a project's pulled labels (errors: smo_labelstudio.cli._errors)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from smo_labelstudio.cli._errors import reported
from smo_labelstudio.cli._progress import Bar
from smo_labelstudio.core.spec import load_spec


@reported
def export(
    spec: Path = typer.Option(..., "--spec", metavar="SPEC", help="The project spec (its title names the workspace)."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Where to write the dataset files and datasheet."),
    method: str = typer.Option(
        "smoothed-ds",
        "--method",
        metavar="smoothed-ds|ds|mv",
        help="Consensus: Dawid-Skene smoothed toward one skill per annotator (smoothed-ds), "
        "plain Dawid-Skene (ds), both anchored on gold, or majority vote (mv).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the splits and bootstrap intervals."),
    consensus_only: bool = typer.Option(
        False,
        "--consensus-only",
        help="Only the consensus per task: no per-annotator answers, soft labels or posteriors per policy.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Consensus labels, every counted answer and soft labels, gates, seeded splits: JSONL, Parquet, CSV, Label
    Studio JSON and a datasheet."""
    from smo_labelstudio.core.workspace import Workspace  # noqa: PLC0415 - start-up time: pandas
    from smo_labelstudio.export.dataset import export_workspace  # noqa: PLC0415 - start-up time: scikit-learn

    loaded = load_spec(spec)
    ws = Workspace.for_title(loaded.title)
    with Bar("export", "steps", disable=as_json) as bar:
        result = export_workspace(
            ws, loaded, out, method=method, seed=seed, consensus_only=consensus_only, progress=bar.update_to
        )
    s = result.summary()
    if as_json:
        typer.echo(json.dumps(s, allow_nan=False))
        return
    splits = ", ".join(f"{k} {v}" for k, v in s["splits"].items())
    typer.echo(f"{s['tasks']} tasks exported to {s['out']} ({splits})")
    for name, acc in s.get("consensus_accuracy", {}).items():
        typer.echo(f"consensus accuracy vs simulation truth ({name}): {acc['accuracy']:.3f} on {acc['n_tasks']} tasks")
    typer.echo(f"datasheet: {s['files']['datasheet.md']}")
