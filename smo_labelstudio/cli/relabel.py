"""`smo relabel`: after a taxonomy change, send back the tasks whose answers it concerns, and list the gold items
to review (errors: smo_labelstudio.cli._errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from smo_labelstudio.cli._errors import fail, reported
from smo_labelstudio.core.spec import load_spec


@reported
def relabel(
    spec: Path = typer.Option(..., "--spec", metavar="SPEC", help="The project spec (its title names the workspace)."),
    since: Optional[str] = typer.Option(
        None,
        "--since",
        metavar="VERSION",
        help="Only the changelog's changes after this taxonomy version (default: every change newer than the version "
        "each answer was given under).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would go back and which gold items to review; change nothing anywhere."
    ),
    reviewed: Optional[list[str]] = typer.Option(
        None,
        "--reviewed",
        metavar="GOLD_ID",
        help="Record that this gold item (its external id, `gold:...`), listed for review, was reviewed: it is scored "
        "again. Repeatable; nothing else is done.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Send back for labeling, under the taxonomy's current version, the tasks whose counted answers were given under
    an older guideline version than a change touching a policy chosen on them (or one the new wording might add);
    their new answers replace the old in consensus after the next pull. Sets the project's guidelines to the current
    version first. Gold items such a change touches are listed for review and not scored until reviewed. Works on
    the last pull (run `smo pull` first); idempotent."""
    from smo_labelstudio.core.taxonomy import load_taxonomy  # noqa: PLC0415 - start-up time: pandas below
    from smo_labelstudio.core.workspace import Workspace  # noqa: PLC0415 - start-up time: pandas
    from smo_labelstudio.quality import relabel as rl  # noqa: PLC0415 - start-up time: pandas, the SDK

    loaded = load_spec(spec)
    tax = load_taxonomy()
    ws = Workspace.for_title(loaded.title)
    if reviewed:
        if dry_run:
            fail("--reviewed records reviews and has no dry run; leave out --dry-run")
        done = rl.review_gold(ws, [r.strip() for r in reviewed])
        if as_json:
            typer.echo(json.dumps(done))
            return
        for key in done["reviewed"]:
            typer.echo(f"{key}: reviewed; scored again from the next quality pass")
        for key in done["already"]:
            typer.echo(f"{key}: already reviewed; nothing to do")
        return
    if dry_run:
        outcome = rl.RelabelOutcome(rl.workspace_plan(ws, loaded, tax, since), dry_run=True)
    else:
        from smo_labelstudio.labelstudio.client import connection_settings  # noqa: PLC0415 - start-up time: the SDK

        outcome = rl.apply_relabel(ws, loaded, tax, *connection_settings(), since=since)
    summary = outcome.summary()
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print(summary)


def _print(s: dict[str, Any]) -> None:
    """The readable form: counts by policy as a table, then what was sent and the gold items to review."""
    echo = typer.echo
    changes = ", ".join(s["changes"]) or "none"
    echo(f"taxonomy version {s['version']}; changes considered: {changes}")
    rows = s["by_policy"]
    if rows:
        echo(f"{'policy':24} {'tasks':>7} {'old answers':>12} {'sent before':>12} {'gold to review':>15}")
        for r in rows:
            counts = f"{r['tasks']:>7} {r['old_answers']:>12} {r['already_sent']:>12} {r['gold']:>15}"
            echo(f"{r['policy'][:24]:24} {counts}")
    else:
        echo("no task or gold item is touched by a change newer than its answers")
    if s["dry_run"]:
        echo(f"dry run: {s['tasks']} task(s) would go back ({s['old_answers']} old answer(s) to replace); nothing done")
    else:
        if s["guidelines_switched"]:
            echo(f"the project's guidelines are now version {s['version']}")
        echo(
            f"sent back {s['sent']} task(s) ({s['old_answers']} new answer(s) asked for); {s['already_sent']} sent "
            f"before for this version" + (f"; {s['resent']} re-sent after an interrupted run" if s["resent"] else "")
        )
    for note in s["notes"]:
        echo(f"note: {note}")
    gold = s["gold_to_review"]
    if gold:
        shown = ", ".join(g["task"] for g in gold[:10]) + (", ..." if len(gold) > 10 else "")
        echo(
            f"gold to review: {len(gold)} item(s), not scored until reviewed ({shown}); after checking each against "
            "the new guidelines: `smo relabel --spec SPEC --reviewed GOLD_ID`"
        )
