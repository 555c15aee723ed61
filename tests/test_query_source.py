"""Warehouse sources (issue 19): a batch's rows from a SQL query on this machine's PostgreSQL, streamed in chunks,
digested, through the same validation, quarantine and de-duplication as a file; and `smo launch --query` into the
session's real Label Studio (counts add up, a re-run imports nothing new, a bad query is one line, the
connection's password nowhere)."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import httpx
import psycopg
import pytest
from smo_cli import smo
from warehouse_data import PG_SERVER, owned_database

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.params import LaunchParams, parse
from smo_labelstudio.core.spec import Columns, load_spec
from smo_labelstudio.ingest import launch
from smo_labelstudio.ingest.items import prepare
from smo_labelstudio.ingest.query import (
    Query,
    QueryError,
    SourceDatabaseUnreachable,
    fetch_chunks,
    launch_query,
    open_query,
    result_digest,
)
from smo_labelstudio.ingest.sources import SourceError

PG = f"{PG_SERVER}/postgres"
KEY = b"k" * 32


def _digest(sql: str) -> str:
    with open_query(Query(sql, PG)) as source:
        return source.digest()


def _one_line_error(sql: str, **kw) -> str:
    with pytest.raises((QueryError, SourceDatabaseUnreachable)) as caught:
        with open_query(Query(sql, kw.pop("url", PG), **kw)) as source:
            source.digest()
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- chunking ---------------------------------------------------------------------------------------


def test_rows_are_fetched_a_chunk_at_a_time_and_only_when_the_last_one_is_taken():
    data, asked = list(range(10)), []

    def fetch(size: int) -> list[int]:
        asked.append(size)
        start = sum(asked[:-1])
        return data[start : start + size]

    rows = fetch_chunks(fetch, 4)
    assert [next(rows) for _ in range(4)] == [0, 1, 2, 3] and asked == [4]  # no second FETCH yet
    assert next(rows) == 4 and asked == [4, 4]
    assert list(rows) == [5, 6, 7, 8, 9] and asked == [4, 4, 4, 4]  # the last, empty fetch ends it


def test_a_query_is_read_in_chunks_both_passes_with_a_timeout_before_each_fetch():
    """Through PostgreSQL: 10 rows in chunks of 3 is 5 FETCHes per pass (3, 3, 3, 1, then none), each after a
    new statement_timeout, as is the DECLARE; the rows and the digest's count agree."""
    with open_query(Query("select g as id, 'row ' || g as text from generate_series(1, 10) g", PG, chunk=3)) as s:
        statements: list[str] = []
        execute = s.conn.execute

        def spy(query, *args, **kwargs):
            statements.append(str(query))
            return execute(query, *args, **kwargs)

        s.conn.execute = spy  # type: ignore[method-assign]
        s.digest()
        rows = list(s)
    assert [r.fields["text"] for r in rows] == [f"row {i}" for i in range(1, 11)]
    assert [r.number for r in rows] == list(range(1, 11)) and s.records == 10 and s.accounted()
    assert statements == ["select set_config('statement_timeout', %s, true)"] * 12  # (1 + 5) per pass


