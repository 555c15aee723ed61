"""Gold an annotator cannot spot (issue 16), against the session's Label Studio.

The attacker is a real annotator account reading the project through the API, as Label Studio Community
lets every member. They know our code, every row's text and every source id (the external ids, gold ones
too), and recompute every unkeyed id our launches ever gave: nothing matches, and the fields they can see
(task data, meta, predictions, annotations, ids, order) have the same keys and formats for gold and work.
Existing workspaces hold ids of the old, unkeyed kind: re-runs (with the workspace, and with it lost)
import nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import httpx
import pandas as pd

from smo_labelstudio.core.keys import item_key
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace, read_plan
from smo_labelstudio.ingest import items as items_mod
from smo_labelstudio.ingest import launch
from smo_labelstudio.ingest.items import content_hash, item_id

ROWS = [(f"w{i}", f"an ordinary post number {i} about the weather", "en") for i in range(1, 13)]
ROWS.append(("", "a post that came without an id", "en"))  # gets a text-hash external id
GOLD = [
    ("g1", "that ethnic group should be thrown out of the country", "en", "hate", "3"),
    ("g2", "what a lovely morning", "en", "no_violation", ""),
    ("g3", "click to win a free phone now", "en", "spam_scams", "1"),
]
TWIN = ("g4", "an ordinary post number 1 about the weather", "en", "no_violation", "")  # a work row's text: never used
ID = re.compile(r"^i[0-9a-f]{20}$")


def _files(tmp_path: Path, title: str, rows=ROWS, gold_rows=GOLD) -> tuple[Path, Path, Path]:
    data = tmp_path / "items.csv"
    data.write_text("id,text,language\n" + "\n".join(f'{i},"{t}",{lang}' for i, t, lang in rows) + "\n")
    gold = tmp_path / "gold.csv"
    answers = "\n".join(f'{i},"{t}",{lang},{p},{s}' for i, t, lang, p, s in gold_rows)
    gold.write_text(f"id,text,language,policy,severity\n{answers}\n")
    spec = tmp_path / "spec.yaml"
    text = Path("specs/example.yaml").read_text().replace("title: Text moderation - example batch", f"title: {title}")
    spec.write_text(text.replace("gold_rate: 0.05", "gold_rate: 0.2"))
    return spec, data, gold


def _unkeyed_guesses() -> set[str]:
    """Every id an attacker can compute without our key: the old construction for every source id (as work and
    as gold), the text-hash ids, and the same over the visible text."""
    ids = [i for i, _, _ in ROWS if i] + [g for g, *_ in GOLD]
    texts = [t for _, t, _ in ROWS] + [t for _, t, *_ in GOLD]
    ids += [f"sha:{content_hash(t, None)}" for t in texts] + texts
    guesses = set()
    for e in ids:
        for kind in ("item", "gold"):
            guesses.add("i" + hashlib.blake2b(f"{kind}\x00{e}".encode(), digest_size=10).hexdigest())
            guesses.add("i" + hashlib.sha256(f"{kind}\x00{e}".encode()).hexdigest()[:20])
    return guesses


def _launch(spec_path: Path, data: Path, gold: Path | None, label_studio, home: Path) -> dict:
    plan = launch.plan_launch(
        load_spec(spec_path), data, label_studio.url, label_studio.token, gold=gold, batch_size=100, home=home
    )
    results = launch.import_all(plan, label_studio.url, label_studio.token, None)
    return launch.finish(plan, results, label_studio.url)


def _as(label_studio, headers: dict, project_id: int) -> list[dict]:
    resp = httpx.get(
        f"{label_studio.url}/api/projects/{project_id}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
        headers=headers,
        timeout=120,
    )
    assert resp.status_code == 200, resp.text[:200]
    return resp.json()


def test_an_annotator_who_knows_code_text_and_ids_cannot_tell_gold_from_work(label_studio, tmp_path, unique):
    from smo_labelstudio.labelstudio.users import ensure_annotators

    home = tmp_path / "home"
    spec, data, gold = _files(tmp_path, f"gold ids {unique}", gold_rows=[*GOLD, TWIN])
    m = _launch(spec, data, gold, label_studio, home)
    assert m["gold"] == 3 and m["imported"] == 13

    annotator = ensure_annotators(1, label_studio.url, label_studio.token)[0]
    tasks = _as(label_studio, annotator.headers, m["project_id"])
    assert len(tasks) == 16
    texts = [t["data"]["text"] for t in tasks]
    assert len(set(texts)) == len(texts)  # a gold text that is also a work text would be seen twice
    plan = read_plan(Workspace.for_title(load_spec(spec).title, home), ["text"]).set_index("item_id")
    is_gold = {t["data"]["item_id"]: bool(plan.loc[t["data"]["item_id"], "is_gold"]) for t in tasks}
    assert sum(is_gold.values()) == 3

    # recomputing: no unkeyed construction gives any id the annotator sees
    seen = set(is_gold)
    assert not seen & _unkeyed_guesses()
    # ...while with the deployment's key (which never leaves $SMO_HOME) every id is ours, gold and work alike
    key = item_key(home)
    for ext, gold_item in plan[["external_id", "is_gold"]].itertuples(index=False, name=None):
        source = ext.removeprefix("gold:") if gold_item else ext
        assert item_id(source, key, "gold" if gold_item else "item") in seen

    # what the annotator can read has the same keys and formats for both kinds
    def shape(task: dict) -> tuple:
        return (
            tuple(sorted(task["data"])),
            tuple(sorted(task)),
            bool(ID.fullmatch(task["data"]["item_id"])),
            type(task["data"]["text"]).__name__,
            bool(re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]+)*", task["data"]["language"])),
            json.dumps(task.get("meta") or {}),
            len(task["predictions"]),
            len(task["annotations"]),
            task.get("is_labeled"),
        )

    shapes = {kind: {shape(t) for t in tasks if is_gold[t["data"]["item_id"]] is kind} for kind in (True, False)}
    assert shapes[True] == shapes[False] and len(shapes[True]) == 1
    visible = json.dumps(tasks, ensure_ascii=False)
    for marker in ("gold", "g1", "g2", "g3", "is_gold", "h:", "sha:", "external_id"):
        assert marker not in visible, marker
    # position: gold is spread through the import, not appended after the work
    order = [is_gold[t["data"]["item_id"]] for t in sorted(tasks, key=lambda t: t["id"])]
    assert order[-3:] != [True, True, True] and order[:3] != [True, True, True]


def test_re_runs_of_a_workspace_with_old_unkeyed_ids_import_nothing_twice(label_studio, tmp_path, unique, monkeypatch):
    home = tmp_path / "home"
    spec, data, gold = _files(tmp_path, f"old ids {unique}")
    # the first launch as the code gave ids before issue 16: unkeyed, `sha:` for a row without an id
    with monkeypatch.context() as old:
        old.setattr(items_mod, "item_id", lambda e, key, kind="item": items_mod.legacy_item_id(e, kind))
        old.setattr(items_mod, "text_id", lambda digest, key: f"sha:{digest}")
        first = _launch(spec, data, gold, label_studio, home)
    assert first["imported"] == 13 and first["gold"] == 3
    ws = Workspace.for_title(load_spec(spec).title, home)
    old_ids = set(read_plan(ws)["item_id"])
    assert "sha:" in "".join(read_plan(ws)["external_id"])

    # the same rows and two new ones, with today's keyed ids: only the new ones go in, the old tasks stay as they were
    more = [*ROWS, ("w13", "a brand new post", "en"), ("", "another new post without an id", "en")]
    _files(tmp_path, f"old ids {unique}", rows=more)
    second = _launch(spec, data, gold, label_studio, home)
    assert (second["imported"], second["gold"], second["already_present"]) == (2, 0, 13) and second["counts_add_up"]
    tasks = _as(label_studio, label_studio.headers, first["project_id"])
    ids = {t["data"]["item_id"] for t in tasks}
    assert len(tasks) == 18 and old_ids <= ids and len(ids - old_ids) == 2

    # the workspace lost: the project's own (old) item ids still keep every row out
    shutil.rmtree(ws.runs)
    _files(tmp_path, f"old ids {unique}", rows=[*more, ("w14", "one more", "en")])
    lost = _launch(spec, data, gold, label_studio, home)
    assert (lost["imported"], lost["gold"]) == (1, 0) and lost["counts_add_up"]
    assert len(_as(label_studio, label_studio.headers, first["project_id"])) == 19
    assert pd.read_parquet(ws.gold_answers)["item_id"].isin(old_ids).all()  # gold answers keep the recorded ids
