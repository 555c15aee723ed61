"""Notifications on the real Prefect API: `smo notify setup --webhook` saves a custom-webhook block and the
automations; `smo notify test` reaches a webhook receiver this test starts; a real quality-check flow run whose
gate fails, and one that fails outright, each reach it through the server's automations (triggers and actions
services), with the project's hostile title shown as text and the webhook's token nowhere in a message."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from quality_data import gold_table, labels_table, truth
from typer.testing import CliRunner

from smo_labelstudio.core.spec import EXAMPLE_SPEC, load_spec
from smo_labelstudio.core.workspace import Workspace, write_json, write_parquet

HOSTILE = "Notify <!channel> [click](http://evil.example) *now* {{webhook_url}}"


class Receiver:
    """A webhook receiver on a free local port: every POSTed JSON body, with its path, in arrival order."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, **json.loads(body or b"{}")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def wait_for(self, text: str, timeout: float = 60) -> dict:
        """The first message whose subject holds `text`, waiting up to `timeout` seconds (automations are async)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in list(self.messages):
                if text in str(m.get("subject")):
                    return m
            time.sleep(0.5)
        raise AssertionError(f"no message with {text!r} within {timeout} s; got {self.messages}")


@pytest.fixture
def receiver(prefect_api):
    """The receiver; afterwards the automations are gone again (later failing runs of the session notify nobody)."""
    r = Receiver()
    yield r
    from prefect import get_client

    from smo_labelstudio.notify.templates import RULES

    with get_client(sync_client=True) as client:
        for rule in RULES:
            for automation in client.read_automations_by_name(rule.name):
                client.delete_automation(automation.id)
    r.server.shutdown()


def _spec(tmp_path, title: str):
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["title"] = title
    data["adjudicators"] = []
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_spec(path)


def _fill(ws: Workspace, project_id: str, title: str) -> None:
    """A pulled workspace with one annotator far below the gold bar (the gate fails)."""
    items = truth(60, seed=3)
    gold_ids = set(items["external_id"].iloc[::3])
    accuracies = {f"ann-{i}": 0.95 for i in range(4)} | {"ann-bad": 0.2}
    write_parquet(ws.labels, labels_table(items, accuracies, gold_ids=gold_ids, seed=4, project=int(project_id)))
    write_parquet(ws.gold_answers, gold_table(items, gold_ids))
    write_json(ws.project_file, {"project_id": project_id, "url": "http://ls.example/projects/1", "title": title})


def test_gate_failure_and_failed_run_reach_the_webhook(prefect_api, receiver, tmp_path, monkeypatch, unique):
    from flows.quality_check import QualityCheckParams, quality_check
    from smo_labelstudio.cli import app

    monkeypatch.setenv("SMO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SMO_NOTIFY_BLOCK", raising=False)
    # the steps after the gate event (scorecards, the warehouse) are not what this test is about
    monkeypatch.setattr("flows.quality_check.write_scorecards", lambda *a: "")
    monkeypatch.setattr("flows.quality_check.publish", lambda *a: [])
    url = f"http://127.0.0.1:{receiver.port}/hooks/T0KEN{unique}"
    runner = CliRunner()
    t0 = time.monotonic()
    name = f"smo-notify-{unique}"

    setup = runner.invoke(app, ["notify", "setup", "--webhook", "-", "--name", name], input=url + "\n")
    assert setup.exit_code == 0, setup.output
    assert f"custom-webhook/{name}" in setup.output and "smo: quality gate failed" in setup.output
    assert url not in setup.output and unique not in setup.output.replace(name, "")
    again = runner.invoke(app, ["notify", "setup", "--block", f"custom-webhook/{name}"])  # idempotent: updated
    assert again.exit_code == 0 and again.output.count("updated") == 5, again.output

    from smo_labelstudio.cli.stack import _notifications  # what `smo stack up` does with SMO_NOTIFY_BLOCK

    monkeypatch.setenv("SMO_NOTIFY_BLOCK", f"custom-webhook/{name}")
    assert (
        _notifications(prefect_api.removesuffix("/api"))
        == f"5 automations send through custom-webhook/{name} (SMO_NOTIFY_BLOCK)"
    )
    monkeypatch.setenv("SMO_NOTIFY_BLOCK", "custom-webhook/not-there")
    assert _notifications(prefect_api.removesuffix("/api")).startswith("not set up: no notification block")
    monkeypatch.delenv("SMO_NOTIFY_BLOCK")
    sent = runner.invoke(app, ["notify", "test"])  # the block the automations use
    assert sent.exit_code == 0, sent.output
    test_message = receiver.wait_for("Test notification", timeout=10)
    print(f"notify setup twice and test: {time.monotonic() - t0:.1f} s")
    assert test_message["path"] == f"/hooks/T0KEN{unique}"

    spec_path, spec = _spec(tmp_path, f"{HOSTILE} {unique}")
    ws = Workspace.for_title(spec.title)
    project_id = f"88{int(unique, 16) % 1000}"
    _fill(ws, project_id, spec.title)
    started = time.monotonic()
    state = quality_check(QualityCheckParams(spec=str(spec_path), adjudicate=False, n_boot=20), return_state=True)
    assert state.result()["passed"] is False
    ended = time.monotonic()
    gate = receiver.wait_for("Quality gate failed", timeout=60)
    print(f"gate notification: flow run {ended - started:.1f} s, then {time.monotonic() - ended:.1f} s to the webhook")
    text = gate["subject"] + "\n" + gate["text"]
    failed_gates = state.result()["failed_gates"]
    assert failed_gates and all(g in gate["text"] for g in failed_gates) and unique in text
    assert f"/runs/flow-run/{state.state_details.flow_run_id}" in gate["text"]
    for markup in ("<!channel>", "[click]", "*now*", "{{"):
        assert markup not in text, markup
    assert "‹!channel›" in text
    assert url not in text and "T0KEN" not in text

    # a run that fails outright (nothing pulled for this spec) notifies as well
    (tmp_path / "empty").mkdir()
    empty_path, _ = _spec(tmp_path / "empty", f"Nothing pulled {unique}")
    failed = quality_check(QualityCheckParams(spec=str(empty_path), adjudicate=False), return_state=True)
    assert failed.is_failed()
    message = receiver.wait_for("Flow run Failed", timeout=60)
    print(f"failed run and its notification: {time.monotonic() - ended:.1f} s")
    assert "quality-check" in message["subject"]
    assert f"/runs/flow-run/{failed.state_details.flow_run_id}" in message["text"]
    assert "spec.yaml" in message["text"] and "no labels" in message["text"].lower(), message

    # the deadline and pause events as the ops-report and quality-check flows build them, through their automations
    from types import SimpleNamespace

    from prefect.events import emit_event

    from smo_labelstudio.quality.qualification import paused_event
    from smo_labelstudio.reports.operations import deadline_event

    late = SimpleNamespace(
        title=spec.title, settings={"project_id": project_id}, eta={"deadline": "2026-01-01", "remaining_answers": 7}
    )
    emit_event(**deadline_event(late, None))
    pause = {"annotator": "<@U1>@example.com", "at": "2026-11-30T00:00:00Z", "reason": "gold *accuracy*", "tasks": [1]}
    emit_event(**paused_event(pause, f"smo.project.{project_id}", spec.title))
    deadline = receiver.wait_for("Deadline at risk", timeout=60)
    assert (
        "2026-01-01" in deadline["text"] and "7 answer(s) remaining" in deadline["text"] and unique in deadline["text"]
    )
    paused = receiver.wait_for("Annotator paused", timeout=60)
    assert "‹@U1›@example.com" in paused["text"] and unique in paused["text"] and "<@U1>" not in paused["text"]
    assert all(m["path"] == f"/hooks/T0KEN{unique}" for m in receiver.messages)


# --- without a Prefect API -----------------------------------------------------------------------------------


def test_deadline_event_only_past_the_deadline():
    from types import SimpleNamespace

    from smo_labelstudio.reports import operations as ops

    def report(**eta):
        return SimpleNamespace(title="P <b>", settings={"project_id": 4}, eta=eta)

    late = report(deadline="2026-01-01", on_track=False, eta=None, remaining_answers=9, answers_per_hour=0.0)
    assert ops.deadline_at_risk(late)
    event = ops.deadline_event(late, None)
    assert event["event"] == "smo.deadline.at-risk" and event["resource"]["prefect.resource.id"] == "smo.project.4"
    assert event["payload"]["remaining_answers"] == 9 and event["payload"]["eta"] is None
    assert not ops.deadline_at_risk(report(deadline="2026-01-01", on_track=True))
    assert not ops.deadline_at_risk(report(deadline=None, on_track=None))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["setup", "--slack", "https://a", "--webhook", "https://b"], "give one of --slack, --webhook, --block"),
        (["setup", "--block", "just-a-name"], "a notification block is named TYPE/NAME"),
        (["setup"], "no notification block: give --slack URL, --webhook URL or --block TYPE/NAME"),
        (["setup", "--webhook", "ftp://x.example/hook"], "must start with https:// or http://"),
        (["setup", "--webhook", "https://x.example/h", "--name", "Team <b>"], "a block name is lowercase letters"),
    ],
)
def test_setup_mistakes_are_one_line(args, message, monkeypatch):
    from smo_labelstudio.cli import app

    monkeypatch.delenv("SMO_NOTIFY_BLOCK", raising=False)
    result = CliRunner().invoke(app, ["notify", *args])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
