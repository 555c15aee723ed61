"""Publishing a project's tables (`warehouse_tables`) to SQL, and querying them.

Two stores, the same tables and views on both:

- **embedded** (default): a DuckDB file in the project's workspace, `<workspace>/warehouse.duckdb`;
  every flow publishes to it when it ends.
- **PostgreSQL**: a schema (`smo` unless told otherwise) in the database of a
  `postgresql://user[:password]@host:port/dbname` URL, for BI tools to connect to. Every table has a
  `project` column (the workspace name), so the projects of a team share one schema; a flow publishes
  there too when `SMO_WAREHOUSE_URL` is set, and `smo warehouse sync` does it by hand.

Publishing replaces the project's rows of every table inside one transaction (readers see the old
rows or the new ones, never half), so publishing the same workspace twice changes nothing. The
views are written in the SQL DuckDB and PostgreSQL share (casts to `float8` before dividing, rounding
through `numeric(18,6)`, no time-zone arithmetic: dates are columns), so a query gives the same answer
on both. Passwords in URLs never reach a message (`postgres.redact`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
from psycopg import sql

from smo_labelstudio.core.errors import ServiceError
from smo_labelstudio.core.postgres import PgUrl, redact
from smo_labelstudio.core.settings import get_settings, secret
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.warehouse.schema import SCHEMA
from smo_labelstudio.warehouse.tables import build_tables

URL_ENV = "SMO_WAREHOUSE_URL"
SCHEMA_ENV = "SMO_WAREHOUSE_SCHEMA"
DEFAULT_SCHEMA = "smo"
SQL_TYPES = {
    "duckdb": {
        "text": "VARCHAR",
        "bigint": "BIGINT",
        "double": "DOUBLE",
        "boolean": "BOOLEAN",
        "date": "DATE",
        "timestamptz": "TIMESTAMPTZ",
    },
    "postgres": {
        "text": "text",
        "bigint": "bigint",
        "double": "double precision",
        "boolean": "boolean",
        "date": "date",
        "timestamptz": "timestamptz",
    },
}


class WarehouseError(ServiceError, ValueError):
    """The store cannot be reached or used as asked; the message says why (never with a password)."""


# Stable views for the questions a project manager asks every day, one .sql file each in views/ (in the
# order they are created: a view may read the ones before it). Every view has `language`, with '(all)' for
# every language together. The Wilson bounds in v_annotator_quality_daily are written out in SQL (z = 1.96).
VIEW_ORDER = (
    "v_progress_daily",
    "v_eta",
    "v_annotator_quality_daily",
    "v_agreement_trend",
    "v_throughput",
    "v_task_lead_times",
    "v_preannotation_acceptance",
)
VIEWS_DIR = Path(__file__).with_name("views")


def _view_sql(name: str) -> str:
    """A view's query, without its leading comment lines."""
    lines = (VIEWS_DIR / f"{name}.sql").read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith("--")).strip()


VIEWS: dict[str, str] = {name: _view_sql(name) for name in VIEW_ORDER}


@dataclass(frozen=True)
class Target:
    """Where to publish or query: the embedded DuckDB file or a PostgreSQL URL and schema."""

    duckdb_path: Path | None = None
    pg_url: str | None = None
    schema: str = DEFAULT_SCHEMA

    @property
    def engine(self) -> str:
        return "postgres" if self.pg_url else "duckdb"

    def display(self) -> str:
        if self.pg_url:
            return f"{redact(self.pg_url)} (schema {self.schema})"
        return str(self.duckdb_path)

    def duckdb_file(self) -> Path:
        """The DuckDB file of an embedded target (`target()` always gives one without a URL)."""
        if self.duckdb_path is None:
            raise WarehouseError("no DuckDB file and no PostgreSQL URL")
        return self.duckdb_path


def embedded_path(ws: Workspace) -> Path:
    return ws.root / "warehouse.duckdb"


def target(ws: Workspace | None, url: str | None = None, schema: str | None = None) -> Target:
    """The embedded store of `ws`, or the PostgreSQL schema of `url`."""
    schema = schema or get_settings().warehouse_schema
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise WarehouseError(f"schema {schema!r}: expected lower-case letters, digits and underscores")
    if url:
        try:
            PgUrl.parse(url)
        except ValueError as exc:
            raise WarehouseError(str(exc)) from None
        return Target(pg_url=url, schema=schema)
    if ws is None:
        raise WarehouseError("no workspace and no PostgreSQL URL")
    return Target(duckdb_path=embedded_path(ws), schema=schema)


# --- publishing ---------------------------------------------------------------------------------


def _create(table: str, engine: str) -> str:
    cols = ", ".join(f'"{c}" {SQL_TYPES[engine][t]}' for c, t in SCHEMA[table])
    return f'create table if not exists "{table}" ({cols})'


def _create_views(conn) -> None:
    for name, body in VIEWS.items():
        conn.execute(f'create view "{name}" as {body}')


