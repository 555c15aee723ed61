"""A labeling project's workspace: the files we keep about one project, outside Label Studio.

One folder per spec title under `$SMO_HOME/workspaces/`, named `<slug>-<hash>`: the title's slug (for people)
and the first 8 hex digits of the SHA-256 of the exact title (for identity: titles in any script, and titles
that slug alike, get folders of their own). The title is recorded in `workspace.json`; a folder recording
another title is refused in one line. A folder of the old scheme (`<slug>` alone) that records the same title
(in `project.json`, or `workspace.json`) or none is used where it is: its work carries on, nothing moves.
Gold answers live only here (Label Studio
Community lets every account read every project), as do run manifests, quarantined rows, the pulled
tables the quality engine reads, and reports. Writers replace files atomically.

    project.json             {"project_id", "url", "title", "config", "ls_title", "adopted"}: the project
                             this workspace owns, written the moment a launch creates it (or `--adopt` names
                             it); later launches use that id, never a title lookup. `title` is the spec's,
                             `ls_title` the title Label Studio showed when it was recorded or adopted
    project.pending.json     {"marker", "title"} while a launch creates the project: the marker is in the new
                             project's description, so a launch killed before recording finds it again
    runs/<plan_id>/          one folder per launch plan: plan.parquet (every item with its text,
                             language, is_gold, batch), batches.json, manifest.json, quarantine and
                             duplicates, predictions/batch-*.parquet (the pre-annotations imported),
                             missing_predictions.csv
    quarantine.csv           rows refused by launches, one reason each (appended)
    gold/answers.parquet     external_id, control, label: the gold answers (never sent to Label Studio)
    tables/annotations.parquet  one row per Label Studio annotation
    tables/labels.parquet    one row per annotation, control and chosen value (the tidy long table)
    tables/pull_state.json   where the last successful pull stopped
    reports/                 quality and export reports
    guidelines.json          the project's guideline versions and when each took effect (core/guideline_history.py)
    relabel/                 what `smo relabel` sent back (requests.parquet) and the gold it listed for review
                             (gold_review.json): quality/guideline_versions.py
    workspace.json           {"title"}: the exact spec title this folder belongs to
    workspace.lock, workspace.lock.json  the workspace lock (core/lock.py) and who holds it
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow

from smo_labelstudio.core.errors import ConfigError, InputError
from smo_labelstudio.core.files import atomic_write
from smo_labelstudio.core.paths import state_home

# Columns of the pulled tables: a contract for the quality engine, exports and notebooks.
ANNOTATION_COLUMNS = [
    "project",
    "task",
    "external_id",
    "annotation_id",
    "annotator",
    "created_at",
    "updated_at",
    "lead_time",
    "was_cancelled",
    "is_gold",
    "prediction_model_version",
    "changed_prediction",
    "language",
]
LABEL_COLUMNS = [
    "project",
    "task",
    "external_id",
    "annotation_id",
    "annotator",
    "control",
    "label",
    "start",
    "end",
    "is_gold",
    "language",
]


def slug(title: str) -> str:
    """A readable name for a spec title: lower case, letters, digits and dashes (not unique: see `workspace_key`)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "project"


def workspace_key(title: str) -> str:
    """A workspace's folder name: the title's slug (at most 60 characters) and a short hash of the exact title."""
    return f"{slug(title)[:60].strip('-') or 'project'}-{hashlib.sha256(title.encode()).hexdigest()[:8]}"


class WorkspaceTitleError(ConfigError):
    """A workspace folder records another spec title than the one that asked for it."""


def recorded_title(root: Path) -> str | None:
    """The spec title a workspace folder belongs to (`workspace.json`, else `project.json`); None if it names none."""
    for name in ("workspace.json", "project.json"):
        title = (read_json(Path(root) / name) or {}).get("title")
        if title is not None:
            return str(title)
    return None


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def for_title(cls, title: str, home: Path | None = None) -> Workspace:
        """The workspace of a spec title (see the module docstring): `<slug>-<hash>`, or the old scheme's `<slug>`
        folder when it holds this title's work; `WorkspaceTitleError` when the folder records another title."""
        workspaces = (home or state_home()) / "workspaces"
        root = workspaces / workspace_key(title)
        legacy = workspaces / slug(title)
        if not root.exists() and legacy.is_dir() and recorded_title(legacy) in (None, title):
            root = legacy  # made before folders were keyed by a hash: carry on in it
        recorded = recorded_title(root) if root.exists() else None
        if recorded is not None and recorded != title:
            raise WorkspaceTitleError(
                f"workspace {root} belongs to the spec title {recorded!r}, not {title!r}: use that title, "
                f"or move the folder away"
            )
        if recorded is None and root.exists():
            write_json(root / "workspace.json", {"title": title})  # claimed: another title gets a folder of its own
        return cls(root)

    @property
    def project_file(self) -> Path:
        return self.root / "project.json"

    @property
    def pending_project_file(self) -> Path:
        return self.root / "project.pending.json"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine.csv"

    @property
    def gold_answers(self) -> Path:
        return self.root / "gold" / "answers.parquet"

    @property
    def annotations(self) -> Path:
        return self.root / "tables" / "annotations.parquet"

    @property
    def labels(self) -> Path:
        return self.root / "tables" / "labels.parquet"

    @property
    def pull_state(self) -> Path:
        return self.root / "tables" / "pull_state.json"

    @property
    def simulated_truth(self) -> Path:
        """The simulator's saved truth (`simulation/truth.parquet`): written by simulation/, scored
        against by the export's consensus-accuracy figure; absent for real projects."""
        return self.root / "simulation" / "truth.parquet"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def project(self) -> dict | None:
        """The recorded project (`project_id`, ...) or None before the first launch."""
        return read_json(self.project_file)

    def record_project(self, record: dict[str, Any]) -> None:
        """Record the project this workspace owns (atomically: a crash leaves the old record or the new)."""
        write_json(self.project_file, record)


