"""Annotator scorecards: one self-contained HTML page per annotator, under a pseudonym, holding only their own
figures (metrics.scorecard), and an index for the project manager.

Written into the workspace's `reports/scorecards/`, replaced on every run (stable paths the PM can share):

    pages/annotator-xxxxxxxx.html   one per annotator: no e-mail, no other annotator's name or answers
    index.html                      the PM's map: pseudonym -> e-mail -> page (the only place e-mails appear)
    scorecards.json                 the figures per pseudonym (no e-mails)

The pseudonym is the one review tasks show (`quality.adjudication.review_pseudonym`: an HMAC under the
workspace's key), so the PM can map it and an annotator cannot. Pages go through the report shell (Markdown
with every value escaped, nh3, a strict CSP, the plot inlined as a data: PNG).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from smo_labelstudio.core.files import write_json, write_text
from smo_labelstudio.core.keys import secret_key
from smo_labelstudio.core.spec import Quality, Spec
from smo_labelstudio.core.taxonomy import Taxonomy, load_taxonomy
from smo_labelstudio.core.workspace import Workspace, read_plan, read_table
from smo_labelstudio.metrics.scorecard import IN_SCOPE, OUT_OF_SCOPE, Scorecard, scorecard
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.adjudication import review_pseudonym
from smo_labelstudio.quality.check import CheckResult, load_inputs
from smo_labelstudio.reports.plots import png
from smo_labelstudio.reports.quality_pass import check
from smo_labelstudio.reports.safe import md_text
from smo_labelstudio.reports.shell import render_html, render_markdown_template

TEXT_CHARS = 280  # of an item's text on a card


@dataclass
class ScorecardFiles:
    """Where the scorecards were written: the index, the pages by pseudonym, the JSON figures."""

    folder: Path
    index: Path
    pages: dict[str, Path]
    summary: Path


def plot_timeline(timeline: pd.DataFrame, bar: float) -> bytes:
    """Running gold accuracy after each gold answer with its 95% Wilson band and the bar."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    timed = timeline["at"].notna().all()
    x = pd.to_datetime(timeline["at"]) if timed else timeline["n"]
    ax.fill_between(x, timeline["ci_low"], timeline["ci_high"], color="#4c72b0", alpha=0.2, label="95% interval")
    ax.plot(x, timeline["accuracy"], color="#4c72b0", marker="o", markersize=3, label="your accuracy so far")
    ax.axhline(bar, color="#c44e52", linestyle="--", linewidth=1, label=f"the bar ({bar:.0%})")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time of the gold answer (UTC)" if timed else "gold answers")
    ax.set_ylabel("accuracy on gold")
    ax.set_title("Your gold accuracy over time", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.autofmt_xdate()
    return png(fig)


def _guideline(tax: Taxonomy, policy: str, section: str, gold_severity: str) -> tuple[str, str]:
    """(reference, excerpt) of a guideline section: "Hate › In scope (guidelines/hate.md)" and what it says."""
    found = next((p for p in tax.policies if p.id == policy), None)
    if found is None:
        return f"overview › {section} (guidelines/overview.md)", ""
    if section == IN_SCOPE:
        excerpt = " · ".join(found.in_scope)
    elif section == OUT_OF_SCOPE:
        excerpt = " · ".join(found.out_of_scope)
    else:
        level = int(gold_severity) if gold_severity.isdigit() else None
        excerpt = f"level {level}: {found.severity.get(level, '-')}" if level else ""
    return f"{found.title} › {section} (guidelines/{found.id}.md)", excerpt


def _short(text: Any) -> str:
    text = "" if text is None or (isinstance(text, float) and pd.isna(text)) else " ".join(str(text).split())
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _missed_rows(card: Scorecard, tax: Taxonomy, texts: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for m in card.missed.itertuples():
        reference, excerpt = _guideline(tax, m.policy, m.section, m.gold if m.what == "severity" else "")
        given, gold = (f"severity {m.given}", f"severity {m.gold}") if m.what == "severity" else (m.given, m.gold)
        rows.append(
            {
                "text": _short(texts.get(m.task)) or "(no text)",
                "given": given,
                "gold": gold,
                "guideline": reference,
                "excerpt": excerpt,
            }
        )
    return pd.DataFrame(rows, columns=["text", "given", "gold", "guideline", "excerpt"])


def _confusion_table(matrix: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """A crosstab as a frame for the `table` filter: a first column naming consensus' label."""
    frame = matrix.reset_index()
    columns = {"consensus": "consensus \\ yours"} | {f"c{i}": md_text(c) for i, c in enumerate(matrix.columns)}
    frame.columns = ["consensus", *[f"c{i}" for i in range(len(matrix.columns))]]
    return frame.astype({"consensus": str}), columns


def _confusion_pairs(matrix: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """A crosstab as (consensus, yours, tasks) rows, one per pair that differs and occurs, most frequent first."""
    pairs = matrix.stack().rename("tasks").reset_index()
    pairs = pairs[(pairs["tasks"] > 0) & (pairs["consensus"].astype(str) != pairs["yours"].astype(str))]
    pairs = pairs.sort_values(["tasks", "consensus", "yours"], ascending=[False, True, True])
    columns = {"consensus": "consensus", "yours": "yours", "tasks": "tasks"}
    return pairs.astype({"consensus": str, "yours": str}), columns


def render_card(
    card: Scorecard,
    pseudonym: str,
    title: str,
    quality: Quality,
    tax: Taxonomy,
    texts: dict[str, Any],
    generated: datetime,
) -> tuple[str, dict[str, bytes]]:
    """One annotator's page: the Markdown (values escaped) and its plots by file name."""
    summary = card.summary(quality.min_gold_accuracy, quality.min_gold_answers)
    plots = (
        {"gold-over-time.png": plot_timeline(card.timeline, quality.min_gold_accuracy)} if len(card.timeline) else {}
    )
    confusions = []
    pairs = _confusion_pairs(card.policy_confusion) if len(card.policy_confusion) else None
    if pairs is not None and len(pairs[0]):  # policy sets make a wide matrix: the pairs that differ, most first
        confusions.append(("Policy sets where you and consensus differed", *pairs))
    if len(card.severity_confusion):
        confusions.append(("Severity: consensus against your answers", *_confusion_table(card.severity_confusion)))
    text = render_markdown_template(
        "scorecard.md",
        pseudonym=pseudonym,
        title=title,
        generated=generated,
        s=summary,
        min_answers=quality.min_gold_answers,
        plots=plots,
        n_consensus=int(card.policy_confusion.to_numpy().sum()) if len(card.policy_confusion) else 0,
        differences=card.differences,
        confusions=confusions,
        missed=_missed_rows(card, tax, texts),
    )
    return text, plots


def build_scorecards(
    ws: Workspace,
    title: str,
    quality: Quality,
    labels: pd.DataFrame,
    gold: pd.DataFrame | None,
    consensus: pd.DataFrame,
    *,
    cancelled: list | None = None,
    generated: datetime | None = None,
    tax: Taxonomy | None = None,
) -> ScorecardFiles:
    """Every annotator's page, the PM's index and scorecards.json in `reports/scorecards/` of the workspace."""
    generated = generated or datetime.now(UTC)
    tax = tax or load_taxonomy()
    order = [p.id for p in tax.policies]
    key = secret_key(ws.root / "export_key")
    times = _times(ws)
    plan = read_plan(ws, ["text"])
    texts = dict(zip(plan["external_id"], plan["text"], strict=True)) if "text" in plan.columns else {}
    folder = ws.reports / "scorecards"
    (folder / "pages").mkdir(parents=True, exist_ok=True)
    pages, rows, figures = {}, [], {}
    latest = qi.latest_annotations(labels, cancelled)  # once, then each annotator's own rows
    for annotator, theirs in latest.groupby(latest["annotator"].astype(str), sort=True):
        card = scorecard(str(annotator), theirs, gold, consensus, order, times=times)
        pseudonym = review_pseudonym(key, annotator)
        text, plots = render_card(card, pseudonym, title, quality, tax, texts, generated)
        page = folder / "pages" / f"{pseudonym}.html"
        write_text(page, render_html("scorecard.html", text, plots, f"{pseudonym} · {title}"))
        pages[pseudonym] = page
        figures[pseudonym] = card.summary(quality.min_gold_accuracy, quality.min_gold_answers)
        rows.append(
            {"pseudonym": pseudonym, "email": annotator, "page": f"pages/{pseudonym}.html", **figures[pseudonym]}
        )
    for stale in (folder / "pages").glob("annotator-*.html"):
        if stale.stem not in pages:
            stale.unlink()  # an annotator no longer in the labels: their old page goes
    index_text = render_markdown_template("scorecard_index.md", title=title, generated=generated, rows=rows)
    index = folder / "index.html"
    write_text(index, render_html("scorecard_index.html", index_text, {}, title))
    summary = folder / "scorecards.json"
    write_json(summary, {"title": title, "generated": generated.isoformat(), "annotators": figures})
    return ScorecardFiles(folder, index, pages, summary)


def _times(ws: Workspace) -> pd.Series | None:
    """annotation id -> created_at from the pulled annotations table (None before a pull wrote it)."""
    if not ws.annotations.exists():
        return None
    ann = read_table(ws.annotations, columns=["annotation_id", "created_at"]).drop_duplicates("annotation_id")
    return ann.set_index("annotation_id")["created_at"]


def scorecards_from_check(ws: Workspace, spec: Spec, result: CheckResult, inputs: dict[str, Any]) -> ScorecardFiles:
    """The scorecards of a quality pass just run (what the quality-check flow calls after the pass)."""
    return build_scorecards(
        ws,
        spec.title,
        spec.quality,
        inputs["labels"],
        inputs["gold"],
        result.consensus,
        cancelled=inputs["cancelled"],
    )


def write_scorecards(spec: Spec, *, home: Path | None = None, n_boot: int = 50) -> ScorecardFiles:
    """`smo scorecards --spec`: check the workspace's pulled labels (consensus as the quality pass computes it,
    Label Studio not contacted) and write the scorecards."""
    ws = Workspace.for_title(spec.title, home)
    load_inputs(ws)  # a missing table is one line, before anything is computed
    result, inputs = check(ws, spec, n_boot=n_boot)
    return scorecards_from_check(ws, spec, result, inputs)