def _python_rows(frame: pd.DataFrame, table: str) -> list[tuple]:
    cols = []
    for column, kind in SCHEMA[table]:
        s = frame[column]
        if kind == "timestamptz":
            cols.append([None if pd.isna(v) else v.to_pydatetime() for v in s])
        elif kind == "date":
            cols.append([None if pd.isna(v) else v.date() for v in s])
        elif kind == "bigint":
            cols.append([None if pd.isna(v) else int(v) for v in s])
        elif kind == "double":
            cols.append([None if pd.isna(v) else float(v) for v in s])
        elif kind == "boolean":
            cols.append([None if pd.isna(v) else bool(v) for v in s])
        else:
            cols.append([None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v) for v in s])
    return list(zip(*cols))


def _publish_duckdb(path: Path, project: str, tables: dict[str, pd.DataFrame], wait: float = 60.0) -> None:
    """One writer at a time: another process holding the file (or a conflicting transaction) is waited
    for, up to `wait` seconds, before giving up with a WarehouseError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline, delay = time.monotonic() + wait, 0.2
    while True:
        try:
            return _publish_duckdb_once(path, project, tables)
        except (duckdb.IOException, duckdb.TransactionException) as exc:
            if time.monotonic() + delay > deadline:
                raise WarehouseError(f"cannot write {path}: {str(exc).splitlines()[0]}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _publish_duckdb_once(path: Path, project: str, tables: dict[str, pd.DataFrame]) -> None:
    conn = duckdb.connect(str(path))
    try:
        conn.execute("begin transaction")
        for name in reversed(list(VIEWS)):
            conn.execute(f'drop view if exists "{name}"')
        for table, frame in tables.items():
            existing = [
                r[0]
                for r in conn.execute(
                    "select column_name from information_schema.columns where table_schema = 'main' and table_name = ? "
                    "order by ordinal_position",
                    [table],
                ).fetchall()
            ]
            if existing and existing != [c for c, _ in SCHEMA[table]]:
                conn.execute(f'drop table "{table}"')  # an older layout: the embedded store is rebuilt
            conn.execute(_create(table, "duckdb"))
            conn.execute(f'delete from "{table}" where project = ?', [project])
            if len(frame):
                conn.register("_frame", frame)
                casts = ", ".join(f'cast("{c}" as {SQL_TYPES["duckdb"][t]})' for c, t in SCHEMA[table])
                conn.execute(f'insert into "{table}" select {casts} from _frame')
                conn.unregister("_frame")
        _create_views(conn)
        conn.execute("commit")
    except BaseException:
        try:
            conn.execute("rollback")
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    finally:
        conn.close()


def _pg_connect(url: str, options: str | None = None) -> psycopg.Connection:
    """A connection (its server options, if any); a failure is one WarehouseError line without the password."""
    pg = PgUrl.parse(url)
    try:
        return psycopg.connect(pg.conninfo(), connect_timeout=10, options=options)
    except psycopg.Error as exc:
        message = " ".join(str(exc).split()).replace(pg.password, "***") if pg.password else " ".join(str(exc).split())
        raise WarehouseError(f"cannot connect to {redact(url)}: {message[:300]}") from None


def _publish_postgres(url: str, schema: str, project: str, tables: dict[str, pd.DataFrame]) -> None:
    with _pg_connect(url) as conn:  # one transaction: committed at the end of the block, rolled back on error
        conn.execute("select pg_advisory_xact_lock(hashtext('smo-warehouse:' || %s))", (schema,))
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("set local search_path to {}").format(sql.Identifier(schema)))
        for name in reversed(list(VIEWS)):
            conn.execute(f'drop view if exists "{name}"')
        for table, frame in tables.items():
            existing = [
                r[0]
                for r in conn.execute(
                    "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
                    "order by ordinal_position",
                    (schema, table),
                ).fetchall()
            ]
            if existing and existing != [c for c, _ in SCHEMA[table]]:
                raise WarehouseError(
                    f"table {schema}.{table} has columns {', '.join(existing)}, not this version's "
                    f"({', '.join(c for c, _ in SCHEMA[table])}); drop it (or use another schema) "
                    f"and publish again"
                )
            conn.execute(_create(table, "postgres"))
            conn.execute(f'delete from "{table}" where project = %s', (project,))
            if len(frame):
                cols = sql.SQL(", ").join(sql.Identifier(c) for c, _ in SCHEMA[table])
                with (
                    conn.cursor() as cur,
                    cur.copy(sql.SQL("copy {} ({}) from stdin").format(sql.Identifier(table), cols)) as copy,
                ):
                    for row in _python_rows(frame, table):
                        copy.write_row(row)
        _create_views(conn)


def publish(ws: Workspace, spec, where: Target | None = None, tables: dict[str, pd.DataFrame] | None = None) -> dict:
    """Publish the workspace's tables and the views; returns {table: rows published} and where."""
    where = where or target(ws)
    tables = tables if tables is not None else build_tables(ws, spec)
    project = ws.root.name
    if where.pg_url:  # the postgres engine
        _publish_postgres(where.pg_url, where.schema, project, tables)
    else:
        _publish_duckdb(where.duckdb_file(), project, tables)
    return {
        "project": project,
        "store": where.display(),
        "engine": where.engine,
        "tables": {name: len(frame) for name, frame in tables.items()},
        "views": list(VIEWS),
    }


