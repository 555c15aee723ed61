"""`smo notify setup` and `smo notify test`: the notification block and the Prefect automations that send a failed
gate, a paused annotator, a deadline at risk, a wellness cap or a failed flow run to the team (errors:
smo_labelstudio.cli._errors). A webhook URL is a secret: it is given as `-` (read from stdin) or as the flag's
value, kept in the block, and never printed."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from smo_labelstudio.cli._errors import fail, reported

app = typer.Typer(no_args_is_help=True, help="Notifications: Prefect automations and the block they send through.")


def _secret_url(value: str) -> str:
    """The URL given, or read from stdin for `-` (so it stays off the command line)."""
    return sys.stdin.readline().strip() if value == "-" else value


def _configured_block(block: Optional[str]) -> Optional[str]:
    from smo_labelstudio.core.settings import get_settings  # noqa: PLC0415

    return block or get_settings().notify_block


@app.command("setup")
@reported
def setup(
    slack: Optional[str] = typer.Option(
        None, "--slack", metavar="URL", help="A Slack incoming webhook URL (`-`: read it from stdin)."
    ),
    webhook: Optional[str] = typer.Option(
        None,
        "--webhook",
        metavar="URL",
        help='A generic webhook URL, sent {"subject", "text"} as JSON (`-`: read it from stdin).',
    ),
    block: Optional[str] = typer.Option(
        None,
        "--block",
        metavar="TYPE/NAME",
        help="An existing notification block (e.g. `sendgrid-email/pm` made in the Prefect UI); default "
        "SMO_NOTIFY_BLOCK.",
    ),
    name: str = typer.Option(
        "smo-notify", "--name", metavar="NAME", help="Name of the block `--slack`/`--webhook` save (overwritten)."
    ),
) -> None:
    """Save the notification block and create or update the automations (idempotent: run it again after a
    change)."""
    from smo_labelstudio.notify import automations as na  # noqa: PLC0415 - start-up time: Prefect

    given = [flag for flag, value in (("--slack", slack), ("--webhook", webhook), ("--block", block)) if value]
    if len(given) > 1:
        fail(f"give one of --slack, --webhook, --block (got {', '.join(given)})")
    if slack or webhook:
        kind: na.Kind = "slack" if slack else "webhook"
        ref = na.save_block(na.make_block(kind, _secret_url(slack or webhook or "")), name)
        typer.echo(f"block {ref} saved (the URL is kept as the block's secret)")
    else:
        configured = _configured_block(block)
        if not configured:
            fail(
                "no notification block: give --slack URL, --webhook URL or --block TYPE/NAME (or set SMO_NOTIFY_BLOCK)"
            )
        ref = na.find_block(configured)
    ui = na.prefect_ui_url()
    for automation, what in na.ensure_automations(ref, ui).items():
        typer.echo(f"automation {automation!r} {what} -> {ref}")
    if not ui:
        typer.echo("note: PREFECT_UI_URL is unknown: messages carry no links to flow runs")


@app.command("test")
@reported
def test(
    block: Optional[str] = typer.Option(
        None,
        "--block",
        metavar="TYPE/NAME",
        help="Send through this block (default SMO_NOTIFY_BLOCK, else the block the automations use).",
    ),
) -> None:
    """Send one test notification through the block, now."""
    from smo_labelstudio.notify import automations as na  # noqa: PLC0415 - start-up time: Prefect

    configured = _configured_block(block)
    ref = na.find_block(configured) if configured else na.current_block()
    if ref is None:
        fail("no notification block yet: run `smo notify setup --slack URL` (or --webhook URL, --block TYPE/NAME)")
    na.send_test(ref, na.prefect_ui_url())
    typer.echo(f"test notification sent through {ref}")
