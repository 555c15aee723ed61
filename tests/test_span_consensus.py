"""Span consensus (quality/span_consensus.py): hand-made cases with known answers, a property test that
consensus spans lie within the union of the annotators' spans, and the quality pass carrying the figures."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.spec import Quality
from smo_labelstudio.quality.check import compute_check
from smo_labelstudio.quality.span_consensus import (
    SpanVote,
    consensus_spans,
    reliability,
    span_answers,
    span_summary,
    task_spans,
    with_text,
)

TEXT = "you people are vermin and should leave"


def _vote(cells: dict[str, list], weights: dict | None = None, task: str = "t1") -> list[tuple]:
    frame = pd.DataFrame({"task": task, "annotator": list(cells), "label": list(cells.values())})
    spans = SpanVote().fit_predict(frame, weights)
    return [(r.policy, r.start, r.end, round(r.confidence, 4)) for r in spans.itertuples()]


def test_full_overlap_is_one_span_with_confidence_one():
    same = [(15, 21, "hate")]
    assert _vote({"a": same, "b": same, "c": same}) == [("hate", 15, 21, 1.0)]


def test_partial_overlap_keeps_the_majority_characters_and_averages_their_scores():
    # a 0-10, b 0-6, c 4-10: 0-4 two of three, 4-6 all three, 6-10 two of three -> one run 0-10
    cells = {"a": [(0, 10, "hate")], "b": [(0, 6, "hate")], "c": [(4, 10, "hate")]}
    assert _vote(cells) == [("hate", 0, 10, round((4 * 2 / 3 + 2 * 1 + 4 * 2 / 3) / 10, 4))]
    # two annotators: only the shared characters have both (0.5 alone is no majority)
    assert _vote({"a": [(0, 10, "hate")], "b": [(5, 15, "hate")]}) == [("hate", 5, 10, 1.0)]


def test_disjoint_spans_give_no_consensus():
    assert _vote({"a": [(0, 4, "hate")], "b": [(10, 14, "hate")]}) == []
    assert _vote({"a": [(0, 4, "hate")], "b": [(10, 14, "hate")], "c": [(20, 24, "hate")]}) == []


def test_an_annotator_marking_nothing_still_counts():
    assert _vote({"a": [(3, 9, "hate")], "b": [(3, 9, "hate")], "c": []}) == [("hate", 3, 9, round(2 / 3, 4))]
    assert _vote({"a": [(3, 9, "hate")], "b": []}) == []  # one of two is no majority
    assert _vote({"a": [(3, 9, "hate")]}) == [("hate", 3, 9, 1.0)]  # alone, an annotator is the majority


def test_policies_vote_apart_and_an_annotators_overlapping_spans_count_once():
    cells = {"a": [(0, 5, "hate")], "b": [(0, 5, "hate")], "c": [(0, 5, "harassment")]}
    assert _vote(cells) == [("hate", 0, 5, round(2 / 3, 4))]
    assert _vote({"a": [(0, 5, "hate"), (2, 8, "hate")], "b": []}) == []  # a covers 0-8 once: 0.5


def test_reliability_weights_tip_the_vote():
    cells = {"a": [(0, 5, "hate")], "b": [], "c": []}
    assert _vote(cells) == []
    assert _vote(cells, {"a": 0.9, "b": 0.1, "c": 0.1}) == [("hate", 0, 5, round(0.9 / 1.1, 4))]
    with pytest.raises(ConfigError, match="weight"):
        _vote(cells, {"a": -1})
    with pytest.raises(ConfigError, match="threshold"):
        SpanVote(threshold=1.5).fit(pd.DataFrame({"task": [], "annotator": [], "label": []}))


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("هذا منشور عادي لكن هؤلاء الناس حثالة ويجب طردهم", "حثالة"),  # Arabic
        ("אני שונא את כל הזבל הזה שגר כאן", "הזבל"),  # Hebrew
    ],
)
def test_right_to_left_text_uses_logical_character_offsets(text, word):
    start = text.index(word)
    before = text.rindex(" ", 0, start - 1) + 1  # the word before it, too
    labels = _labels(
        {
            "a": [(start, start + len(word), "hate")],
            "b": [(start, start + len(word), "hate")],
            "c": [(before, start + len(word), "hate")],
        },
        task="rtl",
    )
    spans, summary, refused = consensus_spans(labels, {"rtl": text})
    assert refused.empty
    assert spans[["start", "end", "text", "confidence"]].to_dict("records") == [
        {"start": start, "end": start + len(word), "text": word, "confidence": 1.0}
    ]
    assert summary.set_index("policy").loc["hate", "consensus_spans"] == 1


def _labels(cells: dict[str, list], task: str = "t1", policy: str = "hate") -> pd.DataFrame:
    """Label rows as the pull writes them: each annotator's policy choice and spans."""
    rows = []
    for i, (annotator, spans) in enumerate(cells.items()):
        base = {"external_id": task, "annotator": annotator, "annotation_id": i + 1, "language": "xx"}
        rows.append({**base, "control": "policy", "label": policy, "start": None, "end": None})
        rows += [{**base, "control": "spans", "label": p, "start": s, "end": e} for s, e, p in spans]
    return pd.DataFrame(rows).astype({"start": "float64", "end": "float64"})


def test_span_answers_keep_answers_without_spans_and_refuse_bad_offsets_with_reasons():
    labels = _labels(
        {
            "a": [(15, 21, "hate"), (-1, 3, "hate"), (9, 4, "hate"), (0, 999, "hate"), (2.5, 6, "hate")],
            "b": [],
        }
    )
    answers, refused = span_answers(labels, {"t1": TEXT})
    assert answers.to_dict("records") == [
        {"task": "t1", "annotator": "a", "label": [(15, 21, "hate")]},
        {"task": "t1", "annotator": "b", "label": []},
    ]
    assert sorted(refused["reason"]) == [
        "negative span offset",
        "span end 999 past the end of the item's text (38 characters)",
        "span offsets missing or not whole numbers",
        "span start not before its end",
    ]