class WorkspaceFileError(InputError, OSError):
    """A workspace file exists but cannot be read (truncated, garbled, half-written by hand): the
    message names the file, what is wrong and what to do. An OSError and a ValueError, so every
    command's one-line error handling catches it."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} is damaged ({reason}); {advice(Path(path))}")

    def __str__(self) -> str:
        return self.args[0]


_REBUILD = "delete it and run `smo pull --full` to rebuild the tables from Label Studio"
_ADVICE = {
    "project.json": "delete it and re-run `smo launch` with --adopt PROJECT_ID (the id in the project's "
    "Label Studio address, /projects/ID/); without --adopt a launch creates a new project",
    "pull_state.json": _REBUILD,
    "annotations.parquet": _REBUILD,
    "labels.parquet": _REBUILD,
    "manifest.json": "delete it and re-run the same `smo launch` (it rewrites the manifest, importing nothing twice)",
    "answers.parquet": "restore it from a backup: gold answers are kept nowhere else",
    "truth.parquet": "delete it and re-run `smo simulate` with --truth",
}


def advice(path: Path) -> str:
    """What to do about a damaged workspace file."""
    if path.name in _ADVICE:
        return _ADVICE[path.name]
    if path.parent.parent.name == "runs" or path.parent.name == "predictions":
        return (
            "restore it from a backup: it records what this launch imported, and without it a re-run "
            "would import those rows again"
        )
    return "restore it from a backup or move it away"


def read_json(path: Path) -> dict | None:
    """A workspace JSON file, None when absent; `WorkspaceFileError` when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkspaceFileError(path, f"not valid JSON: {exc}") from None


def read_table(path: Path, **kwargs) -> pd.DataFrame:
    """A workspace Parquet table; `WorkspaceFileError` when it is truncated or not Parquet."""
    try:
        return pd.read_parquet(path, **kwargs)
    except FileNotFoundError:
        raise
    except (pyarrow.ArrowException, OSError) as exc:
        raise WorkspaceFileError(path, f"not a readable Parquet table: {' '.join(str(exc).split())[:200]}") from None


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (a crash leaves the old file or the new one, never half of one)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True, default=str)))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a table atomically."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


GOLD_PREFIX = "gold:"  # gold tasks' external ids: a gold item and a work item with the same source id stay apart


def task_external_id(external_id: Any, is_gold: Any) -> Any:
    """The external id a task carries in Label Studio and the tables: `gold:<id>` for a gold item. Takes a
    scalar pair, or Series (element-wise, ids as text)."""
    if isinstance(external_id, pd.Series):
        ids = external_id.astype(str)
        gold = pd.Series(is_gold, index=ids.index).astype(bool)
        return ids.where(~gold, GOLD_PREFIX + ids)
    return f"{GOLD_PREFIX}{external_id}" if is_gold else str(external_id)


def read_plan(
    ws: Workspace, columns: list[str] | None = None, keep: Literal["first", "last"] = "first"
) -> pd.DataFrame:
    """Every launch plan of the workspace (runs/<plan_id>/plan.parquet, in plan-id order) as one table: one row
    per item (from the first plan that holds it, or the last), its `plan_id`, and `external_id` as the task
    carries it (gold items' prefixed)."""
    wanted = None if columns is None else list(dict.fromkeys(["item_id", "external_id", "is_gold", *columns]))
    parts = [
        read_table(path, columns=wanted).assign(plan_id=path.parent.name)
        for path in sorted(ws.runs.glob("*/plan.parquet"))
    ]
    if not parts:
        return pd.DataFrame(columns=[*(wanted or ["item_id", "external_id", "is_gold"]), "plan_id"])
    plan = pd.concat(parts, ignore_index=True).drop_duplicates("item_id", keep=keep).reset_index(drop=True)
    plan["external_id"] = task_external_id(plan["external_id"], plan["is_gold"])
    return plan
