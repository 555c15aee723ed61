"""The files a simulation reads and writes: a truth file, a confusion matrix, and the saved truth.

The saved truth (`simulation/truth.parquet` in the project's workspace) is a long table, one row per
task, control and value (`task, external_id, control, label`; control `policy` or `severity`), so
consensus can be scored against it. It lives only in the workspace, never in Label Studio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.workspace import Workspace, read_table, write_parquet
from smo_labelstudio.simulation.answers import NO_VIOLATION, Truth

TRUTH_COLUMNS = ["task", "external_id", "control", "label"]


class SimulationInputError(InputError):
    """A truth or confusion file is unreadable or names labels the project does not have."""


def truth_path(workspace: Workspace) -> Path:
    """Where a simulation saves its truth in the workspace (core.workspace names it)."""
    return workspace.simulated_truth


@dataclass
class TruthFile:
    """Truths read from a file, found by a task's external id or, failing that, by its exact text."""

    by_external_id: dict[str, Truth] = field(default_factory=dict)
    by_text: dict[str, Truth] = field(default_factory=dict)

    def find(self, external_id: str | None, text: str | None) -> Truth | None:
        if external_id is not None and external_id in self.by_external_id:
            return self.by_external_id[external_id]
        return self.by_text.get(text) if text is not None else None


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".ndjson"):
            frame = pd.read_json(path, lines=True, dtype=False)  # `labels` may be a JSON list there
            return frame.map(lambda v: "|".join(map(str, v)) if isinstance(v, list) else v).astype(str)
        if suffix == ".parquet":
            return pd.read_parquet(path).astype(str)
    except FileNotFoundError:
        raise SimulationInputError(f"{path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise SimulationInputError(f"{path}: cannot read it ({str(exc).splitlines()[0]})") from None
    raise SimulationInputError(f"{path}: expected a .csv, .jsonl or .parquet file")


def read_truth_file(path: Path, policies: tuple[str, ...]) -> TruthFile:
    """Columns `external_id` and/or `text`, `labels` (policy ids separated by `|`), optional `severity` (1-4)."""
    frame = _read_table(Path(path))
    missing = {"labels"} - set(frame.columns)
    if missing or not ({"external_id", "text"} & set(frame.columns)):
        raise SimulationInputError(
            f"{path}: needs the columns labels and external_id or text (has: {', '.join(frame.columns)})"
        )
    found = TruthFile()
    for row_number, row in enumerate(frame.to_dict("records"), start=2 if Path(path).suffix == ".csv" else 1):
        where = f"{path} row {row_number}"
        labels = tuple(sorted({x.strip() for x in str(row["labels"]).split("|") if x.strip()}))
        unknown = [x for x in labels if x not in policies]
        if not labels or unknown:
            raise SimulationInputError(
                f"{where}: labels {row['labels']!r} must be policy ids from the project's "
                f"config ({', '.join(policies)})"
            )
        if NO_VIOLATION in labels and len(labels) > 1:
            raise SimulationInputError(f"{where}: {NO_VIOLATION} cannot be combined with another policy")
        # A violation without a severity keeps it unknown: annotators then guess one, and none is saved.
        truth = Truth(labels, _severity(row.get("severity"), where) if NO_VIOLATION not in labels else None)
        if external_id := _present(row.get("external_id")):
            found.by_external_id[external_id] = truth
        if text := _present(row.get("text")):
            found.by_text[text] = truth
    return found


def read_gold_truth(workspace: Workspace, policies: tuple[str, ...]) -> TruthFile:
    """The workspace's gold answers (`external_id, control, label`) as truths, so simulated answers on
    gold tasks follow the gold and gold checks measure the simulated accuracy."""
    found = TruthFile()
    if not workspace.gold_answers.exists():
        return found
    gold = read_table(workspace.gold_answers)
    for external_id, rows in gold.groupby("external_id", sort=False):
        labels = tuple(sorted(str(x) for x in rows.loc[rows["control"] == "policy", "label"] if str(x) in policies))
        severity = rows.loc[rows["control"] == "severity", "label"]
        if labels:
            found.by_external_id[str(external_id)] = Truth(
                labels, int(severity.iloc[0]) if len(severity) and NO_VIOLATION not in labels else None
            )
    return found


def _present(value: object) -> str | None:
    """The cell as text, or None when it is empty or missing (pandas 3 keeps NaN in str columns)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    return None if text in ("", "nan", "None") else text


def _severity(value: object, where: str) -> int | None:
    if _present(value) is None:
        return None
    try:
        level = int(float(str(value)))
    except ValueError:
        level = 0
    if level not in (1, 2, 3, 4):
        raise SimulationInputError(f"{where}: severity {value!r} must be 1, 2, 3 or 4")
    return level


def read_confusion(path: Path, policies: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """A CSV with a `truth` column of policy ids and one column per answered policy id; each row is
    normalised to probabilities. Rows the file leaves out are filled in from `--accuracy` by the caller."""
    frame = _read_table(Path(path))
    if "truth" not in frame.columns:
        raise SimulationInputError(f"{path}: needs a `truth` column naming each row's true policy")
    answered = [c for c in frame.columns if c != "truth"]
    unknown = [x for x in answered + list(frame["truth"]) if x not in policies]
    if unknown:
        raise SimulationInputError(
            f"{path}: {unknown[0]!r} is not a policy id of the project's config ({', '.join(policies)})"
        )
    matrix: dict[str, dict[str, float]] = {}
    for row_number, row in enumerate(frame.to_dict("records"), start=2):
        try:
            weights = {a: float(row[a] or 0) for a in answered}
        except ValueError:
            raise SimulationInputError(f"{path} row {row_number}: every cell must be a number") from None
        total = sum(weights.values())
        if any(w < 0 for w in weights.values()) or total <= 0:
            raise SimulationInputError(f"{path} row {row_number}: weights must be non-negative with a positive sum")
        matrix[row["truth"]] = {a: w / total for a, w in weights.items() if w > 0}
    return matrix


def load_saved_truth(workspace: Workspace) -> dict[int, tuple[str | None, Truth]]:
    """The truth of every task simulated before, by task id (it never changes once answers exist)."""
    path = truth_path(workspace)
    if not path.exists():
        return {}
    frame = read_table(path)
    saved: dict[int, tuple[str | None, Truth]] = {}
    for task, rows in frame.groupby("task", sort=False):
        policy = tuple(sorted(rows.loc[rows["control"] == "policy", "label"]))
        severity = rows.loc[rows["control"] == "severity", "label"]
        external_id = rows["external_id"].iloc[0]
        saved[int(task)] = (
            None if pd.isna(external_id) else str(external_id),
            Truth(policy, int(severity.iloc[0]) if len(severity) else None),
        )
    return saved


def save_truth(workspace: Workspace, truths: dict[int, tuple[str | None, Truth]]) -> Path:
    """Write every task's truth as the long table (atomically)."""
    rows = []
    for task, (external_id, truth) in sorted(truths.items()):
        rows += [(task, external_id, "policy", label) for label in truth.labels]
        if truth.severity is not None:
            rows.append((task, external_id, "severity", str(truth.severity)))
    frame = pd.DataFrame(rows, columns=TRUTH_COLUMNS).astype({"task": "int64"})
    path = truth_path(workspace)
    write_parquet(path, frame)
    return path
