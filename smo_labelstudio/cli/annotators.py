"""`smo annotators`: the qualification batch served first, who counts in a project (qualifying, qualified,
paused) and reinstating a paused annotator (errors: smo_labelstudio.cli._errors)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from smo_labelstudio.cli._errors import fail, reported
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Annotators' qualification status; reinstate a paused one."
)

SPEC = typer.Option(..., "--spec", metavar="SPEC", help="The project spec YAML.")


@app.command("list")
@reported
def list_annotators(
    spec: Path = SPEC, as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")
) -> None:
    """Each annotator's recorded status (as of the last quality pass) and its history."""
    from smo_labelstudio.quality.qualification import load_state  # noqa: PLC0415 - start-up time: pandas

    state = load_state(Workspace.for_title(load_spec(spec).title)).get("annotators", {})
    if as_json:
        typer.echo(json.dumps(state))
        return
    if not state:
        typer.echo("no annotator recorded yet (run `smo quality --spec` after a pull)")
    for email, entry in sorted(state.items()):
        last = entry["history"][-1] if entry.get("history") else {}
        typer.echo(f"{email}: {entry['status']}" + (f" since {last['at']} ({last.get('reason', '')})" if last else ""))


@app.command("reinstate")
@reported
def reinstate(email: str = typer.Argument(..., metavar="EMAIL"), spec: Path = SPEC) -> None:
    """Let a paused annotator's answers count again, from now on (their answers before stay out)."""
    from smo_labelstudio.quality.qualification import reinstate as do  # noqa: PLC0415 - start-up time: pandas

    loaded = load_spec(spec)
    if loaded.qualification is None:
        fail(f"{spec}: the spec has no `qualification` section, so nobody is paused")
    outcome = do(Workspace.for_title(loaded.title), email.strip().lower())
    if outcome["changed"]:
        typer.echo(f"{outcome['annotator']}: reinstated at {outcome['reinstated_at']}; answers from now on count")
    else:
        typer.echo(f"{outcome['annotator']}: not paused ({outcome['status']}); nothing to do")


@app.command("serve-first")
@reported
def serve_first(spec: Path = SPEC) -> None:
    """Make Label Studio serve the qualification batch (the spec's `qualification.gold_tasks` gold tasks) first to
    every annotator; `smo launch` does it already when the project holds gold (idempotent)."""
    from smo_labelstudio.labelstudio.client import connection_settings, http_client  # noqa: PLC0415 - start-up time
    from smo_labelstudio.quality.qualification import qualification_batch  # noqa: PLC0415 - start-up time: pandas

    loaded = load_spec(spec)
    if loaded.qualification is None:
        fail(f"{spec}: the spec has no `qualification` section")
    ws = Workspace.for_title(loaded.title)
    project = ws.project()
    if not project or not project.get("project_id"):
        fail(f"no project recorded in {ws.root}; run `smo launch --spec SPEC --data FILE --gold GOLD` first")
    with http_client(*connection_settings()) as http:
        batch = qualification_batch(ws, http, int(project["project_id"]), loaded.qualification)
    typer.echo(f"qualification batch: {len(batch)} gold tasks served first (task ids {', '.join(map(str, batch))})")
