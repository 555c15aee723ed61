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


def _r(expr: str, places: int = 4) -> str:
    """Round a float expression the same way on both engines."""
    return f"round(cast({expr} as numeric(18,6)), {places})"


def _wilson(k: str, n: str, bound: str) -> str:
    """Wilson 95% interval bound of k successes in n trials (n already NULL when zero)."""
    sign = "-" if bound == "low" else "+"
    p = f"(cast({k} as float8) / {n})"
    return _r(
        f"({p} + 1.9208 / {n} {sign} 1.96 * sqrt({p} * (1 - {p}) / {n} + 0.9604 / ({n} * {n}))) / (1 + 3.8416 / {n})"
    )


def _answer_lead_time(q: str) -> str:
    """The q-quantile of the lead times of answers (skipped annotations left out)."""
    return f"percentile_cont({q}) within group (order by case when was_cancelled then null else lead_time end)"


# Stable views for the questions a project manager asks every day. Every view has `language`, with
# '(all)' for every language together.
VIEWS: dict[str, str] = {
    "v_progress_daily": f"""
        with daily as (
            select project, coalesce(language, '(all)') as language, day, count(*) as answers
            from annotations where not was_cancelled
            group by grouping sets ((project, language, day), (project, day))
        ), targets as (
            select project, coalesce(language, '(all)') as language,
                   cast(sum(target_answers) as bigint) as target_answers
            from tasks group by grouping sets ((project, language), (project))
        ), running as (
            select project, language, day, answers,
                   cast(sum(answers) over (partition by project, language order by day
                                           rows between unbounded preceding and current row) as bigint)
                       as cumulative_answers,
                   avg(cast(answers as float8)) over (partition by project, language order by day
                                                      rows between 6 preceding and current row) as rate
            from daily
        )
        select r.project, r.language, r.day, r.answers, r.cumulative_answers, t.target_answers,
               greatest(t.target_answers - r.cumulative_answers, 0) as remaining_answers,
               {_r("r.rate", 2)} as answers_per_day_7d,
               cast(ceil(greatest(t.target_answers - r.cumulative_answers, 0) / nullif(r.rate, 0)) as integer)
                   as eta_days,
               r.day + cast(ceil(greatest(t.target_answers - r.cumulative_answers, 0) / nullif(r.rate, 0))
                            as integer) as eta_date
        from running r join targets t on t.project = r.project and t.language = r.language""",
    "v_eta": """
        select project, language, day as as_of, cumulative_answers, target_answers, remaining_answers,
               answers_per_day_7d, eta_days, eta_date
        from (select *, row_number() over (partition by project, language order by day desc) as latest
              from v_progress_daily) p
        where latest = 1""",
    "v_annotator_quality_daily": f"""
        with base as (
            select project, annotator, day, coalesce(language, '(all)') as language,
                   cast(sum(answers) as bigint) as answers, cast(sum(gold_n) as bigint) as gold_n,
                   cast(sum(gold_correct) as bigint) as gold_correct,
                   cast(sum(consensus_n) as bigint) as consensus_n,
                   cast(sum(consensus_agree) as bigint) as consensus_agree
            from annotator_daily
            group by grouping sets ((project, annotator, day, language), (project, annotator, day))
        ), n as (
            select *, cast(nullif(gold_n, 0) as float8) as g, cast(nullif(consensus_n, 0) as float8) as c from base
        )
        select project, annotator, day, language, answers, gold_n, gold_correct,
               {_r("gold_correct / g")} as gold_accuracy,
               {_wilson("gold_correct", "g", "low")} as gold_ci_low,
               {_wilson("gold_correct", "g", "high")} as gold_ci_high,
               consensus_n, {_r("consensus_agree / c")} as consensus_agreement
        from n""",
    "v_agreement_trend": f"""
        with per_policy as (
            select project, day, language, policy, n_pairs, agreeing_pairs from agreement_task_label
            where n_annotators >= 2
            union all
            select project, day, language, '(policy set)' as policy, n_pairs, agreeing_pairs from agreement_task
            where n_annotators >= 2
        )
        select project, day, coalesce(language, '(all)') as language, policy, count(*) as tasks,
               cast(sum(n_pairs) as bigint) as pairs, cast(sum(agreeing_pairs) as bigint) as agreeing_pairs,
               {_r("cast(sum(agreeing_pairs) as float8) / nullif(sum(n_pairs), 0)")} as pair_agreement
        from per_policy
        group by grouping sets ((project, day, language, policy), (project, day, policy))""",
    "v_throughput": f"""
        select project, annotator, day, coalesce(language, '(all)') as language,
               count(*) filter (where not was_cancelled) as answers,
               count(*) filter (where was_cancelled) as skipped,
               {_r("sum(case when was_cancelled then 0 else coalesce(lead_time, 0) end) / 3600.0")}
                   as labeling_hours,
               {
        _r(
            "count(*) filter (where not was_cancelled) * 3600.0 / nullif(sum(case when was_cancelled "
            "then 0 else coalesce(lead_time, 0) end), 0)",
            2,
        )
    } as answers_per_labeling_hour,
               {_r(_answer_lead_time("0.5"), 2)} as median_lead_time_s,
               {_r(_answer_lead_time("0.9"), 2)} as p90_lead_time_s
        from annotations
        group by grouping sets ((project, annotator, day, language), (project, annotator, day))""",
    "v_task_lead_times": f"""
        select project, external_id, language, is_gold, state, answers, target_answers,
               cast(first_answer_at as date) as first_day,
               {_r("extract(epoch from (last_answer_at - first_answer_at)) / 3600.0", 3)} as hours_first_to_last
        from tasks where first_answer_at is not null""",
    "v_preannotation_acceptance": f"""
        select project, day, coalesce(language, '(all)') as language, prediction_model_version as model_version,
               count(*) as answers,
               count(*) filter (where not was_cancelled and changed_prediction = false) as accepted,
               count(*) filter (where not was_cancelled and changed_prediction = true) as changed,
               count(*) filter (where was_cancelled) as skipped,
               {
        _r(
            "cast(count(*) filter (where not was_cancelled and changed_prediction = false) as float8) "
            "/ nullif(count(*), 0)"
        )
    } as acceptance_rate
        from annotations where prediction_model_version is not null
        group by grouping sets ((project, day, language, prediction_model_version),
                                (project, day, prediction_model_version))""",
}


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


