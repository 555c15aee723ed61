"""Every plot of the quality and operations reports (matplotlib, Agg backend) as PNG bytes.

Shared: `png` (figure to bytes), `plot_heatmap`, `draw_reliability`. Quality report: annotator gold
accuracy with Wilson intervals, agreement figures side by side, consensus calibration. Operations
report: progress, throughput, lead times, quality trend, wellness, and the model evaluation's plots.
The only module of the package that draws.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the Agg backend must be chosen before pyplot loads
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from smo_labelstudio.metrics import model_eval as me  # noqa: E402
from smo_labelstudio.quality.calibration import Calibration, reliability  # noqa: E402
from smo_labelstudio.quality.check import FIGURES  # noqa: E402

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


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (110 dpi, tight); the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


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
    return png(fig)


def draw_reliability(
    ax: Any, curves: list[tuple[str, str, pd.DataFrame]], xlabel: str, ylabel: str, title: str
) -> None:
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
    return png(fig)


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
    return png(fig)


def plot_calibration(calibrations: dict[str, Calibration]) -> bytes:
    """Reliability diagram per calibrated control: how often consensus was right on held-out gold
    against the confidence it claimed, before (posterior) and after calibration."""
    applied = {c: cal for c, cal in sorted(calibrations.items()) if cal.applied and cal.held_out is not None}
    fig, axes = plt.subplots(1, len(applied), figsize=(4.2 * len(applied), 4), squeeze=False)
    for ax, (control, cal) in zip(axes[0], applied.items()):
        held_out = cal.held_out
        assert held_out is not None  # kept by `applied`
        curves = []
        for column, colour, name in (
            ("posterior", "#c44e52", "model posterior"),
            ("calibrated", "#4c72b0", "calibrated (cross-validated)"),
        ):
            ece, table = reliability(held_out[column].to_numpy(), held_out["correct"].to_numpy())
            curves.append((f"{name}, ECE {ece:.3f}", colour, table))
        draw_reliability(
            ax,
            curves,
            "confidence claimed",
            "share right on gold",
            f"{control}: {cal.n_gold} held-out gold tasks (dot size: tasks)",
        )
    return png(fig)


def plot_progress(prog: pd.DataFrame) -> bytes:
    """Tasks done, in progress and not started per language (stacked bars)."""
    rows = prog[prog["language"] != "(all)"]
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.4 * max(len(rows), 1)))
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for col, colour in (("done", "#55a868"), ("in_progress", "#dd8452"), ("not_started", "#b0b0b0")):
        vals = rows[col].to_numpy(dtype=float)
        ax.barh(y, vals, left=left, color=colour, label=col.replace("_", " "))
        left += vals
    ax.set_yticks(y, rows["language"].astype(str))
    ax.invert_yaxis()
    ax.set_xlabel("tasks")
    ax.set_title("Progress by language", fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    return png(fig)


def plot_throughput(thr: pd.DataFrame) -> bytes:
    """Answers per active clock hour and per hour of lead time, per annotator."""
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.4 * max(len(thr), 1)))
    y = np.arange(len(thr))
    ax.barh(y - 0.2, thr["per_active_hour"].fillna(0), 0.4, color="#4c72b0", label="per active clock hour")
    ax.barh(y + 0.2, thr["per_labeling_hour"].fillna(0), 0.4, color="#55a868", label="per hour of lead time")
    ax.set_yticks(y, thr["annotator"].astype(str))
    ax.invert_yaxis()
    ax.set_xlabel("answers per hour")
    ax.set_title("Throughput per annotator", fontsize=10)
    ax.legend(fontsize=8)
    return png(fig)


def plot_lead_times(lead: pd.DataFrame) -> bytes:
    """Histogram of lead times per language, with the median."""
    per_answer = lead.drop_duplicates(["external_id", "annotator"])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for language, part in per_answer.groupby("language", sort=True):
        ax.hist(part["lead_time"], bins=20, alpha=0.55, label=str(language))
    if len(per_answer):
        ax.axvline(per_answer["lead_time"].median(), color="#333333", linestyle="--", linewidth=1, label="median")
    ax.set_xlabel("lead time (seconds)")
    ax.set_ylabel("answers")
    ax.set_title("Lead-time distribution by language", fontsize=10)
    ax.legend(fontsize=8)
    return png(fig)


def plot_trend(trend: pd.DataFrame) -> bytes:
    """Gold accuracy and agreement with consensus per annotator and day: drift shows as a falling line."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for who, part in trend.groupby("annotator", sort=True):
        axes[0].plot(part["day"], part["gold_accuracy"], marker="o", label=str(who))
        axes[1].plot(part["day"], part["agreement"], marker="o", label=str(who))
    axes[0].set_title("Gold accuracy per day", fontsize=10)
    axes[1].set_title("Agreement with consensus per day", fontsize=10)
    axes[0].set_ylim(0, 1.02)
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    axes[1].legend(fontsize=7, loc="lower left")
    return png(fig)


