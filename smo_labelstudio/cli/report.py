"""`smo report`: the operations report (progress, throughput, ETA, bottlenecks, quality trend, wellness,
retrospective, model evaluation) from the workspace; exit 4 when an annotator is over the spec's wellness cap
(errors: smo_labelstudio.cli._errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from smo_labelstudio.cli._errors import reported
from smo_labelstudio.core.spec import load_spec


@reported
def report(
    spec: Path = typer.Option(..., "--spec", metavar="SPEC", help="The project spec YAML."),
    out: Optional[Path] = typer.Option(
        None, "--out", metavar="DIR", help="Write the report folder here (default: the workspace's reports/)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Operations report and model evaluation: HTML (plots inline) + Markdown + summary.json."""
    from smo_labelstudio.reports.operations import run_report  # noqa: PLC0415 - start-up time: matplotlib

    result, files = run_report(load_spec(spec), out=out)
    summary = {
        **result.summary(),
        "report": {"html": str(files.html), "markdown": str(files.markdown), "summary": str(files.summary)},
    }
    if as_json:
        typer.echo(json.dumps(summary, allow_nan=False))
    else:
        t, e = summary["totals"], summary["eta"]
        typer.echo(
            f"{result.title}: {t.get('done', 0)} of {t.get('tasks', 0)} tasks done, "
            f"{t.get('answers_remaining', 0)} answers remaining; ETA {e.get('eta') or 'unknown'}"
            + (
                f", deadline {e['deadline']} ({'on track' if e.get('on_track') else 'behind'})"
                if e.get("deadline")
                else ""
            )
        )
        m = summary["model"]
        if m:
            typer.echo(f"model: micro F1 {m['micro_f1']:.3f} on {m['n_tasks']} tasks, ECE {m['ece']:.3f}")
        for a in summary["wellness_alerts"]:
            typer.echo(
                f"WELLNESS: {a['annotator']} answered {a['high_severity']} high-severity items on {a['day']} "
                f"(cap {a['cap']})"
            )
        typer.echo(f"report: {files.html}")
    if len(result.alerts):
        raise typer.Exit(4)
