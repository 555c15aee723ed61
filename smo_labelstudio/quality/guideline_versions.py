"""The guideline version of each answer, and what a relabel decided: answers it supersedes, gold held for review.

An answer's version is the one the workspace's record (`core.guideline_history`) puts in force when Label Studio
created the answer; versions are ordered by the taxonomy's changelog, and a version it does not list (or an
unknown one) is older than all of them. `smo relabel` (quality/relabel.py) writes two records read here:

    relabel/requests.parquet   one row per task sent back: task (external id), task_id, version (the version it
                               was sent back for), policies, old_answers, to_overlap, requested_at
    relabel/gold_review.json   {"items": {external_id: {"version", "policies", "listed_at", "reviewed_at"}}}

A task sent back for version V: once it holds an answer given under V or later, its answers given under older
versions stop counting (consensus, agreement, export); until then they still count, so the task is never without
a label. A gold item listed for review is not scored (gold accuracy, qualification, calibration) until reviewed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from smo_labelstudio.core.guideline_history import read_history, versions_at
from smo_labelstudio.core.taxonomy import Taxonomy, load_taxonomy
from smo_labelstudio.core.workspace import Workspace, read_json, read_table

REQUEST_COLUMNS = ["task", "task_id", "version", "policies", "old_answers", "to_overlap", "requested_at"]
UNKNOWN_RANK = -1


def relabel_dir(ws: Workspace) -> Path:
    """Where `smo relabel` keeps what it sent back and the gold items it listed for review."""
    return ws.root / "relabel"


def requests_path(ws: Workspace) -> Path:
    return relabel_dir(ws) / "requests.parquet"


def gold_review_path(ws: Workspace) -> Path:
    return relabel_dir(ws) / "gold_review.json"


def read_requests(ws: Workspace) -> pd.DataFrame:
    """Every task sent back so far (empty frame before the first relabel)."""
    path = requests_path(ws)
    return read_table(path) if path.exists() else pd.DataFrame(columns=REQUEST_COLUMNS)


def read_gold_review(ws: Workspace) -> dict[str, dict[str, Any]]:
    """The gold items listed for review, by external id, with when each was reviewed (None: not yet)."""
    return dict((read_json(gold_review_path(ws)) or {}).get("items") or {})


def pending_gold_review(ws: Workspace) -> set[str]:
    """Gold items listed for review and not reviewed yet: not scored until they are."""
    return {key for key, item in read_gold_review(ws).items() if not item.get("reviewed_at")}


def version_rank(tax: Taxonomy) -> dict[str, int]:
    """Each changelog version's place, oldest 0 (a version not listed ranks UNKNOWN_RANK: older than all)."""
    return {v: i for i, v in enumerate(tax.versions)}


def rank_of(rank: dict[str, int], version: Any) -> int:
    return rank.get(str(version), UNKNOWN_RANK) if version is not None and not pd.isna(version) else UNKNOWN_RANK


def answer_versions(annotations: pd.DataFrame, history: list[dict[str, Any]]) -> pd.DataFrame:
    """annotation_id, external_id, guideline_version: each answer's version from its `created_at` (the server's
    clock, which an annotator cannot set; nothing in the answer's own JSON is read). Pure."""
    if annotations is None or annotations.empty:
        return pd.DataFrame(columns=["annotation_id", "external_id", "guideline_version"])
    rows = annotations.drop_duplicates("annotation_id", keep="last")
    return pd.DataFrame(
        {
            "annotation_id": rows["annotation_id"].to_numpy(),
            "external_id": rows["external_id"].to_numpy(),
            "guideline_version": versions_at(history, rows["created_at"]).to_numpy(),
        }
    )


def superseded(versions: pd.DataFrame, requests: pd.DataFrame, rank: dict[str, int]) -> list:
    """Annotation ids that stop counting: on each task sent back for version V that holds an answer given under V
    or later, the answers given under older versions. `versions`: annotation_id, external_id, guideline_version
    (the answers that are there, cancelled ones left out). Pure."""
    if versions.empty or requests.empty:
        return []
    wanted = requests.groupby("task")["version"].agg(lambda v: max(rank_of(rank, x) for x in v))
    frame = versions[versions["external_id"].isin(wanted.index)]
    if frame.empty:
        return []
    ranks = frame["guideline_version"].map(lambda v: rank_of(rank, v))
    target = frame["external_id"].map(wanted)
    new = ranks >= target
    renewed = set(frame.loc[new, "external_id"])
    old = ~new & frame["external_id"].isin(renewed)
    return sorted(frame.loc[old, "annotation_id"].tolist())


def workspace_answer_versions(ws: Workspace) -> pd.DataFrame:
    """`answer_versions` for the workspace's pulled annotations table and guideline record."""
    if not ws.annotations.exists():
        return answer_versions(pd.DataFrame(), [])
    return answer_versions(read_table(ws.annotations), read_history(ws))


def workspace_superseded(ws: Workspace, cancelled: Iterable | None = None, tax: Taxonomy | None = None) -> list:
    """The answers a relabel superseded in this workspace (nothing before the first `smo relabel`)."""
    requests = read_requests(ws)
    if requests.empty:
        return []
    versions = workspace_answer_versions(ws)
    if cancelled is not None:
        versions = versions[~versions["annotation_id"].isin(list(cancelled))]
    return superseded(versions, requests, version_rank(tax or load_taxonomy()))
