"""`smo configs`: label configs and guidelines generated from taxonomy.yaml: build, check, list."""

from __future__ import annotations

import typer

from smo_labelstudio.cli._errors import fail, reported
from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.labelstudio import configs

app = typer.Typer(no_args_is_help=True, help="Label configs and guidelines generated from taxonomy.yaml.")


@app.command("build")
@reported
def configs_build() -> None:
    """Regenerate label_configs/ and guidelines/ from taxonomy.yaml."""
    changed = configs.build()
    for path in changed:
        typer.echo(f"wrote {path.relative_to(configs.REPO_ROOT)}")
    typer.echo(f"{len(changed)} file(s) changed" if changed else "configs and guidelines are up to date")


@app.command("check")
@reported
def configs_check(
    offline: bool = typer.Option(False, "--offline", help="Skip validation against a running Label Studio."),
) -> None:
    """Check configs, taxonomy and guidelines agree, and that Label Studio accepts every config."""
    validate = None
    if not offline:
        from smo_labelstudio.labelstudio import client  # noqa: PLC0415 - start-up time: the SDK is slow to import

        try:
            url, token = client.connection_settings()
        except ConfigError as exc:
            fail(f"{exc} (or pass --offline)")
        if not client.reachable(url):
            fail(f"Label Studio is not answering at {url}; run `smo stack up` (or pass --offline)")
        validate = lambda xml: client.validate_config(url, token, xml)  # noqa: E731
    problems = configs.check(validate=validate)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        fail(f"{len(problems)} problem(s)")
    typer.echo(
        f"{len(configs.list_configs())} configs, taxonomy and guidelines agree"
        + ("" if offline else "; Label Studio accepts every config")
    )


@app.command("list")
@reported
def configs_list() -> None:
    """List config names (the stems spec files refer to)."""
    typer.echo("\n".join(configs.list_configs()))
