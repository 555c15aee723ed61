"""The notification block and the automations on the Prefect API, made idempotently (`smo notify setup`), and a
test message through the block (`smo notify test`).

The block is a Prefect notification block: a Slack webhook (`slack-webhook`), a generic webhook
(`custom-webhook`, JSON `{"subject", "text"}` POSTed to the URL) or any notification block the team made in the
Prefect UI (e-mail through SendGrid, Teams, PagerDuty, ...), named `TYPE/NAME`. Webhook URLs carry their token,
so they are kept as the block's secrets (a `SecretStr`, or a secret value the custom webhook's URL refers to) and
never printed or logged. The automations are matched by name: a re-run updates them in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from uuid import UUID

from smo_labelstudio.core.errors import ConfigError, ServiceError
from smo_labelstudio.notify.templates import RULES, TEST_SUBJECT, Rule, test_body

DEFAULT_BLOCK_NAME = "smo-notify"
Kind = Literal["slack", "webhook"]
BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True)
class BlockRef:
    """A saved block: `slug/name` and its document id."""

    slug: str
    name: str
    id: UUID

    def __str__(self) -> str:
        return f"{self.slug}/{self.name}"


def make_block(kind: Kind, url: str) -> Any:
    """A new notification block of `kind` sending to `url` (kept as a secret of the block)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook  # noqa: PLC0415
    from pydantic import SecretStr  # noqa: PLC0415

    url = url.strip()
    if not url.lower().startswith(("https://", "http://")):
        raise ConfigError(f"the {kind} URL must start with https:// or http://")
    if kind == "slack":
        return SlackWebhook(url=SecretStr(url))
    return CustomWebhookNotificationBlock(
        name="smo",
        url="{{webhook_url}}",
        json_data={"subject": "{{subject}}", "text": "{{body}}"},  # one placeholder each: no re-substitution
        secrets={"webhook_url": url},
    )


def save_block(block: Any, name: str = DEFAULT_BLOCK_NAME) -> BlockRef:
    """Save (or overwrite) the block under `name`; its reference."""
    if not BLOCK_NAME.fullmatch(name):
        raise ConfigError(f"a block name is lowercase letters, digits and dashes (Prefect's rule), got {name!r}")
    block_id = block.save(name, overwrite=True)
    return BlockRef(block.get_block_type_slug(), name, UUID(str(block_id)))


def parse_ref(ref: str) -> tuple[str, str]:
    """`TYPE/NAME` (e.g. `slack-webhook/team-alerts`) as (slug, name); a mistake is a ConfigError."""
    slug, sep, name = ref.strip().partition("/")
    if not sep or not slug or not name or "/" in name:
        raise ConfigError(f"a notification block is named TYPE/NAME (e.g. slack-webhook/team-alerts), got {ref!r}")
    return slug, name


def find_block(ref: str) -> BlockRef:
    """The saved block `TYPE/NAME`; a ConfigError when there is none or it cannot notify."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    slug, name = parse_ref(ref)
    with get_client(sync_client=True) as client:
        try:
            doc = client.read_block_document_by_name(name, block_type_slug=slug, include_secrets=False)
        except ObjectNotFound:
            raise ConfigError(
                f"no notification block {slug}/{name} on the Prefect API: make one with `smo notify setup --slack URL` "
                "or `--webhook URL`, or in the Prefect UI (Blocks)"
            ) from None
        if doc.block_schema is None or "notify" not in (doc.block_schema.capabilities or []):
            raise ConfigError(f"the block {slug}/{name} is not a notification block")
    return BlockRef(slug, name, doc.id)


def _automation(rule: Rule, block: BlockRef, ui_url: str | None) -> Any:
    from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification  # noqa: PLC0415

    subject, body = rule.templates(ui_url)
    return AutomationCore(
        name=rule.name,
        description=rule.description,
        enabled=True,
        trigger=EventTrigger(
            expect=set(rule.events),
            match=rule.match,
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block.id, subject=subject, body=body)],
    )


def ensure_automations(block: BlockRef, ui_url: str | None) -> dict[str, str]:
    """Every rule's automation sending through `block`, created or updated in place (by name; extra copies of
    the same name deleted); what happened to each ("created", "updated")."""
    from prefect import get_client  # noqa: PLC0415

    done: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for rule in RULES:
            wanted = _automation(rule, block, ui_url)
            existing = client.read_automations_by_name(rule.name)
            if existing:
                client.update_automation(existing[0].id, wanted)
                for extra in existing[1:]:
                    client.delete_automation(extra.id)
                done[rule.name] = "updated"
            else:
                client.create_automation(wanted)
                done[rule.name] = "created"
    return done


def current_block() -> BlockRef | None:
    """The block the automations send through (None before `smo notify setup`)."""
    from prefect import get_client  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        for rule in RULES:
            for automation in client.read_automations_by_name(rule.name):
                for action in automation.actions:
                    block_id = getattr(action, "block_document_id", None)
                    if block_id:
                        doc = _block_document(client, block_id, include_secrets=False)
                        return BlockRef(doc.block_type.slug if doc.block_type else "", doc.name or "", doc.id)
    return None


def _block_document(client: Any, block_id: UUID, *, include_secrets: bool) -> Any:
    """The block document; a ConfigError when it was deleted (the automations still name it)."""
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    try:
        return client.read_block_document(block_id, include_secrets=include_secrets)
    except ObjectNotFound:
        raise ConfigError(
            f"the notification block {block_id} is gone from the Prefect API: run `smo notify setup` with a block"
        ) from None


def send(block: BlockRef, subject: str, body: str) -> None:
    """Send one message through the saved block, now; a failure is a ServiceError naming the block, never its
    URL."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.blocks.abstract import NotificationBlock  # noqa: PLC0415
    from prefect.blocks.core import Block  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        doc = _block_document(client, block.id, include_secrets=True)
    notifier = Block._from_block_document(doc)
    if not isinstance(notifier, NotificationBlock):
        raise ConfigError(f"the block {block} is not a notification block")
    try:
        with notifier.raise_on_failure():
            notifier.notify(body=body, subject=subject)  # type: ignore[unused-coroutine]  # sync here (async_dispatch)
    except Exception as exc:  # noqa: BLE001 - whatever failed, the message must not carry the URL
        status = getattr(getattr(exc, "response", None), "status_code", None)
        why = f"HTTP {status}" if status else type(exc).__name__
        raise ServiceError(f"the notification block {block} could not deliver the message ({why})") from None


def send_test(block: BlockRef, ui_url: str | None) -> None:
    """The `smo notify test` message through `block`."""
    send(block, TEST_SUBJECT, test_body(ui_url))


def prefect_ui_url() -> str | None:
    """The Prefect UI's address for links in messages (PREFECT_UI_URL, else derived from PREFECT_API_URL)."""
    from prefect.settings import PREFECT_UI_URL  # noqa: PLC0415

    value = PREFECT_UI_URL.value()
    return str(value).rstrip("/") if value else None
