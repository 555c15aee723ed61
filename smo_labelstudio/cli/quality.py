"""`smo quality`: a project's quality pass, and the engine on CSV files (errors: smo_labelstudio.cli._errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from smo_labelstudio.cli._errors import fail, reported
from smo_labelstudio.core.spec import load_spec

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Annotation quality: agreement, gold checks, consensus (no Label Studio needed).",
)


@app.callback(invoke_without_command=True)
@reported
def _group(
    ctx: typer.Context,
    spec: Optional[Path] = typer.Option(
        None, "--spec", metavar="SPEC", help="Check a project's pulled labels against its spec's gates."
    ),
    adjudicate: bool = typer.Option(
        True, "--adjudicate/--no-adjudicate", help="Read back and queue adjudications in Label Studio (with --spec)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (with --spec)."),
) -> None:
    """Annotation quality: agreement, gold checks, consensus (no Label Studio needed).

    `smo quality --spec SPEC` runs the project's quality pass (exit 3 when a gate fails);
    `smo quality compute` runs the engine on any CSV file.
    """
    if ctx.invoked_subcommand is not None:
        return
    if spec is None:
        fail("pass --spec SPEC (a project spec), or use `smo quality compute` on a file")
    from smo_labelstudio.reports.quality_pass import run_pass  # noqa: PLC0415 - start-up time: matplotlib
    from smo_labelstudio.warehouse.publish import publish_after_flow  # noqa: PLC0415 - start-up time: duckdb

    outcome = run_pass(load_spec(spec), adjudicate=adjudicate)
    if adjudicate:  # Label Studio is contacted anyway: its description points at this report (managers' login)
        _describe(outcome)
    # what the quality-check flow does last: the pass's tables reach SQL now, not at the next flow
    stores = [d["store"] for d in publish_after_flow(outcome.workspace, outcome.spec)]
    summary = {**outcome.summary(), "warehouse": stores}
    if as_json:
        typer.echo(json.dumps(summary, allow_nan=False))
    else:
        _print_pass(summary)
    if outcome.result.failed_gates:
        raise typer.Exit(3)


def _describe(outcome: Any) -> None:
    """The project's description links the newest quality report; a Label Studio refusing is a warning line."""
    import httpx  # noqa: PLC0415 - start-up time

    from smo_labelstudio.core.errors import SmoError  # noqa: PLC0415 - start-up time
    from smo_labelstudio.labelstudio.client import connection_settings  # noqa: PLC0415 - start-up time
    from smo_labelstudio.reports.links import link_in_description  # noqa: PLC0415 - start-up time

    project_id = (outcome.project or {}).get("project_id")
    if not project_id:
        return
    try:
        link_in_description(outcome.workspace, *connection_settings(), int(project_id))
    except (OSError, SmoError, httpx.HTTPError) as exc:
        typer.echo(f"warning: the project's description was not updated: {' '.join(str(exc).split())[:200]}", err=True)


