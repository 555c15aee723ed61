"""Reading source files (CSV, JSONL, Parquet) record by record, streaming and strict: a record that
cannot be parsed cleanly comes back with its physical lines and why, and the records around it are
still read; nothing is swallowed into another record or dropped without a count.

Records, as each format defines them:

- CSV (RFC 4180): the first non-blank line is the header; a record is one line, or several when a
  quoted field holds line breaks. A quote is trusted to span lines only if the field closes, the
  record then parses cleanly with the header's field count, and no line inside the field reads on
  its own as a record of the header's width (a header of two or more columns): otherwise the quote
  is a runaway, its opening line alone is quarantined and reading resumes at the next line. A
  quote never closed before the end of the file is a runaway too.
- JSONL: one record per line, each a JSON object.
- Parquet: one record per row.

Blank lines (nothing but whitespace outside a quoted field) are not records in CSV or JSONL: they
are counted apart (`Source.blank_lines`), so every physical line is the header, blank, or part of
exactly one record, which `Source.accounted` checks against an independent count of the file's lines.
Memory stays constant in the file size: files are read a line at a time and one record is held at
most `MAX_RECORD_BYTES` long (a longer record is quarantined, not read into memory).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from smo_labelstudio.core.errors import InputError

FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
MAX_RECORD_BYTES = 4 << 20  # one record (all its lines) held in memory at most; longer is quarantined
CHUNK = 1 << 20  # bytes per read when hashing or counting lines
PARQUET_BATCH = 8192


class SourceError(InputError):
    """The file as a whole cannot be read (missing, unknown format, not a table)."""


class Row(NamedTuple):
    """One source record: its first physical line (CSV, JSONL) or 1-based row (Parquet), and either its
    fields or why it was refused; `last` is its last physical line when it spans several."""

    number: int
    fields: dict | None
    problem: str | None = None
    raw: str = ""
    last: int = 0

    @property
    def lines(self) -> str:
        """The record's physical lines, `7` or `7-9`."""
        return str(self.number) if self.last <= self.number else f"{self.number}-{self.last}"


