"""Uncertainty-first queues (issue 20): `queue.order` orders each batch at import, languages interleaved, and
Label Studio Community serves the tasks in that order (checked on the real server)."""

from __future__ import annotations

import httpx
import pytest

from smo_labelstudio.core.spec import SpecError, load_spec
from smo_labelstudio.ingest.queue import interleave, margin, order_batch, severity_key


def pred(scores: dict[str, float] | None = None, severity: int | None = None, score: float | None = None) -> dict:
    result: list[dict] = [{"from_name": "policy", "value": {"choices": ["hate"]}}]
    if scores is not None:
        result[0]["label_scores"] = scores
    if severity is not None:
        result.append({"from_name": "severity", "value": {"choices": [str(severity)]}})
    return {"model_version": "m1", "score": score, "result": result}


def test_margin_is_the_least_certain_policy_and_falls_back_to_the_task_score():
    assert margin(pred({"hate": 0.9, "spam_scams": 0.45, "no_violation": 0.5})) == pytest.approx(0.1)
    assert margin(pred({"no_violation": 0.8})) == pytest.approx(0.6)  # only no_violation scored: it is read
    assert margin(pred(score=0.75)) == pytest.approx(0.5)
    assert margin(None) is None and margin({"result": []}) is None
    assert margin(pred({"hate": "x", "spam_scams": float("nan")}, score=0.9)) == pytest.approx(0.8)


def test_source_order_is_the_plans_order_whatever_the_predictions():
    preds = [pred({"hate": p}) for p in (0.9, 0.5, 0.1)]
    assert order_batch("source", preds, ["en"] * 3) == [0, 1, 2]


def test_uncertainty_puts_the_lowest_margin_first():
    preds = [pred({"hate": p}) for p in (0.99, 0.52, 0.7, 0.1, 0.45)]
    assert order_batch("uncertainty", preds, ["en"] * 5) == [1, 4, 2, 3, 0]


def test_severity_puts_the_most_severe_first_then_the_surest_violation_and_no_violation_last():
    preds = [
        pred({"hate": 0.2}),  # no severity: no violation predicted
        pred({"hate": 0.7}, severity=2),
        pred({"hate": 0.9}, severity=4),
        pred({"hate": 0.95}, severity=2),
        pred({"hate": 0.6}, severity=4),
    ]
    assert [severity_key(p)[0] for p in preds] == [0, 2, 4, 2, 4]  # type: ignore[index]
    assert order_batch("severity", preds, ["en"] * 5) == [2, 4, 3, 1, 0]


def test_random_is_seeded_and_a_permutation():
    langs = ["en"] * 20
    first = order_batch("random", None, langs, seed=3)
    assert first == order_batch("random", None, langs, seed=3)
    assert first != order_batch("random", None, langs, seed=4)
    assert sorted(first) == list(range(20))


def test_languages_are_interleaved_so_none_starves():
    """Eight English tasks the model is unsure of and two Arabic ones it is sure of: uncertainty alone would
    serve the Arabic ones last; interleaved, each language is spread through the batch by its share."""
    langs = ["en"] * 8 + ["ar"] * 2
    preds = [pred({"hate": 0.5 + i / 100}) for i in range(8)] + [pred({"hate": 0.99}), pred({"hate": 0.98})]
    order = order_batch("uncertainty", preds, langs)
    served = [langs[i] for i in order]
    assert served.index("ar") < 4 and served[5:].count("ar") == 1  # one Arabic task in each half
    english = [i for i in order if langs[i] == "en"]
    assert english == list(range(8))  # within a language, still lowest margin first
    assert [i for i in order if langs[i] == "ar"] == [9, 8]
    assert interleave([0, 1, 2, 3], ["a", "a", "b", "b"]) == [0, 2, 1, 3]


def test_gold_keeps_its_place_and_tasks_without_a_prediction_go_last():
    preds = [pred({"hate": 0.9}), None, pred({"hate": 0.5}), pred({"hate": 0.6}), None]
    gold = [False, False, True, False, False]
    order = order_batch("uncertainty", preds, ["en"] * 5, gold=gold)
    assert order[2] == 2  # the gold task did not move
    assert order == [3, 0, 2, 1, 4]  # predicted by margin, then the unpredicted in the plan's order
    assert order_batch("uncertainty", None, ["en"] * 3) == [0, 1, 2]  # none predicted: the plan's order
    assert order_batch("uncertainty", None, [None, float("nan"), "en", "en"]) == [0, 2, 1, 3]  # no language is one


def test_mistakes_are_one_line():
    with pytest.raises(ValueError, match="queue order 'fast'"):
        order_batch("fast", None, ["en", "en"])
    with pytest.raises(ValueError, match="1 predictions for 2 tasks"):
        order_batch("uncertainty", [None], ["en", "en"])


