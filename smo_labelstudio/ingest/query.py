"""A batch's rows from a SQL query against PostgreSQL (the team's warehouse), as another source beside files:
the same `Row`s go through the same validation, quarantine, de-duplication and plan as a file's.

- Streamed: a server-side cursor, fetched `Query.chunk` rows at a time; never the whole result in memory.
- Read only: both passes (the digest, then the rows) run in one `REPEATABLE READ READ ONLY` transaction, so
  they see the same snapshot and a query that tries to write (a function that inserts, `nextval`) is refused
  by PostgreSQL; `DECLARE ... CURSOR` takes one `SELECT`/`VALUES` (no second statement, no `COMMIT`, no
  data-modifying `WITH`). Every statement runs under a `statement_timeout` set again before each fetch, and a
  pass stops once `Query.timeout` seconds are spent, so a slow or endless query cannot hang the launch.
- The digest is of the rows as the pipeline sees them, in any order (a sum of per-row hashes), with the
  column names: the same rows give the same digest, so a re-run of the same query resumes the same plan.
- The connection's password never reaches a message, the manifest or a log: the database is shown as
  `postgresql://user@host:port/db`, and PostgreSQL's messages are scrubbed of it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from smo_labelstudio.core.errors import ConfigError, ServiceError
from smo_labelstudio.core.postgres import PgUrl
from smo_labelstudio.core.settings import get_settings, secret
from smo_labelstudio.ingest.sources import Row, SourceError

QUERY_CHUNK = 5000  # rows per FETCH: what the reader holds at most
CURSOR = "smo_source"
_DECLARED = f'DECLARE "{CURSOR}" CURSOR FOR '  # what psycopg puts before the query (for error positions)
_MOD = 1 << 256
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode  # built once: json.dumps builds one per call
_canonical = json.JSONEncoder(ensure_ascii=False, default=str, sort_keys=True).encode


class QueryError(SourceError):
    """The query cannot give rows as asked (bad SQL, a write, a timeout, a column named twice): PostgreSQL's
    reason in one line."""


class SourceDatabaseUnreachable(ServiceError):
    """The source database does not answer or refuses the connection."""


@dataclass(frozen=True)
class Query:
    """A SQL query and the PostgreSQL it runs on (`url` may hold a password: it is never shown)."""

    text: str
    url: str = field(repr=False)
    timeout: float = 300.0
    chunk: int = QUERY_CHUNK

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ConfigError("--query is empty: give a SELECT whose columns the spec's `columns:` map")
        try:
            PgUrl.parse(self.url)
            urlsplit(self.url).port  # noqa: B018 - a port that is no number raises here
        except ValueError:
            raise ConfigError(
                f"the source database URL {database_name(self.url)!r} is not postgresql://user@host:port/dbname"
            ) from None

    @property
    def database(self) -> str:
        """The database without its password: for messages, the manifest and logs."""
        return database_name(self.url)

    @property
    def name(self) -> str:
        """How the quarantine and plan name this source (the `file` column): `query` and the text's hash."""
        return f"query {hashlib.sha256(self.text.encode()).hexdigest()[:12]}"


def check_query(query: Query) -> list[str]:
    """The query's columns, or one line on why it cannot run (bad SQL, no such table, the database unreachable),
    without reading a row: what `smo launch --query` checks before a flow run starts."""
    with open_query(query) as source:
        return source.columns()


def launch_query(text: str, url: str | None = None) -> Query:
    """The query a launch runs: on `url`, else `SMO_SOURCE_URL`, under `SMO_SOURCE_TIMEOUT`."""
    settings = get_settings()
    url = url or secret(settings.source_url)
    if not url:
        raise ConfigError(
            "a query needs the database it runs on: --source-url postgresql://user@host:port/db or SMO_SOURCE_URL"
        )
    return Query(text, url, timeout=settings.source_timeout)


def database_name(url: str) -> str:
    """`postgresql://user@host:port/db` of a URL: no password, no options."""
    try:
        return PgUrl.parse(url).display()
    except ValueError:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


@contextmanager
def open_query(query: Query) -> Iterator[QuerySource]:
    """A connection to the query's database in a read-only, repeatable-read transaction (rolled back and
    closed on leaving); one line naming the database when it cannot connect."""
    try:
        conn = psycopg.connect(query.url, connect_timeout=10, application_name="smo-launch")
    except psycopg.Error as exc:
        raise SourceDatabaseUnreachable(
            f"cannot connect to the source database {query.database}: {_scrub(_first_line(exc), query.url)}"
        ) from None
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        yield QuerySource(conn, query)
    finally:
        try:
            conn.rollback()
        except psycopg.Error:  # a broken connection: closing is all there is left to do
            pass
        conn.close()


