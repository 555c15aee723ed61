"""What each flow takes (the form the Prefect UI shows for a run) and the launch's progress hooks.

They live in the library, not in flows/, so the CLI builds a flow's parameters without importing the flow;
`parse` turns a bad value into a ConfigError, one line naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Optional, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, model_validator

from smo_labelstudio.core.errors import ConfigError

Method = Literal["smoothed-ds", "ds", "mv"]
METHOD_HELP = (
    "Consensus: Dawid-Skene smoothed toward one skill per annotator (smoothed-ds), plain Dawid-Skene (ds) "
    "or majority vote (mv)"
)
SPEC_HELP = "Path to the project spec YAML (e.g. specs/example.yaml)"
ADJUDICATE_HELP = "Read back and queue adjudications in Label Studio"
N_BOOT_HELP = "Bootstrap resamples for confidence intervals"

# Callables (done, total) called after each import batch of a launch: the CLI adds one for its progress bar.
PROGRESS_HOOKS: list[Callable[[int, int], None]] = []


class LaunchParams(BaseModel):
    """What the Prefect UI asks for when a project manager starts a batch."""

    spec: str = Field(description="path to the project spec (YAML)")
    data: Optional[str] = Field(None, description="CSV, JSONL or Parquet file of items (or give a query instead)")
    query: Optional[str] = Field(
        None,
        description="instead of a file: a SQL SELECT against the warehouse (PostgreSQL) whose columns the spec's "
        "`columns:` map; run read-only, streamed; its text and its result's digest go into the manifest",
    )
    source_url: Optional[str] = Field(
        None,
        description="PostgreSQL the query runs on, postgresql://user@host:port/db without a password (default "
        "SMO_SOURCE_URL, which may hold one; or ~/.pgpass)",
    )
    gold: Optional[str] = Field(None, description="gold items with their answers (policy, severity)")
    sample: Optional[float] = Field(
        None, description="a fraction (<= 1) or a number of items, stratified by language and source"
    )
    batch_size: int = Field(10_000, ge=1, le=100_000, description="tasks per import request")
    seed: int = 0
    adopt: Optional[int] = Field(
        None,
        ge=1,
        description="a Label Studio project id this workspace takes as its project (after the recorded one was "
        "deleted or renamed); without it a launch uses the project it recorded, or creates one",
    )

    @model_validator(mode="after")
    def _one_source(self) -> LaunchParams:
        """The items come from a file or a query, not both; no password in a parameter Prefect stores."""
        if (self.data is None) == (self.query is None):
            raise ValueError("give the items as a file (data) or as a query (query): one of the two")
        if self.source_url and urlsplit(self.source_url).password:
            raise ValueError(
                "source_url holds a password, which Prefect would store with the run: give it in SMO_SOURCE_URL "
                "or ~/.pgpass instead"
            )
        return self


class PullParams(BaseModel):
    """What the Prefect UI asks for."""

    spec: str = Field(description="path to the project spec (YAML)")
    full: bool = Field(False, description="re-read everything instead of what changed since the last pull")


class QualityCheckParams(BaseModel):
    """The form the Prefect UI shows for a run."""

    spec: str = Field(description=SPEC_HELP)
    adjudicate: bool = Field(True, description=ADJUDICATE_HELP)
    method: Method = Field("smoothed-ds", description=METHOD_HELP)
    n_boot: int = Field(1000, ge=10, le=10_000, description=N_BOOT_HELP)


class QualityScanParams(BaseModel):
    """The form the Prefect UI shows for a run."""

    specs: list[str] = Field(
        min_length=1, description="Project spec YAML files (e.g. specs/example.yaml); each project is one partition"
    )
    adjudicate: bool = Field(True, description=ADJUDICATE_HELP)
    method: Method = Field("smoothed-ds", description=METHOD_HELP)
    n_boot: int = Field(1000, ge=10, le=10_000, description=N_BOOT_HELP)


class OpsReportParams(BaseModel):
    """The form the Prefect UI shows for a run."""

    spec: str = Field(description=SPEC_HELP)
    stale_hours: float = Field(24.0, gt=0, description="A task in progress with no answer for this long is stale")
    n_boot: int = Field(300, ge=10, le=10_000, description="Bootstrap resamples for the model's F1 intervals")


class ExportDatasetParams(BaseModel):
    """The form the Prefect UI shows for a run."""

    spec: str = Field(description=SPEC_HELP)
    out: str = Field(description="Folder to write the dataset files and datasheet into")
    method: Method = Field("smoothed-ds", description=METHOD_HELP)
    seed: int = Field(0, description="Seed for the splits and bootstrap intervals")
    consensus_only: bool = Field(
        False,
        description="Only the consensus per task (the shape before issue 18): no per-annotator answers, soft "
        "labels or posteriors per policy",
    )


P = TypeVar("P", bound=BaseModel)


def parse(model: type[P], **values: object) -> P:
    """`model(**values)`, or a ConfigError naming the first bad field (`batch_size: Input should be ...`)."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise ConfigError(f"{where}: {first['msg']}") from None
