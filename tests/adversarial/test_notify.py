"""Hostile text cannot inject into a notification: project titles, annotator e-mails, gate details, flow run names
and error messages reach Slack, a generic webhook or e-mail as plain text on one line: no mention (`<!channel>`,
`<@U1>`), no link (`<url|text>`, `[text](url)`, entity-escaped `&lt;url|text&gt;` that Apprise turns back into a
link), no fake extra line, and no placeholder (`{{webhook_url}}`) that the custom webhook block would fill with
its secret URL. The automations' templates are rendered by the Prefect server's own renderer, and the Slack
message is built by the real block and Apprise with only the final HTTP request captured."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from datetime import UTC, datetime

import pytest

from smo_labelstudio.notify.templates import NEUTRAL, RULES, neutral

HOSTILE = (
    "Q1 <!channel> <@U024BE7LH> <http://evil.example|Click> [login](http://evil.example) ![x](http://t.example/p.png)"
    " &lt;http://evil.example|again&gt; *bold* `code` | {{webhook_url}} {{ $HOME }}\n# Fake heading\r\n- fake item"
    "\u2028line"
)
MARKUP = ("<!", "<@", "<http", "[login]", "](", "&lt;", "`", "{{", "*bold*", "\n#", "\n-")


def _render(template: str, context: dict) -> str:
    from prefect.server.events.jinja_filters import all_filters
    from prefect.server.utilities.user_templates import register_user_template_filters, render_user_template

    register_user_template_filters(all_filters)
    return asyncio.run(render_user_template(template, context))


def _event(name: str, **kwargs):
    from prefect.server.events.schemas.events import ReceivedEvent

    return ReceivedEvent(occurred=datetime.now(UTC), event=name, id=uuid.uuid4(), **kwargs)


def _run_related() -> list[dict]:
    return [{"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}", "prefect.resource.role": "flow-run"}]


def _events() -> dict[str, object]:
    project = {"prefect.resource.id": "smo.project.7", "prefect.resource.name": HOSTILE}
    return {
        "smo: quality gate failed": _event(
            "smo.quality.gate-failed",
            resource=project,
            related=_run_related(),
            payload={"failed_gates": [{"name": f"gold-accuracy:{HOSTILE}"}], "report": f"/w/{HOSTILE}/report.html"},
        ),
        "smo: annotator paused": _event(
            "smo.annotator.paused",
            resource={"prefect.resource.id": "smo.annotator.x"},
            related=[
                {**project, "prefect.resource.role": "project"},
                *_run_related(),
            ],
            payload={"annotator": f"{HOSTILE}@example.com", "reason": HOSTILE, "tasks_withdrawn": 3},
        ),
        "smo: deadline at risk": _event(
            "smo.deadline.at-risk",
            resource=project,
            payload={"eta": HOSTILE, "deadline": HOSTILE, "remaining_answers": 5, "report": HOSTILE},
        ),
        "smo: wellness cap exceeded": _event(
            "smo.wellness.cap-exceeded", resource=project, payload={"exceeded": [{"annotator": HOSTILE}], "report": "r"}
        ),
    }


def _flow_run_context() -> dict:
    """A failed run whose name, spec parameter and error message are hostile (a flow name is ours)."""
    from prefect.server.schemas.core import Flow, FlowRun
    from prefect.server.schemas.states import State, StateType

    flow = Flow(id=uuid.uuid4(), name="quality-check")
    run = FlowRun(
        id=uuid.uuid4(),
        flow_id=flow.id,
        name=HOSTILE,
        parameters={"params": {"spec": f"specs/{HOSTILE}.yaml"}},
        state=State(type=StateType.FAILED, name="Failed", message=HOSTILE),
    )
    return {
        "flow": flow,
        "flow_run": run,
        "event": _event("prefect.flow-run.Failed", resource={"prefect.resource.id": f"prefect.flow-run.{run.id}"}),
    }


@functools.cache
def _messages() -> list[tuple[str, str, str]]:
    """(rule, subject, body) of every rule, rendered once for the module."""
    out = []
    events = _events()
    for rule in RULES:
        context = _flow_run_context() if rule.name == "smo: flow run failed" else {"event": events[rule.name]}
        subject, body = rule.templates("http://127.0.0.1:4200")
        out.append((rule.name, _render(subject, context), _render(body, context)))
    return out


def test_every_rules_message_shows_hostile_text_as_text():
    for name, subject, body in _messages():
        assert "Q1" in subject + body, name  # the hostile value is shown ...
        for markup in MARKUP:  # ... but none of its markup
            assert markup not in subject and markup not in body, (name, markup, body)
        assert "\n" not in subject and "\u2028" not in subject + body
        lines = body.splitlines()
        assert not any(line.lstrip().startswith(("#", "-", ">")) for line in lines), (name, body)
        assert all(len(line) <= 1200 for line in lines)


def test_the_only_link_is_the_flow_run_on_our_prefect():
    """A message links to the run that emitted its event (none without one); hostile URLs stay bare text."""
    for name, _, body in _messages():
        ours = [w for w in body.split() if w.startswith("http://127.0.0.1:4200/")]
        with_run = name not in ("smo: deadline at risk", "smo: wellness cap exceeded")  # emitted outside a run here
        assert len(ours) == int(with_run), (name, body)
        assert all(w.startswith("http://127.0.0.1:4200/runs/flow-run/") for w in ours)
        assert "Flow run:" in body if with_run else "Flow run:" not in body


def test_the_template_macro_and_neutral_agree():
    from smo_labelstudio.notify.templates import MACRO

    rendered = _render(MACRO + "{{ s(v, 60) }}", {"v": HOSTILE})
    assert rendered == neutral(HOSTILE, 60)
    assert not any(bad in neutral(HOSTILE, 10_000) for bad, _ in NEUTRAL)


def test_slack_gets_no_mention_or_link(monkeypatch):
    """The real SlackWebhook block and Apprise, up to the HTTP request: its JSON holds no `<...>` sequence."""
    import apprise.plugins.slack as slack
    from prefect.blocks.notifications import SlackWebhook
    from pydantic import SecretStr

    sent: list[dict] = []

    class Ok:
        status_code = 200
        content = b"ok"
        text = "ok"
        headers: dict = {}

    def request(method, url, **kwargs):
        sent.append(json.loads(kwargs["data"]))
        return Ok()

    monkeypatch.setattr(slack.requests, "request", request)
    block = SlackWebhook(url=SecretStr("https://hooks.slack.com/services/T000/B000/XXXXXXXX"))
    for _, subject, body in _messages():
        with block.raise_on_failure():
            block.notify(body=body, subject=subject)
    assert len(sent) == len(RULES)
    for payload in sent:
        text = json.dumps(payload, ensure_ascii=False)
        assert "<!" not in text and "<@" not in text and "<http://evil" not in text, text
        assert "evil.example|" not in text


def test_custom_webhook_never_fills_a_placeholder_from_a_message():
    """`{{webhook_url}}` in a title stays text: the secret URL is only ever the request's address."""
    from smo_labelstudio.notify.automations import make_block

    secret = "http://127.0.0.1:9/hooks/T0KEN-SECRET"
    block = make_block("webhook", secret)
    args = block._build_request_args(body="title {{webhook_url}} and {{ webhook_url }}", subject="{{webhook_url}}")
    assert args["url"] == secret
    assert "T0KEN" not in json.dumps(args["json"])
    args = block._build_request_args(body=_messages()[0][2], subject=_messages()[0][1])
    assert "T0KEN" not in json.dumps(args["json"], ensure_ascii=False)


@pytest.mark.parametrize("url", ["ftp://x.example/hook", "javascript:alert(1)", "hooks.slack.com/services/x"])
def test_only_http_webhooks(url):
    from smo_labelstudio.core.errors import ConfigError
    from smo_labelstudio.notify.automations import make_block

    with pytest.raises(ConfigError, match="must start with https:// or http://"):
        make_block("webhook", url)
