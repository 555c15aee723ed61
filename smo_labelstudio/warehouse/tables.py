"""Every table the product produces, as tidy frames ready for SQL: the warehouse's contract.

`build_tables(ws, spec)` reads a workspace (launch plans and manifests, the pulled annotations and
labels, gold answers, the quality pass's frames, the export and flow-run logs) and returns one frame
per table in `SCHEMA`: fixed column order, fixed types, rows in a fixed order, so publishing the same
workspace twice publishes the same rows. Pure over the files: nothing here talks to a server.

Every table starts with `project` (the workspace name, the slug of the spec title), so several
projects can share one PostgreSQL schema; `docs/data_dictionary.md` says what each column means.
Nothing secret is published: no token, password or server URL; annotators appear as their Label
Studio account (e-mail), as in the workspace tables (exports pseudonymise them; the warehouse is for
the team that runs the project).
"""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from smo_labelstudio.core.runlogs import exports_log, flow_runs_log
from smo_labelstudio.core.runlogs import record_export as record_export  # re-exported: flows, tests
from smo_labelstudio.core.runlogs import record_flow_run as record_flow_run  # re-exported: flows, tests
from smo_labelstudio.core.workspace import ANNOTATION_COLUMNS, LABEL_COLUMNS, Workspace, read_json, read_plan
from smo_labelstudio.metrics.progress import answers_per_task, progress
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.dynamic import read_raises
from smo_labelstudio.quality.tables import quality_dir
from smo_labelstudio.warehouse.schema import ORDER, SCHEMA

UNKNOWN = "unknown"  # the language of a row that has none (as the quality engine says)

# --- files the warehouse reads besides the pulled tables ---------------------------------------


# --- helpers ------------------------------------------------------------------------------------


