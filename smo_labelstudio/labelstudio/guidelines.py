"""Annotation guidelines: one Markdown page per policy plus an overview, generated from the
taxonomy, and their versioned HTML rendering that becomes a project's instructions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import markdown

from smo_labelstudio.core.taxonomy import NO_VIOLATION, Policy, Taxonomy

OVERVIEW = "overview"
GENERATED_NOTE = "<!-- Generated from taxonomy.yaml by `smo configs build`: edit the taxonomy, not this file. -->"


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def policy_page(tax: Taxonomy, policy: Policy) -> str:
    """One policy's page: definition, scope with examples, severity rubric, when to escalate."""
    langs = "all languages" if policy.languages == "all" else ", ".join(policy.languages)
    lines = [
        GENERATED_NOTE,
        f"# {policy.title}",
        "",
        f"Policy id: `{policy.id}` · taxonomy version {tax.version} · applies to {langs}.",
        "",
        "## Definition",
        "",
        policy.definition,
        "",
        "## In scope",
        "",
        _bullets(policy.in_scope),
        "",
        "## Out of scope",
        "",
        _bullets(policy.out_of_scope),
        "",
    ]
    if policy.id != NO_VIOLATION:
        lines += ["## Severity", "", "| level | in general | for this policy |", "|---|---|---|"]
        lines += [f"| {s.level} - {s.name} | {s.rubric} | {policy.severity.get(s.level, '-')} |" for s in tax.severity]
        lines += ["", "## Escalate when", "", _bullets(tax.escalate_when), ""]
    return "\n".join(lines)


def overview_page(tax: Taxonomy) -> str:
    """The overview: the order of decisions, the policy list, the severity rubric, escalation."""
    lines = [
        GENERATED_NOTE,
        f"# {tax.name}: annotation guidelines",
        "",
        f"Taxonomy version {tax.version}. Read this page first, then the page of each policy.",
        "",
        "## Order of decisions",
        "",
    ]
    lines += [f"{i}. {step}" for i, step in enumerate(tax.decision_order, 1)]
    lines += ["", "## Policies", "", "| policy | definition |", "|---|---|"]
    lines += [f"| [{p.title}]({p.id}.md) | {p.definition} |" for p in tax.policies]
    lines += ["", "## Severity rubric", "", "| level | meaning |", "|---|---|"]
    lines += [f"| {s.level} - {s.name} | {s.rubric} |" for s in tax.severity]
    if tax.changelog:  # what changed last, so annotators re-read those pages
        last = tax.changelog[-1]
        titles = {p.id: p.title for p in tax.policies}
        said = [last.note] if last.note else []
        if last.changed:
            links = ", ".join(f"[{titles[p]}]({p}.md)" for p in last.changed)
            said.append(f"Definition or scope changed: {links}.")
        for policy, origins in sorted(last.may_add.items()):
            marked = ", ".join(titles[o] for o in origins)
            said.append(f"Items you would have marked {marked} may now also be {titles[policy]}.")
        lines += ["", f"## What changed in version {last.version}"]
        for paragraph in said:
            lines += ["", paragraph]
    lines += [
        "",
        "## When to escalate",
        "",
        _bullets(tax.escalate_when),
        "",
        "## Right-to-left languages",
        "",
        f"Items in {', '.join(tax.rtl_languages)} display right-to-left; span selection works the same.",
        "",
    ]
    return "\n".join(lines)


def render_pages(tax: Taxonomy) -> dict[str, str]:
    """File name -> Markdown for every guideline page."""
    pages = {f"{OVERVIEW}.md": overview_page(tax)}
    pages.update({f"{p.id}.md": policy_page(tax, p) for p in tax.policies})
    return pages


def read_pages(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md"))}


def pages_version(tax: Taxonomy, pages: dict[str, str]) -> str:
    """`<taxonomy version>+<hash of the pages>`: changes whenever any page's text changes."""
    digest = hashlib.sha256("".join(pages[k] for k in sorted(pages)).encode()).hexdigest()[:8]
    return f"{tax.version}+{digest}"


def instructions_html(tax: Taxonomy, pages: dict[str, str]) -> str:
    """One HTML document of all pages, overview first, stamped with its version, for Label Studio."""
    order = [OVERVIEW] + [p.id for p in tax.policies]
    sections = []
    for name in order:
        if f"{name}.md" in pages:
            html = markdown.markdown(pages[f"{name}.md"], extensions=["tables"])
            for target in order:  # links between pages become links within the one document
                html = html.replace(f'href="{target}.md"', f'href="#guideline-{target}"')
            sections.append(f'<section id="guideline-{name}">{html}</section>')
    body = "\n<hr/>\n".join(sections)
    return (
        f"<style>{GUIDELINES_CSS}</style>"
        f'<div class="smo-guidelines" data-guidelines-version="{pages_version(tax, pages)}">'
        f"<p><b>Guidelines version {pages_version(tax, pages)}</b></p>\n{body}</div>"
    )


# Label Studio's instructions dialog sets headings with no line height to speak of (a wrapped title
# overlapped the line above) and tables without spacing; `style` is among the tags it keeps.
GUIDELINES_CSS = (
    ".smo-guidelines h1,.smo-guidelines h2,.smo-guidelines h3{line-height:1.3;margin:.8em 0 .4em}"
    ".smo-guidelines th,.smo-guidelines td{padding:2px 8px;vertical-align:top;text-align:start}"
    ".smo-guidelines li{margin:.2em 0}"
)
