"""Annotator scorecards: the metrics with known answers, one page per annotator holding only their own data
(several simulated annotators, every page checked for every other annotator's e-mail, pseudonym and answers),
and the real line (launch -> simulated annotators in Label Studio -> pull -> `smo scorecards` and the
quality-check flow on the Prefect API) with a page opened in headless Chromium (screenshot kept)."""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from browser import CHROMIUM, FLAGS, artifacts
from quality_data import gold_table, labels_table, truth
from scipy import stats

from smo_labelstudio.core.keys import secret_key
from smo_labelstudio.core.paths import REPO_ROOT
from smo_labelstudio.core.spec import EXAMPLE_SPEC, Quality
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.core.workspace import Workspace, write_parquet
from smo_labelstudio.metrics import scorecard as sc
from smo_labelstudio.quality.adjudication import review_pseudonym
from smo_labelstudio.quality.check import compute_check
from smo_labelstudio.reports.scorecards import build_scorecards

ORDER = [p.id for p in load_taxonomy().policies]
ARTIFACTS = artifacts("scorecards")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


# --- the metrics, with known answers ------------------------------------------------------------


def test_deciding_section_in_scope_then_out_of_scope_then_severity():
    order = ["violent_extremism", "hate", "harassment", "no_violation"]
    assert sc.deciding_section(frozenset({"hate", "harassment"}), frozenset({"harassment"}), order) == (
        "hate",
        sc.IN_SCOPE,
    )
    # gold chose two the annotator missed: the first in the order of decision decides
    assert sc.deciding_section(frozenset({"harassment", "hate"}), frozenset(), order)[0] == "hate"
    assert sc.deciding_section(frozenset({"no_violation"}), frozenset({"no_violation", "hate"}), order) == (
        "hate",
        sc.OUT_OF_SCOPE,
    )
    assert sc.deciding_section(frozenset({"no_violation"}), frozenset({"hate"}), order) == ("hate", sc.OUT_OF_SCOPE)
    assert sc.deciding_section(frozenset({"hate"}), frozenset({"no_violation"}), order) == ("hate", sc.IN_SCOPE)
    assert sc.deciding_section(frozenset({"no_violation"}), frozenset(), order) == ("no_violation", sc.IN_SCOPE)
    assert sc.deciding_section(frozenset({"harassment"}), frozenset({"harassment"}), order) == (
        "harassment",
        sc.SEVERITY,
    )


def test_gold_timeline_runs_in_time_order_with_wilson_intervals():
    answers = pd.DataFrame(
        {"task": ["g1", "g2", "g3", "w1", "g4"], "label": ["a", "b", "a", "a", "a"], "annotation_id": [5, 4, 3, 2, 1]}
    )
    gold = pd.DataFrame({"task": ["g1", "g2", "g3", "g4"], "label": ["a", "a", "a", "a"]})
    times = pd.Series(
        pd.to_datetime([NOW + timedelta(hours=h) for h in (4, 3, 2, 1, 0)], utc=True), index=[5, 4, 3, 2, 1]
    )
    t = sc.gold_timeline(answers, gold, times)
    assert t["task"].tolist() == ["g4", "g3", "g2", "g1"]  # oldest first; the work item w1 is not gold
    assert t["correct"].tolist() == [True, True, False, True]
    assert t["accuracy"].tolist() == [1.0, 1.0, 2 / 3, 0.75]
    ci = stats.binomtest(3, 4).proportion_ci(method="wilson")
    assert t["ci_low"].iloc[-1] == pytest.approx(ci.low) and t["ci_high"].iloc[-1] == pytest.approx(ci.high)
    untimed = sc.gold_timeline(answers, gold)  # no annotations table: annotation id order
    assert untimed["task"].tolist() == ["g4", "g3", "g2", "g1"] and untimed["at"].isna().all()


def test_policy_differences_and_the_confusion_against_consensus():
    sets = pd.DataFrame(
        {
            "task": ["t1", "t2", "t3", "t4"],
            "label": [frozenset({"hate"}), frozenset(), frozenset({"spam"}), frozenset()],
        }
    )
    consensus = pd.DataFrame({"task": ["t1", "t2", "t3"], "label": ["hate+harassment", "hate", "spam"]})
    d = sc.policy_differences(sets, consensus).set_index("policy")
    assert d.loc["hate"].to_dict() == {"consensus_chose": 2, "you_chose": 1, "agreed": 1, "missed": 1, "extra": 0}
    assert d.loc["harassment", "missed"] == 1 and d.loc["spam", "agreed"] == 1
    keys = sets.assign(label=sets["label"].map(lambda s: "+".join(sorted(s)) or "(none)"))
    table = sc.consensus_confusion(keys, consensus)
    assert table.loc["hate+harassment", "hate"] == 1 and table.loc["hate", "(none)"] == 1
    assert int(table.to_numpy().sum()) == 3  # t4 has no consensus


# --- one page per annotator, nothing of anyone else -----------------------------------------------

ACCURACIES = {f"annotator{i}@team.example": acc for i, acc in enumerate([0.95, 0.9, 0.85, 0.8, 0.45])}