def read_rows(path: Path) -> Source:
    """The records of a CSV, JSONL or Parquet file, read lazily as they are iterated (once); undecodable
    and malformed records come back with a problem. Whole-file problems raise `SourceError` here."""
    return Source(Path(path))


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in chunks (constant memory in the file size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def count_lines(path: Path) -> int:
    """Physical lines in a file (a last line without a newline counts), read in chunks: a count that
    does not depend on any parser."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


class Source:
    """One file's records (iterate once) and the counts kept while reading it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        kind = FORMATS.get(path.suffix.lower())
        if kind is None:
            raise SourceError(f"{path}: expected .csv, .jsonl or .parquet, not {path.suffix or 'no extension'}")
        if not path.is_file():
            raise SourceError(f"{path}: no such file")
        self.kind = kind
        self.records = 0  # records delimited (each one yielded, good or refused)
        self.blank_lines = 0
        self.header_lines = 0  # the header and any blank lines before it
        self.spanned = 0  # physical lines inside records
        self.header: list[str] = []
        self.name = str(path)  # how the quarantine and the plan name this source
        self.sha256: str | None = None
        self._parquet: Any = None
        if kind == "parquet":
            import pyarrow.parquet as pq  # noqa: PLC0415 - start-up time: only Parquet sources need it

            try:
                self._parquet = pq.ParquetFile(path)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
                raise SourceError(f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from None
        elif kind == "csv":
            self._parse = _RecordParser()
            with open(path, "rb") as f:
                self._header_end = self._read_header(f)

    def __iter__(self) -> Iterator[Row]:
        if self.kind == "parquet":
            return self._parquet_rows()
        return self._jsonl_rows() if self.kind == "jsonl" else self._csv_rows()

    def digest(self) -> str:
        """The file's SHA-256 (part of a launch plan's key), kept for `describe`."""
        self.sha256 = file_digest(self.path)
        return self.sha256

    def describe(self) -> dict:
        """What a launch manifest records of this source."""
        return {"kind": "file", "path": str(self.path), "digest": self.sha256}

    def accounted(self) -> bool:
        """Whether every physical line (CSV, JSONL) or row (Parquet) is in exactly one record, blank or the
        header, by a count independent of the parser (the file's newlines; Parquet's row count)."""
        if self.kind == "parquet":
            return self.records == self._parquet.metadata.num_rows
        return self.header_lines + self.blank_lines + self.spanned == count_lines(self.path)

    def _row(self, first: int, last: int, fields: dict | None, problem: str | None, raw: str) -> Row:
        self.records += 1
        self.spanned += last - first + 1
        return Row(first, fields, problem, raw, last)

    # -- JSONL ---------------------------------------------------------------------------------------

    def _jsonl_rows(self) -> Iterator[Row]:
        with open(self.path, "rb") as f:
            number = 0
            while True:
                line, size, long_quotes = _readline(f)
                if not size:
                    return
                number += 1
                if long_quotes is None and not line.strip():
                    self.blank_lines += 1
                    continue
                if long_quotes is not None:
                    yield self._row(number, number, None, f"line over {MAX_RECORD_BYTES:,} bytes", _preview(line))
                    continue
                fields, problem, raw = _json_object(line)
                yield self._row(number, number, fields, problem, raw)

    # -- CSV -----------------------------------------------------------------------------------------

    def _read_header(self, f: IO[bytes]) -> int:
        """Read the header (the first non-blank line); the byte offset after it."""
        offset = 0
        while True:
            line, size, long_quotes = _readline(f)
            if not size:
                raise SourceError(f"{self.path}: empty file (no header row)")
            line = line.removeprefix(b"\xef\xbb\xbf") if not offset else line
            offset += size
            self.header_lines += 1
            if long_quotes is not None or line.strip():
                break
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise SourceError(f"{self.path}: the header row is not UTF-8 text") from None
        if long_quotes is not None or text.count('"') % 2:
            raise SourceError(f"{self.path}: the header row has an unclosed quote or is over {MAX_RECORD_BYTES:,} B")
        try:
            header = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            raise SourceError(f"{self.path}: the header row is not valid CSV ({exc})") from None
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise SourceError(f"{self.path}: the header names {', '.join(map(repr, repeated))} more than once")
        self.header = header
        return offset

    def _csv_rows(self) -> Iterator[Row]:
        width = len(self.header)
        with open(self.path, "rb") as f:
            f.seek(self._header_end)
            number = self.header_lines  # the last physical line read
            while True:
                line, size, long_quotes = _readline(f)
                if not size:
                    return
                number += 1
                quotes = line.count(b'"') if long_quotes is None else long_quotes
                if quotes % 2 == 0:
                    if long_quotes is not None:
                        yield self._row(number, number, None, f"line over {MAX_RECORD_BYTES:,} bytes", _preview(line))
                    elif not line.strip():
                        self.blank_lines += 1
                    else:
                        yield self._row(number, number, *self._csv_record(line)[:3])
                    continue
                # A quote opens a field that runs onto the next lines: find where it closes, or why it never does.
                resume = f.tell()
                parts: list[bytes] | None = [line] if long_quotes is None else None
                held, last, runaway = size, number, None
                while True:
                    more, more_size, more_long = _readline(f)
                    if not more_size:
                        runaway = "is never closed (the file ends inside the quoted field)"
                        break
                    last += 1
                    held += more_size
                    if parts is not None and (more_long is not None or held > MAX_RECORD_BYTES):
                        parts = None
                    elif parts is not None:
                        parts.append(more)
                    if (more.count(b'"') if more_long is None else more_long) % 2:
                        break  # the field closes on this line
                    if width > 1 and more_long is None and _reads_as_record(more, width):
                        runaway = f"runs over line {last}, which reads as a record of its own"
                        break
                if runaway is None and parts is None:
                    yield self._row(number, last, None, f"record over {MAX_RECORD_BYTES:,} bytes", _preview(line))
                    number = last
                    continue
                if runaway is None and parts is not None:
                    fields, problem, raw, structural = self._csv_record(b"".join(parts))
                    if not structural:
                        yield self._row(number, last, fields, problem, raw)
                        number = last
                        continue
                    runaway = f"does not close cleanly across lines {number}-{last} ({problem})"
                yield self._row(number, number, None, f"quote opened on line {number} {runaway}", _preview(line))
                f.seek(resume)  # read on from the next line: what the runaway quote swallowed is read as records

    def _csv_record(self, data: bytes) -> tuple[dict | None, str | None, str, bool]:
        """(fields, problem, raw, whether the problem is where the record ends rather than its content) of
        one CSV record's bytes."""
        if b"\x00" in data:
            return None, "NUL byte in the record", _preview(data), False
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"undecodable text (not UTF-8 at byte {exc.start} of the record)", _preview(data), False
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        if '"' not in text:
            if "\r" in text:
                return None, "carriage return inside an unquoted field", text, True
            values = text.split(",")
        else:
            try:
                values = self._parse(text)
            except csv.Error as exc:
                if "field limit" in str(exc):  # content, not structure: the record's extent is known
                    limit = csv.field_size_limit()
                    return None, f"a field over {limit:,} characters (the CSV reader's limit)", _cut(text), False
                return None, f"malformed CSV quoting ({exc})", text, True
            except StopIteration:  # pragma: no cover - a non-blank line gives one record
                values = []
        if len(values) != len(self.header):
            return None, f"{len(values)} fields where the header has {len(self.header)}", text, True
        return {h: (v if v != "" else None) for h, v in zip(self.header, values)}, None, text, False

    # -- Parquet -------------------------------------------------------------------------------------

    def _parquet_rows(self) -> Iterator[Row]:
        pf = self._parquet
        columns = [c for c in pf.schema_arrow.names if not c.startswith("__index_level_")]
        number = 0
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=columns):
            try:
                records = batch.to_pylist()
            except Exception:  # noqa: BLE001 - a value pyarrow cannot convert: find its row below
                records = None
            for i in range(batch.num_rows):
                number += 1
                if records is not None:
                    yield self._row(number, number, _plain(records[i]), None, "")
                    continue
                try:
                    yield self._row(number, number, _plain(batch.slice(i, 1).to_pylist()[0]), None, "")
                except Exception as exc:  # noqa: BLE001
                    yield self._row(number, number, None, f"unreadable Parquet row ({exc.__class__.__name__})", "")


class _RecordParser:
    """Parses one CSV record's text at a time through a single strict `csv.reader` fed by this object: a
    reader per record cost four times the parse itself (1.9 against 0.5 us), a tenth of reading a file.
    The reader starts each record afresh (also after an error), and sees its input end after each text,
    so an unclosed quote is the same "unexpected end of data" error a one-line reader raises."""

    def __init__(self) -> None:
        self._text: str | None = None
        self._reader = csv.reader(self, strict=True)

    def __iter__(self) -> _RecordParser:
        return self

    def __next__(self) -> str:
        text, self._text = self._text, None
        if text is None:
            raise StopIteration
        return text

    def __call__(self, text: str) -> list[str]:
        """The record's fields; `csv.Error` as `csv.reader` raises it, StopIteration for no record."""
        self._text = text
        try:
            return next(self._reader)
        finally:
            self._text = None


def _readline(f: IO[bytes]) -> tuple[bytes, int, int | None]:
    """(line, its size in bytes, None) or, for a line over `MAX_RECORD_BYTES`, (its start, its size, its
    quote count): a longer line is read through to its end in chunks, never held whole."""
    line = f.readline(MAX_RECORD_BYTES)
    if len(line) < MAX_RECORD_BYTES or line.endswith(b"\n"):
        return line, len(line), None
    size, quotes = len(line), line.count(b'"')
    while True:
        chunk = f.readline(CHUNK)
        size += len(chunk)
        quotes += chunk.count(b'"')
        if not chunk or chunk.endswith(b"\n"):
            break
    return line[:1000], size, quotes


def _reads_as_record(line: bytes, width: int) -> bool:
    """Whether a line inside a quoted field would parse on its own as a record of the header's width."""
    if not line.strip():
        return False
    if b'"' not in line:
        return line.count(b",") == width - 1
    try:
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        return len(next(csv.reader([text], strict=True))) == width
    except (csv.Error, StopIteration):
        return False


def _json_object(line: bytes) -> tuple[dict | None, str | None, str]:
    """(fields, problem, raw) of one JSONL line."""
    if b"\x00" in line:
        return None, "NUL byte in the line", _preview(line)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"undecodable text (not UTF-8 at byte {exc.start})", _preview(line)
    text = text.rstrip("\r\n")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON line ({exc.msg} at column {exc.colno})", text
    except RecursionError:
        return None, "malformed JSON line (nested too deeply to read)", text
    except ValueError as exc:  # NaN/Infinity, integers too long to convert
        return None, f"malformed JSON line ({str(exc)[:120]})", text
    if not isinstance(value, dict):
        return None, f"JSON line is a {type(value).__name__}, not an object", text
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, "undecodable text (a \\u escape of half a surrogate pair, which is no character)", text
        except RecursionError:
            return None, "malformed JSON line (nested too deeply to read)", text
    return value, None, text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _plain(rec: dict) -> dict:
    """Parquet values as plain Python (NaN becomes None, like a null)."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}


def _cut(text: str) -> str:
    return text[:500]


def _preview(raw: bytes) -> str:
    return raw[:500].decode("utf-8", errors="replace").replace("\x00", "\\x00")
