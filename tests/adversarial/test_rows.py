"""Every row accounted for, through the real `smo launch` and Label Studio (issue 16): a hostile CSV and a
hostile JSONL go in; the counts add up (checked against record counts made here, apart from the reader),
every refused record is in quarantine.csv with its lines and reason, and each good row is in Label Studio
exactly once, none swallowed into another's text."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
from smo_cli import smo, stack_env

REPO = Path(__file__).resolve().parents[2]
GOOD_CSV = [
    "first good row",
    "third row, after the runaway quote",
    "fourth row",
    'fifth row with "escaped" quotes',
    "a text over\ntwo lines",
    "last row, after the long field",
]
CSV_LINES = [
    b"id,text,language",  # 1: the header
    b"c1,first good row,en",  # 2
    b'c2,"the quote that never closes,en',  # 3: a runaway quote: it used to swallow lines 4-6 into c2's text
    b'c3,"third row, after the runaway quote",en',  # 4
    b"c4,fourth row,en",  # 5
    b'c5,"fifth row with ""escaped"" quotes",en',  # 6
    b'c6,"a text over',  # 7: one record over lines 7-8
    b'two lines",en',  # 8
    b"",  # 9: blank, no record
    b"c7,too,many,fields",  # 10
    b"c8,caf\xe9,fr",  # 11
    b"c9x,nul\x00,en",  # 12
    b'c10,"' + b"x" * 140_000 + b'",en',  # 13: over the csv module's field limit (it used to abort the launch)
    b'c9,"last row, after the long field",en',  # 14
    b'c11,"opens at the end,en',  # 15: never closed
]
BAD_CSV = {  # the record's lines: what its reason says
    "3": "quote opened on line 3 runs over line 4",
    "10": "4 fields where the header has 3",
    "11": "not UTF-8",
    "12": "NUL byte",
    "13": "over 131,072 characters",
    "15": "quote opened on line 15 is never closed",
}
GOOD_JSONL = ["json row one", "json row three", "json row six"]
JSONL_LINES = [
    json.dumps({"id": "j1", "text": GOOD_JSONL[0], "language": "en"}).encode(),  # 1
    b"[" * 100_000 + b"]" * 100_000,  # 2: RecursionError in json (it used to abort the launch)
    json.dumps({"id": "j3", "text": GOOD_JSONL[1], "language": "en"}).encode(),  # 3
    b'["j4", "an array"]',  # 4
    b'{"id": "j5", "text": NaN}',  # 5
    b"   ",  # 6: blank, no record
    b'{"id": "j7", "text": "caf\xe9"}',  # 7
    json.dumps({"id": "j6", "text": GOOD_JSONL[2], "language": "en"}).encode(),  # 8
    b'{"id": "j9", "text": ',  # 9
]
BAD_JSONL = {
    "2": "nested too deeply",
    "4": "list, not an object",
    "5": "NaN is not JSON",
    "7": "not UTF-8",
    "9": "malformed JSON line",
}


def _launch(env: dict, spec: Path, data: Path) -> dict:
    result = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _refused(manifest: dict, data: Path) -> dict[str, str]:
    with open(manifest["quarantine_file"], encoding="utf-8", newline="") as f:
        return {r["lines"]: r["reason"] for r in csv.DictReader(f) if r["file"] == str(data)}


def test_hostile_csv_and_jsonl_every_row_accounted_for_through_smo_launch(
    label_studio, ml_backend, prefect_api, tmp_path, unique
):
    spec = tmp_path / "spec.yaml"
    text = (REPO / "specs" / "example.yaml").read_text()
    spec.write_text(text.replace("title: Text moderation - example batch", f"title: rows {unique}"))
    env = stack_env(label_studio, ml_backend, tmp_path / "home")

    data = tmp_path / "hostile.csv"
    data.write_bytes(b"\n".join(CSV_LINES) + b"\n")
    records = len(CSV_LINES) - 3  # counted here: less the header, the blank line and line 8 (inside c6's record)
    assert records == len(GOOD_CSV) + len(BAD_CSV)
    m = _launch(env, spec, data)
    assert m["rows_read"] == records and m["counts_add_up"] and m["lines_accounted"], m
    assert (m["imported"], m["duplicates"], m["quarantined"]) == (len(GOOD_CSV), 0, len(BAD_CSV)), m
    refused = _refused(m, data)
    assert set(refused) == set(BAD_CSV), refused
    assert all(reason in refused[lines] for lines, reason in BAD_CSV.items()), refused

    jsonl = tmp_path / "hostile.jsonl"
    jsonl.write_bytes(b"\n".join(JSONL_LINES) + b"\n")
    m2 = _launch(env, spec, jsonl)
    assert m2["project_id"] == m["project_id"]
    assert m2["rows_read"] == len(JSONL_LINES) - 1 and m2["counts_add_up"] and m2["lines_accounted"], m2
    assert (m2["imported"], m2["duplicates"], m2["quarantined"]) == (len(GOOD_JSONL), 0, len(BAD_JSONL)), m2
    refused = _refused(m2, jsonl)
    assert set(refused) == set(BAD_JSONL), refused
    assert all(reason in refused[lines] for lines, reason in BAD_JSONL.items()), refused

    tasks = httpx.get(
        f"{label_studio.url}/api/projects/{m['project_id']}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
        headers=label_studio.headers,
        timeout=300,
    ).json()
    texts = sorted(t["data"]["text"] for t in tasks)
    assert texts == sorted(GOOD_CSV + GOOD_JSONL)  # each good row exactly once, nothing swallowed, nothing else
