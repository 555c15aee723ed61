"""The source readers, strict and streaming: every record is read, or refused with its lines and a reason,
and `rows_read` is the file's own count of records (property-based tests over files mixing good rows
with every bad kind, and unit tests for each kind)."""

from __future__ import annotations

import csv
import hashlib
import json
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smo_labelstudio.core.spec import Columns
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.ingest import sources
from smo_labelstudio.ingest.items import QUARANTINE_COLUMNS, prepare
from smo_labelstudio.ingest.launch import _append_quarantine, _file_digest
from smo_labelstudio.ingest.sources import SourceError, count_lines, read_rows

KEY = b"k" * 32
HEADER = b"id,text,language\n"


def _prepare(source):
    return prepare(source, Columns(), needs_text=True, needs_image=False, file="f", key=KEY)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read(path: Path) -> tuple[list, sources.Source]:
    source = read_rows(path)
    return list(source), source


# -- CSV ---------------------------------------------------------------------------------------------


def test_an_unbalanced_quote_is_quarantined_alone_and_the_rows_it_would_swallow_are_read(tmp_path):
    """The issue's reproduction: 5 data rows, one unbalanced quote; it was `rows_read: 2`, 3 rows in one text."""
    path = _write(tmp_path, "q.csv", HEADER + b'1,hello,en\n2,"broken quote,en\n3,foo,en\n4,bar,en\n5,"baz",en\n')
    rows, source = _read(path)
    assert source.records == 5 and source.accounted()
    assert [r.lines for r in rows] == ["2", "3", "4", "5", "6"]
    assert rows[1].fields is None and "quote opened on line 3" in rows[1].problem and "line 4" in rows[1].problem
    p = _prepare(read_rows(path))
    assert sorted(p.items["external_id"]) == ["1", "3", "4", "5"] and "\n" not in "".join(p.items["text"])
    assert p.rows_read == 5 and list(p.quarantine["lines"]) == ["3"]


def test_a_quote_never_closed_is_quarantined_and_the_rest_of_the_file_read(tmp_path):
    path = _write(tmp_path, "q.csv", HEADER + b'1,"never closed,en\n\nsecond line of nothing\n2,fine,en\n')
    rows, source = _read(path)
    # line 2's quote runs to line 5, a record of its own: line 2 alone is refused, line 4 is a 1-field record
    assert [(r.lines, r.fields is None) for r in rows] == [("2", True), ("4", True), ("5", False)]
    assert "1 fields where the header has 3" in rows[1].problem
    assert source.blank_lines == 1 and source.accounted()
    eof = _write(tmp_path, "eof.csv", HEADER + b'1,ok,en\n2,"open to the end,en\nmore text\n')
    rows, source = _read(eof)
    assert "never closed (the file ends inside the quoted field)" in rows[1].problem
    assert [r.lines for r in rows] == ["2", "3", "4"] and source.accounted()


def test_a_quoted_field_over_lines_is_one_record_with_its_line_span(tmp_path):
    data = HEADER + b'1,"Dear all,\r\n\r\nsee you ""soon""",en\r\n2,"one, two",en\n'
    rows, source = _read(_write(tmp_path, "m.csv", data))
    assert [r.lines for r in rows] == ["2-4", "5"] and source.records == 2 and source.accounted()
    assert rows[0].fields["text"] == 'Dear all,\r\n\r\nsee you "soon"' and rows[1].fields["text"] == "one, two"


def test_a_multiline_field_holding_whole_records_is_a_runaway_not_one_text(tmp_path):
    """The quote closes at last, but the lines inside read as records: they are records, not text."""
    data = HEADER + b'1,"swallows,en\n2,two,en\n3,"three",en\n4,four" and more,en\n5,five,en\n'
    rows, source = _read(_write(tmp_path, "r.csv", data))
    assert rows[0].lines == "2" and "runs over line 3, which reads as a record of its own" in rows[0].problem
    assert [r.fields["id"] for r in rows[1:3]] == ["2", "3"] and rows[4].fields["id"] == "5"
    assert source.records == 5 and source.accounted()


