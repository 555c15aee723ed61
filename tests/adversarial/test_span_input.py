"""Hostile span answers (annotations posted through the API are not checked against the label config): spans
out of range, negative, reversed, with text that is not at their offsets, offsets that are no numbers, and
floods of spans are left out with a reason each; the pull, the quality pass and the span vote never crash."""

from __future__ import annotations

import pandas as pd

from smo_labelstudio.core.spec import Quality
from smo_labelstudio.pull.completions import QUARANTINE_COLUMNS, check_span, tidy
from smo_labelstudio.quality.check import compute_check

TEXT = "you people are vermin 🐀 and should leave"
LEDGER = pd.DataFrame({"item_id": ["i1"], "external_id": ["x1"], "is_gold": [False], "language": ["en"]})


def _span(start, end, text=None, label="hate") -> dict:
    value = {"start": start, "end": end, "labels": [label]}
    if text is not None:
        value["text"] = text
    return {"from_name": "spans", "to_name": "text", "type": "labels", "value": value}


def _task(annotations: list[list[dict]]) -> dict:
    return {
        "id": 1,
        "data": {"item_id": "i1", "text": TEXT},
        "annotations": [
            {
                "id": i + 1,
                "completed_by": i + 1,
                "result": [{"from_name": "policy", "type": "choices", "value": {"choices": ["hate"]}}, *result],
            }
            for i, result in enumerate(annotations)
        ],
    }


def test_bad_spans_are_quarantined_with_a_reason_and_good_ones_kept():
    vermin = TEXT.index("vermin")
    leave = TEXT.index("leave")
    hostile = [
        _span(vermin, vermin + 6, "vermin"),  # fine
        _span(-3, 4, "you"),
        _span(9, 4),
        _span(0, 10**30, "you"),
        _span(vermin, vermin + 6, "kittens"),  # the text is not what the offsets point at
        _span("0", "3"),
        _span(1.5, 3),
        _span(None, 3),
        _span(True, 3),
        {"from_name": "spans", "type": "labels", "value": {"labels": ["hate"]}},  # no offsets at all
        _span(leave + 1, leave + 6, "leave"),  # UTF-16 offsets (one emoji before): converted, kept
    ]
    refused: list[dict] = []
    _, labels = tidy([_task([hostile, [_span(vermin, vermin + 6, "vermin")]])], 1, LEDGER, {1: "a", 2: "b"}, refused)
    spans = labels[labels["control"] == "spans"]
    assert sorted(zip(spans["annotator"], spans["start"], spans["end"])) == [
        ("a", vermin, vermin + 6),
        ("a", leave, leave + 5),
        ("b", vermin, vermin + 6),
    ]
    frame = pd.DataFrame(refused, columns=QUARANTINE_COLUMNS)
    assert sorted(frame["reason"]) == sorted(
        [
            "negative span offset",
            "span start not before its end",
            f"span end {10**30} past the end of the task's text ({len(TEXT)} characters)",
            "span text differs from the task's text at its offsets",
            *["span offsets missing or not whole numbers"] * 5,
        ]
    )
    assert frame["external_id"].eq("x1").all() and frame["control"].eq("spans").all()
    # without `refused` the bad spans are still left out
    assert len(tidy([_task([hostile])], 1, LEDGER, {1: "a"})[1].query("control == 'spans'")) == 2


def test_check_span_on_tasks_without_text_checks_offsets_only():
    assert check_span({"start": 2, "end": 900, "text": "x"}, None) == (2, 900, None)
    assert check_span({"start": 2.0, "end": 5}, "abcdefgh") == (2, 5, None)
    assert check_span({"start": 5, "end": 5}, "abcdefgh")[2] == "span start not before its end"


def test_floods_and_out_of_range_offsets_in_the_labels_table_never_crash_the_quality_pass():
    rows = []
    for annotator, spans in {
        "a": [(i, i + 1) for i in range(5000)],  # a flood
        "b": [(15, 21), (0, 10**15), (-5, 2), (30, 7)],  # rows written by hand or by an older pull
        "c": [(15, 21)],
    }.items():
        base = {"project": 1, "task": 1, "external_id": "x1", "annotation_id": ord(annotator), "is_gold": False}
        rows.append({**base, "annotator": annotator, "control": "policy", "label": "hate", "language": "en"})
        rows += [
            {
                **base,
                "annotator": annotator,
                "control": "spans",
                "label": "hate",
                "start": s,
                "end": e,
                "language": "en",
            }
            for s, e in spans
        ]
    labels = pd.DataFrame(rows).astype({"start": "float64", "end": "float64"})
    result = compute_check(labels, None, Quality(), n_boot=10, texts={"x1": TEXT})
    assert result.span_consensus[["start", "end", "text", "confidence"]].to_dict("records") == [
        {"start": 15, "end": 21, "text": "vermin", "confidence": 1.0}
    ]
    reasons = result.summary()["spans"]["refused_by_reason"]
    assert reasons["more than 200 spans in one answer"] == 5000
    assert reasons["negative span offset"] == 1 and reasons["span start not before its end"] == 1
    assert sum(reasons.values()) == 5003