def simulated_workspace(home: Path, title: str, texts: dict[str, str] | None = None, markers: dict | None = None):
    """A pulled workspace: 100 items, 3 of 5 annotators each, gold on every 5th, answers spread over two
    days; `markers[annotator] = (gold item, label)` makes that annotator alone answer that gold item."""
    ws = Workspace.for_title(title, home)
    items = truth(100, seed=11)
    gold_ids = set(items["external_id"].iloc[::5])
    overrides = {task: {who: ((label,), 2)} for who, (task, label) in (markers or {}).items()}
    labels = labels_table(items, ACCURACIES, gold_ids=gold_ids, seed=12, overrides=overrides)
    write_parquet(ws.labels, labels)
    gold = gold_table(items, gold_ids)
    write_parquet(ws.gold_answers, gold)
    ann = labels.drop_duplicates("annotation_id")[
        ["project", "task", "external_id", "annotation_id", "annotator", "is_gold", "language"]
    ].reset_index(drop=True)
    ann["created_at"] = pd.to_datetime(
        [NOW - timedelta(hours=48) + timedelta(minutes=15 * i) for i in range(len(ann))], utc=True
    )
    ann = ann.assign(updated_at=ann["created_at"], lead_time=10.0, was_cancelled=False)
    ann = ann.assign(prediction_model_version=None, changed_prediction=None)
    write_parquet(ws.annotations, ann)
    plan = pd.DataFrame(
        {
            "item_id": [f"i-{e}" for e in items["external_id"]],
            "external_id": items["external_id"],
            "text": [(texts or {}).get(e, f"the text of {e}") for e in items["external_id"]],
            "language": items["language"],
            "source": None,
            "is_gold": False,
            "batch": 0,
        }
    )
    write_parquet(ws.runs / "plan1" / "plan.parquet", plan)
    return ws, labels, gold


def _pages(tmp_path: Path, texts=None, markers=None, annotators=ACCURACIES):
    ws, labels, gold = simulated_workspace(tmp_path / "home", "Scorecards unit", texts, markers)
    quality = Quality(min_gold_accuracy=0.8, min_gold_answers=5)
    result = compute_check(labels, gold, quality, n_boot=20)
    files = build_scorecards(ws, "Scorecards unit", quality, labels, gold, result.consensus)
    key = secret_key(ws.root / "export_key")
    return ws, labels, files, {a: review_pseudonym(key, a) for a in annotators}


def test_one_page_per_annotator_with_only_their_own_data(tmp_path):
    items = truth(100, seed=11)
    gold_items = items["external_id"].iloc[::5].tolist()
    names = sorted(ACCURACIES)
    # each annotator alone answers one gold item of their own, with an answer nobody else gives, and misses it
    markers = {who: (gold_items[i], f"answer-only-{i}-gave") for i, who in enumerate(names)}
    texts = {gold_items[i]: f"item only annotator {i} saw" for i in range(len(names))}
    started = time.perf_counter()
    ws, labels, files, pseudonyms = _pages(tmp_path, texts, markers)
    elapsed = time.perf_counter() - started

    assert set(files.pages) == set(pseudonyms.values()) and len(files.pages) == len(ACCURACIES)
    assert all(re.fullmatch(r"annotator-[0-9a-f]{8}", p) for p in files.pages)
    index = files.index.read_text()
    for i, who in enumerate(names):
        page = files.pages[pseudonyms[who]].read_text()
        text = html.unescape(page)
        assert pseudonyms[who] in text
        assert not EMAIL.search(text)  # no e-mail on a page, not even their own
        assert f"answer-only-{i}-gave" in text and f"item only annotator {i} saw" in text  # their own miss
        for j, other in enumerate(names):
            if other == who:
                continue
            assert other not in text and pseudonyms[other] not in text
            assert f"answer-only-{j}-gave" not in text and f"item only annotator {j} saw" not in text
        # every task shown is one they answered
        mine = set(labels.loc[labels["annotator"] == who, "external_id"])
        shown = set(re.findall(r"the text of (item-\d{4})", text))
        assert shown <= mine
        assert 'src="data:image/png;base64,' in page and "Content-Security-Policy" in page
        assert f'href="pages/{pseudonyms[who]}.html"' in index and who in html.unescape(index)

    summary = json.loads(files.summary.read_text())["annotators"]
    weak = summary[pseudonyms["annotator4@team.example"]]
    strong = summary[pseudonyms["annotator0@team.example"]]
    assert weak["standing"] == "below the bar" and strong["standing"] in (
        "above the bar",
        "not distinguishable from the bar yet",
    )
    assert weak["missed_gold"] > strong["missed_gold"]
    assert not EMAIL.search(files.summary.read_text())
    print(f"5 scorecards over 100 tasks: {elapsed:.1f} s")


