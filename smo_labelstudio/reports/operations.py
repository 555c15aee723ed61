"""The operations report a project manager reads every day (figures from `metrics.operations`): plots,
Markdown from the `operations.md` template, one self-contained HTML page, and the wellness event.

`write_ops_report` writes `reports/ops-<stamp>/` (report.md with PNGs beside it, report.html,
summary.json); `run_report` reads a workspace, computes and writes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.jsonenc import jsonable
from smo_labelstudio.core.paths import state_home
from smo_labelstudio.core.settings import get_settings
from smo_labelstudio.core.spec import Spec
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.metrics import model_eval as me
from smo_labelstudio.metrics.operations import OpsReport, compute_ops, load_ops_inputs
from smo_labelstudio.model.modelstore import ModelStore
from smo_labelstudio.reports import plots as pl
from smo_labelstudio.reports.shell import ReportFiles, render_html, render_markdown_template, write_report_files

WELLNESS_EVENT = "smo.wellness.cap-exceeded"
DEADLINE_EVENT = "smo.deadline.at-risk"


def build_plots(report: OpsReport, cap: int) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by file name (a plot without data is left out)."""
    plots: dict[str, bytes] = {}
    if len(report.progress) > 1:
        plots["progress.png"] = pl.plot_progress(report.progress)
    if len(report.throughput):
        plots["throughput.png"] = pl.plot_throughput(report.throughput)
    if len(report.lead_times):
        plots["lead-times.png"] = pl.plot_lead_times(report.lead_times)
    if len(report.trend):
        plots["quality-trend.png"] = pl.plot_trend(report.trend)
    if len(report.wellness):
        recent = sorted(set(report.wellness["day"]))[-7:]  # the plot shows the last week; the table everything
        plots["wellness.png"] = pl.plot_wellness(report.wellness[report.wellness["day"].isin(recent)], cap)
    m = report.model
    if m is not None and m.n_tasks:
        plots["model-f1.png"] = pl.plot_policy_f1(m.metrics)
        plots["model-reliability.png"] = pl.plot_reliability(m.reliability, m.ece)
        if not m.confusion.empty:
            plots["model-confusion.png"] = pl.plot_heatmap(
                m.confusion,
                "Model policy set vs consensus (tasks)",
                fmt="{:.0f}",
                cmap="Blues",
                xlabel="model",
                ylabel="consensus",
            )
        if len(m.outcomes):
            plots["model-acceptance.png"] = pl.plot_acceptance(m.outcomes)
        if len(m.anchoring):
            plots["model-anchoring.png"] = pl.plot_anchoring(m.anchoring)
    return plots


def model_cards(report: OpsReport, model_dir: Path | None = None) -> list[dict[str, Any]]:
    """The model cards (kept in the model store, SMO_MODEL_DIR or the stack's) of the versions whose predictions the
    report evaluates and of the model served now, each with tables ready for the template."""
    store = ModelStore(model_dir or get_settings().model_dir or state_home() / "models")
    wanted = list(report.model.model_versions) if report.model is not None else []
    serving = store.serving_version()
    wanted += [serving] if serving and serving not in wanted else []
    views = []
    for version in wanted:
        card = store.card(version)
        if card is None:
            continue
        training = card.get("training") or {}
        views.append(
            {
                "card": card,
                "serving": version == serving,
                "sources": ", ".join(f"{k} ({v})" for k, v in (training.get("sources") or {}).items())
                or "not reported",
                "languages": ", ".join(f"{k} ({v})" for k, v in (training.get("languages") or {}).items()),
                "by_policy": pd.DataFrame(card.get("by_policy") or [], columns=CARD_POLICY_COLUMNS),
                "by_language": pd.DataFrame(card.get("by_language") or [], columns=CARD_LANGUAGE_COLUMNS),
                "reliability": pd.DataFrame(
                    (card.get("calibration") or {}).get("bins") or [], columns=CARD_RELIABILITY_COLUMNS
                ),
            }
        )
    return views


CARD_POLICY_COLUMNS = ["policy", "support", "predicted", "precision", "recall", "f1"]
CARD_LANGUAGE_COLUMNS = ["language", "n", "exact", "macro_f1", "micro_f1"]
CARD_RELIABILITY_COLUMNS = ["low", "high", "n", "mean_predicted", "observed"]


