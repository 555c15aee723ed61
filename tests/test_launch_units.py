"""Reading, validating, de-duplicating and sampling source rows, without servers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from smo_labelstudio.core.spec import EXAMPLE_SPEC, Columns, Overlap, load_spec
from smo_labelstudio.ingest.items import MAX_TEXT_CHARS, content_hash, item_id, prepare, stratified_sample
from smo_labelstudio.ingest.launch import LaunchError, overlap_settings
from smo_labelstudio.ingest.sources import SourceError, read_rows
from smo_labelstudio.model.textmodel import MAX_TEXT_CHARS as BACKEND_LIMIT


def _prepare(path, **kw):
    return prepare(read_rows(path), Columns(), needs_text=True, needs_image=False, file=str(path), **kw)


def test_every_kind_of_bad_row_is_quarantined_with_its_reason_and_counts_add_up(tmp_path):
    path = tmp_path / "items.jsonl"
    lines = [
        json.dumps({"id": "ok1", "text": "hello there", "language": "en"}).encode(),
        json.dumps({"id": "empty", "text": "   ", "language": "en"}).encode(),
        json.dumps({"id": "missing", "language": "en"}).encode(),
        json.dumps({"id": "huge", "text": "x" * (MAX_TEXT_CHARS + 1)}).encode(),
        b'{"id": "bad-bytes", "text": "caf\xe9"}',
        b'{"id": "broken", "text": ',
        json.dumps({"id": "lang", "text": "bonjour", "language": "klingon!"}).encode(),
        json.dumps({"id": "twin", "text": "first version"}).encode(),
        json.dumps({"id": "twin", "text": "second version"}).encode(),
        json.dumps({"id": "ok1", "text": "hello there", "language": "en"}).encode(),  # same id, same content
        json.dumps({"id": "ok2", "text": "HELLO   there", "language": "en"}).encode(),  # same content, new id
        json.dumps(["not", "an", "object"]).encode(),
        json.dumps({"id": "ctrl", "text": "bell\x07"}).encode(),
        json.dumps({"id": "ok3", "text": "مرحبا بكم", "language": "ar"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    p = _prepare(path)
    reasons = dict(zip(p.quarantine["row"], p.quarantine["reason"]))
    assert "missing or empty text" in reasons[2] and "missing or empty text" in reasons[3]
    assert "over the limit" in reasons[4]
    assert "not UTF-8" in reasons[5]
    assert "malformed JSON line" in reasons[6]
    assert "unknown language code 'klingon!'" in reasons[7]
    assert "also appears with different content (row 9)" in reasons[8] and "(row 8)" in reasons[9]
    assert "not an object" in reasons[12] and "control characters" in reasons[13]
    assert sorted(p.items["external_id"]) == ["ok1", "ok3"]
    assert dict(zip(p.duplicates["row"], p.duplicates["duplicate_of"])) == {10: "row 1", 11: "row 1"}
    assert p.rows_read == len(p.items) + len(p.duplicates) + len(p.quarantine) == 14


def test_csv_rows_with_bad_bytes_or_wrong_field_counts_do_not_take_the_file_down(tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes(b'id,text,language\nc1,"a, quoted, text",en\nc2,caf\xe9,fr\nc3,too,many,fields\nc4,fine,\n')
    p = _prepare(path)
    assert list(p.items["external_id"]) == ["c1", "c4"] and p.items["text"].iloc[0] == "a, quoted, text"
    assert list(p.quarantine["row"]) == [3, 4]
    assert "not UTF-8" in p.quarantine["reason"].iloc[0] and "4 fields" in p.quarantine["reason"].iloc[1]


def test_parquet_and_rows_the_project_already_holds(tmp_path):
    path = tmp_path / "items.parquet"
    pd.DataFrame(
        {"id": ["p1", "p2", None], "text": ["one", "two", "three"], "language": ["en", None, "pt-BR"]}
    ).to_parquet(path)
    first = _prepare(path)
    assert len(first.items) == 3 and first.items["external_id"].iloc[2].startswith("h:")  # no id: keyed text hash
    known = {first.items["item_id"].iloc[0]: "i-held"}
    again = _prepare(path, known=known)
    assert len(again.items) == 2 and again.duplicates["duplicate_of"].tolist() == ["project item i-held"]


def test_whole_file_problems_are_one_clear_error(tmp_path):
    with pytest.raises(SourceError, match="expected .csv, .jsonl or .parquet"):
        read_rows(tmp_path / "items.xlsx")
    with pytest.raises(SourceError, match="no such file"):
        read_rows(tmp_path / "missing.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        read_rows(tmp_path / "bad.parquet")


def test_ids_are_stable_and_gold_ids_look_like_any_other():
    key = b"k" * 32
    assert item_id("a1", key) == item_id("a1", key) != item_id("a1", key, "gold")
    assert len(item_id("a1", key)) == len(item_id("g1", key, "gold")) and item_id("g1", key, "gold").startswith("i")
    assert content_hash("Hello  World", None) == content_hash("hello world", None)
    assert MAX_TEXT_CHARS == BACKEND_LIMIT


def test_stratified_sample_keeps_each_stratum_and_is_seeded():
    items = pd.DataFrame(
        {"row": range(100), "language": ["en"] * 80 + ["ar"] * 15 + ["he"] * 5, "source": ["web"] * 100}
    )
    sample = stratified_sample(items, 0.2, ["language", "source"], seed=1)
    assert len(sample) == 20 and sample["language"].value_counts().to_dict() == {"en": 16, "ar": 3, "he": 1}
    assert sample.equals(stratified_sample(items, 20, ["language", "source"], seed=1))


def test_overlap_maps_to_label_studio_community_two_tiers():
    spec = load_spec(EXAMPLE_SPEC)
    assert overlap_settings(spec) == (3, 20)
    assert overlap_settings(spec.model_copy(update={"overlap": Overlap(annotators=2, share=0)})) == (2, 100)
    with pytest.raises(LaunchError, match="cannot be expressed"):
        overlap_settings(spec.model_copy(update={"overlap": Overlap(annotators=2, share=0.5, extra_annotators=3)}))


def test_a_file_without_the_mapped_column_is_one_error_not_a_quarantine_of_every_row(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("id,body\n1,hello\n")
    with pytest.raises(SourceError, match="no column 'text' in any row.*the file has: body, id"):
        _prepare(path)


def test_workspace_files_get_the_mode_a_plain_write_would(tmp_path):
    """Atomic writes go through mkstemp (0600); reports and tables must still open for the colleagues
    the umask allows, like any file the user writes."""
    import stat

    from smo_labelstudio.core.workspace import write_json, write_parquet

    write_json(tmp_path / "a.json", {"x": 1})
    write_parquet(tmp_path / "b.parquet", pd.DataFrame({"x": [1]}))
    (tmp_path / "plain").write_text("x")
    plain = stat.S_IMODE((tmp_path / "plain").stat().st_mode)  # 0644 under the usual umask 022
    for name in ("a.json", "b.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == plain, name