def test_csv_records_refused_for_their_content_keep_their_neighbours(tmp_path):
    big = b"x" * (csv.field_size_limit() + 10)
    data = (
        HEADER
        + b"1,caf\xe9,fr\n"  # invalid UTF-8
        + b"2,nul\x00byte,en\n"
        + b"3,too,many,fields\n"
        + b'4,"closed"then more,en\n'
        + b'5,"'
        + big
        + b'",en\n'  # over the csv module's field limit (was an abort)
        + b"6,bare\rreturn,en\n"
        + b",,\n"  # a record (all empty), not a blank line
        + b"   \n"  # a blank line: no record
        + b"7,fine,en"  # no newline at the end
    )
    rows, source = _read(_write(tmp_path, "bad.csv", data))
    problems = {r.number: r.problem for r in rows}
    assert "not UTF-8" in problems[2] and "NUL byte" in problems[3] and "4 fields where the header has 3" in problems[4]
    assert "malformed CSV quoting" in problems[5] and "over 131,072 characters" in problems[6]
    assert "carriage return" in problems[7] and problems[8] is None and problems[10] is None
    assert source.records == 8 and source.blank_lines == 1 and source.accounted()
    p = _prepare(read_rows(_write(tmp_path, "bad.csv", data)))
    assert list(p.items["external_id"]) == ["7"] and len(p.quarantine) == 7 and p.rows_read == 8


def test_records_longer_than_the_cap_are_refused_without_being_held(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_RECORD_BYTES", 64)
    long_text = b"y" * 200
    data = HEADER + b"1,ok,en\n2," + long_text + b',en\n3,"multi\n' + long_text + b'\nend",en\n4,ok too,en\n'
    rows, source = _read(_write(tmp_path, "long.csv", data))
    assert [(r.lines, r.problem) for r in rows] == [
        ("2", None),
        ("3", "line over 64 bytes"),
        ("4-6", "record over 64 bytes"),
        ("7", None),
    ]
    assert source.accounted()


def test_reading_streams_in_constant_memory(tmp_path, monkeypatch):
    """Reading, hashing and counting a 5 MB file hold well under a tenth of it (a line and a chunk at a time)."""
    monkeypatch.setattr(sources, "CHUNK", 1 << 16)
    row = b'r%d,"' + b"some words to label, " * 18 + b'",en\n'
    path = tmp_path / "big.csv"
    with open(path, "wb") as f:
        f.write(HEADER)
        for i in range(12_000):
            f.write(row % i)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        source = read_rows(path)
        records = sum(1 for _ in source)
        digest = _file_digest(path)
        accounted = source.accounted()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert records == 12_000 and accounted and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert size > 4_500_000 and peak < size / 10, (size, peak)


def test_whole_file_problems_are_one_line_each(tmp_path):
    with pytest.raises(SourceError, match="empty file"):
        read_rows(_write(tmp_path, "e.csv", b"\n  \n"))
    with pytest.raises(SourceError, match="names 'text' more than once"):
        read_rows(_write(tmp_path, "d.csv", b"id,text,text\n1,a,b\n"))
    with pytest.raises(SourceError, match="unclosed quote"):
        read_rows(_write(tmp_path, "h.csv", b'id,"text\n'))
    bom = _write(tmp_path, "bom.csv", b"\xef\xbb\xbfid,text,language\n1,hi,en\n")
    assert list(read_rows(bom))[0].fields == {"id": "1", "text": "hi", "language": "en"}


def test_line_counts_and_digests_read_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK", 7)
    for data, lines in ((b"", 0), (b"a", 1), (b"a\n", 1), (b"a\nb", 2), (b"\n\n\n", 3), (b"x" * 20 + b"\n" * 3, 3)):
        path = _write(tmp_path, "c.csv", data)
        assert count_lines(path) == lines and _file_digest(path) == hashlib.sha256(data).hexdigest()
    assert _file_digest(None) == "-"


# -- JSONL -------------------------------------------------------------------------------------------


def test_jsonl_lines_refused_with_reasons_including_deep_nesting(tmp_path):
    lines = [
        b'{"id": "1", "text": "ok"}',
        b"[" * 200_000 + b"]" * 200_000,  # RecursionError in json: was an abort
        b'{"id": "2", "text": "' + b"[" * 100 + b'"}',
        b'{"id": "3", "text": NaN}',
        b'{"id": "4", "text": "half \\ud800 a pair"}',
        b'{"id": "5", "text": "nul\x00"}',
        b'{"id": "6", "text": "caf\xe9"}',
        b'"just a string"',
        b"",
        b"  \r",
        b'{"id": "7", "text": "pair \\ud83d\\ude00 ok"}\r',
        b'{"id": "8", "text": ',
    ]
    rows, source = _read(_write(tmp_path, "x.jsonl", b"\n".join(lines) + b"\n"))
    problems = {r.number: r.problem for r in rows}
    assert problems[1] is None and problems[3] is None and problems[11] is None
    assert "nested too deeply" in problems[2] and "NaN is not JSON" in problems[4]
    assert "half a surrogate pair" in problems[5] and "NUL byte" in problems[6] and "not UTF-8" in problems[7]
    assert "str, not an object" in problems[8] and "malformed JSON line" in problems[12]
    assert source.records == 10 and source.blank_lines == 2 and source.accounted()
    assert rows[-2].fields["text"] == "pair \U0001f600 ok"


# -- Parquet -----------------------------------------------------------------------------------------


def test_parquet_rows_stream_in_batches_and_are_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "PARQUET_BATCH", 3)
    frame = pd.DataFrame({"id": [f"p{i}" for i in range(10)], "text": ["t"] * 9 + [None], "score": [0.5] * 9 + [None]})
    frame.index = frame.index + 100  # a stored index is no column
    frame.to_parquet(tmp_path / "p.parquet")
    rows, source = _read(tmp_path / "p.parquet")
    assert [r.number for r in rows] == list(range(1, 11)) and source.records == 10 and source.accounted()
    assert set(rows[0].fields) == {"id", "text", "score"} and rows[-1].fields == {
        "id": "p9",
        "text": None,
        "score": None,
    }