def test_a_missed_gold_item_names_the_guideline_section_that_decides_it(tmp_path):
    items = truth(100, seed=11)
    gold_item = items[items["policies"].map(lambda p: p == ("no_violation",))]["external_id"].iloc[0]
    who = "annotator0@team.example"
    ws, labels, files, pseudonyms = _pages(tmp_path, markers={who: (gold_item, "hate")})
    text = html.unescape(files.pages[pseudonyms[who]].read_text())
    row = next(r for r in text.split("<tr>") if f"the text of {gold_item}" in r)
    assert "Hate › Out of scope (guidelines/hate.md)" in row  # they chose hate where gold said no violation
    assert "Criticism of a government" in row  # what that section says (from the taxonomy the pages come from)
    page = (REPO_ROOT / "guidelines" / "hate.md").read_text()
    assert "## Out of scope" in page and "Criticism of a government" in page


def test_stale_pages_go_and_the_cli_writes_the_pages(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from smo_labelstudio.cli import app

    monkeypatch.setenv("SMO_HOME", str(tmp_path / "home"))
    spec_data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    spec_data["title"] = "Scorecards unit"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_data))
    ws, *_ = simulated_workspace(tmp_path / "home", "Scorecards unit")
    stale = ws.reports / "scorecards" / "pages" / "annotator-00000000.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    run = CliRunner().invoke(app, ["scorecards", "--spec", str(spec_path), "--json"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)
    assert len(out["pages"]) == 5 and all(Path(p).exists() for p in out["pages"].values())
    # each page's own signed link for the stack's reports service (tests/adversarial/test_report_links.py)
    assert set(out["links"]) == set(out["pages"]) and all(f"/{n}.html?sig=" in out["links"][n] for n in out["pages"])
    assert not stale.exists()
    # no pulled labels: one line naming what to do, no traceback
    spec_data["title"] = "Scorecards nothing pulled"
    spec_path.write_text(yaml.safe_dump(spec_data))
    run = CliRunner().invoke(app, ["scorecards", "--spec", str(spec_path)])
    assert run.exit_code == 1 and run.stderr.startswith("error: no labels table") and "smo pull" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.output


# --- the real flow on the Prefect API, the pages in Chromium ---------------------------------------

HOSTILE_TEXT = "<img src=x onerror=alert(1)> [win](javascript:alert(1)) free prize <script>alert(2)</script>"


def test_the_quality_check_flow_keeps_the_scorecards_current_and_a_page_opens_in_chromium(
    prefect_api, tmp_path, unique, monkeypatch
):
    """The quality-check flow on the Prefect API writes the pages after its pass (5 simulated annotators, one at
    0.45); each holds no other annotator's e-mail or pseudonym, a hostile item text is inert, and the weakest
    annotator's page opens in headless Chromium with its plot decoded and no dialog (screenshot kept)."""
    from adversarial.test_reports import audit_html
    from playwright.sync_api import sync_playwright

    from flows.quality_check import QualityCheckParams, quality_check

    monkeypatch.setenv("SMO_HOME", str(tmp_path / "home"))
    spec_data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    spec_data["title"] = f"Scorecards flow {unique}"
    spec_data["quality"].update(min_gold_answers=5)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_data))
    items = truth(100, seed=11)
    gold_item = items["external_id"].iloc[::5].iloc[0]
    weakest = "annotator4@team.example"
    ws, labels, _ = simulated_workspace(
        tmp_path / "home", spec_data["title"], {gold_item: HOSTILE_TEXT}, {weakest: (gold_item, "hate")}
    )
    started = time.perf_counter()
    state = quality_check(QualityCheckParams(spec=str(spec_path), adjudicate=False, n_boot=50), return_state=True)
    assert state.is_completed(), state
    flow_seconds = time.perf_counter() - started
    index = Path(state.result()["scorecards"])
    assert index == ws.reports / "scorecards" / "index.html"
    key = secret_key(ws.root / "export_key")
    pseudonyms = {e: review_pseudonym(key, e) for e in sorted(ACCURACIES)}
    pages = {p.stem: p for p in (index.parent / "pages").glob("*.html")}
    assert set(pages) == set(pseudonyms.values())
    for who, mine in pseudonyms.items():
        page = pages[mine].read_text()
        assert not audit_html(page, whole_page=True, images=("data:image/png;base64,",))
        assert "<script" not in page and "<img src=x" not in page
        assert not EMAIL.search(html.unescape(page)) and mine in page
        assert not {p for e, p in pseudonyms.items() if e != who} & set(re.findall(r"annotator-[0-9a-f]{8}", page))
    assert not audit_html(index.read_text(), whole_page=True)
    assert all(e in html.unescape(index.read_text()) for e in ACCURACIES)

    shot = tmp_path / "scorecard.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(pages[pseudonyms[weakest]].as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
            headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
            body = page.inner_text("body")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "scorecard.png")
    assert images == [["Your gold accuracy over time", True, images[0][2]]] and images[0][2] > 0
    assert headings == ["Gold accuracy", "Where you differ from consensus", "Gold items you missed"]
    assert HOSTILE_TEXT in " ".join(body.split())  # shown as the text it is
    assert not dialogs and "below the bar" in body and not EMAIL.search(body)
    assert shot.stat().st_size > 10_000
    print(f"flow with scorecards: {flow_seconds:.1f} s; browser: {time.perf_counter() - started - flow_seconds:.1f} s")