def render_markdown(
    report: OpsReport,
    plots: dict[str, bytes],
    *,
    project_url: str | None = None,
    cards: list[dict[str, Any]] | None = None,
) -> str:
    """The report in Markdown; images refer to the PNG files written beside it. `cards`: the model cards to show
    (default: read from the model store, `model_cards`)."""
    s = report.summary()
    m = report.model
    text = render_markdown_template(
        "operations.md",
        title=report.title,
        generated=report.generated,
        project_url=project_url,
        plots=plots,
        report=report,
        alerts=report.alerts,
        wellness_settings=report.settings["wellness_settings"],
        stale_hours=report.settings["stale_hours"],
        t=s["totals"],
        e=report.eta,
        lead=s["lead_time"],
        m=m,
        ms=m.summary() if m is not None else None,
        acceptance=me.acceptance_summary(m.outcomes, "language") if m is not None else None,
        acceptance_columns={"language": "language", "n": "answers", **{o: o for o in me.OUTCOMES}},
        cards=model_cards(report) if cards is None else cards,
    )
    return text.rstrip("\n") + "\n"


def write_ops_report(report: OpsReport, out_dir: Path, *, cap: int, project_url: str | None = None) -> ReportFiles:
    """report.md (+ PNGs), report.html (self-contained), summary.json in `out_dir/ops-<stamp>/`."""
    folder = Path(out_dir) / f"ops-{report.generated:%Y%m%dT%H%M%S%fZ}"
    plots = build_plots(report, cap)
    text = render_markdown(report, plots, project_url=project_url)
    page = render_html("operations.html", text, plots, report.title)
    return write_report_files(folder, plots, text, page, report.summary())


def wellness_event(report: OpsReport, files: ReportFiles | None) -> dict[str, Any]:
    """The arguments of `prefect.events.emit_event` announcing annotators over the wellness cap."""
    pid = report.settings.get("project_id")
    return {
        "event": WELLNESS_EVENT,
        "resource": {
            "prefect.resource.id": f"smo.project.{pid or report.title}",
            "prefect.resource.name": report.title,
        },
        "payload": {
            "exceeded": jsonable(report.alerts.to_dict(orient="records")),
            "settings": report.settings["wellness_settings"],
            "report": str(files.html) if files else None,
        },
    }


def deadline_at_risk(report: OpsReport) -> bool:
    """Whether the spec has a deadline and the ETA is past it (or there is no ETA: no recent answers)."""
    return bool(report.eta.get("deadline")) and report.eta.get("on_track") is False


def deadline_event(report: OpsReport, files: ReportFiles | None) -> dict[str, Any]:
    """The arguments of `prefect.events.emit_event` announcing that the ETA is past the spec's deadline."""
    pid = report.settings.get("project_id")
    e = report.eta
    return {
        "event": DEADLINE_EVENT,
        "resource": {
            "prefect.resource.id": f"smo.project.{pid or report.title}",
            "prefect.resource.name": report.title,
        },
        "payload": jsonable(
            {
                "deadline": e.get("deadline"),
                "deadline_at": e.get("deadline_at"),
                "eta": e.get("eta"),
                "answers_per_hour": e.get("answers_per_hour"),
                "needed_per_hour": e.get("needed_per_hour"),
                "remaining_answers": e.get("remaining_answers"),
                "report": str(files.html) if files else None,
            }
        ),
    }


def run_report(
    spec: Spec, *, out: Path | None = None, home: Path | None = None, now: datetime | None = None, n_boot: int = 300
) -> tuple[OpsReport, ReportFiles]:
    """Read the workspace, compute, write; the report and its files."""
    ws = Workspace.for_title(spec.title, home)
    inputs = load_ops_inputs(ws)
    if inputs["plan"].empty:
        raise InputError(f"no launch plan in {ws.runs}: run `smo launch --spec SPEC --data FILE` first")
    report = compute_ops(spec, inputs, now=now, n_boot=n_boot)
    files = write_ops_report(
        report, out or ws.reports, cap=spec.wellness.max_high_severity_per_day, project_url=inputs["project"].get("url")
    )
    return report, files