def _read(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if path.exists():
        return pd.read_parquet(path)
    return pd.DataFrame(columns=columns or [])


def _utc(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")


def _day(values) -> pd.Series:
    return _utc(values).dt.floor("D").dt.tz_localize(None)


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def conform(frame: pd.DataFrame, table: str, project: str) -> pd.DataFrame:
    """The frame with the table's columns in order and types, sorted, `project` first."""
    frame = frame.copy()
    frame["project"] = project
    out = {}
    for column, kind in SCHEMA[table]:
        values = frame[column] if column in frame.columns else pd.Series([None] * len(frame), index=frame.index)
        if kind == "text":
            out[column] = values.astype(object).map(lambda v: None if _missing(v) else str(v))
        elif kind == "bigint":
            out[column] = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        elif kind == "double":
            out[column] = pd.to_numeric(values, errors="coerce").astype("Float64")  # NaN -> NULL in SQL
        elif kind == "boolean":
            out[column] = values.astype(object).map(lambda v: None if _missing(v) else bool(v)).astype("boolean")
        elif kind == "timestamptz":
            out[column] = (
                _utc(values.where(values.notna(), None).to_numpy())
                if len(values)
                else pd.Series([], dtype="datetime64[ns, UTC]")
            )
        elif kind == "date":
            out[column] = pd.to_datetime(values, errors="coerce").astype("datetime64[ns]")
        else:
            raise ValueError(f"unknown column type {kind!r}")
    result = pd.DataFrame(out, index=frame.index)
    return result.sort_values(ORDER[table], kind="stable", na_position="last").reset_index(drop=True)


def _language(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna() & (values.astype(str).str.strip() != ""), UNKNOWN).astype(str)


# --- the tables ---------------------------------------------------------------------------------


def _plans(ws: Workspace) -> pd.DataFrame:
    plan = read_plan(ws)
    columns = [
        "item_id",
        "external_id",
        "text",
        "image",
        "language",
        "source",
        "is_gold",
        "batch",
        "plan_id",
        "language_detected",
        "language_confidence",
    ]
    if plan.empty:
        return pd.DataFrame(columns=columns)
    for column in ("language_detected", "language_confidence"):  # plans made before language detection
        if column not in plan.columns:
            plan[column] = False if column == "language_detected" else np.nan
    plan["language_detected"] = plan["language_detected"].fillna(False).astype(bool)
    plan["language"] = _language(plan["language"])
    return plan.reset_index(drop=True)


def _tasks(plan: pd.DataFrame, annotations: pd.DataFrame, spec) -> pd.DataFrame:
    if plan.empty:
        return plan
    _, per_task = progress(plan, annotations, spec)
    answers = answers_per_task(annotations)
    first = answers.groupby("external_id")["created_at"].min()
    task_ids = annotations.dropna(subset=["external_id"]).groupby("external_id")["task"].first()
    out = plan.copy()
    out["target_answers"] = per_task["target"].to_numpy()
    out["answers"] = per_task["answers"].to_numpy()
    out["state"] = per_task["state"].to_numpy()
    out["last_answer_at"] = per_task["last_answer"].to_numpy()
    out["first_answer_at"] = out["external_id"].map(first.to_dict())  # a dict: an empty datetime Series fails
    out["task_id"] = out["external_id"].map(task_ids.to_dict())
    return out


def _manifests(ws: Workspace, plan: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for folder in sorted(p.parent for p in ws.runs.glob("*/plan.json")):
        meta = read_json(folder / "plan.json") or {}
        m = read_json(folder / "manifest.json") or {}
        counts = meta.get("counts", {})
        versions = m.get("versions") or {}
        created = meta.get("created")
        detected = plan.loc[plan["plan_id"] == folder.name, "language_detected"].sum() if len(plan) else 0
        rows.append(
            {
                "plan_id": folder.name,
                "created_at": pd.Timestamp(float(created), unit="s", tz="UTC").floor("ms") if created else None,
                "data_file": Path(meta["data"]).name if meta.get("data") else None,
                "gold_file": Path(meta["gold"]).name if meta.get("gold") else None,
                "rows_read": m.get("rows_read", counts.get("rows_read")),
                **{
                    k: m.get(k)
                    for k in (
                        "imported",
                        "duplicates",
                        "quarantined",
                        "already_present",
                        "sampled_out",
                        "pending",
                        "gold",
                        "predictions",
                        "missing_predictions",
                        "complete",
                        "counts_add_up",
                    )
                },
                "languages_detected": int(detected),
                "taxonomy_version": versions.get("taxonomy"),
                "guidelines_version": versions.get("guidelines"),
                "config": versions.get("config"),
                "model_version": versions.get("model"),
            }
        )
    return pd.DataFrame(rows)


def _predictions(ws: Workspace, plan: pd.DataFrame) -> pd.DataFrame:
    parts = [pd.read_parquet(p) for p in sorted(ws.runs.glob("*/predictions/batch-*.parquet"))]
    if not parts:
        return pd.DataFrame()
    preds = pd.concat(parts, ignore_index=True).drop_duplicates(["item_id", "model_version"], keep="last")
    by_item = plan.set_index("item_id") if len(plan) else pd.DataFrame(columns=["external_id", "language"])
    preds["external_id"] = preds["item_id"].map(by_item["external_id"])
    preds["language"] = preds["item_id"].map(by_item["language"])
    return preds


def _answer_keys(labels: pd.DataFrame, cancelled: list) -> pd.DataFrame:
    """One row per kept answer: external_id, annotator, annotation_id, language, policy (set key), policies."""
    kept = qi.latest_annotations(labels, cancelled)
    if kept.empty:
        return pd.DataFrame(columns=["external_id", "annotator", "annotation_id", "language", "policy", "policies"])
    sets = qi.policy_sets(kept).rename(columns={"task": "external_id", "label": "policies"})
    ids = kept.groupby(["external_id", "annotator"])["annotation_id"].max()
    sets["annotation_id"] = ids.reindex(pd.MultiIndex.from_frame(sets[["external_id", "annotator"]])).to_numpy()
    sets["policy"] = sets["policies"].map(qi.set_key)
    return sets.reset_index(drop=True)


def _gold_results(keys: pd.DataFrame, gold: pd.DataFrame | None, days: dict) -> pd.DataFrame:
    gold_keys = dict(zip(*qi.gold_policy_keys(gold)[["task", "label"]].to_numpy().T)) if gold is not None else {}
    part = keys[keys["external_id"].isin(gold_keys)].copy()
    part["gold_policy"] = part["external_id"].map(gold_keys)
    part["answer_policy"] = part["policy"]
    part["correct"] = part["gold_policy"] == part["answer_policy"]
    part["day"] = part["annotation_id"].map(days)
    return part


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _agreement_tasks(keys: pd.DataFrame, is_gold: dict, last_day: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    task_rows, label_rows = [], []
    policies = sorted({p for s in keys["policies"] for p in s})
    for external_id, part in keys.groupby("external_id", sort=True):
        n = len(part)
        agreeing = sum(a == b for a, b in combinations(part["policy"].tolist(), 2))
        common = {"external_id": external_id, "language": part["language"].iloc[0], "day": last_day.get(external_id)}
        task_rows.append(
            {
                **common,
                "is_gold": is_gold.get(external_id, False),
                "n_annotators": n,
                "n_pairs": _pairs(n),
                "agreeing_pairs": agreeing,
                "pair_agreement": agreeing / _pairs(n) if n > 1 else math.nan,
            }
        )
        for policy in policies:
            k = int(sum(policy in s for s in part["policies"]))
            label_rows.append(
                {
                    **common,
                    "policy": policy,
                    "n_annotators": n,
                    "n_chosen": k,
                    "n_pairs": _pairs(n),
                    "agreeing_pairs": _pairs(k) + _pairs(n - k),
                }
            )
    return pd.DataFrame(task_rows), pd.DataFrame(label_rows)


def _annotator_daily(
    annotations: pd.DataFrame, keys: pd.DataFrame, gold_results: pd.DataFrame, consensus: pd.DataFrame
) -> pd.DataFrame:
    if annotations.empty:
        return pd.DataFrame()
    ann = annotations.copy()
    cancelled = ann["was_cancelled"].fillna(False).astype(bool)
    ann["answer"] = (~cancelled).astype(int)
    ann["skip"] = cancelled.astype(int)
    ann["seconds"] = pd.to_numeric(ann["lead_time"], errors="coerce").fillna(0.0).where(~cancelled, 0.0)
    gold_hit = dict(zip(gold_results["annotation_id"], gold_results["correct"]))
    ann["gold_n"] = ann["annotation_id"].map(lambda a: int(a in gold_hit))
    ann["gold_correct"] = ann["annotation_id"].map(lambda a: int(bool(gold_hit.get(a, False))))
    cons = (
        consensus[(consensus["control"] == qi.POLICY) & (consensus["source"] != "gold")]
        if len(consensus)
        else pd.DataFrame(columns=["external_id", "label"])
    )
    agreed = dict(zip(cons["external_id"], cons["label"]))
    answer_of = dict(zip(keys["annotation_id"], zip(keys["external_id"], keys["policy"])))
    judged = {a: agreed[t] == p for a, (t, p) in answer_of.items() if t in agreed}
    ann["consensus_n"] = ann["annotation_id"].map(lambda a: int(a in judged))
    ann["consensus_agree"] = ann["annotation_id"].map(lambda a: int(bool(judged.get(a, False))))
    g = ann.groupby(["annotator", "day", "language"], sort=True)
    out = pd.DataFrame(
        {
            "answers": g["answer"].sum(),
            "skipped": g["skip"].sum(),
            "labeling_seconds": g["seconds"].sum(),
            "gold_n": g["gold_n"].sum(),
            "gold_correct": g["gold_correct"].sum(),
            "consensus_n": g["consensus_n"].sum(),
            "consensus_agree": g["consensus_agree"].sum(),
        }
    )
    return out.reset_index()


def _raises(ws: Workspace, spec, consensus: pd.DataFrame) -> pd.DataFrame:
    """Dynamic overlap's raises (one row per extra answer asked for) with the task's weakest confidence now
    and the spec's budget, so answers spent, confidence gained and budget left are one query away."""
    raises = read_raises(ws).rename(columns={"task": "external_id"})
    now = consensus.groupby("external_id")["confidence"].min() if len(consensus) else pd.Series(dtype=float)
    raises["confidence_now"] = raises["external_id"].map(now)
    dynamic = getattr(getattr(spec, "overlap", None), "dynamic", None)
    raises["budget"] = dynamic.budget if dynamic is not None else None
    return raises


def build_tables(ws: Workspace, spec) -> dict[str, pd.DataFrame]:
    """Every warehouse table for one workspace (missing inputs give empty tables with the right columns)."""
    project = ws.root.name
    plan = _plans(ws)
    annotations = _read(ws.annotations, ANNOTATION_COLUMNS)
    labels = _read(ws.labels, LABEL_COLUMNS)
    gold = pd.read_parquet(ws.gold_answers) if ws.gold_answers.exists() else None
    qdir = quality_dir(ws)
    consensus = _read(qdir / "consensus.parquet", ["task", "control", "label", "confidence", "source"])
    consensus = consensus.rename(columns={"task": "external_id"})

    detected = dict(zip(plan["external_id"], plan["language_detected"])) if len(plan) else {}
    languages = dict(zip(plan["external_id"], plan["language"])) if len(plan) else {}
    annotations = annotations.copy()
    annotations["language"] = _language(annotations["language"])
    annotations["language_detected"] = annotations["external_id"].map(detected).fillna(False).astype(bool)
    annotations["day"] = _day(annotations["created_at"]) if len(annotations) else pd.Series([], dtype="datetime64[ns]")
    annotations = annotations.rename(columns={"project": "project_id", "task": "task_id"})
    labels = labels.copy()
    labels["language"] = _language(labels["language"])
    cancelled = annotations.loc[annotations["was_cancelled"].fillna(False).astype(bool), "annotation_id"].tolist()

    keys = _answer_keys(labels, cancelled)
    days = dict(zip(annotations["annotation_id"], annotations["day"]))
    last_day = annotations[~annotations["was_cancelled"].fillna(False).astype(bool)].groupby("external_id")["day"].max()
    gold_results = _gold_results(keys, gold, days)
    is_gold = dict(zip(plan["external_id"], plan["is_gold"].astype(bool))) if len(plan) else {}
    agreement_task, agreement_label_task = (
        _agreement_tasks(keys, is_gold, last_day.to_dict()) if len(keys) else (pd.DataFrame(), pd.DataFrame())
    )
    consensus["language"] = consensus["external_id"].map(languages).fillna(UNKNOWN) if len(consensus) else None
    annotators = _read(qdir / "annotators.parquet")
    if len(annotators) and "gold_correct" not in annotators.columns:
        annotators["gold_correct"] = None
    raw_ann = annotations.rename(columns={"project_id": "project", "task_id": "task"})

    frames = {
        "tasks": _tasks(plan, raw_ann, spec),
        "import_manifest": _manifests(ws, plan),
        "annotations": annotations,
        "labels": labels.rename(columns={"task": "task_id", "start": "span_start", "end": "span_end"}),
        "predictions": _predictions(ws, plan),
        "gold_results": gold_results,
        "gold_annotators": annotators,
        "agreement_task": agreement_task,
        "agreement_task_label": agreement_label_task,
        "agreement_label": _read(qdir / "policy_agreement.parquet"),
        "agreement_language": _read(qdir / "language_agreement.parquet"),
        "agreement_label_language": _read(qdir / "policy_language_alpha.parquet"),
        "consensus": consensus,
        "annotator_daily": _annotator_daily(annotations, keys, gold_results, consensus),
        "exports": _read(exports_log(ws)),
        "flow_runs": _read(flow_runs_log(ws)),
        "overlap_raises": _raises(ws, spec, consensus),
    }
    return {name: conform(frame, name, project) for name, frame in frames.items()}
