"""Making untrusted text safe wherever we publish it: the one place that escapes and sanitizes.

Labels, languages, annotator names, item text and titles come from people we do not trust (any Label
Studio account can post any annotation JSON or edit a task's data). Everything we render from them goes
through here:

- `md_text`: a value as Markdown *text* (reports, datasheets, Prefect markdown artifacts): HTML characters
  become entities, Markdown punctuation that could start a link, image, code span, emphasis or table cell
  is backslash-escaped, line breaks and control characters become spaces.
- `md_link`: a Markdown link only to an http(s)/mailto or relative address; anything else is plain text.
- `plain`: a value for a Prefect table artifact cell (text, HTML characters as entities, one line).
- `sanitize_html`: rendered Markdown through nh3 (ammonia) with an allow-list of tags, attributes and link
  schemes, so a report page can carry nothing active even if an escape above were missed.
- `CSP` / `STYLE`: the report pages' Content-Security-Policy (no script at all; images only as `data:`;
  the one stylesheet allowed by its hash).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from typing import Any
from urllib.parse import quote, urlsplit

import nh3

# Characters Markdown (CommonMark, GFM, Python-Markdown) gives a meaning inline: links and images ([ ] ( ) !),
# code spans (`), emphasis (*), tables (|), headings' closing (#), escapes (\) and raw HTML or autolinks (< >,
# entities after html.escape).
_MD_PUNCT = re.compile(r"([\\`*\[\]()!|#])")
_MD_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")  # `_` that could open or close emphasis (not in_words)
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")

LINK_SCHEMES = frozenset({"http", "https", "mailto"})

TAGS = frozenset(
    {
        *("h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "blockquote"),
        *("strong", "em", "code", "pre", "ul", "ol", "li", "a", "img"),
        *("table", "thead", "tbody", "tr", "th", "td"),
    }
)
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}}

STYLE = (
    "body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; color: #222; }\n"
    "table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }\n"
    "th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }\n"
    "th { background: #f4f4f4; }\n"
    "img { max-width: 100%; }\n"
)
CSP = (
    "default-src 'none'; img-src data:; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
    "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'"
)


def one_line(value: Any) -> str:
    """`value` as text on one line: line breaks and control characters become a space."""
    return _LINE_BREAKS.sub(" ", str(value))


def md_text(value: Any) -> str:
    """`value` as Markdown text that renders as exactly those characters: no markup, link, table cell or
    line break can come from it."""
    text = html.escape(one_line(value), quote=True)
    return _MD_UNDERSCORE.sub(r"\\_", _MD_PUNCT.sub(r"\\\1", text))


def safe_url(value: Any) -> str | None:
    """`value` if it is an http(s) or mailto address or a relative path (percent-encoded where Markdown or
    HTML would read a character), else None."""
    if value is None:
        return None
    url = str(value).strip()
    if not url or _LINE_BREAKS.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme and scheme not in LINK_SCHEMES:
        return None
    if not scheme and (url.startswith("//") or ":" in url.split("/", 1)[0]):
        return None  # protocol-relative, or a scheme urlsplit did not recognise
    if scheme in ("http", "https") and not parts.netloc:
        return None
    return quote(url, safe="/:?#@&=+;,%~.-_!$*'")


def md_link(text: Any, url: Any) -> str:
    """A Markdown link `[text](url)` when `url` is safe (`safe_url`); else the text alone."""
    target = safe_url(url)
    return f"[{md_text(text)}]({target})" if target else md_text(text)


def plain(value: Any) -> Any:
    """A table-artifact cell: strings on one line with HTML characters as entities; numbers, booleans and
    None unchanged."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return html.escape(one_line(value), quote=True)


def plain_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every key and cell of a table artifact through `plain`."""
    return [{str(plain(k)): plain(v) for k, v in row.items()} for row in rows]


def sanitize_html(fragment: str) -> str:
    """HTML from rendered Markdown with only allow-listed tags and attributes, links to http(s), mailto or
    relative addresses only (nh3 drops `javascript:`, `data:` and every other scheme), comments removed."""
    return nh3.clean(
        fragment,
        tags=set(TAGS),
        clean_content_tags={"script", "style"},
        attributes={k: set(v) for k, v in ATTRIBUTES.items()},
        url_schemes=set(LINK_SCHEMES),
        strip_comments=True,
        link_rel="noopener noreferrer",
    )