# -- Property-based: files mixing good rows and every bad kind --------------------------------------


@dataclass
class Piece:
    """One record (or a blank line) as written, and what must become of it."""

    data: bytes
    kind: str  # "good", "duplicate", "blank" or a bad kind
    id: str = ""

    @property
    def lines(self) -> int:
        return self.data.count(b"\n")


WORDS = st.text(alphabet="abcdefghij ", min_size=1, max_size=12).map(lambda s: "w" + s)
CSV_BAD = {
    "utf8": lambda n: b"b%d,caf\xe9 %d,en\n" % (n, n),
    "nul": lambda n: b"b%d,nul\x00 %d,en\n" % (n, n),
    "fields": lambda n: b"b%d,x %d,en,extra\n" % (n, n),
    "strict": lambda n: b'b%d,"abc"x %d,en\n' % (n, n),
    "runaway": lambda n: b'b%d,"open %d,en\n' % (n, n),
    "cr": lambda n: b"b%d,bare\rcr %d,en\n" % (n, n),
    "huge": lambda n: b'b%d,"%s",en\n' % (n, b"z" * 131_100),
    "empty": lambda n: b",,\n",
}


@st.composite
def csv_pieces(draw) -> list[Piece]:
    pieces: list[Piece] = []
    good: list[Piece] = []
    for n in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["good", "good", "good", "duplicate", "blank", *CSV_BAD]))
        if kind == "duplicate" and good:
            pieces.append(Piece(draw(st.sampled_from(good)).data, "duplicate"))
        elif kind == "blank":
            pieces.append(Piece(draw(st.sampled_from([b"\n", b"  \n", b"\t\r\n"])), "blank"))
        elif kind in CSV_BAD:
            pieces.append(Piece(CSV_BAD[kind](n), kind))
        else:
            # a text of a first part (commas and quotes allowed), middle lines (words only) and a last part
            first = draw(st.text(alphabet='abc ,"', max_size=10))
            middle = draw(st.lists(WORDS, max_size=2)) if draw(st.booleans()) else None
            text = "t" + first + (("\n" + "\n".join(middle) + "\nlast") if middle is not None else "") + f" #{n}"
            quoted = '"' + text.replace('"', '""') + '"'
            cell = quoted if any(c in text for c in ',"\n') or draw(st.booleans()) else text
            newline = draw(st.sampled_from(["\n", "\r\n"]))
            piece = Piece(f"g{n},{cell},en{newline}".encode(), "good", f"g{n}")
            pieces.append(piece)
            good.append(piece)
    return pieces


JSON_BAD = {
    "utf8": lambda n: b'{"id": "b%d", "text": "caf\xe9"}\n' % n,
    "nul": lambda n: b'{"id": "b%d", "text": "\x00"}\n' % n,
    "truncated": lambda n: b'{"id": "b%d", "text": \n' % n,
    "array": lambda n: b'["b%d"]\n' % n,
    "number": lambda n: b"%d\n" % n,
    "nan": lambda n: b'{"id": "b%d", "text": NaN}\n' % n,
    "deep": lambda n: b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "surrogate": lambda n: b'{"id": "b%d", "text": "\\udc00"}\n' % n,
    "empty_text": lambda n: b'{"id": "b%d", "text": "  "}\n' % n,
}


