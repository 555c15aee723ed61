"""Hostile labels, item text and account names cannot reach a scorecard or the PM's index as markup or an active
link: fed straight into the scorecards (past the pull's quarantine), every page passes the report audit (an
allow-list of tags and attributes, a strict CSP) and shows the hostile strings as text."""

from __future__ import annotations

import html

from quality_data import truth
from test_scorecards import ACCURACIES, simulated_workspace

from adversarial.test_reports import HOSTILE, audit_html
from smo_labelstudio.core.spec import Quality
from smo_labelstudio.quality.check import compute_check
from smo_labelstudio.reports.scorecards import build_scorecards


def test_hostile_labels_texts_and_names_render_inert(tmp_path):
    items = truth(100, seed=11)
    gold_items = items["external_id"].iloc[::5].tolist()
    names = sorted(ACCURACIES)
    # annotator i answers gold item i alone with a hostile label; that item's text is hostile too
    markers = {who: (gold_items[i], HOSTILE[i]) for i, who in enumerate(names)}
    texts = {gold_items[i]: HOSTILE[-1 - i] for i in range(len(names))}
    ws, labels, gold = simulated_workspace(tmp_path / "home", "<b>hostile</b> [t](javascript:x)", texts, markers)
    hostile_name = HOSTILE[2]  # an account name (e-mail) that is markup, on the PM's index
    labels = labels.assign(annotator=labels["annotator"].replace({names[0]: hostile_name}))
    quality = Quality(min_gold_accuracy=0.8, min_gold_answers=5)
    result = compute_check(labels, gold, quality, n_boot=20)
    files = build_scorecards(ws, "<b>hostile</b> [t](javascript:x)", quality, labels, gold, result.consensus)
    shown = []
    for path in [files.index, *files.pages.values()]:
        page = path.read_text()
        assert not audit_html(page, whole_page=True, images=("data:image/png;base64,",), files=("pages/",)), path
        assert "<script" not in page and "<img src=x" not in page and 'href="javascript' not in page.lower()
        shown.append(" ".join(html.unescape(page).split()))
    everything = " ".join(shown)
    assert hostile_name in everything  # on the index, as text
    for i in range(1, len(names)):  # each hostile label and text is shown as the text it is
        assert " ".join(HOSTILE[i].split()) in everything and " ".join(HOSTILE[-1 - i].split()) in everything
