"""The one report shell both reports share: the Jinja2 templates, Markdown helpers that escape data, the
self-contained HTML page (plots inlined, a strict Content-Security-Policy) and the one writer of a
report folder (report.md with its PNGs, report.html, summary.json).

Markdown templates (`*.md`) are rendered with every `{{ value }}` escaped as Markdown text (`safe.md_text`:
HTML characters, link and image brackets, code and emphasis marks, table pipes, line breaks), so labels,
languages, annotator names and titles are text, never markup; links to data go through the `link` filter
(http, https, mailto or relative only). The Markdown's HTML is then cleaned by nh3 with an allow-list
(`safe.sanitize_html`) before it goes into an autoescaped HTML template under the page's CSP (`safe.CSP`).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import markdown
import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from smo_labelstudio.core.files import write_bytes, write_json, write_text
from smo_labelstudio.reports.safe import CSP, STYLE, md_link, md_text, sanitize_html


def cell(value: Any, digits: int = 3) -> Markup:
    """One value for a table or a sentence: 'n/a' for missing, floats to `digits` places, the rest as text."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Markup("n/a")
    if isinstance(value, (float, np.floating)):
        return Markup(f"{value:.{digits}f}")
    return Markup(md_text(value))


def md_table(frame: pd.DataFrame, columns: dict[str, str]) -> Markup:
    """A Markdown table of `frame`'s `columns` (column -> header), every cell through `cell`."""
    head = "| " + " | ".join(columns.values()) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for _, row in frame.iterrows()]
    return Markup("\n".join([head, rule, *body]))


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec)


def _link(text: Any, url: Any) -> Markup:
    return Markup(md_link(text, url))


def _markdown_finalize(value: Any) -> Any:
    return value if isinstance(value, Markup) else md_text(value)


def _environment(**options: Any) -> Environment:
    env = Environment(
        loader=PackageLoader("smo_labelstudio.reports", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
        **options,
    )
    env.filters.update({"cell": cell, "table": md_table, "fmt": _fmt, "link": _link})
    return env


MARKDOWN = _environment(autoescape=False, finalize=_markdown_finalize)
HTML = _environment(autoescape=True)


def render_markdown_template(name: str, **context: Any) -> str:
    """A Markdown template (`templates/<name>`) with every value escaped as Markdown text."""
    return MARKDOWN.get_template(name).render(**context)


def data_uri(png: bytes) -> str:
    """A PNG as a `data:` URI (the page's CSP allows images from data: only)."""
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def render_html(template: str, markdown_text: str, plots: dict[str, bytes], title: str) -> str:
    """The Markdown as one self-contained HTML page from `template` (which extends base.html): the HTML
    cleaned to the allow-list, then every plot (our own file names) inlined as a base64 PNG."""
    body = sanitize_html(markdown.markdown(markdown_text, extensions=["tables"]))
    for name, data in plots.items():
        body = body.replace(f'src="{name}"', f'src="{data_uri(data)}"')
    return HTML.get_template(template).render(title=title, body=Markup(body), csp=CSP, style=Markup(STYLE))


@dataclass
class ReportFiles:
    """Where a report was written."""

    folder: Path
    markdown: Path
    html: Path
    summary: Path


def write_report_files(
    folder: Path, plots: dict[str, bytes], markdown_text: str, page: str, summary: dict[str, Any]
) -> ReportFiles:
    """Write the PNGs, report.md, report.html and summary.json into `folder`, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in plots.items():
        write_bytes(folder / name, data)
    files = ReportFiles(folder, folder / "report.md", folder / "report.html", folder / "summary.json")
    write_text(files.markdown, markdown_text)
    write_text(files.html, page)
    write_json(files.summary, summary)
    return files
