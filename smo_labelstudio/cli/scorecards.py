"""`smo scorecards`: one page per annotator under a pseudonym, holding only their own figures, and the project
manager's index (errors: smo_labelstudio.cli._errors)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from smo_labelstudio.cli._errors import reported
from smo_labelstudio.core.spec import load_spec


@reported
def scorecards(
    spec: Path = typer.Option(..., "--spec", metavar="SPEC", help="The project spec (its title names the workspace)."),
    as_json: bool = typer.Option(False, "--json", help="Print where the pages are as one JSON object."),
) -> None:
    """Annotator scorecards: gold accuracy over time, differences from consensus, missed gold items."""
    from smo_labelstudio.reports.links import scorecard_links  # noqa: PLC0415 - start-up time
    from smo_labelstudio.reports.scorecards import write_scorecards  # noqa: PLC0415 - start-up time: matplotlib

    files = write_scorecards(load_spec(spec))
    links = scorecard_links(files.pages)  # each opens that annotator's page only (the stack's reports service)
    if as_json:
        pages = {name: str(path) for name, path in sorted(files.pages.items())}
        typer.echo(
            json.dumps({"index": str(files.index), "pages": pages, "summary": str(files.summary), "links": links})
        )
        return
    typer.echo(f"{len(files.pages)} scorecard page(s) in {files.index.parent / 'pages'} (share each annotator theirs)")
    for name, link in sorted(links.items()):
        typer.echo(f"  {name}: {link}")
    typer.echo(f"index for the project manager (pseudonym -> e-mail): {files.index}")
