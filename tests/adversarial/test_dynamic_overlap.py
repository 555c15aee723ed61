"""Dynamic overlap against awkward inputs: unknown confidence, tasks Label Studio no longer has, duplicate
consensus rows, a budget already overspent, and spec mistakes that must be one clear line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smo_labelstudio.core.spec import EXAMPLE_SPEC, DynamicOverlap, SpecError, load_spec
from smo_labelstudio.quality.dynamic import dynamic_figures, plan_raises

SETTINGS = DynamicOverlap(target=0.9, max_annotators=4, budget=10)


def _tasks(*keys: str, answers: int = 2) -> pd.DataFrame:
    return pd.DataFrame([{"task": k, "task_id": i, "answers": answers, "overlap": answers} for i, k in enumerate(keys)])


def test_unknown_confidence_and_tasks_gone_from_label_studio_are_not_raised():
    consensus = pd.DataFrame({"task": ["a", "b", "gone"], "confidence": [np.nan, 0.2, 0.1]})
    plan = plan_raises(consensus, _tasks("a", "b"), 0, SETTINGS)
    assert list(plan["task"]) == ["b"]


def test_duplicate_consensus_rows_raise_a_task_once():
    consensus = pd.DataFrame({"task": ["a", "a", "a"], "confidence": [0.5, 0.4, 0.6]})
    plan = plan_raises(consensus, _tasks("a"), 0, SETTINGS)
    assert list(plan["task"]) == ["a"] and list(plan["confidence"]) == [0.4]


def test_an_overspent_budget_raises_nothing_and_reports_zero_left():
    assert plan_raises(pd.DataFrame({"task": ["a"], "confidence": [0.1]}), _tasks("a"), 99, SETTINGS).empty
    raises = pd.DataFrame(
        {"task": ["a"] * 12, "task_id": 0, "answers": 2, "to_overlap": 3, "confidence": 0.1, "raised_at": "x"}
    )
    assert dynamic_figures(raises, pd.DataFrame(columns=["task", "confidence"]), SETTINGS)["budget_left"] == 0


@pytest.mark.parametrize(
    "dynamic,expected",
    [
        ("{target: 0.9, budget: 10, budjet: 10}", "budjet"),
        ("{target: 1.5, budget: 10}", "target"),
        ("{target: 0.9, budget: -1}", "budget"),
        ("{target: 0.9, budget: 10, max_annotators: 1}", "max_annotators"),
    ],
)
def test_spec_mistakes_under_dynamic_are_one_line_naming_the_field(tmp_path, dynamic, expected):
    spec = tmp_path / "spec.yaml"
    text = EXAMPLE_SPEC.read_text().replace("  extra_annotators: 3\n", f"  extra_annotators: 3\n  dynamic: {dynamic}\n")
    assert "dynamic:" in text
    spec.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    message = str(caught.value)
    assert expected in message and "spec.yaml" in message, message


def test_a_valid_dynamic_section_loads(tmp_path):
    spec = tmp_path / "spec.yaml"
    text = EXAMPLE_SPEC.read_text().replace(
        "  extra_annotators: 3\n", "  extra_annotators: 3\n  dynamic: {target: 0.85, budget: 50}\n"
    )
    spec.write_text(text)
    dynamic = load_spec(spec).overlap.dynamic
    assert dynamic == DynamicOverlap(target=0.85, max_annotators=5, budget=50)
