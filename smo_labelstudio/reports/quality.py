"""The quality report a project manager reads: Markdown plus a self-contained HTML page (plots inline).

Plots (matplotlib, Agg backend, PNG): annotator gold accuracy with Wilson intervals and the
threshold, agreement per policy and per language with percent agreement, kappa, AC1 and alpha side
by side (rare policies make kappa and alpha low while raw agreement is high), alpha per policy and
language, and each flagged annotator's confusion against gold. Written into `reports/quality-<stamp>/`.
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import markdown  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from smo_labelstudio.core.workspace import _atomic, write_json  # noqa: E402
from smo_labelstudio.quality.calibration import describe, reliability  # noqa: E402
from smo_labelstudio.quality.check import FIGURES, CheckResult  # noqa: E402

FIGURE_NAMES = {
    "percent_agreement": "percent agreement",
    "fleiss_kappa": "Fleiss' kappa",
    "gwet_ac1": "Gwet's AC1",
    "krippendorff_alpha": "Krippendorff's alpha",
}
COLOURS = {
    "percent_agreement": "#9e9e9e",
    "fleiss_kappa": "#4c72b0",
    "gwet_ac1": "#55a868",
    "krippendorff_alpha": "#c44e52",
}


@dataclass
class ReportFiles:
    folder: Path
    markdown: Path
    html: Path
    summary: Path


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def plot_gold_accuracy(annotators: pd.DataFrame, threshold: float, min_answers: int) -> bytes:
    """Each annotator's gold accuracy with its Wilson 95% interval; red flagged, grey not yet judged."""
    rows = annotators[annotators["gold_n"] > 0].sort_values("gold_accuracy")
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * max(len(rows), 1)))
    y = np.arange(len(rows))
    for i, row in enumerate(rows.itertuples()):
        colour = "#c44e52" if row.flagged else ("#4c72b0" if row.gold_n >= min_answers else "#b0b0b0")
        below, above = max(row.gold_accuracy - row.ci_low, 0.0), max(row.ci_high - row.gold_accuracy, 0.0)  # rounding
        ax.errorbar(row.gold_accuracy, i, xerr=[[below], [above]], fmt="o", color=colour, capsize=3)
    ax.axvline(threshold, color="#333333", linestyle="--", linewidth=1, label=f"min_gold_accuracy {threshold:g}")
    ax.set_yticks(y, [f"{a} (n={n})" for a, n in zip(rows["annotator"], rows["gold_n"], strict=True)])
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("accuracy on gold (95% Wilson interval)")
    ax.set_title(
        f"Annotator accuracy on gold: red = flagged, grey = fewer than {min_answers} gold answers", fontsize=10
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.5 / max(len(rows), 1)), fontsize=8)
    return _png(fig)


def plot_figures(frame: pd.DataFrame, key: str, title: str, min_alpha: float | None = None) -> bytes:
    """Grouped horizontal bars: percent agreement, Fleiss' kappa, AC1 and alpha per row of `frame`."""
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.55 * max(len(frame), 1)))
    height = 0.8 / len(FIGURES)
    y = np.arange(len(frame))
    for i, name in enumerate(FIGURES):
        values = pd.to_numeric(frame[name], errors="coerce").fillna(0).to_numpy()
        ax.barh(y + (i - 1.5) * height, values, height, color=COLOURS[name], label=FIGURE_NAMES[name])
    if min_alpha is not None:
        ax.axvline(min_alpha, color="#c44e52", linestyle="--", linewidth=1, label=f"min_alpha {min_alpha:g}")
    ax.set_yticks(y, frame[key].astype(str))
    ax.invert_yaxis()
    ax.set_xlim(min(0, float(np.nanmin(frame[FIGURES].to_numpy(dtype=float), initial=0))), 1)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08 - 0.4 / max(len(frame), 1)), ncol=3, fontsize=8)
    return _png(fig)


def plot_heatmap(
    matrix: pd.DataFrame,
    title: str,
    *,
    fmt: str = "{:.2f}",
    cmap: str = "RdYlGn",
    vmin: float | None = None,
    vmax: float | None = None,
    xlabel: str = "",
    ylabel: str = "",
) -> bytes:
    """A labelled heatmap with each cell's value written in it (NaN cells blank)."""
    values = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 0.75 * max(matrix.shape[1], 1), 1.2 + 0.42 * max(matrix.shape[0], 1)))
    ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(matrix.shape[0]), [str(i) for i in matrix.index])
    for (r, c), v in np.ndenumerate(values):
        if math.isfinite(v):
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return html_lib.escape(str(value), quote=False).replace("|", "\\|")  # text, never markup


def _table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    head = "| " + " | ".join(columns.values()) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for _, row in frame.iterrows()]
    return "\n".join([head, rule, *body])


