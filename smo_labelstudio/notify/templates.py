"""The messages the automations send: one Jinja subject and body per rule, rendered by the Prefect server's
actions service from the triggering event (and, for a flow run, the run).

Every value that people can choose (project titles, annotator e-mails, gate details, flow run names, error
messages) goes through the `s()` macro: on one line, cut to a length, and with the characters Slack, Markdown
and HTML read as markup replaced by look-alikes (`<` `>` `&` `[` `]` `` ` `` `*` `|` `{` `}`), so a title like
`<!channel>` or `[click](http://evil)` shows as text and cannot ping, link or fake lines. Look-alikes rather
than entities: Apprise's Slack plugin turns `&lt;url|text&gt;` back into a link.
"""

from __future__ import annotations

from dataclasses import dataclass

from smo_labelstudio.quality.qualification import PAUSED_EVENT
from smo_labelstudio.reports.operations import DEADLINE_EVENT, WELLNESS_EVENT
from smo_labelstudio.reports.quality_pass import GATE_FAILED_EVENT

FLOW_RUN_FAILED = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")

# Characters with a meaning in Slack mrkdwn, Markdown or HTML, and line breaks: each becomes a harmless look-alike.
NEUTRAL: tuple[tuple[str, str], ...] = (
    ("&", "＆"),
    ("<", "‹"),
    (">", "›"),
    ("[", "［"),
    ("]", "］"),
    ("`", "ˋ"),
    ("*", "∗"),
    ("|", "¦"),
    ("{", "｛"),
    ("}", "｝"),
    *((c, " ") for c in ("\r\n", "\n", "\r", "\t", "\x0b", "\x0c", "\x85", "\u2028", "\u2029")),
)


def neutral(value: object, limit: int = 160) -> str:
    """What the `s()` macro makes of `value` (the same replacements, one line, at most `limit` characters)."""
    text = "" if value is None else str(value)
    for bad, good in NEUTRAL:
        text = text.replace(bad, good)
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _jinja_literal(text: str) -> str:
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


MACRO = (
    "{%- macro s(v, n=160) -%}{{ (v if v is not none else '') | string"
    + "".join(f" | replace({_jinja_literal(a)}, {_jinja_literal(b)})" for a, b in NEUTRAL)
    + " | truncate(n, True, '...', 0) }}{%- endmacro -%}"
)


@dataclass(frozen=True)
class Rule:
    """One automation: its name, the events that trigger it, and the message (Jinja, after MACRO)."""

    name: str
    description: str
    events: tuple[str, ...]
    match: dict[str, str]
    subject: str
    body: str

    def templates(self, ui_url: str | None) -> tuple[str, str]:
        """Subject and body as the server renders them; `ui_url` (the Prefect UI, e.g. http://127.0.0.1:4200) for
        the links to flow runs, none without it."""
        base = (ui_url or "").rstrip("/")
        body = self.body.replace("@UI@", base) if base else _without_links(self.body)
        return MACRO + self.subject, MACRO + body


def _without_links(body: str) -> str:
    return "\n".join(line for line in body.splitlines() if "@UI@" not in line)


_EMITTING_RUN = (
    "{% set run = event.resource_in_role['flow-run'] %}"
    "{% if run %}Flow run: @UI@/runs/flow-run/{{ run.id | replace('prefect.flow-run.', '') }}{% endif %}"
)
_PROJECT = "{{ s(event.resource.name or event.resource.id) }}"

RULES: tuple[Rule, ...] = (
    Rule(
        name="smo: quality gate failed",
        description="A quality pass found a gate below its threshold (smo.quality.gate-failed).",
        events=(GATE_FAILED_EVENT,),
        match={"prefect.resource.id": "smo.project.*"},
        subject="[smo] Quality gate failed: " + _PROJECT,
        body=(
            "Project " + _PROJECT + ": the quality pass failed "
            "{{ event.payload.failed_gates | length }} gate(s): "
            "{{ s(event.payload.failed_gates | map(attribute='name') | join(', '), 400) }}.\n"
            "Report: {{ s(event.payload.report, 300) }}\n" + _EMITTING_RUN
        ),
    ),
    Rule(
        name="smo: annotator paused",
        description="The qualification rules paused an annotator (smo.annotator.paused).",
        events=(PAUSED_EVENT,),
        match={"prefect.resource.id": "smo.annotator.*"},
        subject="[smo] Annotator paused: {{ s(event.payload.annotator, 80) }}",
        body=(
            "Project {{ s(event.resource_in_role['project'].name or event.resource_in_role['project'].id) }}: "
            "annotator {{ s(event.payload.annotator, 120) }} was paused "
            "({{ s(event.payload.reason, 300) }}); {{ s(event.payload.tasks_withdrawn) }} answer(s) withdrawn.\n"
            + _EMITTING_RUN
        ),
    ),
    Rule(
        name="smo: deadline at risk",
        description="The operations report's ETA is past the spec's deadline (smo.deadline.at-risk).",
        events=(DEADLINE_EVENT,),
        match={"prefect.resource.id": "smo.project.*"},
        subject="[smo] Deadline at risk: " + _PROJECT,
        body=(
            "Project " + _PROJECT + ": at the recent rate the work finishes "
            "{{ s(event.payload.eta or 'never (no recent answers)') }}, after the deadline "
            "{{ s(event.payload.deadline) }}; {{ s(event.payload.remaining_answers) }} answer(s) remaining.\n"
            "Report: {{ s(event.payload.report, 300) }}\n" + _EMITTING_RUN
        ),
    ),
    Rule(
        name="smo: wellness cap exceeded",
        description="An annotator answered more high-severity items in a day than the spec allows "
        "(smo.wellness.cap-exceeded).",
        events=(WELLNESS_EVENT,),
        match={"prefect.resource.id": "smo.project.*"},
        subject="[smo] Wellness cap exceeded: " + _PROJECT,
        body=(
            "Project " + _PROJECT + ": {{ event.payload.exceeded | length }} annotator-day(s) over the daily "
            "high-severity cap.\nReport: {{ s(event.payload.report, 300) }}\n" + _EMITTING_RUN
        ),
    ),
    Rule(
        name="smo: flow run failed",
        description="A flow run failed or crashed (prefect.flow-run.Failed, prefect.flow-run.Crashed).",
        events=FLOW_RUN_FAILED,
        match={"prefect.resource.id": "prefect.flow-run.*"},
        subject="[smo] Flow run {{ s(flow_run.state.name or 'failed') }}: {{ s(flow.name) }}",
        body=(
            "Flow {{ s(flow.name) }}, run {{ s(flow_run.name) }}: {{ s(flow_run.state.name) }}"
            "{% if flow_run.parameters.params and flow_run.parameters.params.spec %}"
            " (spec {{ s(flow_run.parameters.params.spec, 200) }}){% endif %}.\n"
            "{{ s(flow_run.state.message, 400) }}\n"
            "Flow run: @UI@/runs/flow-run/{{ flow_run.id }}"
        ),
    ),
)

TEST_SUBJECT = "[smo] Test notification"


def test_body(ui_url: str | None) -> str:
    """The text `smo notify test` sends."""
    where = f" (Prefect: {ui_url})" if ui_url else ""
    return f"smo notify test: notifications from the labeling line reach this channel{where}."