@st.composite
def jsonl_pieces(draw) -> list[Piece]:
    pieces: list[Piece] = []
    good: list[Piece] = []
    for n in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["good", "good", "good", "duplicate", "blank", *JSON_BAD]))
        if kind == "duplicate" and good:
            pieces.append(Piece(draw(st.sampled_from(good)).data, "duplicate"))
        elif kind == "blank":
            pieces.append(Piece(draw(st.sampled_from([b"\n", b" \n", b"\r\n"])), "blank"))
        elif kind in JSON_BAD:
            pieces.append(Piece(JSON_BAD[kind](n), kind))
        else:
            chars = st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="#\ufffd\uff03\ufe5f")
            text = "t" + draw(st.text(chars, max_size=20)) + f" #{n}"  # '#' only here: no two texts the same
            line = json.dumps({"id": f"g{n}", "text": text, "language": "en"}, ensure_ascii=draw(st.booleans()))
            piece = Piece(line.encode() + draw(st.sampled_from([b"\n", b"\r\n"])), "good", f"g{n}")
            pieces.append(piece)
            good.append(piece)
    return pieces


def _check_accounted(path: Path, pieces: list[Piece], first_line: int) -> None:
    """imported + duplicates + quarantined = records = an independent count; no good row lost or doubled;
    every bad record refused at its own line."""
    records = [p for p in pieces if p.kind != "blank"]
    starts, line = [], first_line
    for p in pieces:
        starts.append(line)
        line += p.lines
    source = read_rows(path)
    prepared = _prepare(source)
    assert source.records == len(records) == prepared.rows_read
    assert len(prepared.items) + len(prepared.duplicates) + len(prepared.quarantine) == len(records)
    assert source.accounted() and source.blank_lines == len(pieces) - len(records)
    wanted = sorted(p.id for p in pieces if p.kind == "good")
    assert sorted(prepared.items["external_id"]) == wanted
    assert len(prepared.duplicates) == sum(p.kind == "duplicate" for p in pieces)
    bad_lines = [str(s) for p, s in zip(pieces, starts) if p.kind not in ("good", "duplicate", "blank")]
    assert sorted(prepared.quarantine["lines"], key=int) == bad_lines
    good_spans = {
        p.id: str(s) if p.lines == 1 else f"{s}-{s + p.lines - 1}" for p, s in zip(pieces, starts) if p.kind == "good"
    }
    read: dict[str, str] = {}
    for r in read_rows(path):
        if r.fields and r.fields.get("id") in good_spans:
            read.setdefault(r.fields["id"], r.lines)  # a duplicate repeats the id further on
    assert read == good_spans


PROPERTY = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(pieces=csv_pieces())
def test_csv_files_mixing_good_and_bad_records_account_for_every_record(tmp_path_factory, pieces):
    path = tmp_path_factory.mktemp("csv") / "mixed.csv"
    path.write_bytes(HEADER + b"".join(p.data for p in pieces))
    _check_accounted(path, pieces, first_line=2)


@PROPERTY
@given(pieces=jsonl_pieces())
def test_jsonl_files_mixing_good_and_bad_records_account_for_every_record(tmp_path_factory, pieces):
    path = tmp_path_factory.mktemp("jsonl") / "mixed.jsonl"
    path.write_bytes(b"".join(p.data for p in pieces))
    _check_accounted(path, pieces, first_line=1)


def _one_reader_per_record(text: str) -> tuple:
    try:
        return ("fields", next(csv.reader([text], strict=True)))
    except csv.Error as exc:
        return ("error", str(exc))
    except StopIteration:
        return ("none",)


@PROPERTY
@given(texts=st.lists(st.text(alphabet='ab,"\n\r ', max_size=12), min_size=1, max_size=20))
def test_the_shared_record_parser_reads_every_record_as_a_reader_of_its_own_would(texts):
    """One `csv.reader` for a whole file (fed a record at a time) gives each record the fields or the error
    a fresh reader gives it, whatever came before: errors and unclosed quotes leave nothing behind."""
    parse = sources._RecordParser()

    def shared(text: str) -> tuple:
        try:
            return ("fields", parse(text))
        except csv.Error as exc:
            return ("error", str(exc))
        except StopIteration:
            return ("none",)

    assert [shared(t) for t in texts] == [_one_reader_per_record(t) for t in texts]


def test_a_quarantine_file_from_before_the_lines_column_is_rewritten_once_aligned(tmp_path):
    ws = Workspace(tmp_path)
    ws.quarantine.write_text("file,row,external_id,reason,raw,run\nold.csv,4,x1,NUL byte in the record,x,p1\n")
    new = pd.DataFrame([["new.csv", 7, "7-9", None, "quote opened on line 7 ...", "y"]], columns=QUARANTINE_COLUMNS)
    _append_quarantine(ws, new, "p2")
    _append_quarantine(ws, new, "p3")  # now aligned: appended
    with open(ws.quarantine, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*QUARANTINE_COLUMNS, "run"]
    assert [(r["file"], r["row"], r["lines"], r["run"]) for r in rows] == [
        ("old.csv", "4", "", "p1"),
        ("new.csv", "7", "7-9", "p2"),
        ("new.csv", "7", "7-9", "p3"),
    ]
