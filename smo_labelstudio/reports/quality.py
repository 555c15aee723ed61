"""The quality report a project manager reads: Markdown plus a self-contained HTML page (plots inline).

Plots (`reports.plots`): annotator gold accuracy with Wilson intervals and the threshold, agreement per
policy and per language with percent agreement, kappa, AC1 and alpha side by side (rare policies make
kappa and alpha low while raw agreement is high), alpha per policy and language, and each flagged
annotator's confusion against gold. Text from the `quality.md` template. Written into
`reports/quality-<stamp>/`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from smo_labelstudio.quality.calibration import describe
from smo_labelstudio.quality.check import CheckResult
from smo_labelstudio.reports import plots as pl
from smo_labelstudio.reports.shell import ReportFiles, render_html, render_markdown_template, write_report_files


def _file(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def build_plots(result: CheckResult) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by file name."""
    q = result.quality
    plots = {}
    if (result.annotators["gold_n"] > 0).any():
        plots["gold-accuracy.png"] = pl.plot_gold_accuracy(result.annotators, q.min_gold_accuracy, q.min_gold_answers)
    if len(result.policy_agreement):
        plots["agreement-by-policy.png"] = pl.plot_figures(
            result.policy_agreement, "policy", "Agreement per policy (chosen or not)", q.min_alpha
        )
    if len(result.language_agreement):
        plots["agreement-by-language.png"] = pl.plot_figures(
            result.language_agreement, "language", "Agreement per language on the policy decision"
        )
    if not result.policy_language_alpha.empty:
        plots["alpha-policy-language.png"] = pl.plot_heatmap(
            result.policy_language_alpha,
            "Krippendorff's alpha per policy and language",
            vmin=0,
            vmax=1,
            xlabel="language",
        )
    if any(cal.applied for cal in result.calibration.values()):
        plots["confidence-calibration.png"] = pl.plot_calibration(result.calibration)
    for annotator, confusion in sorted(result.confusions.items()):
        plots[f"confusion-{_file(annotator)}.png"] = pl.plot_heatmap(
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
    s = result.summary()
    failed = result.failed_gates
    c = s["consensus"]
    text = render_markdown_template(
        "quality.md",
        title=title,
        generated=generated or datetime.now(UTC),
        project_url=project_url,
        plots=plots,
        result=result,
        s=s,
        q=result.quality,
        c=c,
        gates=result.gates,
        failed=failed,
        failed_gates=pd.DataFrame([g.to_dict() for g in failed]),
        confusions=[(annotator, _file(annotator)) for annotator in sorted(result.confusions)],
        calibration=[(control, describe(info)) for control, info in c.get("calibration", {}).items()],
        adjudication=s.get("adjudication"),
        model_voter=model_voter_table(s.get("model_voter")),
        model_voter_info=s.get("model_voter"),
    )
    return text.rstrip("\n") + "\n"


VOTER_ROWS = {
    "annotators": "annotators only",
    "with_model": "annotators + the model voter",
    "model_alone": "the model alone",
}


def model_voter_table(info: dict | None) -> pd.DataFrame | None:
    """Consensus accuracy on held-out gold with and without the model voter, per control (the summary's
    `model_voter`), as the report's table; None when the spec's `quality.model_voter` is off."""
    if not info:
        return None
    rows = []
    for control in ("policy", "severity"):
        figures = info.get(control) or {}
        for key, name in VOTER_ROWS.items():
            row = figures.get(key) or {}
            rows.append(
                {
                    "control": control,
                    "consensus": name,
                    "n_gold": row.get("n_gold", 0),
                    "accuracy": row.get("accuracy"),
                    "ci_low": row.get("ci_low"),
                    "ci_high": row.get("ci_high"),
                }
            )
    return pd.DataFrame(rows)


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
    plots = build_plots(result)
    text = render_markdown(result, title, plots, project_url=project_url, generated=generated)
    page = render_html("quality.html", text, plots, title)
    return write_report_files(folder, plots, text, page, result.summary())