def publish_after_flow(ws: Workspace, spec) -> list[dict]:
    """What every flow does last: publish to the embedded store, and to PostgreSQL when
    `SMO_WAREHOUSE_URL` is set. The tables are built once for both."""
    tables = build_tables(ws, spec)
    done = [publish(ws, spec, target(ws), tables)]
    url = secret(get_settings().warehouse_url)
    if url:
        done.append(publish(ws, spec, target(ws, url), tables))
    return done


# --- querying -----------------------------------------------------------------------------------
# `smo sql` runs text from whoever types or pastes it, so the store itself refuses what a query must not do
# (no list of forbidden keywords to keep up to date):
# - DuckDB: the file opened read-only, external access off (no file, URL, ATTACH, COPY or extension), no
#   extension autoloading, no Python replacement scans, and the configuration locked before the query runs
#   so it cannot turn any of that back on.
# - PostgreSQL: a session whose transactions are read-only by default, inside a READ ONLY transaction that
#   has already taken its snapshot (so `SET TRANSACTION READ WRITE` is refused), and the query sent with the
#   extended protocol (a prepared statement: `commit; drop table x` is two statements and is refused). A role
#   that is, or can SET ROLE to, one that reads or writes the server's files or runs programs there (a
#   superuser, pg_read_server_files, pg_write_server_files, pg_execute_server_program) is refused:
#   read-only transactions do not stop `pg_read_file` or `COPY ... TO '/path'`.

DUCKDB_READ_ONLY = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,
}
PG_READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"
PG_SERVER_ACCESS = (  # MEMBER, not USAGE: a role may SET ROLE to what it does not inherit, even mid-statement
    "select exists (select 1 from pg_roles r where r.rolsuper and pg_has_role(current_user, r.oid, 'MEMBER')), "
    "pg_has_role(current_user, 'pg_read_server_files', 'MEMBER'), "
    "pg_has_role(current_user, 'pg_write_server_files', 'MEMBER'), "
    "pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER'), current_user"
)
SERVER_ACCESS_NAMES = (
    "a superuser",
    "a member of pg_read_server_files",
    "a member of pg_write_server_files",
    "a member of pg_execute_server_program",
)


def _one_line(exc: BaseException, limit: int = 500) -> str:
    return " ".join(str(exc).split())[:limit]


def _pg_query(url: str, schema: str, sql_text: str) -> tuple[list[str], list[tuple]]:
    conn = _pg_connect(url, PG_READ_ONLY_OPTIONS)
    try:  # closed without a commit: whatever the statement did is rolled back
        conn.read_only = True  # the transaction psycopg begins is BEGIN READ ONLY
        row = conn.execute(PG_SERVER_ACCESS).fetchone()  # also the transaction's first snapshot
        if row is None or any(row[:4]):
            powers = " and ".join(n for n, has in zip(SERVER_ACCESS_NAMES, row or (True,) * 4) if has)
            raise WarehouseError(
                f"role {row[4] if row else '?'} is or can become {powers}, which reaches the database server's files "
                f"or programs whatever the transaction: query with a role that can only read the warehouse "
                f"(see `smo sql` in the analyst guide)"
            )
        conn.execute(
            "select set_config('search_path', %s, true), set_config('TimeZone', 'UTC', true)", (f"{schema}, public",)
        )
        try:
            cur = conn.execute(sql_text, prepare=True)  # the extended protocol: one statement, no more
        except psycopg.Error as exc:
            raise WarehouseError(_one_line(exc)) from None
        if cur.description is None:
            return [], []
        return [d.name for d in cur.description], cur.fetchall()
    finally:
        conn.close()


def _duckdb_query(path: Path, sql_text: str) -> tuple[list[str], list[tuple]]:
    if not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}: run a flow (`smo pull`) or `smo warehouse sync --spec SPEC` first"
        )
    for attempt in range(20):  # a flow publishing holds the file for a moment
        try:
            conn = duckdb.connect(str(path), read_only=True, config=dict(DUCKDB_READ_ONLY))
            break
        except duckdb.IOException as exc:
            if attempt == 19:
                raise WarehouseError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None
    try:
        conn.execute("set TimeZone = 'UTC'")  # an ICU setting: not accepted by connect()'s config
        conn.execute("set lock_configuration = true")
        try:
            statements = conn.extract_statements(sql_text)
            if len(statements) != 1:
                raise WarehouseError(f"expected one SQL statement, got {len(statements)}")
            cur = conn.execute(statements[0])
        except duckdb.Error as exc:
            raise WarehouseError(_one_line(exc)) from None
        if cur.description is None:
            return [], []
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        conn.close()


def query(where: Target, sql_text: str) -> tuple[list[str], list[tuple]]:
    """Run one read-only statement; (column names, rows). A bad query, or one that would write or reach
    outside the warehouse, is a WarehouseError with the engine's one-line message."""
    if where.pg_url:  # the postgres engine
        return _pg_query(where.pg_url, where.schema, sql_text)
    return _duckdb_query(where.duckdb_file(), sql_text)