def _file(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def draw_reliability(ax, curves: list[tuple[str, str, pd.DataFrame]], xlabel: str, ylabel: str, title: str) -> None:
    """A reliability diagram on `ax`: per curve (label, colour, `reliability()` table) the share right
    against the confidence claimed, dot area = items in the bin, beside the diagonal."""
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="perfectly calibrated")
    for label, colour, table in curves:
        if not len(table):
            continue
        ax.plot(table["confidence"], table["accuracy"], color=colour, linewidth=1, label=label)
        ax.scatter(
            table["confidence"], table["accuracy"], s=15 + 150 * table["n"] / table["n"].max(), color=colour, alpha=0.8
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")


def plot_calibration(calibrations: dict) -> bytes:
    """Reliability diagram per calibrated control: how often consensus was right on held-out gold
    against the confidence it claimed, before (posterior) and after calibration."""
    applied = {c: cal for c, cal in sorted(calibrations.items()) if cal.applied and cal.held_out is not None}
    fig, axes = plt.subplots(1, len(applied), figsize=(4.2 * len(applied), 4), squeeze=False)
    for ax, (control, cal) in zip(axes[0], applied.items()):
        curves = []
        for column, colour, name in (
            ("posterior", "#c44e52", "model posterior"),
            ("calibrated", "#4c72b0", "calibrated (cross-validated)"),
        ):
            ece, table = reliability(cal.held_out[column].to_numpy(), cal.held_out["correct"].to_numpy())
            curves.append((f"{name}, ECE {ece:.3f}", colour, table))
        draw_reliability(
            ax,
            curves,
            "confidence claimed",
            "share right on gold",
            f"{control}: {cal.n_gold} held-out gold tasks (dot size: tasks)",
        )
    return _png(fig)


def build_plots(result: CheckResult) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by file name."""
    q = result.quality
    plots = {}
    if (result.annotators["gold_n"] > 0).any():
        plots["gold-accuracy.png"] = plot_gold_accuracy(result.annotators, q.min_gold_accuracy, q.min_gold_answers)
    if len(result.policy_agreement):
        plots["agreement-by-policy.png"] = plot_figures(
            result.policy_agreement, "policy", "Agreement per policy (chosen or not)", q.min_alpha
        )
    if len(result.language_agreement):
        plots["agreement-by-language.png"] = plot_figures(
            result.language_agreement, "language", "Agreement per language on the policy decision"
        )
    if not result.policy_language_alpha.empty:
        plots["alpha-policy-language.png"] = plot_heatmap(
            result.policy_language_alpha,
            "Krippendorff's alpha per policy and language",
            vmin=0,
            vmax=1,
            xlabel="language",
        )
    if any(cal.applied for cal in result.calibration.values()):
        plots["confidence-calibration.png"] = plot_calibration(result.calibration)
    for annotator, confusion in sorted(result.confusions.items()):
        plots[f"confusion-{_file(annotator)}.png"] = plot_heatmap(
            confusion, f"{annotator} against gold (answers)", fmt="{:.0f}", cmap="Blues", xlabel="given", ylabel="gold"
        )
    return plots


def render_markdown(
    result: CheckResult,
    title: str,
    plots: dict[str, bytes],
    *,
    project_url: str | None = None,
    generated: datetime | None = None,
) -> str:
    """The report in Markdown; images refer to the PNG files written beside it."""
    s, q = result.summary(), result.quality
    generated = generated or datetime.now(UTC)
    failed = result.failed_gates
    lines = [
        f"# Quality report: {html_lib.escape(title, quote=False)}",
        "",
        f"Generated {generated:%Y-%m-%d %H:%M} UTC"
        + (f" · [project in Label Studio]({project_url})" if project_url else ""),
        "",
        f"**{'PASSED' if not failed else 'FAILED'}**: {len(result.gates) - len(failed)} of {len(result.gates)} "
        f"gates passed. {s['n_annotations']:,} answers by {s['n_annotators']} annotators on {s['n_tasks']:,} "
        f"tasks in {s['n_languages']} language(s); {s['n_gold_tasks']:,} gold tasks.",
        "",
    ]
    if failed:
        lines += [
            "## Failed gates",
            "",
            _table(
                pd.DataFrame([g.to_dict() for g in failed]),
                {"name": "gate", "value": "value", "threshold": "threshold", "detail": "why"},
            ),
            "",
        ]
    lines += [
        "## Annotators on gold",
        "",
        f"Accuracy on the policy decision of gold tasks, with 95% Wilson intervals. Flagged: significantly "
        f"below min_gold_accuracy {q.min_gold_accuracy:g} (one-sided binomial test), judged only after "
        f"{q.min_gold_answers} gold answers.",
        "",
    ]
    if "gold-accuracy.png" in plots:
        lines += ["![Annotator gold accuracy](gold-accuracy.png)", ""]
    lines += [
        _table(
            result.annotators,
            {
                "annotator": "annotator",
                "n_answers": "answers",
                "gold_n": "gold answers",
                "gold_accuracy": "accuracy",
                "ci_low": "CI low",
                "ci_high": "CI high",
                "flagged": "flagged",
                "reason": "reason",
            },
        ),
        "",
    ]
    if len(result.gold_by_policy):
        lines += [
            "### Gold accuracy per policy",
            "",
            "Each policy as a binary choice (chosen or not) on gold tasks: where an annotator goes wrong.",
            "",
            _table(
                result.gold_by_policy,
                {
                    "annotator": "annotator",
                    "policy": "policy",
                    "gold_n": "gold answers",
                    "gold_accuracy": "accuracy",
                    "ci_low": "CI low",
                    "ci_high": "CI high",
                },
            ),
            "",
        ]
    lines += [
        "## Agreement per policy",
        "",
        f"Each policy as a binary choice. Gate: Krippendorff's alpha >= min_alpha {q.min_alpha:g}. "
        "Rare policies make kappa and alpha low while raw agreement stays high; read AC1 beside them.",
        "",
    ]
    if "agreement-by-policy.png" in plots:
        lines += ["![Agreement per policy](agreement-by-policy.png)", ""]
    lines += [
        _table(
            result.policy_agreement,
            {
                "policy": "policy",
                "prevalence": "prevalence",
                "percent_agreement": "% agreement",
                "fleiss_kappa": "Fleiss' kappa",
                "gwet_ac1": "AC1",
                "krippendorff_alpha": "alpha",
                "alpha_ci_low": "alpha CI low",
                "alpha_ci_high": "alpha CI high",
            },
        ),
        "",
    ]
    lines += [
        "## Agreement per language",
        "",
        f"On the whole policy decision (the chosen set as one label), and MASI alpha (partial credit for "
        f"overlapping sets; {_cell(s['masi_alpha'])} over all languages).",
        "",
    ]
    for name, alt in (
        ("agreement-by-language.png", "Agreement per language"),
        ("alpha-policy-language.png", "Alpha per policy and language"),
    ):
        if name in plots:
            lines += [f"![{alt}]({name})", ""]
    lines += [
        _table(
            result.language_agreement,
            {
                "language": "language",
                "n_tasks": "tasks",
                "percent_agreement": "% agreement",
                "fleiss_kappa": "Fleiss' kappa",
                "gwet_ac1": "AC1",
                "krippendorff_alpha": "alpha",
                "masi_alpha": "MASI alpha",
            },
        ),
        "",
    ]
    lines += [
        "## Severity (ordinal)",
        "",
        _table(
            result.severity_agreement,
            {
                "language": "language",
                "n_tasks": "tasks",
                "percent_agreement": "% agreement",
                "fleiss_kappa": "Fleiss' kappa",
                "gwet_ac1": "AC1",
                "krippendorff_alpha": "alpha (ordinal)",
            },
        ),
        "",
    ]
    if result.confusions:
        lines += ["## Flagged annotators against gold", ""]
        for annotator in sorted(result.confusions):
            lines += [
                f"### {_cell(annotator)}",
                "",
                f"![{_cell(annotator)} against gold](confusion-{_file(annotator)}.png)",
                "",
            ]
    c = s["consensus"]
    lines += [
        "## Consensus and adjudication",
        "",
        f"{c['n_tasks']:,} tasks with a consensus, mean confidence {_cell(c['mean_confidence'])}; "
        f"{c['adjudicated']:,} decided by an adjudicator; {c['below_min_confidence']:,} below min_confidence "
        f"{q.min_confidence:g} go to adjudication.",
        "",
    ]
    lines += [f"- Confidence of {control}: {describe(info)}." for control, info in c.get("calibration", {}).items()] + [
        ""
    ]
    if "confidence-calibration.png" in plots:
        lines += ["![Consensus confidence against gold](confidence-calibration.png)", ""]
    if "adjudication" in s:
        a = s["adjudication"]
        lines += [
            f"Review project: [{a.get('title')}]({a.get('url')}) · {a.get('queued', 0)} task(s) queued now, "
            f"{a.get('in_review', 0)} in review.",
            "",
        ]
    return "\n".join(lines)


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; }}
th {{ background: #f4f4f4; }}
img {{ max-width: 100%; }}
</style></head><body>
{body}
</body></html>
"""


def render_html(markdown_text: str, plots: dict[str, bytes], title: str) -> str:
    """The Markdown as one self-contained HTML page: every plot inlined as a base64 PNG."""
    body = markdown.markdown(markdown_text, extensions=["tables"])
    for name, data in plots.items():
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{base64.b64encode(data).decode()}"')
    return HTML_PAGE.format(title=html_lib.escape(f"Quality report: {title}"), body=body)


def write_report(
    result: CheckResult,
    reports_dir: Path,
    title: str,
    *,
    project_url: str | None = None,
    generated: datetime | None = None,
) -> ReportFiles:
    """Write report.md, report.html (self-contained), summary.json and the PNGs into a new folder."""
    generated = generated or datetime.now(UTC)
    folder = Path(reports_dir) / f"quality-{generated:%Y%m%dT%H%M%S%fZ}"
    folder.mkdir(parents=True, exist_ok=True)
    plots = build_plots(result)
    for name, data in plots.items():
        _atomic(folder / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
    text = render_markdown(result, title, plots, project_url=project_url, generated=generated)
    files = ReportFiles(folder, folder / "report.md", folder / "report.html", folder / "summary.json")
    _atomic(files.markdown, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    html = render_html(text, plots, title)
    _atomic(files.html, lambda tmp: Path(tmp).write_text(html, encoding="utf-8"))
    write_json(files.summary, result.summary())
    return files
