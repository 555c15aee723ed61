"""Label Studio label configs generated from the taxonomy, so labels never drift from policy.

Control names are a contract read by pulls, the backend and exports:
`policy` (multi-label choices), `severity` (one level), `spans` (harmful-span labels, text only),
`escalation` (unsure / needs escalation) and `note` (free text).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from smo_labelstudio.core.errors import ConfigError

if TYPE_CHECKING:  # the ML backend's environment reads configs without pydantic
    from smo_labelstudio.core.taxonomy import Taxonomy

KINDS = ("text_moderation", "image_moderation", "social_post")
ESCALATE = "needs_escalation"

# `unicode-bidi: plaintext` gives each paragraph the direction of its first strong character, so
# Arabic, Hebrew and Urdu read and align right-to-left and English left-to-right in one project.
# Label Studio renders text lines as inline spans: they must be blocks to be paragraphs (the browser
# test in tests/test_annotator_ui.py checks the alignment).
STYLE = (
    ".smo-content { font-size: 16px; line-height: 1.6; }"
    " .smo-content .lsf-richtext__line { display: block; unicode-bidi: plaintext; text-align: start; }"
)


def _el(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})


def _controls(root: ET.Element, tax: Taxonomy, to_name: str, spans: bool) -> None:
    _el(root, "Header", value="Policy: choose every policy that applies", size="5")
    policy = _el(
        root,
        "Choices",
        name="policy",
        toName=to_name,
        choice="multiple",
        showInLine="false",
        required="true",
        requiredMessage="Choose at least one policy, or No violation",
    )
    for p in tax.policies:
        _el(policy, "Choice", value=p.title, alias=p.id, hint=p.definition)
    _el(root, "Header", value="Severity of the most severe violation", size="5")
    severity = _el(root, "Choices", name="severity", toName=to_name, choice="single-radio", showInLine="true")
    for level in tax.severity:
        _el(severity, "Choice", value=f"{level.level} - {level.name}", alias=str(level.level), hint=level.rubric)
    if spans:
        _el(root, "Header", value="Mark the violating words", size="5")
        labels = _el(root, "Labels", name="spans", toName=to_name)
        for p in tax.violations:
            _el(labels, "Label", value=p.title, alias=p.id)
    escalation = _el(root, "Choices", name="escalation", toName=to_name, choice="multiple")
    _el(escalation, "Choice", value="Unsure / needs escalation", alias=ESCALATE)
    _el(
        root,
        "TextArea",
        name="note",
        toName=to_name,
        placeholder="Note for reviewers (why unsure, context)",
        rows="2",
        maxSubmissions="1",
        editable="true",
    )


def render_config(tax: Taxonomy, kind: str) -> str:
    """The label config XML for one kind of item."""
    if kind not in KINDS:
        raise ConfigError(f"unknown config kind {kind!r}; expected one of {', '.join(KINDS)}")
    root = ET.Element("View")
    _el(root, "Style").text = STYLE
    _el(root, "Header", value="Language: $language", size="6")
    content = _el(root, "View", className="smo-content")
    if kind in ("image_moderation", "social_post"):
        _el(content, "Image", name="image", value="$image", maxWidth="640px")
    if kind in ("text_moderation", "social_post"):
        _el(content, "Text", name="text", value="$text")
    _controls(root, tax, to_name="image" if kind == "image_moderation" else "text", spans=kind != "image_moderation")
    ET.indent(root, space="  ")
    header = (
        f"<!-- Generated from taxonomy.yaml version {tax.version} ({tax.fingerprint()}) by "
        f"`smo configs build`: edit the taxonomy, not this file. -->\n"
    )
    return header + ET.tostring(root, encoding="unicode") + "\n"


def config_labels(xml: str) -> dict[str, set[str]]:
    """Stored values (alias, else value) of every control's choices and labels, by control name."""
    root = ET.fromstring(xml)
    found: dict[str, set[str]] = {}
    for control in root.iter():
        name = control.get("name")
        if control.tag in ("Choices", "Labels") and name:
            found[name] = {
                stored
                for c in control
                if c.tag in ("Choice", "Label") and (stored := c.get("alias") or c.get("value")) is not None
            }
    return found


def control_target(xml: str, control: str) -> str | None:
    """The object a control labels (its `toName`), e.g. "text" or "image"; None if absent."""
    for el in ET.fromstring(xml).iter():
        if el.get("name") == control and el.tag in ("Choices", "Labels"):
            return el.get("toName")
    return None