def test_a_large_result_is_streamed_never_held_whole():
    """12,000 rows (about 4 MB as Python objects) are read holding one chunk of 100 (the digest's pass streams the
    same way: `fetch_chunks`)."""
    sql = "select g as id, repeat('x', 200) || g as text from generate_series(1, 12000) g"
    with open_query(Query(sql, PG, chunk=100)) as source:
        source.digest()
        tracemalloc.start()
        try:
            count = sum(1 for _ in source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert count == 12_000 and source.accounted()
    assert peak < 600_000, f"peak {peak:,} bytes"


# -- the digest -------------------------------------------------------------------------------------


def test_the_digest_is_of_the_rows_in_any_order_and_changes_with_any_row():
    base = _digest("select * from (values (1, 'a'), (2, 'b'), (2, 'b')) v(id, text)")
    assert base == _digest("select * from (values (2, 'b'), (1, 'a'), (2, 'b')) v(id, text)")  # order
    assert base == _digest("select text, id from (values (2, 'b'), (2, 'b'), (1, 'a')) v(id, text)")  # columns
    assert base == _digest("select * from (values (1, 'a'), (2, 'b'), (2, 'b')) v(id, text) order by 1 desc")
    others = [
        "select * from (values (1, 'a'), (2, 'b')) v(id, text)",  # a row less
        "select * from (values (1, 'a'), (1, 'a'), (2, 'b')) v(id, text)",  # another multiset, same rows
        "select * from (values (1, 'a'), (2, 'b'), (2, 'c')) v(id, text)",  # a value changed
        "select * from (values (1, 'a'), (2, 'b'), (2, 'b')) v(id, body)",  # a column renamed
    ]
    assert len({base, *map(_digest, others)}) == 5


def test_result_digest_is_a_sum_of_row_hashes_with_the_columns_and_count():
    assert result_digest(["b", "a"], 2, 5) == result_digest(["a", "b"], 2, 5)
    assert len({result_digest(["a"], 2, 5), result_digest(["a"], 3, 5), result_digest(["a"], 2, 6)}) == 3


# -- rows as a file's -------------------------------------------------------------------------------


def test_query_rows_are_validated_deduplicated_and_quarantined_as_file_rows(tmp_path):
    sql = """select * from (values
        ('r1', 'hello there', 'en'), ('r2', '', 'en'), ('r3', 'HELLO  there', 'en'), ('r4', 'bonjour', 'xx'),
        ('r5', 'control' || chr(7), 'en'), ('r6', 'good row', null)) v(id, text, language)"""
    with open_query(Query(sql, PG)) as source:
        source.digest()
        from_query = prepare(source, Columns(), True, False, file=source.name, key=KEY, header=source.header)
    jsonl = tmp_path / "rows.jsonl"
    with open_query(Query(sql, PG)) as source:
        source.digest()
        jsonl.write_text("".join(json.dumps(r.fields) + "\n" for r in source))
    from smo_labelstudio.ingest.sources import read_rows

    from_file = prepare(read_rows(jsonl), Columns(), True, False, file=str(jsonl), key=KEY)
    for part in ("items", "duplicates"):
        assert getattr(from_query, part).equals(getattr(from_file, part)), part
    assert list(from_query.quarantine["reason"]) == list(from_file.quarantine["reason"])
    assert set(from_query.quarantine["file"]) == {source.name} and source.name.startswith("query ")
    assert list(from_query.items["external_id"]) == ["r1", "r6"] and len(from_query.duplicates) == 1


def test_postgres_types_become_text_as_in_a_file_and_bytes_that_are_not_utf8_are_quarantined():
    sql = """select 1 as id, 'ok'::bytea as text, '{"a": [1]}'::jsonb as extra, 1.50::numeric as n,
        timestamptz '2026-11-30 12:00:00+00' as at, 'NaN'::float8 as f
        union all select 2, '\\xff00'::bytea, null, null, null, null"""
    with open_query(Query(sql, PG)) as source:
        source.digest()
        rows = list(source)
    assert rows[0].fields == {
        "id": 1,
        "text": "ok",
        "extra": '{"a": [1]}',
        "n": "1.50",
        "at": "2026-11-30T12:00:00+00:00",
        "f": None,
    }
    assert rows[1].fields is None and "column 'text' is not UTF-8 at byte 0" in rows[1].problem


def test_a_required_column_missing_is_one_error_like_a_file_even_with_no_rows():
    with open_query(Query("select 1 as id, 'x' as body where false", PG)) as source:
        source.digest()
        with pytest.raises(SourceError, match=r"no column 'text' in any row; map .* \(the query gives: body, id\)"):
            prepare(source, Columns(), True, False, file=source.name, key=KEY, header=source.header)


# -- errors -----------------------------------------------------------------------------------------


def test_bad_sql_names_the_problem_in_one_line():
    assert 'syntax error at or near "selec" (at character 1 of the query)' in _one_line_error("selec 1")
    assert 'relation "no_such_table" does not exist' in _one_line_error("select * from no_such_table")
    assert "more than once" in _one_line_error("select 1 as a, 2 as a")


def test_a_slow_query_stops_at_the_timeout():
    message = _one_line_error("select pg_sleep(30)", timeout=0.5)
    assert "ran over SMO_SOURCE_TIMEOUT=0.5 s" in message


def test_an_unreachable_database_is_one_line_without_the_password():
    message = _one_line_error("select 1", url="postgresql://someone:s3cret-pw@127.0.0.1:9/warehouse")
    assert message.startswith("cannot connect to the source database postgresql://someone@127.0.0.1:9/warehouse")
    assert "s3cret-pw" not in message
    with pytest.raises(ConfigError, match="is not postgresql://") as caught:
        Query("select 1", "postgresql://u:s3cret-pw@host:port/db")
    assert "s3cret-pw" not in str(caught.value)


def test_the_query_needs_a_database_and_a_form_never_takes_a_password(monkeypatch):
    monkeypatch.delenv("SMO_SOURCE_URL", raising=False)
    with pytest.raises(ConfigError, match="SMO_SOURCE_URL"):
        launch_query("select 1")
    monkeypatch.setenv("SMO_SOURCE_URL", PG)
    monkeypatch.setenv("SMO_SOURCE_TIMEOUT", "7")
    assert launch_query("select 1").url == PG and launch_query("select 1").timeout == 7
    assert "s3cret" not in repr(Query("select 1", "postgresql://u:s3cret@h/db"))
    with pytest.raises(ConfigError, match="one of the two"):
        parse(LaunchParams, spec="s.yaml", data="d.csv", query="select 1")
    with pytest.raises(ConfigError, match="one of the two"):
        parse(LaunchParams, spec="s.yaml")
    with pytest.raises(ConfigError, match="Prefect would store") as caught:
        parse(LaunchParams, spec="s.yaml", query="select 1", source_url="postgresql://u:s3cret@h/db")
    assert "s3cret" not in str(caught.value)


# -- smo launch --query into the real Label Studio --------------------------------------------------


def _spec(tmp_path: Path, title: str) -> Path:
    spec = tmp_path / "spec.yaml"
    text = Path("specs/example.yaml").read_text().replace("title: Text moderation - example batch", f"title: {title}")
    spec.write_text(text.replace("gold_rate: 0.05", "gold_rate: 0"))
    return spec


ITEMS = [
    ("q1", "Have a great day everyone", "en"),
    ("q2", "Click here to claim your free prize now", "en"),
    ("q3", "gracias por compartir esta receta", "es"),
    ("q4", "you are worthless and everyone hates you", "en"),
    ("q5", "the match last night was exciting", "en"),
    ("q6", "", "en"),  # quarantined: no text
    ("q7", "HAVE a great  day everyone", "en"),  # a duplicate of q1
    ("q8", "some text", "xx"),  # quarantined: unknown language
]


def test_smo_launch_from_a_query_imports_once_and_says_what_went_wrong_in_one_line(
    on_label_studio, label_studio, prefect_api, tmp_path, unique
):
    spec = _spec(tmp_path, f"Warehouse query {unique}")
    with owned_database(f"smo_src_{unique}") as owner_url:
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute("create table items (id text primary key, body text, lang text)")
            with conn.cursor().copy("copy items from stdin") as copy:
                for row in ITEMS:
                    copy.write_row(row)
        password = f"pw-{unique}-never-shown"
        url = owner_url.replace("_owner@", f"_owner:{password}@")  # trust auth: any password is taken
        sql = "select id, body as text, lang as language from items where id like 'q%'"
        env = dict(os.environ)
        marks = [("set up", time.perf_counter())]
        first = smo(env, "launch", "--spec", str(spec), "--query", sql, "--source-url", url, "--json")
        marks.append(("smo launch --query (a Prefect flow run)", time.perf_counter()))
        assert first.returncode == 0, first.stderr[-3000:]
        m = json.loads(first.stdout)
        assert (m["rows_read"], m["imported"], m["duplicates"], m["quarantined"]) == (8, 5, 1, 2)
        assert m["counts_add_up"] and m["lines_accounted"]
        assert m["source"]["kind"] == "query" and m["source"]["query"] == sql and len(m["source"]["digest"]) == 64
        assert m["source"]["database"] == owner_url  # without the password

        # the same query again, as the flow runs it (in this process: a second Prefect run only costs time)
        plan = launch.plan_launch(load_spec(spec), Query(sql, url), label_studio.url, label_studio.token)
        m2 = launch.finish(plan, launch.import_all(plan, label_studio.url, label_studio.token, None), label_studio.url)
        assert (m2["plan_id"], m2["source"]["digest"]) == (m["plan_id"], m["source"]["digest"])  # the same plan
        assert m2["imported"] == 0 and m2["counts_add_up"]
        marks.append(("the same query again", time.perf_counter()))
        with psycopg.connect(owner_url, autocommit=True) as conn:  # one row more: another plan, one import
            conn.execute("insert into items values ('q9', 'a brand new row', 'en')")
        plan = launch.plan_launch(load_spec(spec), Query(sql, url), label_studio.url, label_studio.token)
        m3 = launch.finish(plan, launch.import_all(plan, label_studio.url, label_studio.token, None), label_studio.url)
        assert m3["plan_id"] != m["plan_id"] and (m3["rows_read"], m3["imported"], m3["already_present"]) == (9, 1, 5)
        assert m3["counts_add_up"]
        marks.append(("one row more", time.perf_counter()))
        tasks = httpx.get(
            f"{label_studio.url}/api/projects/{m['project_id']}/tasks",
            params={"page_size": 100},
            headers=label_studio.headers,
            timeout=60,
        ).json()
        tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
        assert len(tasks) == 6

        bad = smo(env, "launch", "--spec", str(spec), "--query", "selec id from items", "--source-url", url)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert bad.stderr.strip() == (
            'error: the query failed in PostgreSQL: syntax error at or near "selec" (at character 1 of the query) '
            "[SQLSTATE 42601]"
        )
        marks.append(("a bad query (one line, before Prefect)", time.perf_counter()))
        print("where the time goes:", ", ".join(f"{n} {t - p:.1f} s" for (_, p), (n, t) in zip(marks, marks[1:])))
        outputs = first.stdout + first.stderr + bad.stdout + bad.stderr + json.dumps([m2, m3])
        assert password not in outputs
        for path in on_label_studio.rglob("*"):
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path
        runs = httpx.post(f"{prefect_api}/flow_runs/filter", json={"limit": 50}, timeout=30).json()
        assert runs and password not in json.dumps(runs)