def _print_pass(s: dict[str, Any]) -> None:
    """The readable form of a project's quality pass: verdict, failed gates, where the report is."""
    from smo_labelstudio.quality.calibration import describe  # noqa: PLC0415 - start-up time: pandas

    echo = typer.echo
    verdict = "PASSED" if s["passed"] else "FAILED"
    echo(f"{s['title']}: {verdict} ({len(s['gates']) - len(s['failed_gates'])} of {len(s['gates'])} gates passed)")
    echo(
        f"{s['n_annotations']:,} answers by {s['n_annotators']} annotators on {s['n_tasks']:,} tasks, "
        f"{s['n_gold_tasks']:,} gold tasks"
    )
    for gate in s["gates"]:
        if gate["passed"] is False:
            echo(f"  failed {gate['name']}: {_fmt(gate['value'])} < {gate['threshold']:g} ({gate['detail']})")
    c = s["consensus"]
    echo(
        f"consensus: {c['n_tasks']:,} tasks, {c['adjudicated']:,} adjudicated, {c['below_min_confidence']:,} below "
        f"min_confidence"
    )
    for control, info in c.get("calibration", {}).items():
        echo(f"  confidence of {control}: {describe(info)}")
    if "adjudication" in s:
        a = s["adjudication"]
        echo(f"adjudication: {a['queued']} queued now, {a['in_review']} in review at {a['url']}")
        if a.get("note"):
            echo(f"adjudication: {a['note']}")
    if s.get("dynamic_overlap"):
        from smo_labelstudio.cli.batches import dynamic_line  # noqa: PLC0415 - only when used

        echo(dynamic_line(s["dynamic_overlap"]))
    echo(f"report: {s['report']['html']}")


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_summary(s: dict[str, Any], written: Optional[Path]) -> None:
    """The readable form of the summary: the headline figures, flags, consensus."""
    echo = typer.echo
    echo(
        f"{s['n_annotations']:,} answers ({s['n_missing']:,} empty) by {s['n_annotators']:,} annotators "
        f"on {s['n_tasks']:,} tasks, {s['n_labels']} label values"
    )
    low, high = s["krippendorff_alpha_ci"]
    echo(f"percent agreement   {_fmt(s['percent_agreement'])}")
    echo(f"Gwet's AC1          {_fmt(s['gwet_ac1'])}")
    echo(f"Fleiss' kappa       {_fmt(s['fleiss_kappa'])}")
    echo(
        f"Cohen's kappa       {_fmt(s['cohen_kappa_mean'])} (mean over {s['cohen_kappa_pairs']:,} annotator "
        f"pairs, weights: {s['cohen_kappa_weights']})"
    )
    echo(f"Krippendorff alpha  {_fmt(s['krippendorff_alpha'])} ({s['level']}; 95% CI {_fmt(low)} to {_fmt(high)})")
    for row in s.get("per_label", []):
        echo(
            f"  {str(row['label'])[:24]:24} prevalence {_fmt(row['prevalence'], 2)}  agreement "
            f"{_fmt(row['percent_agreement'])}  AC1 {_fmt(row['gwet_ac1'])}  alpha {_fmt(row['krippendorff_alpha'])}"
        )
    gold = s["gold"]
    if gold["n_gold_tasks"]:
        judged = sum(1 for a in s["annotators"] if a["gold_n"] >= gold["min_answers"])
        echo(
            f"gold: {gold['n_gold_tasks']:,} tasks; {judged} annotator(s) with at least {gold['min_answers']} "
            f"gold answers; {len(s['flagged'])} flagged (accuracy significantly below {gold['threshold']:g})"
        )
        for flag in s["flagged"]:
            echo(f"  {flag['annotator']}: {flag['reason']}")
    else:
        echo("gold: none given (pass --gold G.csv to check annotators)")
    c = s["consensus"]
    echo(
        f"consensus ({c['method']}): {c['n_tasks']:,} tasks, mean confidence {_fmt(c['mean_confidence'])}, "
        f"{c['low_confidence']:,} below {c['low_confidence_below']:g}"
    )
    if written:
        echo(f"wrote {written}")


@app.command("compute")
@reported
def compute(
    annotations: Path = typer.Option(
        ..., "--annotations", metavar="A.csv", help="CSV with columns task,annotator,label (an empty label is missing)."
    ),
    gold: Optional[Path] = typer.Option(None, "--gold", metavar="G.csv", help="CSV with columns task,label."),
    level: str = typer.Option(
        "nominal",
        "--level",
        metavar="nominal|ordinal|interval|ratio",
        help="Measurement level for Krippendorff's alpha (and Cohen's kappa weights).",
    ),
    method: str = typer.Option(
        "ds",
        "--method",
        metavar="mv|ds|smoothed-ds",
        help="Consensus: majority vote, Dawid-Skene or smoothed Dawid-Skene (both anchored on gold).",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", metavar="DIR", help="Write DIR/consensus.csv (task,label,confidence)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Agreement with bootstrap intervals, gold checks and consensus for one annotations file."""
    from smo_labelstudio.core.csvcells import safe_frame  # noqa: PLC0415 - start-up time: pandas
    from smo_labelstudio.quality import io  # noqa: PLC0415 - start-up time: pandas
    from smo_labelstudio.quality.compute import run_quality  # noqa: PLC0415 - start-up time: scipy

    frame = io.read_annotations(annotations)
    gold_frame = io.read_gold(gold) if gold is not None else None
    result = run_quality(frame, gold_frame, level=level, method=method)
    written = None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            written = out / "consensus.csv"
            safe_frame(result.consensus).to_csv(written, index=False)  # labels are free text: no formulas
        except OSError as exc:
            fail(f"{out}: cannot write consensus.csv ({exc.strerror})")
    if as_json:
        typer.echo(result.to_json())
    else:
        _print_summary(result.summary, written)