def _pg_connect(url: str, read_only: bool = False):
    pg = PgUrl.parse(url)
    try:
        conn = psycopg.connect(pg.conninfo(), connect_timeout=10)
    except psycopg.Error as exc:
        message = " ".join(str(exc).split()).replace(pg.password, "***") if pg.password else " ".join(str(exc).split())
        raise WarehouseError(f"cannot connect to {redact(url)}: {message[:300]}") from None
    conn.read_only = read_only
    return conn


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


def query(where: Target, sql_text: str) -> tuple[list[str], list[tuple]]:
    """Run one read-only query; (column names, rows). A bad query is a WarehouseError with the
    engine's one-line message."""
    if where.pg_url:  # the postgres engine
        with _pg_connect(where.pg_url, read_only=True) as conn:
            conn.execute(sql.SQL("set search_path to {}, public").format(sql.Identifier(where.schema)))
            conn.execute("set time zone 'UTC'")
            try:
                cur = conn.execute(sql_text)
            except psycopg.Error as exc:
                raise WarehouseError(" ".join(str(exc).split())[:500]) from None
            if cur.description is None:
                return [], []
            return [d.name for d in cur.description], cur.fetchall()
    path = where.duckdb_file()
    if not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}: run a flow (`smo pull`) or `smo warehouse sync --spec SPEC` first"
        )
    for attempt in range(20):  # a flow publishing holds the file for a moment
        try:
            conn = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.IOException as exc:
            if attempt == 19:
                raise WarehouseError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None
    try:
        conn.execute("set TimeZone = 'UTC'")
        try:
            cur = conn.execute(sql_text)
        except duckdb.Error as exc:
            raise WarehouseError(" ".join(str(exc).split())[:500]) from None
        if cur.description is None:
            return [], []
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        conn.close()
