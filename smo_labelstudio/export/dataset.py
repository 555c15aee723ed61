"""Evaluated datasets from a project's workspace: one row per task, gated, split, in five formats.

Pure where it can be: `build_rows` turns the frames (plan items, predictions, labels, a quality
`CheckResult`, gold answers, versions) into one row per task; `assign_splits` gates and splits them;
`write_dataset` writes the files. `export_workspace` reads a workspace and does all three.

Choices (documented in the README and in every datasheet):

- **Consensus** comes from the quality engine (Dawid-Skene anchored on gold by default, `mv` for
  majority vote); an adjudicator's answer replaces it with confidence 1. A task's `confidence` is its
  weakest control's (policy set, severity), the figure the quality pass queues for adjudication by:
  the posterior calibrated on held-out gold when there are enough gold tasks (`quality.calibration`).
- **Gates.** Gold tasks go to split `gold` (never train, validation or test: annotators see them
  again and again). Other tasks enter train/validation/test only when adjudicated or when
  `confidence >= spec.quality.min_confidence`; the rest stay in the files with split `excluded` and
  a `gate` reason, so the counts add up.
- **Splits** 80/10/10 with scikit-learn's `StratifiedGroupKFold` (10 folds, fold 0 test, fold 1
  validation), stratified by policy set and language, grouped by a near-duplicate key (text
  NFKC-normalised, case-folded, with digits, punctuation and whitespace removed; the image URL for
  images) so near-duplicates never straddle splits; seeded.
- **Annotators** appear only as `ann-` + 12 hex digits of HMAC-SHA256 over their account, keyed by a
  random per-workspace key (`export_key`, created once): stable within a project, unlinkable across.
- **Determinism.** Rows sorted by external id, JSON with sorted keys, Parquet without timestamps, no
  clock anywhere: exporting the same pull twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import StratifiedGroupKFold

from smo_labelstudio.core.csvcells import safe_frame
from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.jsonenc import jsonable
from smo_labelstudio.core.keys import secret_key
from smo_labelstudio.core.lock import workspace_lock
from smo_labelstudio.core.runlogs import record_export
from smo_labelstudio.core.taxonomy import Taxonomy, load_taxonomy
from smo_labelstudio.core.workspace import GOLD_PREFIX, Workspace, read_json, read_plan, read_table
from smo_labelstudio.export.neardup import group_keys
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality import qualification, wilson_interval
from smo_labelstudio.quality.calibration import describe
from smo_labelstudio.quality.check import MissingInputError, compute_check, load_inputs
from smo_labelstudio.quality.consensus import METHODS
from smo_labelstudio.quality.guideline_versions import workspace_answer_versions, workspace_superseded
from smo_labelstudio.quality.span_consensus import SPAN_METHOD, task_spans
from smo_labelstudio.reports.safe import md_text

SPLITS = ("train", "validation", "test")
FOLDS = 10  # StratifiedGroupKFold folds: 1 test, 1 validation, 8 train
FILES = ("dataset.jsonl", "dataset.parquet", "dataset.csv", "labelstudio.json")
ANSWER_FIELDS = ("annotator", "policies", "severity")  # one entry of a task's `answers` (disagreement shape)
COLUMNS = [
    "external_id",
    "item_id",
    "split",
    "gate",
    "text",
    "image",
    "language",
    "source",
    "policy",
    "severity",
    "confidence",
    "consensus_source",
    "consensus_spans",
    "agreement",
    "n_annotators",
    "annotators",
    "is_gold",
    "gold_correct",
    "adjudication",
    "model_policy",
    "model_severity",
    "model_score",
    "model_version",
    "taxonomy_version",
    "guidelines_version",
    "config",
    "config_sha256",
    "near_duplicate_key",
]


class ExportError(InputError):
    """The workspace lacks what an export needs; the message says what to run."""


# --- pseudonyms ---------------------------------------------------------------------------------


def workspace_key(ws: Workspace) -> bytes:
    """The workspace's random pseudonymisation key, created on first use (readable by the owner only)."""
    return secret_key(ws.root / "export_key")


def pseudonym(key: bytes, annotator: str) -> str:
    """`ann-` and 12 hex digits of HMAC-SHA256(key, annotator): stable per key, not reversible."""
    return "ann-" + hmac.new(key, str(annotator).encode(), hashlib.sha256).hexdigest()[:12]


# --- rows ---------------------------------------------------------------------------------------


def _pair_agreement(keys: pd.DataFrame) -> pd.Series:
    """Per task: the share of annotator pairs that chose the same policy set (NaN with one answer)."""
    out = {}
    for task, labels in keys.groupby("task", sort=True)["label"]:
        pairs = list(combinations(labels.tolist(), 2))
        out[task] = sum(a == b for a, b in pairs) / len(pairs) if pairs else np.nan
    return pd.Series(out, dtype=float)


def _split_key(key: str) -> list[str]:
    return [] if key in (qi.NO_POLICY, "", None) else sorted(key.split("+"))