def plot_wellness(well: pd.DataFrame, cap: int) -> bytes:
    """High-severity items per annotator and day against the daily cap (red over it)."""
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.35 * max(len(well), 1)))
    y = np.arange(len(well))
    colours = ["#c44e52" if e else "#4c72b0" for e in well["exceeded"]]
    ax.barh(y, well["high_severity"], color=colours)
    ax.axvline(cap, color="#c44e52", linestyle="--", linewidth=1, label=f"cap {cap}/day")
    ax.set_yticks(y, [f"{a} {d}" for a, d in zip(well["annotator"], well["day"])])
    ax.invert_yaxis()
    ax.set_xlabel("high-severity items answered")
    ax.set_title("Wellness: high-severity exposure per annotator and day (red = over the cap)", fontsize=10)
    ax.legend(fontsize=8)
    return png(fig)


def plot_reliability(table: pd.DataFrame, ece: float) -> bytes:
    """The model's reliability diagram (its `label_scores` against what consensus chose)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    draw_reliability(
        ax,
        [("model", "#4c72b0", table)],
        "predicted probability (label_scores)",
        "share chosen by consensus",
        f"Reliability diagram (ECE {ece:.3f}; dot size: items)",
    )
    return png(fig)


def plot_policy_f1(metrics: pd.DataFrame) -> bytes:
    """The model's F1 per policy with its bootstrap interval."""
    rows = metrics.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.4 * max(len(rows), 1)))
    for i, r in enumerate(rows.itertuples()):
        if r.f1 is None or not math.isfinite(r.f1):
            continue
        lo = r.f1 - r.f1_low if math.isfinite(r.f1_low) else 0
        hi = r.f1_high - r.f1 if math.isfinite(r.f1_high) else 0
        ax.errorbar(r.f1, i, xerr=[[max(lo, 0)], [max(hi, 0)]], fmt="o", capsize=3, color="#4c72b0")
    ax.set_yticks(range(len(rows)), [f"{p} (n={s})" for p, s in zip(rows["policy"], rows["support"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("F1 against consensus (95% bootstrap interval)")
    ax.set_title("Pre-annotation model: F1 per policy", fontsize=10)
    return png(fig)


def plot_acceptance(outcomes: pd.DataFrame) -> bytes:
    """Share of answers that accepted, edited, rejected or skipped the pre-annotation, per annotator."""
    table = me.acceptance_summary(outcomes, "annotator")
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.4 * max(len(table), 1)))
    y = np.arange(len(table))
    left = np.zeros(len(table))
    for col, colour in zip(me.OUTCOMES, ("#55a868", "#dd8452", "#c44e52", "#b0b0b0")):
        vals = table[col].to_numpy(dtype=float) if len(table) else np.zeros(0)
        ax.barh(y, vals, left=left, color=colour, label=col)
        left += vals
    ax.set_yticks(y, table["annotator"].astype(str) if len(table) else [])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of answers")
    ax.set_title("What annotators did with the pre-annotation", fontsize=10)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return png(fig)


def plot_anchoring(anch: pd.DataFrame) -> bytes:
    """Agreement with the model's suggestion when it was right and when it was wrong, per annotator."""
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * max(anch["annotator"].nunique(), 1)))
    names = list(dict.fromkeys(anch["annotator"]))
    for j, (correct, colour) in enumerate(((True, "#55a868"), (False, "#c44e52"))):
        part = anch[anch["model_correct"] == correct].set_index("annotator").reindex(names)
        y = np.arange(len(names)) + (j - 0.5) * 0.35
        vals = part["agree_with_model"].fillna(0).to_numpy(dtype=float)
        ax.barh(y, vals, 0.35, color=colour, label="model right" if correct else "model wrong")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of answers equal to the model's suggestion")
    ax.set_title("Anchoring audit: agreement with the model when it was right vs wrong", fontsize=10)
    ax.legend(fontsize=8)
    return png(fig)