def test_a_flood_of_spans_leaves_that_answer_out_of_the_vote():
    flood = [(i, i + 1, "hate") for i in range(300)]
    labels = _labels({"a": flood, "b": [(0, 3, "hate")], "c": [(0, 3, "hate")]})
    spans, _, refused = consensus_spans(labels, None)
    assert (refused["reason"] == "more than 200 spans in one answer").sum() == 300
    assert spans[["start", "end", "confidence", "n_annotators"]].to_dict("records") == [
        {"start": 0, "end": 3, "confidence": 1.0, "n_annotators": 2}
    ]


def test_reliability_is_the_smoothed_share_agreeing_with_the_policy_consensus():
    keys = pd.DataFrame({"task": [1, 2, 1, 2], "annotator": ["a", "a", "b", "b"], "label": ["hate"] * 3 + ["x"]})
    consensus = pd.DataFrame({"task": [1, 2], "label": ["hate", "hate"]})
    assert reliability(keys, consensus) == {"a": 3 / 4, "b": 2 / 4}
    assert reliability(keys.iloc[:0], consensus) == {}


def test_task_spans_are_the_export_shape():
    spans = with_text(
        SpanVote().fit_predict(
            pd.DataFrame({"task": ["t1", "t1"], "annotator": ["a", "b"], "label": [[(15, 21, "hate")]] * 2})
        ),
        {"t1": TEXT},
    )
    expected = {"policy": "hate", "start": 15, "end": 21, "text": "vermin", "confidence": 1.0}
    assert task_spans(spans) == {"t1": [expected]}
    assert task_spans(spans.iloc[:0]) == {}


def test_summary_pools_agreement_per_policy():
    answers = pd.DataFrame(
        {
            "task": ["t1"] * 3,
            "annotator": ["a", "b", "c"],
            "label": [[(0, 5, "hate")], [(0, 5, "hate")], [(1, 4, "hate")]],
        }
    )
    spans = SpanVote().fit_predict(answers)
    row = span_summary(answers, spans).set_index("policy").loc["hate"]
    assert row["tasks"] == 1 and row["spans"] == 3 and row["consensus_spans"] == 1
    assert row["f1_exact"] == pytest.approx(1 / 3) and row["f1_overlap"] == pytest.approx(1.0)
    assert span_summary(answers.assign(label=[[]] * 3), spans.iloc[:0]).empty


spans_strategy = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 20), st.sampled_from(["hate", "harassment"])).map(
        lambda t: (t[0], t[0] + t[1], t[2])
    ),
    max_size=4,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.lists(spans_strategy, min_size=1, max_size=5),
    weights=st.lists(st.floats(0.01, 1.0), min_size=5, max_size=5),
)
def test_consensus_lies_within_the_union_and_confidences_are_probabilities(cells, weights):
    annotators = [f"a{i}" for i in range(len(cells))]
    frame = pd.DataFrame({"task": "t", "annotator": annotators, "label": cells})
    for w in (None, dict(zip(annotators, weights))):
        spans = SpanVote().fit_predict(frame, w)
        for r in spans.itertuples():
            covered = {c for cell in cells for s, e, p in cell if p == r.policy for c in range(s, e)}
            assert set(range(r.start, r.end)) <= covered
            assert 0.5 < r.confidence <= 1.0 and 0 <= r.confidence <= 1
        # runs of one policy never touch or overlap (they are maximal)
        for _, part in spans.groupby("policy"):
            ends = part.sort_values("start")
            assert (ends["start"].to_numpy()[1:] > ends["end"].to_numpy()[:-1]).all()


def test_the_quality_pass_carries_span_agreement_and_consensus():
    labels = _labels({"a": [(15, 21, "hate")], "b": [(15, 21, "hate")], "c": []})
    labels["project"], labels["task"], labels["is_gold"] = 1, 7, False
    result = compute_check(labels, None, Quality(), n_boot=10, texts={"t1": TEXT})
    assert result.span_consensus[["task", "policy", "start", "end", "text"]].to_dict("records") == [
        {"task": "t1", "policy": "hate", "start": 15, "end": 21, "text": "vermin"}
    ]
    figures = result.summary()["spans"]
    assert figures["n_consensus_spans"] == 1 and figures["refused"] == 0
    assert {p["policy"] for p in figures["policies"]} == {"hate", "all"}


def test_the_quality_report_shows_span_agreement_consensus_and_refusals():
    from smo_labelstudio.reports.quality import render_markdown

    labels = _labels({"a": [(15, 21, "hate"), (-1, 4, "hate")], "b": [(15, 21, "hate")], "c": []})
    labels["project"], labels["task"], labels["is_gold"] = 1, 7, False
    result = compute_check(labels, None, Quality(), n_boot=10, texts={"t1": TEXT})
    text = render_markdown(result, "spans", {})
    section = text.split("## Harmful spans", 1)[1]
    assert "| hate | 1 | 2 | 0.500 | 0.500 | 1 | 0.667 |"  # pairs a-b 1, a-c and b-c 0, pooled in section
    assert "1 span(s) left out of the vote: negative span offset (1).\n\n## " in section


def test_a_workspace_without_launch_plans_has_no_item_texts(tmp_path):
    """An empty object mask would select columns, not rows (pandas): no plans must give no texts, not a KeyError."""
    from smo_labelstudio.core.workspace import Workspace
    from smo_labelstudio.quality.check import item_texts

    assert item_texts(Workspace(tmp_path / "ws")) == {}