def build_rows(
    items: pd.DataFrame,
    labels: pd.DataFrame,
    consensus: pd.DataFrame,
    *,
    gold: pd.DataFrame | None,
    predictions: pd.DataFrame | None,
    versions: pd.DataFrame | None,
    key: bytes,
    cancelled: list | None = None,
    to_review: set | None = None,
    spans: dict | None = None,
) -> pd.DataFrame:
    """One row per annotated task (COLUMNS minus split/gate), sorted by external id.

    items: plan rows (item_id, external_id gold-prefixed, text, image, language, source, is_gold);
    consensus: a CheckResult's consensus (task, control, label, confidence, source); predictions:
    item_id, model_version, score, policy (`|`-joined), severity; versions: item_id and version columns;
    spans: task -> its consensus spans [{policy, start, end, text, confidence}] (`span_consensus.task_spans`).
    """
    latest = qi.latest_annotations(labels, cancelled)
    sets = qi.policy_sets(latest)
    keys = qi.policy_keys(sets)
    tasks = sorted(set(consensus["task"]))
    pol = consensus[consensus["control"] == qi.POLICY].set_index("task")
    sev = consensus[consensus["control"] == qi.SEVERITY].set_index("task")
    agreement = _pair_agreement(keys)
    who = keys.groupby("task")["annotator"].agg(lambda a: sorted(pseudonym(key, x) for x in a))
    gold_keys = qi.gold_policy_keys(gold).set_index("task")["label"] if gold is not None else pd.Series(dtype=str)
    by_ext = items.drop_duplicates("external_id").set_index("external_id")
    preds = (
        predictions.drop_duplicates("item_id", keep="last").set_index("item_id")
        if predictions is not None and len(predictions)
        else pd.DataFrame()
    )
    vers = (
        versions.drop_duplicates("item_id", keep="last").set_index("item_id")
        if versions is not None and len(versions)
        else pd.DataFrame()
    )
    to_review = to_review or set()
    rows = []
    for task in tasks:
        item = by_ext.loc[task] if task in by_ext.index else pd.Series(dtype=object)
        item_id = item.get("item_id")
        policy = _split_key(pol.at[task, "label"]) if task in pol.index else []
        # the weakest control, as the quality pass queues for adjudication (so gate and queue agree)
        confs = [pol.at[task, "confidence"]] if task in pol.index else []
        confs += [sev.at[task, "confidence"]] if task in sev.index else []
        severity = None
        if task in sev.index and any(p != "no_violation" for p in policy):
            severity = int(float(sev.at[task, "label"]))
        source = str(pol.at[task, "source"]) if task in pol.index else "consensus"
        task_keys = keys.loc[keys["task"] == task, "label"]
        is_gold = bool(item.get("is_gold", False)) or str(task).startswith(GOLD_PREFIX)
        gold_correct = (
            float((task_keys == gold_keys[task]).mean())
            if is_gold and task in gold_keys.index and len(task_keys)
            else None
        )
        pred = preds.loc[item_id] if item_id in preds.index else None
        ver = vers.loc[item_id] if item_id in vers.index else None
        rows.append(
            {
                "external_id": str(task),
                "item_id": item_id,
                "text": _str(item.get("text")),
                "image": _str(item.get("image")),
                "language": _str(item.get("language")) or "unknown",
                "source": _str(item.get("source")),
                "policy": policy,
                "severity": severity,
                "confidence": float(min(confs)) if confs else None,
                "consensus_source": source,
                "consensus_spans": list((spans or {}).get(task, [])),
                "agreement": None if pd.isna(agreement.get(task, np.nan)) else float(agreement[task]),
                "n_annotators": int(len(task_keys)),
                "annotators": list(who.get(task, [])),
                "is_gold": is_gold,
                "gold_correct": gold_correct,
                "adjudication": "adjudicated"
                if source == "adjudicated"
                else ("pending" if task in to_review else "none"),
                "model_policy": sorted(p for p in str(pred["policy"]).split("|") if p) if pred is not None else [],
                "model_severity": _int(pred["severity"]) if pred is not None else None,
                "model_score": _float(pred["score"]) if pred is not None else None,
                "model_version": _str(pred["model_version"]) if pred is not None else None,
                **{
                    c: (_str(ver[c]) if ver is not None and c in ver.index else None)
                    for c in ("taxonomy_version", "guidelines_version", "config", "config_sha256")
                },
            }
        )
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("split", "gate")])
    frame["near_duplicate_key"] = group_keys(
        frame["text"].tolist(), frame["image"].tolist(), frame["external_id"].tolist()
    )
    frame = frame.astype(
        {
            "severity": "Int64",
            "model_severity": "Int64",
            "n_annotators": "int64",
            "confidence": "float64",
            "agreement": "float64",
            "gold_correct": "float64",
            "model_score": "float64",
        }
    )
    return frame.sort_values("external_id", kind="stable", ignore_index=True)


def _str(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v)


