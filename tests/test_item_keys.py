"""Keyed item ids and the key files behind them (issue 16): nobody without the deployment's key can
recompute a task's `item_id` or a text-hash external id, gold and work ids have one construction, and
rows an older launch imported under the old unkeyed ids are still recognised."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor

from smo_labelstudio.core.keys import item_key, keyed_hex, secret_key
from smo_labelstudio.core.spec import Columns
from smo_labelstudio.ingest.items import content_hash, item_id, legacy_item_id, prepare
from smo_labelstudio.ingest.sources import read_rows


def _prepare(path, **kw):
    return prepare(read_rows(path), Columns(), needs_text=True, needs_image=False, file=str(path), **kw)


def _old(external_id: str, kind: str) -> str:
    """The id before issue 16, written out from its definition (not imported)."""
    return "i" + hashlib.blake2b(f"{kind}\x00{external_id}".encode(), digest_size=10).hexdigest()


def test_key_file_is_made_once_owner_only_and_shared_by_concurrent_callers(tmp_path):
    path = tmp_path / "keys" / "k.key"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: secret_key(path), range(16)))
    assert len(keys) == 1 and len(next(iter(keys))) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and [p.name for p in path.parent.iterdir()] == ["k.key"]
    path.chmod(0o644)  # copied in loosely: tightened on the next read, the key unchanged
    assert secret_key(path) in keys and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert item_key(tmp_path) == secret_key(tmp_path / "keys" / "item_ids.key") != secret_key(path)


def test_ids_are_keyed_one_construction_for_gold_and_work_and_not_the_old_hash():
    k1, k2 = os.urandom(32), os.urandom(32)
    work, gold = item_id("a1", k1), item_id("a1", k1, "gold")
    assert work == item_id("a1", k1) != gold and work != item_id("a1", k2)
    assert work == "i" + keyed_hex(k1, "item", "a1")[:20] and gold == "i" + keyed_hex(k1, "gold", "a1")[:20]
    assert len(work) == len(gold) == 21 and work[1:].isalnum() and gold[1:].isalnum()
    assert {work, gold}.isdisjoint({_old("a1", "item"), _old("a1", "gold")})
    assert legacy_item_id("a1", "gold") == _old("a1", "gold")


def test_rows_without_an_id_get_a_keyed_text_id(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"text": "hello there", "language": "en"}) + "\n")
    key = os.urandom(32)
    eid = _prepare(path, key=key).items["external_id"].iloc[0]
    digest = content_hash("hello there", None)
    assert eid.startswith("h:") and digest not in eid and eid == _prepare(path, key=key).items["external_id"].iloc[0]
    assert eid != _prepare(path, key=os.urandom(32)).items["external_id"].iloc[0]


def test_items_imported_under_old_unkeyed_ids_are_duplicates_not_new_tasks(tmp_path):
    """A workspace lost, the project remembered only by its tasks' `item_id`s (the old ones): a re-run
    imports nothing twice, with an id column and without one."""
    path = tmp_path / "items.jsonl"
    path.write_text(
        json.dumps({"id": "a1", "text": "first", "language": "en"})
        + "\n"
        + json.dumps({"text": "second", "language": "en"})
        + "\n"
        + json.dumps({"id": "a3", "text": "third", "language": "en"})
        + "\n"
    )
    held = {_old("a1", "item"): _old("a1", "item"), _old(f"sha:{content_hash('second', None)}", "item"): "old-2"}
    p = _prepare(path, known=held, key=os.urandom(32))
    assert list(p.items["external_id"]) == ["a3"]
    assert sorted(p.duplicates["duplicate_of"]) == [f"project item {_old('a1', 'item')}", "project item old-2"]
    assert _old("a1", "item") in set(p.duplicates["item_id"])  # the id the project holds, not a new one
    gold = prepare(
        read_rows(path),
        Columns(),
        needs_text=True,
        needs_image=False,
        file=str(path),
        kind="gold",
        known={_old("a3", "gold"): "g"},
        key=os.urandom(32),
    )
    assert sorted(gold.items["external_id"].str[:2]) == ["a1", "h:"]  # a3 held as gold already
