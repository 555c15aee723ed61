"""The workspace's run logs: one table of exports and one of flow runs, written by the export and
the flows, published by the warehouse. Kept down here so neither writer imports the warehouse."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from smo_labelstudio.core.workspace import Workspace, write_parquet


def exports_log(ws: Workspace) -> Path:
    """The exports table: one row per export folder."""
    return ws.root / "tables" / "exports.parquet"


def flow_runs_log(ws: Workspace) -> Path:
    """The flow-runs table: one row per flow run."""
    return ws.root / "tables" / "flow_runs.parquet"


def _append(path: Path, row: dict[str, Any], key: list[str]) -> None:
    old = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    frame = pd.concat([old, pd.DataFrame([row])], ignore_index=True) if len(old) else pd.DataFrame([row])
    write_parquet(path, frame.drop_duplicates(key, keep="last").reset_index(drop=True))


def record_export(ws: Workspace, summary: dict, sheet: dict, exported_at: pd.Timestamp | None = None) -> None:
    """One row per export folder (a re-export to the same folder replaces its row)."""
    splits = summary.get("splits", {})
    files = sheet.get("files", {})
    _append(
        exports_log(ws),
        {
            "exported_at": exported_at or pd.Timestamp.now(tz="UTC").floor("ms"),
            "out": str(summary["out"]),
            "method": sheet.get("method"),
            "seed": sheet.get("seed"),
            "tasks": summary.get("tasks"),
            **{s: int(splits.get(s, 0)) for s in ("train", "validation", "test", "gold", "excluded")},
            "dataset_sha256": (files.get("dataset.parquet") or {}).get("sha256"),
            "pull_watermark": sheet.get("pull_watermark"),
        },
        ["out"],
    )


def record_flow_run(
    ws: Workspace,
    flow: str,
    flow_run_id: str,
    started_at: Any,
    ended_at: Any,
    state: str,
    counts: dict | None = None,
) -> None:
    """One row per flow run (a run recorded again replaces its row). Only the summary's numbers and
    flags are kept as `counts`: no path, URL or message goes into the warehouse."""
    counts = {
        k: v
        for k, v in (counts or {}).items()
        if isinstance(v, (bool, int, float)) and not (isinstance(v, float) and math.isnan(v))
    }
    started, ended = pd.Timestamp(started_at), pd.Timestamp(ended_at)
    _append(
        flow_runs_log(ws),
        {
            "flow_run_id": str(flow_run_id),
            "flow": flow,
            "started_at": started,
            "ended_at": ended,
            "seconds": round((ended - started).total_seconds(), 3),
            "state": state,
            "counts": json.dumps(counts, sort_keys=True),
        },
        ["flow_run_id"],
    )