def test_the_spec_names_the_field_of_an_unknown_order_and_the_default_keeps_plan_ids(tmp_path):
    from smo_labelstudio.ingest.launch import _plan_spec

    path = tmp_path / "spec.yaml"
    text = open("specs/example.yaml", encoding="utf-8").read()
    path.write_text(text.replace("order: source", "order: fastest"), encoding="utf-8")
    with pytest.raises(SpecError, match="queue.order"):
        load_spec(path)
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    assert spec.queue.order == "source" and "queue" not in _plan_spec(spec)  # plans saved before keep their key
    assert "model_voter" not in _plan_spec(spec)["quality"]
    uncertain = spec.model_copy(update={"queue": spec.queue.model_copy(update={"order": "uncertainty"})})
    assert _plan_spec(uncertain)["queue"] == {"order": "uncertainty"}


# -- on the real Label Studio -----------------------------------------------------------------------------------

ITEMS = [  # (id, language, the model's probability of `hate`)
    ("e1", "en", 0.97),
    ("e2", "en", 0.55),
    ("e3", "en", 0.10),
    ("e4", "en", 0.62),
    ("e5", "en", 0.51),
    ("e6", "en", 0.80),
    ("s1", "es", 0.99),
    ("s2", "es", 0.70),
    ("s3", "es", 0.58),
]


def test_label_studio_serves_each_batch_lowest_margin_first(label_studio, tmp_path, unique, monkeypatch):
    """A launch with `queue.order: uncertainty` and predictions the test controls: the task ids Label Studio
    gave, and the tasks its next-task API serves, follow the margins, languages interleaved, batch by batch."""
    from smo_labelstudio.ingest import launch

    prob = {f"text of {i}": p for i, _, p in ITEMS}
    data = tmp_path / "items.csv"
    data.write_text("id,text,language\n" + "".join(f"{i},text of {i},{lang}\n" for i, lang, _ in ITEMS))
    spec_path = tmp_path / "spec.yaml"
    text = open("specs/example.yaml", encoding="utf-8").read()
    spec_path.write_text(
        text.replace("title: Text moderation - example batch", f"title: queue {unique}")
        .replace("order: source", "order: uncertainty")
        .replace("share: 0.2", "share: 0"),
        encoding="utf-8",
    )
    spec = load_spec(spec_path)

    def fake_predict(backend, label_config, texts):
        return [pred({"hate": prob[t], "no_violation": 1 - prob[t]}) for t in texts], None

    monkeypatch.setattr(launch, "predict", fake_predict)
    plan = launch.plan_launch(spec, data, label_studio.url, label_studio.token, batch_size=5, home=tmp_path)
    assert plan.queue_order == "uncertainty" and plan.batches == [0, 1]
    backend = ("http://127.0.0.1:9", ("u", "p"))  # never called: predict is the test's
    manifest = launch.finish(
        plan, launch.import_all(plan, label_studio.url, label_studio.token, backend), label_studio.url
    )
    assert manifest["queue_order"] == "uncertainty" and manifest["predictions"] == len(ITEMS)

    with httpx.Client(base_url=label_studio.url, headers=label_studio.headers, timeout=60) as http:
        tasks = http.get("/api/tasks", params={"project": plan.project_id, "page_size": 100}).json()["tasks"]
        by_id = sorted(tasks, key=lambda t: t["id"])
        ids = {t["data"]["item_id"]: t["id"] for t in tasks}
        external = dict(zip(plan.items["item_id"], plan.items["external_id"]))
        served_order = [external[t["data"]["item_id"]] for t in by_id]
        margins = {i: abs(2 * p - 1) for i, _, p in ITEMS}
        lang = {i: la for i, la, _ in ITEMS}
        for b in plan.batches:  # each batch went in after the one before, lowest margin first per language
            mine = [e for e in served_order if e in set(plan.items.loc[plan.items["batch"] == b, "external_id"])]
            for language in ("en", "es"):
                seq = [margins[e] for e in mine if lang[e] == language]
                assert seq == sorted(seq), (b, language, mine)
            expected = launch.batch_tasks(plan, b, backend)[0]["external_id"].tolist()
            assert mine == expected  # Label Studio's order is the order the launch computed
        first_batch = plan.items.loc[plan.items["batch"] == 0, "external_id"].tolist()
        assert served_order[: len(first_batch)] == launch.batch_tasks(plan, 0, backend)[0]["external_id"].tolist()

        served = []
        for _ in range(3):  # the next-task API (what the labeling screen asks) serves them in that order
            task = http.get(f"/api/projects/{plan.project_id}/next").json()
            served.append(task["id"])
            body = {
                "result": [
                    {"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": ["hate"]}}
                ]
            }
            http.post(f"/api/tasks/{task['id']}/annotations/", json=body).raise_for_status()
    item = {v: k for k, v in external.items()}
    assert served == [ids[item[e]] for e in served_order[:3]]
