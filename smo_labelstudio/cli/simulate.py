"""`smo simulate`: simulated annotators label a launched project (errors: smo_labelstudio.cli._errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from smo_labelstudio.cli._errors import fail, reported
from smo_labelstudio.cli._progress import Bar
from smo_labelstudio.core.spec import load_spec


def _accuracies(text: str) -> tuple[float, ...]:
    """`--accuracy` as numbers between 0 and 1, or a one-line error."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        fail(f"--accuracy {text!r}: expected numbers between 0 and 1, comma-separated")
    if not all(0 <= v <= 1 for v in values):
        fail(f"--accuracy {text!r}: every accuracy must be between 0 and 1")
    return values


@reported
def simulate(
    spec: Path = typer.Option(..., "--spec", metavar="SPEC", help="The project spec (its title names the workspace)."),
    annotators: int = typer.Option(
        ...,
        "--annotators",
        metavar="N",
        min=1,
        max=99,
        help="How many simulated annotators (real accounts sim-annotator-NN@smo.local).",
    ),
    accuracy: str = typer.Option(
        "0.85",
        "--accuracy",
        metavar="A[,A...]",
        help="Chance each true policy is answered as itself (and severity exactly). "
        "Several, comma-separated: annotator i gets the i-th (cycling), so "
        "careful and careless people can be mixed, e.g. 0.95,0.9,0.6,0.55,0.5.",
    ),
    confusion: Optional[Path] = typer.Option(
        None,
        "--confusion",
        metavar="FILE",
        help="CSV: a `truth` column and one column per answered policy id; "
        "its rows replace --accuracy's for those policies.",
    ),
    truth: Optional[Path] = typer.Option(
        None,
        "--truth",
        metavar="FILE",
        help="CSV/JSONL/Parquet with external_id or text, labels (ids separated "
        "by |), optional severity. Default: drawn from --seed.",
    ),
    lead_time: float = typer.Option(
        30.0, "--lead-time", metavar="SECONDS", min=0.1, help="Mean seconds per annotation (recorded as lead_time)."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", metavar="TASKS", min=1, help="Answer at most this many open tasks in this run."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the drawn truth, the answers and who answers what."),
    workers: int = typer.Option(3, "--workers", min=1, max=16, help="Concurrent annotation writes."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Simulated annotators answer every task that still needs answers, each as its own Label Studio user."""
    from smo_labelstudio.core.workspace import Workspace  # noqa: PLC0415 - start-up time: pandas
    from smo_labelstudio.labelstudio import client  # noqa: PLC0415 - start-up time: the SDK is slow to import
    from smo_labelstudio.simulation.simulate import SimulationSettings  # noqa: PLC0415 - start-up time
    from smo_labelstudio.simulation.simulate import simulate as run  # noqa: PLC0415 - start-up time

    loaded = load_spec(spec)
    project = Workspace.for_title(loaded.title).project()
    if not project or not project.get("project_id"):
        fail(f"no project for {loaded.title!r} yet; run `smo launch --spec {spec}` first")
    accuracies = _accuracies(accuracy)
    settings = SimulationSettings(
        annotators=annotators,
        accuracy=accuracies,
        confusion_file=confusion,
        truth_file=truth,
        lead_time=lead_time,
        limit=limit,
        seed=seed,
        workers=workers,
    )
    bar = None if as_json else (lambda total: Bar("simulated annotations", "annotations", total))
    url, _ = client.connection_settings()
    if not client.reachable(url):
        fail(f"Label Studio is not answering at {url}; run `smo stack up`")
    summary = run(int(project["project_id"]), settings, Workspace.for_title(loaded.title), progress=bar)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        rate = f" ({summary['writes_per_second']} per second)" if summary["writes_per_second"] else ""
        typer.echo(
            f"project {summary['project_id']}: {summary['annotations_written']} annotations written{rate} "
            f"by {summary['annotators']} annotators on {summary['tasks_simulated']} tasks; "
            f"{summary['already_done']} of {summary['tasks']} tasks already done, "
            f"{summary['left_for_later']} left for a later run; {summary['seconds']} s"
        )
        if summary["short_of_annotators"]:
            typer.echo(
                f"{summary['short_of_annotators']} task(s) want more annotators than --annotators "
                f"{summary['annotators']}; they got one answer from each"
            )
        typer.echo(f"truth: {summary['truth_saved']}")
    if summary["failed"]:
        fail(
            f"{summary['failed']} annotation(s) not written (first: {summary['first_error']}); "
            f"run the same command again to fill them in"
        )