def _float(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def _int(v: Any) -> int | None:
    try:
        return None if v is None or pd.isna(v) or v == "" else int(float(str(v).split("|")[0]))
    except ValueError:
        return None


# --- disagreement: every counted answer, soft labels, the model's posterior per policy ----------


def counted_labels(labels: pd.DataFrame, cancelled: list | None = None, excluded: list | None = None) -> pd.DataFrame:
    """The label rows consensus reads: each annotator's latest annotation per task, cancelled ones out, then
    the annotations that do not count (`excluded`: not yet qualified, paused) out, as `compute_check` does."""
    latest = qi.latest_annotations(labels, cancelled)
    return latest[~latest["annotation_id"].isin(list(excluded or []))]


def answer_table(counted: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """task, annotator (pseudonym), policies (sorted list), severity (int or None): one row per counted
    answer (`counted_labels`'s rows), sorted by task and pseudonym. E-mails never leave this function."""
    sets = qi.policy_sets(counted)
    given = qi.severity_answers(counted).set_index(["task", "annotator"])["label"]
    severity = given.reindex(pd.MultiIndex.from_frame(sets[["task", "annotator"]])).to_numpy()
    frame = pd.DataFrame(
        {
            "task": sets["task"].astype(str).to_numpy(),
            "annotator": [pseudonym(key, a) for a in sets["annotator"]],
            "policies": [sorted(s) for s in sets["label"]],
            "severity": pd.Series([None if pd.isna(v) else int(v) for v in severity], dtype=object),
        },
        columns=["task", *ANSWER_FIELDS],
    )
    return frame.sort_values(["task", "annotator"], kind="stable", ignore_index=True)


def add_guideline_versions(
    answers: pd.DataFrame, counted: pd.DataFrame, versions: pd.DataFrame, key: bytes
) -> pd.DataFrame:
    """`answer_table` rows with `guideline_version`: the taxonomy version each counted answer was given under
    (`quality.guideline_versions`: from when Label Studio created it, never from the answer itself; None: unknown)."""
    given = counted.drop_duplicates(["external_id", "annotator"], keep="last")
    by_id = versions.drop_duplicates("annotation_id").set_index("annotation_id")["guideline_version"]
    version = given["annotation_id"].map(by_id)
    lookup = {(str(t), pseudonym(key, a)): v for t, a, v in zip(given["external_id"], given["annotator"], version)}
    out = answers.copy()
    out["guideline_version"] = [_plain(lookup.get((t, a))) for t, a in zip(out["task"], out["annotator"])]
    return out


def soft_labels(answers: pd.DataFrame, policies: list[str], levels: list[int]) -> pd.DataFrame:
    """Per task (index): `soft_<policy>`, the share of its counted annotators who chose the policy (a task
    may have several, so they need not sum to 1), and `soft_severity_<level>`, the share who rated that
    severity (the rest rated none: no violation)."""
    n = answers.groupby("task", sort=True).size()
    chosen = answers[["task", "policies"]].explode("policies").dropna()
    per_policy = chosen.groupby(["task", "policies"]).size()
    per_level = answers.dropna(subset=["severity"]).groupby(["task", "severity"]).size()
    out: dict[str, pd.Series] = {}
    for p in policies:
        hits = per_policy.xs(p, level="policies") if p in per_policy.index.get_level_values(1) else None
        out[f"soft_{p}"] = (hits.reindex(n.index, fill_value=0) if hits is not None else 0 * n) / n
    for level in levels:
        hits = per_level.xs(level, level="severity") if level in per_level.index.get_level_values(1) else None
        out[f"soft_severity_{level}"] = (hits.reindex(n.index, fill_value=0) if hits is not None else 0 * n) / n
    return pd.DataFrame(out, index=n.index).astype(float)


def policy_posteriors(probas: pd.DataFrame | None, policies: list[str]) -> pd.DataFrame:
    """Per task (index): `posterior_<policy>`, the consensus model's probability that the policy is in the
    task's policy set: the posteriors of every set key holding it, summed (`probas`: tasks x set keys)."""
    if probas is None or probas.empty:
        return pd.DataFrame(columns=[f"posterior_{p}" for p in policies], dtype=float)
    members = [set(_split_key(str(k))) for k in probas.columns]
    values = probas.to_numpy(dtype=float)
    out = {f"posterior_{p}": np.clip(values[:, [p in m for m in members]].sum(axis=1), 0.0, 1.0) for p in policies}
    return pd.DataFrame(out, index=probas.index.astype(str))


def _plain(v: Any) -> Any:
    """A JSON-ready value inside an answer entry: lists as lists, NaN/NA as None, numpy scalars as Python's."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def disagreement_sheet(taxonomy: Taxonomy) -> dict:
    """What the datasheet records of the disagreement shape: the policies and severity levels that have
    columns (the taxonomy's, so every export of a project has the same columns) and what each means."""
    policies, levels = list(taxonomy.ids), sorted(s.level for s in taxonomy.severity)
    return {
        "included": True,
        "policies": policies,
        "severity_levels": levels,
        "columns": disagreement_columns(policies, levels),
        "answers": "one entry per counted answer: annotator (pseudonym), policies (sorted ids), severity (or null), "
        "guideline_version (the taxonomy version it was given under, or null when unknown)",
        "soft": "share of the task's counted annotators who chose the policy / rated the severity level",
        "posterior": "the consensus model's probability that the policy is in the task's policy set",
    }


def disagreement_columns(policies: list[str], levels: list[int]) -> list[str]:
    """The columns the disagreement adds, in order; an ExportError if a policy id makes two alike."""
    cols = ["answers", *(f"soft_{p}" for p in policies), *(f"soft_severity_{v}" for v in levels)]
    cols += [f"posterior_{p}" for p in policies]
    if len(set(cols)) < len(cols) or set(cols) & set(COLUMNS):
        raise ExportError("the taxonomy's policy ids and severity levels give two export columns the same name")
    return cols


def add_disagreement(
    rows: pd.DataFrame, answers: pd.DataFrame, probas: pd.DataFrame | None, policies: list[str], levels: list[int]
) -> pd.DataFrame:
    """`rows` (one per task) with `answers` (a list of {annotator, policies, severity}, one per counted
    answer), the soft labels and the model's posterior per policy (None where a task has no answer)."""
    columns = disagreement_columns(policies, levels)
    tasks = rows["external_id"].astype(str)
    entries = {  # every column but the task: a column added to the answer table reaches each entry
        task: [{k: _plain(v) for k, v in e.items()} for e in part.drop(columns="task").to_dict(orient="records")]
        for task, part in answers.groupby("task", sort=False)
    }
    extra = pd.concat([soft_labels(answers, policies, levels), policy_posteriors(probas, policies)], axis=1)
    extra = extra.reindex(tasks.to_numpy())
    out = rows.copy()
    out["answers"] = [entries.get(t, []) for t in tasks]
    for col in columns[1:]:
        out[col] = extra[col].to_numpy(dtype=float) if col in extra.columns else np.nan
    return out


# --- gates and splits ---------------------------------------------------------------------------


def gate(rows: pd.DataFrame, min_confidence: float) -> pd.Series:
    """Why each row enters or not: `gold`, `adjudicated`, `confident`, or `below min_confidence`."""
    out = np.where(
        rows["is_gold"],
        "gold",
        np.where(
            rows["consensus_source"] == "adjudicated",
            "adjudicated",
            np.where(
                rows["confidence"].astype(float) >= min_confidence,
                "confident",
                f"below min_confidence {min_confidence:g}",
            ),
        ),
    )
    return pd.Series(out, index=rows.index)


def assign_splits(rows: pd.DataFrame, min_confidence: float, seed: int = 0) -> pd.DataFrame:
    """Rows with `gate` and `split`: gold -> `gold`, gated out -> `excluded`, the rest 80/10/10 by
    StratifiedGroupKFold (strata: policy set and language; groups: the near-duplicate key)."""
    out = rows.copy()
    out["gate"] = gate(out, min_confidence)
    out["split"] = np.where(
        out["gate"] == "gold", "gold", np.where(out["gate"].isin(["adjudicated", "confident"]), "train", "excluded")
    )
    pool = out[out["split"] == "train"].sort_values("external_id", kind="stable")
    groups = pool["near_duplicate_key"].to_numpy()
    n_groups = len(set(groups))
    if n_groups >= 3:
        folds = min(FOLDS, n_groups)
        strata = _strata(pool, folds)
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
            warnings.simplefilter("ignore", UserWarning)
            fold_of = np.empty(len(pool), dtype=int)
            for k, (_, test_idx) in enumerate(splitter.split(np.zeros(len(pool)), strata, groups)):
                fold_of[test_idx] = k
        names = np.where(fold_of == 0, "test", np.where(fold_of == 1, "validation", "train"))
        out.loc[pool.index, "split"] = names
    # a near-duplicate of an excluded or gold row stays where it is: only the split rows can leak
    return out[COLUMNS + [c for c in out.columns if c not in COLUMNS]]  # COLUMNS first, then any added ones


def _strata(pool: pd.DataFrame, folds: int) -> np.ndarray:
    """Policy set and language; a stratum smaller than the fold count falls back to its language, then
    to one shared stratum (StratifiedGroupKFold needs some class at least as large as the folds)."""
    strata = pool["policy"].map(qi.set_key) + "|" + pool["language"]
    small = strata.map(strata.value_counts()) < folds
    strata = strata.where(~small, "*|" + pool["language"])
    small = strata.map(strata.value_counts()) < folds
    strata = strata.where(~small, "*|*")
    return strata.to_numpy()


# --- summaries ----------------------------------------------------------------------------------


def label_distribution(rows: pd.DataFrame) -> list[dict]:
    """Counts of each policy per split and language (a task with two policies counts for both)."""
    exploded = rows[["split", "language", "policy"]].explode("policy")
    exploded["policy"] = exploded["policy"].fillna(qi.NO_POLICY)
    counts = exploded.groupby(["split", "language", "policy"], sort=True).size().rename("n").reset_index()
    return counts.to_dict(orient="records")


def gold_summary(rows: pd.DataFrame, annotators: pd.DataFrame | None, key: bytes) -> dict:
    """Gold tasks, the share of annotator answers on gold that matched (Wilson 95% interval), per annotator."""
    gold = rows[rows["is_gold"]]
    n_answers = int(gold["n_annotators"].sum())
    correct = float((gold["gold_correct"].fillna(0) * gold["n_annotators"]).sum())
    low, high = wilson_interval(round(correct), n_answers)
    per: list[dict[str, Any]] = []
    if annotators is not None and len(annotators):
        for r in annotators.sort_values("annotator").itertuples():
            if getattr(r, "gold_n", 0) and r.gold_n > 0:
                per.append(
                    {
                        "annotator": pseudonym(key, r.annotator),
                        "gold_n": int(r.gold_n),
                        "gold_accuracy": _float(r.gold_accuracy),
                        "ci_low": _float(r.ci_low),
                        "ci_high": _float(r.ci_high),
                        "flagged": bool(r.flagged),
                    }
                )
    per.sort(key=lambda d: d["annotator"])
    return {
        "n_gold_tasks": int(len(gold)),
        "n_gold_answers": n_answers,
        "answer_accuracy": correct / n_answers if n_answers else None,
        "ci_low": _float(low),
        "ci_high": _float(high),
        "annotators": per,
    }


def agreement_summary(rows: pd.DataFrame, policy_agreement: pd.DataFrame | None) -> dict:
    multi = rows[rows["n_annotators"] >= 2]
    mean = multi["agreement"].astype(float)
    n = len(mean)
    est = float(mean.mean()) if n else None
    half = 1.96 * float(mean.std(ddof=1)) / np.sqrt(n) if n > 1 else None
    per_policy = []
    if policy_agreement is not None and len(policy_agreement):
        cols = [
            c
            for c in (
                "policy",
                "percent_agreement",
                "krippendorff_alpha",
                "alpha_ci_low",
                "alpha_ci_high",
                "n_tasks_2plus",
            )
            if c in policy_agreement.columns
        ]
        per_policy = policy_agreement[cols].sort_values("policy").to_dict(orient="records")
    return {
        "tasks_with_2plus_annotators": n,
        "mean_pair_agreement": est,
        "ci_low": None if half is None else max(0.0, est - half),
        "ci_high": None if half is None else min(1.0, est + half),
        "per_policy": per_policy,
    }


# --- files --------------------------------------------------------------------------------------


def _records(rows: pd.DataFrame) -> list[dict]:
    recs = []
    for rec in rows.to_dict(orient="records"):
        recs.append(
            {
                k: (
                    None
                    if not isinstance(v, (list, np.ndarray)) and pd.isna(v)
                    else (list(v) if isinstance(v, np.ndarray) else v)
                )
                for k, v in rec.items()
            }
        )
    return jsonable(recs)


def labelstudio_tasks(rows: pd.DataFrame, to_name: str = "text") -> list[dict]:
    """Label Studio import JSON: each non-gold task's data with the consensus as a prediction
    (`model_version` "consensus"), so re-importing never counts as someone's annotation."""
    out = []
    for r in _records(rows[~rows["is_gold"]]):
        data = {"item_id": r["item_id"], "language": r["language"]}
        if r["text"] is not None:
            data["text"] = r["text"]
        if r["image"] is not None:
            data["image"] = r["image"]
        result = [{"from_name": "policy", "to_name": to_name, "type": "choices", "value": {"choices": r["policy"]}}]
        if r["severity"] is not None:
            result.append(
                {
                    "from_name": "severity",
                    "to_name": to_name,
                    "type": "choices",
                    "value": {"choices": [str(r["severity"])]},
                }
            )
        result += [  # the consensus spans, where the config has the spans control (text projects)
            {
                "from_name": "spans",
                "to_name": to_name,
                "type": "labels",
                "value": {"start": s["start"], "end": s["end"], "text": s["text"], "labels": [s["policy"]]},
            }
            for s in (r.get("consensus_spans") or [])
            if to_name == "text"
        ]
        out.append(
            {"data": data, "predictions": [{"model_version": "consensus", "score": r["confidence"], "result": result}]}
        )
    return out


def _write_parquet(path: Path, rows: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(rows, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_dataset(rows: pd.DataFrame, out: Path, sheet: dict, to_name: str = "text") -> dict:
    """Write the four data files, then datasheet.json and datasheet.md (each hashing the files before it)."""
    try:  # --out is the user's choice: a folder that cannot be made or written to is their problem to fix
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out}: cannot create the folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise ExportError(f"{out}: the folder is not writable")
    records = _records(rows)
    with open(out / "dataset.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n")
    _write_parquet(out / "dataset.parquet", rows)
    flat = rows.copy()
    for col in ("policy", "annotators", "model_policy"):
        flat[col] = flat[col].map(lambda v: "|".join(v))
    if "answers" in flat.columns:  # a list of objects: one compact JSON array per cell
        flat["answers"] = flat["answers"].map(
            lambda v: json.dumps(jsonable(list(v)), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        )
    flat["consensus_spans"] = flat["consensus_spans"].map(  # a list of objects: one compact JSON array per cell
        lambda v: json.dumps(
            jsonable(list(v) if isinstance(v, (list, tuple, np.ndarray)) else []),
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
    )
    flat["severity"] = flat["severity"].astype("Int64")
    flat["model_severity"] = flat["model_severity"].astype("Int64")
    safe_frame(flat).to_csv(out / "dataset.csv", index=False, lineterminator="\n", float_format="%.6g")
    (out / "labelstudio.json").write_text(
        json.dumps(labelstudio_tasks(rows, to_name), ensure_ascii=False, sort_keys=True, indent=1, allow_nan=False)
        + "\n",
        encoding="utf-8",
    )
    sheet = {
        **sheet,
        "files": {name: {"sha256": sha256(out / name), "bytes": (out / name).stat().st_size} for name in FILES},
    }
    (out / "datasheet.json").write_text(
        json.dumps(jsonable(sheet), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    (out / "datasheet.md").write_text(render_datasheet(sheet), encoding="utf-8")
    return sheet


def render_datasheet(sheet: dict) -> str:
    """datasheet.md: every value from the data (title, languages, labels, pseudonyms, versions) as Markdown text
    (`reports.safe.md_text`), so nothing in it renders as markup or a link, here or in the Prefect UI."""
    t = md_text
    c, lines = sheet["counts"], []
    lines += [
        f"# Datasheet: {t(sheet['title'])}",
        "",
        "## How it was produced",
        "",
        f"Label Studio project annotated by {sheet['n_annotators']} annotators (pseudonymised), pulled "
        f"(watermark {t(sheet['pull_watermark'])}), consensus by {t(sheet['method'])} "
        f"({t(METHODS.get(sheet['method'], sheet['method']))}"
        f"{'' if sheet['method'] == 'mv' else ', anchored on gold'}), "
        "adjudicated answers override consensus.",
        "",
        f"Gates: gold tasks -> split `gold` (never train); other tasks enter train/validation/test when "
        f"adjudicated or consensus confidence >= {sheet['gates']['min_confidence']:g}; the rest are in the "
        "files with split `excluded`.",
        "",
        "Confidence: "
        + (
            "; ".join(f"{t(k)}: {t(describe(v))}" for k, v in sorted(sheet.get("calibration", {}).items()))
            or "not recorded"
        )
        + ".",
        "",
        f"Splits: 80/10/10 by StratifiedGroupKFold, stratified by policy set and language, grouped by "
        f"near-duplicate key, seed {sheet['seed']}.",
        "",
        "## Versions",
        "",
    ]
    versions = sorted(sheet["versions"].items())
    lines += [f"- {t(k)}: {t(', '.join(map(str, v)) if isinstance(v, list) else v)}" for k, v in versions]
    lines += ["", "## Counts", "", "| split | tasks |", "|---|---|"]
    lines += [f"| {t(k)} | {t(v)} |" for k, v in sorted(c["by_split"].items())]
    lines += [
        f"| **all** | {t(c['tasks'])} |",
        "",
        "## Label distribution (policy per split and language)",
        "",
        "| split | language | policy | n |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t(d['split'])} | {t(d['language'])} | {t(d['policy'])} | {t(d['n'])} |"
        for d in sheet["label_distribution"]
    ]
    a = sheet["agreement"]
    lines += [
        "",
        "## Agreement",
        "",
        f"Mean share of annotator pairs agreeing on the policy set over {t(a['tasks_with_2plus_annotators'])} "
        f"tasks with 2+ annotators: {_fmt(a['mean_pair_agreement'])} "
        f"(95% CI {_fmt(a['ci_low'])} to {_fmt(a['ci_high'])}).",
        "",
        "| policy | percent agreement | alpha | alpha 95% CI |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t(p['policy'])} | {_fmt(p.get('percent_agreement'))} | {_fmt(p.get('krippendorff_alpha'))} | "
        f"{_fmt(p.get('alpha_ci_low'))} to {_fmt(p.get('alpha_ci_high'))} |"
        for p in a["per_policy"]
    ]
    g = sheet["gold"]
    lines += [
        "",
        "## Gold",
        "",
        f"{t(g['n_gold_tasks'])} gold tasks, {t(g['n_gold_answers'])} answers, {_fmt(g['answer_accuracy'])} correct "
        f"(Wilson 95% CI {_fmt(g['ci_low'])} to {_fmt(g['ci_high'])}).",
        "",
        "| annotator | gold answers | accuracy | 95% CI | flagged |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t(r['annotator'])} | {t(r['gold_n'])} | {_fmt(r['gold_accuracy'])} | {_fmt(r['ci_low'])} to "
        f"{_fmt(r['ci_high'])} | {t(r['flagged'])} |"
        for r in g["annotators"]
    ]
    if sheet.get("consensus_accuracy"):
        lines += [
            "",
            "## Consensus accuracy against the simulation's truth",
            "",
            f"Non-gold tasks; this dataset carries {t(sheet['method'])}.",
            "",
            "| method | tasks | correct | accuracy | Wilson 95% CI |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {t(METHODS.get(m, m))} ({t(m)}) | {t(r['n_tasks'])} | {t(r['correct'])} | {_fmt(r['accuracy'])} | "
            f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])} |"
            for m, r in sheet["consensus_accuracy"].items()
        ]
    lines += _disagreement_lines(sheet.get("disagreement") or {})
    lines += _span_lines(sheet.get("spans") or {})
    lines += ["", "## Files", "", "| file | sha256 | bytes |", "|---|---|---|"]
    lines += [f"| {t(k)} | `{t(v['sha256'])}` | {t(v['bytes'])} |" for k, v in sorted(sheet["files"].items())]
    return "\n".join(lines) + "\n"


def _disagreement_lines(d: dict) -> list[str]:
    """The datasheet's section on the disagreement columns and how to train on them (none when not exported)."""
    if not d.get("included"):
        return []
    t = md_text
    policies = ", ".join(t(p) for p in d["policies"])
    levels = ", ".join(t(v) for v in d["severity_levels"])
    return [
        "",
        "## Disagreement: every counted answer, soft labels, posteriors",
        "",
        "Beside the consensus (`policy`, `severity`, `confidence`) every task carries the answers it came from. "
        "Only answers that count are here: the latest per annotator and task, not cancelled, not given while "
        "the annotator was qualifying or paused.",
        "",
        "- `answers`: one entry per counted answer, `annotator` (the pseudonym of `annotators`: the same person "
        "has the same pseudonym in every export of this project, and no e-mail or account id can be read "
        "from it), `policies` (sorted ids), `severity` (null when none was rated) and `guideline_version` (the "
        "taxonomy version in force in the project when Label Studio created the answer, from the workspace's "
        "record of guideline switches; null when unknown). In `dataset.csv` the list is one JSON array per cell.",
        f"- `soft_<policy>` for {policies}: the share of the task's counted annotators who chose the policy. "
        "A task may violate several policies, so these need not sum to 1.",
        f"- `soft_severity_<level>` for levels {levels}: the share who rated that severity; the rest rated "
        "none (no violation). Divide by their sum for the severity distribution among those who rated one.",
        "- `posterior_<policy>`: the consensus model's probability that the policy is in the task's policy set "
        "(the posterior of every policy set holding it, summed), before calibration: annotators weighted by "
        "their estimated reliability, where `soft_` weighs everyone alike. On gold tasks Dawid-Skene is "
        "pinned to the gold answer; with majority vote it is the share of votes.",
        "",
        "How to train on them:",
        "",
        "- **Soft-label cross-entropy**: one sigmoid output per policy trained with binary cross-entropy against "
        "`soft_<policy>` (a policy chosen by 2 of 3 annotators is a 0.67 target, not a 1), and severity with "
        "categorical cross-entropy against the renormalised `soft_severity_<level>`; `posterior_<policy>` is "
        "the alternative target when disagreement is mostly noise rather than opinion.",
        "- **Perspectivist models**: expand `answers` to one example per annotator and task, then train one "
        "model per pseudonym, or one model with the pseudonym as an input or a head per annotator; predict "
        "each annotator and aggregate, or report the spread.",
        "- **Evaluation as in LeWiDi** (SemEval-2023 Task 11, LeWiDi 2025): cross-entropy (or Manhattan "
        "distance) between predicted and `soft_` distributions beside the F1 against `policy`; per-annotator "
        "accuracy for perspectivist models.",
        "- Keep the splits: all of a task's answers belong to its task's split; gold (split `gold`) is never "
        "training data.",
    ]


def _span_lines(sp: dict) -> list[str]:
    """The datasheet's section on harmful spans: the `consensus_spans` column, its method, agreement per policy."""
    if not sp:
        return []
    t = md_text
    lines = [
        "",
        "## Harmful spans",
        "",
        "`consensus_spans`: per task, a list of {policy, start, end, text, confidence}, sorted by offsets (in "
        "`dataset.csv` one JSON array per cell; in `labelstudio.json` predictions of the `spans` control). "
        f"Method: {t(sp.get('method', SPAN_METHOD))}. Offsets are character offsets into `text`, end exclusive, "
        "in reading-memory order (right-to-left text too).",
        "",
        "| policy | tasks | annotators' spans | span F1 exact | span F1 overlap | consensus spans | mean confidence |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t(p['policy'])} | {t(p['tasks'])} | {t(p['spans'])} | {_fmt(p.get('f1_exact'))} | "
        f"{_fmt(p.get('f1_overlap'))} | {t(p['consensus_spans'])} | {_fmt(p.get('mean_confidence'))} |"
        for p in sp.get("policies", [])
    ]
    if sp.get("refused"):
        reasons = "; ".join(f"{t(k)} ({t(v)})" for k, v in sorted(sp.get("refused_by_reason", {}).items()))
        lines += ["", f"{t(sp['refused'])} span(s) left out of the vote: {reasons}."]
    return lines


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


# --- consensus accuracy against a simulation's truth ---------------------------------------------


def consensus_accuracy(consensus: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Share of non-gold tasks whose consensus policy set equals the simulation's truth (Wilson CI)."""
    true_keys = (
        truth[truth["control"] == qi.POLICY]
        .dropna(subset=["external_id"])
        .groupby("external_id")["label"]
        .agg(lambda v: qi.set_key(map(str, v)))
    )
    pol = consensus[(consensus["control"] == qi.POLICY) & ~consensus["task"].astype(str).str.startswith(GOLD_PREFIX)]
    pol = pol[pol["task"].isin(true_keys.index)]
    n = len(pol)
    correct = int((pol["label"].to_numpy() == true_keys.reindex(pol["task"]).to_numpy()).sum())
    low, high = wilson_interval(correct, n)
    return {
        "n_tasks": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci_low": _float(low),
        "ci_high": _float(high),
    }


# --- the workspace ------------------------------------------------------------------------------


@dataclass
class Export:
    out: Path
    rows: pd.DataFrame
    sheet: dict

    def summary(self) -> dict:
        return jsonable(
            {
                "out": str(self.out),
                "method": self.sheet["method"],
                "tasks": self.sheet["counts"]["tasks"],
                "splits": self.sheet["counts"]["by_split"],
                "files": {k: str(self.out / k) for k in (*FILES, "datasheet.json", "datasheet.md")},
                **(
                    {"consensus_accuracy": self.sheet["consensus_accuracy"]}
                    if "consensus_accuracy" in self.sheet
                    else {}
                ),
            }
        )


def _plans(ws: Workspace) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame, dict]:
    """The planned items, their predictions, each item's versions (from the newest plan holding it) and
    every version seen."""
    items = read_plan(ws)
    if items.empty:
        raise ExportError(f"no launch plans in {ws.runs}: run `smo launch` first")
    preds: list[pd.DataFrame] = []
    by_plan: dict[str, dict] = {}
    versions: dict[str, set[str]] = {}
    for folder in sorted(p.parent for p in ws.runs.glob("*/plan.parquet")):
        v = by_plan[folder.name] = (read_json(folder / "manifest.json") or {}).get("versions") or {}
        for k, val in v.items():
            if val is not None:
                versions.setdefault(k, set()).add(str(val))
        preds += [read_table(p) for p in sorted((folder / "predictions").glob("batch-*.parquet"))]
    newest = read_plan(ws, ["item_id"], keep="last")
    vers = pd.DataFrame(
        {
            "item_id": newest["item_id"],
            **{
                column: [by_plan[plan].get(key) for plan in newest["plan_id"]]
                for column, key in (
                    ("taxonomy_version", "taxonomy"),
                    ("guidelines_version", "guidelines"),
                    ("config", "config"),
                    ("config_sha256", "config_sha256"),
                )
            },
        }
    )
    return (
        items,
        pd.concat(preds, ignore_index=True) if preds else None,
        vers,
        {k: sorted(v) for k, v in versions.items()},
    )


def _to_name(config: str) -> str:
    return "image" if config.startswith("image") else "text"


def export_workspace(
    ws: Workspace,
    spec,
    out: Path,
    method: str = "smoothed-ds",
    seed: int = 0,
    n_boot: int = 500,
    compare: bool = True,
    consensus_only: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Export:
    """Read the workspace's pulled tables, build, gate, split and write the dataset to `out`, holding the workspace
    lock (a pull or a launch never changes the tables under it). `consensus_only`: without the per-annotator
    answers, soft labels and posteriors (the consensus-only shape). `progress(done, EXPORT_STEPS)` after each step."""
    step = progress or (lambda _done, _total: None)
    with workspace_lock(ws, "export"):
        return _export_workspace(
            ws, spec, out, method, seed, n_boot, compare, consensus_only, lambda done: step(done, EXPORT_STEPS)
        )


EXPORT_STEPS = 4  # read the tables, consensus and gates, the rows, the files


def _export_workspace(
    ws: Workspace,
    spec,
    out: Path,
    method: str,
    seed: int,
    n_boot: int,
    compare: bool,
    consensus_only: bool = False,
    step: Callable[[int], None] = lambda _done: None,
) -> Export:
    if method not in METHODS:
        raise ExportError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    try:
        inputs = load_inputs(ws)
    except MissingInputError as exc:
        raise ExportError(str(exc)) from None
    items, predictions, versions, version_sets = _plans(ws)
    step(1)
    decision = qualification.workspace_decision(ws, spec.qualification, inputs)  # the quality pass's decision
    excluded = (decision.excluded if decision else []) + workspace_superseded(ws, inputs["cancelled"])  # + relabeled
    kwargs = dict(
        adjudicated=inputs["adjudicated"], cancelled=inputs["cancelled"], excluded=excluded, random_state=seed
    )
    result = compute_check(
        inputs["labels"], inputs["gold"], spec.quality, method=method, n_boot=n_boot, texts=inputs["texts"], **kwargs
    )
    key = workspace_key(ws)
    step(2)
    rows = build_rows(
        items,
        inputs["labels"],
        result.consensus,
        gold=inputs["gold"],
        predictions=predictions,
        versions=versions,
        key=key,
        cancelled=list(inputs["cancelled"] or []) + excluded,  # answers that do not count are not listed either
        to_review=set(result.to_review["task"]),
        spans=task_spans(result.span_consensus),
    )
    disagreement = None if consensus_only else disagreement_sheet(load_taxonomy())
    if disagreement is not None:
        counted = counted_labels(inputs["labels"], inputs["cancelled"], excluded)
        answers = add_guideline_versions(answer_table(counted, key), counted, workspace_answer_versions(ws), key)
        probas = result.posteriors.get(qi.POLICY)
        rows = add_disagreement(rows, answers, probas, disagreement["policies"], disagreement["severity_levels"])
    rows = assign_splits(rows, spec.quality.min_confidence, seed)
    state = read_json(ws.pull_state) or {}
    sheet: dict[str, Any] = {
        "title": spec.title,
        "method": method,
        "seed": seed,
        "pull_watermark": state.get("watermark"),
        "n_annotators": int(result.counts["n_annotators"]),
        "gates": {
            "min_confidence": spec.quality.min_confidence,
            "gold": "split gold, never train",
            "below_min_confidence": "split excluded unless adjudicated",
        },
        "calibration": {c: v.summary() for c, v in result.calibration.items()},
        "versions": version_sets,
        "counts": {
            "tasks": int(len(rows)),
            "by_split": {s: int(n) for s, n in rows["split"].value_counts().sort_index().items()},
            "by_language": {s: int(n) for s, n in rows["language"].value_counts().sort_index().items()},
            "adjudicated": int((rows["adjudication"] == "adjudicated").sum()),
            "pending_adjudication": int((rows["adjudication"] == "pending").sum()),
        },
        "label_distribution": label_distribution(rows),
        "agreement": agreement_summary(rows, result.policy_agreement),
        "gold": gold_summary(rows, result.annotators, key),
        "spans": {"method": SPAN_METHOD, **result.span_figures()},
        "columns": list(rows.columns),
        "disagreement": disagreement or {"included": False},
    }
    step(3)
    truth_file = ws.simulated_truth
    if compare and truth_file.exists():
        truth = read_table(truth_file)
        scores = {method: consensus_accuracy(result.consensus, truth)}
        for other in (m for m in METHODS if m != method):
            again = compute_check(inputs["labels"], inputs["gold"], spec.quality, method=other, n_boot=10, **kwargs)
            scores[other] = consensus_accuracy(again.consensus, truth)
        sheet["consensus_accuracy"] = dict(sorted(scores.items()))
    sheet = write_dataset(rows, out, sheet, _to_name(spec.config))
    record_export(ws, Export(out, rows, sheet).summary(), sheet)  # the exports table of the warehouse
    step(4)
    return Export(out, rows, sheet)
