"""`smo sql` and `smo warehouse sync`: analysts' SQL over a project's tables (embedded DuckDB by
default, PostgreSQL with --url). Mistakes end in one line on stderr: exit 1 (a store or query
problem) or 2 (a bad option); see smo_labelstudio.cli._errors."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Optional

import typer

from smo_labelstudio.cli._errors import fail, reported
from smo_labelstudio.core.csvcells import safe_cell
from smo_labelstudio.core.spec import Spec, load_spec

warehouse_app = typer.Typer(no_args_is_help=True, help="Publish the project's tables to SQL (DuckDB, PostgreSQL).")
FORMATS = ("table", "csv", "json")


def _workspace(spec: Path) -> tuple[Spec, Any]:
    """The spec and its project's workspace."""
    from smo_labelstudio.core.workspace import Workspace  # noqa: PLC0415 - start-up time: pandas

    loaded = load_spec(spec)
    return loaded, Workspace.for_title(loaded.title)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """Control characters as escapes (`\\x1b`, `\\n`): a cell cannot move the cursor, recolour or retitle the
    terminal, nor break the table's lines."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def render(columns: list[str], rows: list[tuple], fmt: str) -> str:
    """Rows as an aligned text table, CSV, or a JSON list of row objects."""
    from smo_labelstudio.core.jsonenc import jsonable  # noqa: PLC0415 - start-up time: numpy

    values = [[jsonable(v) for v in row] for row in rows]
    if fmt == "json":  # raw values: JSON is for programs
        return json.dumps([dict(zip(columns, row)) for row in values], ensure_ascii=False, allow_nan=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else safe_cell(v) for v in row] for row in values])  # no formulas
        return buf.getvalue().rstrip("\n")
    columns = [_printable(c) for c in columns]
    cells = [
        ["" if v is None else str(v).lower() if isinstance(v, bool) else _printable(str(v)) for v in row]
        for row in values
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [
        bool(values)
        and all(r[i] is None or (isinstance(r[i], (int, float)) and not isinstance(r[i], bool)) for r in values)
        for i in range(len(columns))
    ]
    fmt_row = lambda row: " | ".join(
        c.rjust(w) if n else c.ljust(w)  # noqa: E731
        for c, w, n in zip(row, widths, numeric)
    ).rstrip()
    lines = [fmt_row(columns), "-+-".join("-" * w for w in widths)] + [fmt_row(r) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


@reported
def sql(
    query: str = typer.Argument(
        ..., metavar="QUERY", help="One SQL statement, run read-only (no writes, no files, no settings)."
    ),
    spec: Optional[Path] = typer.Option(
        None, "--spec", metavar="SPEC", help="The project spec: its workspace's embedded store (warehouse.duckdb)."
    ),
    fmt: str = typer.Option("table", "--format", metavar="table|csv|json", help="Output format."),
    url: Optional[str] = typer.Option(
        None,
        "--url",
        metavar="URL",
        help="Query PostgreSQL instead: postgresql://user[:password]@host:port/dbname "
        "(without --url and --spec: SMO_WAREHOUSE_URL).",
    ),
    schema: Optional[str] = typer.Option(
        None, "--schema", help="PostgreSQL schema (default smo, or SMO_WAREHOUSE_SCHEMA)."
    ),
) -> None:
    """Run a query against the project's tables and views."""
    from smo_labelstudio.core.settings import get_settings, secret  # noqa: PLC0415 - start-up time: pydantic
    from smo_labelstudio.warehouse.publish import query as run_query  # noqa: PLC0415 - start-up time: duckdb
    from smo_labelstudio.warehouse.publish import target  # noqa: PLC0415 - start-up time: duckdb

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}", 2)
    if spec is None and not url:  # the environment keeps the password off the command line
        url = secret(get_settings().warehouse_url)
    if spec is None and not url:
        fail("give --spec SPEC (the project's embedded store), or --url URL or SMO_WAREHOUSE_URL (PostgreSQL)", 2)
    ws = _workspace(spec)[1] if spec is not None else None
    columns, rows = run_query(target(ws, url, schema), query)
    typer.echo(render(columns, rows, fmt))


@warehouse_app.command("sync")
@reported
def sync(
    spec: Path = typer.Option(..., "--spec", metavar="SPEC", help="The project spec (its title names the workspace)."),
    url: Optional[str] = typer.Option(
        None,
        "--url",
        metavar="URL",
        envvar="SMO_WAREHOUSE_URL",
        help="PostgreSQL URL; without it the embedded store is refreshed.",
    ),
    schema: Optional[str] = typer.Option(
        None, "--schema", help="PostgreSQL schema (default smo, or SMO_WAREHOUSE_SCHEMA)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Publish the project's tables and views (its rows replaced in one transaction: nothing duplicated)."""
    from smo_labelstudio.warehouse.publish import publish, target  # noqa: PLC0415 - start-up time: duckdb

    loaded, ws = _workspace(spec)
    if not ws.runs.exists():
        fail(f"no launch in {ws.root}: run `smo launch --spec SPEC --data FILE` first")
    summary = publish(ws, loaded, target(ws, url, schema))
    if as_json:
        typer.echo(json.dumps(summary))
        return
    counts = ", ".join(f"{name} {n:,}" for name, n in summary["tables"].items())
    typer.echo(f"published project {summary['project']} to {summary['store']}: {counts}; {len(summary['views'])} views")