class QuerySource:
    """One query's rows: `digest()` (the first pass), then iterate once (the second), in one snapshot; the
    counts kept while reading, like a file's `Source`."""

    def __init__(self, conn: psycopg.Connection, query: Query) -> None:
        self.conn = conn
        self.query = query
        self.name = query.name
        self.records = 0  # rows read by the second pass
        self.header: list[str] = []
        self.sha256: str | None = None
        self._digest_rows: int | None = None

    def describe(self) -> dict:
        """What a launch manifest records of this source: the query, its database (never the password), the
        result's digest."""
        return {"kind": "query", "query": self.query.text, "database": self.query.database, "digest": self.sha256}

    def digest(self) -> str:
        """SHA-256 of the result (its column names and its rows, in any order), by a first pass over it."""
        total, count = 0, 0
        for fields, _problem in self._stream():
            total = (total + int.from_bytes(hashlib.sha256(canonical(fields)).digest(), "big")) % _MOD
            count += 1
        self._digest_rows = count
        self.sha256 = result_digest(self.header, count, total)
        return self.sha256

    def __iter__(self) -> Iterator[Row]:
        for fields, problem in self._stream():
            self.records += 1
            raw = _encode(fields)[:500]
            yield Row(self.records, None if problem else fields, problem, raw, self.records)

    def accounted(self) -> bool:
        """Whether the rows read are as many as the digest's pass counted (an independent count)."""
        return self._digest_rows is not None and self.records == self._digest_rows

    def columns(self) -> list[str]:
        """The result's column names, from declaring the query without fetching a row: PostgreSQL parses and
        plans it, so bad SQL is found at once."""
        for _ in self._stream(fetch=False):
            pass
        return self.header

    def _stream(self, fetch: bool = True) -> Iterator[tuple[dict, str | None]]:
        """The rows as plain fields (and why one cannot be used), fetched in chunks under the time limit."""
        deadline = time.monotonic() + self.query.timeout
        try:
            with self.conn.cursor(name=CURSOR) as cur:
                self._limit(deadline)
                cur.execute(self.query.text)
                self.header = _header([d.name for d in cur.description or []], self.query)
                if not fetch:
                    return
                for values in fetch_chunks(cur.fetchmany, self.query.chunk, lambda: self._limit(deadline)):
                    yield plain_row(self.header, values)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _limit(self, deadline: float) -> None:
        """PostgreSQL's statement_timeout for the next statement: what is left of the pass's time."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise QueryError(self._timeout_message("stopped"))
        self.conn.execute("select set_config('statement_timeout', %s, true)", (f"{max(1, int(left * 1000))}ms",))

    def _timeout_message(self, how: str) -> str:
        return (
            f"the query ran over SMO_SOURCE_TIMEOUT={self.query.timeout:g} s ({how}); make it faster (a WHERE "
            f"on an indexed column, fewer rows) or raise the setting"
        )

    def _error(self, exc: psycopg.Error) -> Exception:
        """One line for what PostgreSQL said: a timeout, a write refused, bad SQL, a lost connection."""
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return QueryError(self._timeout_message("PostgreSQL canceled it"))
        message = _scrub(exc.diag.message_primary or _first_line(exc), self.query.url)
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return QueryError(f"the query must only read, and PostgreSQL refused it: {message}")
        if exc.sqlstate is None or isinstance(exc, psycopg.OperationalError):  # the connection broke
            return SourceDatabaseUnreachable(f"the source database {self.query.database} failed: {message}")
        where = ""
        position = exc.diag.statement_position
        if position and position.isdigit() and int(position) > len(_DECLARED):
            where = f" (at character {int(position) - len(_DECLARED)} of the query)"
        return QueryError(f"the query failed in PostgreSQL: {message}{where} [SQLSTATE {exc.sqlstate}]")


def fetch_chunks(
    fetch: Callable[[int], Sequence[Any]], size: int, before: Callable[[], None] = lambda: None
) -> Iterator[Any]:
    """The rows of `fetch(size)` calls until one gives none, one chunk held at a time: the next is fetched
    (after `before()`) only once the last row of this one is taken."""
    while True:
        before()
        chunk = fetch(size)
        if not chunk:
            return
        yield from chunk


def plain_row(header: list[str], values: Sequence[Any]) -> tuple[dict, str | None]:
    """A result row as fields a file's row would have (text, numbers, booleans, None), and why it cannot be
    used (bytes that are not UTF-8 text), or None."""
    fields: dict[str, Any] = {}
    problem = None
    for name, value in zip(header, values):
        kind = type(value)
        if kind is str or kind is int or value is None:  # most cells: as they are
            fields[name] = value
            continue
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = problem or f"undecodable text (column {name!r} is not UTF-8 at byte {exc.start})"
                value = bytes(value).hex()
        fields[name] = _plain(value)
    return fields, problem


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if value != value else value  # NaN is no value, as in a Parquet file
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)  # numeric, uuid, inet, intervals, ranges: as PostgreSQL's text


def canonical(fields: dict) -> bytes:
    """One row's bytes for the digest: its fields by column name (the select list's order does not count)."""
    return _canonical(fields).encode()


def result_digest(header: Sequence[str], rows: int, row_hash_sum: int) -> str:
    """The result's digest from its columns, its row count and the sum (mod 2^256) of its rows' SHA-256: the
    same multiset of rows gives the same digest in any order, and a row more, less or changed another."""
    return hashlib.sha256(f"{json.dumps(sorted(header))}\n{rows}\n{row_hash_sum:064x}".encode()).hexdigest()


def _header(names: list[str], query: Query) -> list[str]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise QueryError(
            f"the query's result names {', '.join(map(repr, repeated))} more than once; "
            f"give each column its own name (AS ...)"
        )
    return names


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _scrub(message: str, url: str) -> str:
    """The message without the URL's password (libpq does not echo it; this makes sure)."""
    parts = urlsplit(url)
    try:
        hidden = [unquote(parts.password or ""), *parse_qs(parts.query).get("password", [])]
    except ValueError:
        hidden = []
    for word in filter(None, hidden):
        message = message.replace(word, "***")
    return message
