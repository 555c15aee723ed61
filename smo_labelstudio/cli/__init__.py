"""The `smo` command: the app assembled from one module per command group. Errors go through one path
(smo_labelstudio.cli._errors): a user's or environment's problem is one line, a bug is a traceback."""

from __future__ import annotations

import sys

import typer

from smo_labelstudio.cli import (
    annotators,
    backend,
    batches,
    configs,
    demo,
    doctor,
    export,
    notify,
    quality,
    relabel,
    report,
    scorecards,
    simulate,
    stack,
    warehouse,
)

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Safety-model-operations data production on Label Studio."
)
app.add_typer(stack.app, name="stack")
app.add_typer(configs.app, name="configs")
app.add_typer(quality.app, name="quality")
app.add_typer(annotators.app, name="annotators")
app.command("simulate")(simulate.simulate)
app.add_typer(backend.app, name="backend")
app.command("launch")(batches.launch)
app.command("pull")(batches.pull_cmd)
app.add_typer(batches.spec_app, name="spec")
app.command("serve")(batches.serve)
app.command("report")(report.report)
app.command("scorecards")(scorecards.scorecards)
app.command("export")(export.export)
app.command("relabel")(relabel.relabel)
app.command("sql")(warehouse.sql)
app.add_typer(warehouse.warehouse_app, name="warehouse")
app.command("demo")(demo.demo)
app.command("doctor")(doctor.doctor)
app.add_typer(notify.app, name="notify")


def main() -> None:
    """The `smo` entry point; Ctrl-C ends with exit 130."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
