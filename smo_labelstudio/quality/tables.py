"""The quality pass's frames kept in the workspace (consensus, agreement, annotators) for the warehouse:
written by the pass, read back by `warehouse.tables`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from smo_labelstudio.core.workspace import Workspace, write_parquet

if TYPE_CHECKING:  # the engine is slow to import; reading the tables does not need it
    from smo_labelstudio.quality.check import CheckResult


def quality_dir(ws: Workspace) -> Path:
    """Where the quality pass keeps its frames (consensus, agreement, annotators) for the warehouse."""
    return ws.root / "tables" / "quality"


def save_quality_tables(ws: Workspace, result: CheckResult) -> None:
    """Keep a quality pass's frames (a `CheckResult`) in the workspace, replacing the previous pass's."""
    folder = quality_dir(ws)
    pla = result.policy_language_alpha
    long = (
        pla.reset_index().melt(id_vars="policy", var_name="language", value_name="krippendorff_alpha")
        if len(pla)
        else pd.DataFrame(columns=["policy", "language", "krippendorff_alpha"])
    )
    frames = {
        "consensus": result.consensus,
        "policy_agreement": result.policy_agreement,
        "language_agreement": result.language_agreement,
        "policy_language_alpha": long,
        "annotators": result.annotators,
    }
    for name, frame in frames.items():
        write_parquet(
            folder / f"{name}.parquet",
            frame.reset_index(drop=True).astype(
                {c: str for c in frame.columns if frame[c].dtype == object and c in ("task", "label", "annotator")}
            ),
        )
