"""What each flow takes (the form the Prefect UI shows for a run) and the launch's progress hooks.

They live in the library, not in flows/, so the CLI builds a flow's parameters without importing the flow;
`parse` turns a bad value into a ConfigError, one line naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, Optional, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator, model_validator

from smo_labelstudio.core.choices import NEW_PROJECT, NewProject, resolve_landing, resolve_spec, save_new_project
from smo_labelstudio.core.errors import ConfigError

Method = Literal["smoothed-ds", "ds", "mv"]
METHOD_HELP = (
    "Consensus: Dawid-Skene smoothed toward one skill per annotator (smoothed-ds), plain Dawid-Skene (ds) "
    "or majority vote (mv)"
)
SPEC_HELP = "The project spec: one of the specs folder's files (or a path to a spec YAML)"
ADJUDICATE_HELP = "Read back and queue adjudications in Label Studio"
N_BOOT_HELP = "Bootstrap resamples for confidence intervals"

# Callables (done, total) called after each import batch of a launch: the CLI adds one for its progress bar.
PROGRESS_HOOKS: list[Callable[[int, int], None]] = []

# A spec named as the forms name it (`example.yaml`, a file of the specs folder) or a path (the CLI's), as a path.
SpecRef = Annotated[str, AfterValidator(resolve_spec)]


class LaunchParams(BaseModel):
    """What the Prefect UI asks for when a project manager starts a batch."""

    spec: SpecRef = Field(
        description=f"The project spec: one of the specs folder's files, or {NEW_PROJECT!r} to describe a new project "
        "in new_project (a path to a spec YAML on the command line)"
    )
    new_project: Optional[NewProject] = Field(
        None,
        description=f"Only with spec {NEW_PROJECT!r}: the new project's title, label config, overlap, gold rate, "
        "quality thresholds and deadline; saved as a spec in the specs folder, which the other forms then offer",
    )
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
    gold: Optional[str] = Field(
        None, description="A file of gold items with their answers (policy, severity) from the landing folder, or none"
    )
    sample: Optional[float] = Field(
        None, description="a fraction (<= 1) or a number of items, stratified by language and source"
    )
    batch_size: int = Field(10_000, ge=1, le=100_000, description="tasks per import request")
    seed: int = Field(0, description="Seed for sampling and the choice of gold tasks")
    adopt: Optional[int] = Field(
        None,
        ge=1,
        description="a Label Studio project id this workspace takes as its project (after the recorded one was "
        "deleted or renamed); without it a launch uses the project it recorded, or creates one",
    )

    @field_validator("data", "gold")
    @classmethod
    def _landing_file(cls, value: Optional[str]) -> Optional[str]:
        """A file the form names is the landing folder's; the form's `(none)` is no file."""
        return resolve_landing(value)

    @model_validator(mode="after")
    def _new_project_only_when_asked(self) -> LaunchParams:
        """A new project is described exactly when the spec dropdown says so."""
        if self.spec == NEW_PROJECT and self.new_project is None:
            raise ValueError(f"spec is {NEW_PROJECT!r}: describe the project in new_project (at least its title)")
        if self.spec != NEW_PROJECT and self.new_project is not None:
            raise ValueError(
                f"new_project is filled in but spec is {self.spec!r}: choose {NEW_PROJECT!r} as the spec to "
                "create it, or clear new_project (set it to None)"
            )
        if self.new_project is not None:
            self.new_project.spec()  # a ChoiceError (a ValueError) naming what is wrong, before anything runs
        return self

    def with_spec_file(self) -> LaunchParams:
        """These parameters with the new project (if any) saved as a spec file and named by its path."""
        if self.new_project is None:
            return self
        return self.model_copy(update={"spec": str(save_new_project(self.new_project)), "new_project": None})

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

    spec: SpecRef = Field(description=SPEC_HELP)
    full: bool = Field(False, description="re-read everything instead of what changed since the last pull")


class QualityCheckParams(BaseModel):
    """The form the Prefect UI shows for a run."""

    spec: SpecRef = Field(description=SPEC_HELP)
    adjudicate: bool = Field(True, description=ADJUDICATE_HELP)
    method: Method = Field("smoothed-ds", description=METHOD_HELP)
    n_boot: int = Field(1000, ge=10, le=10_000, description=N_BOOT_HELP)


class QualityScanParams(BaseModel):
    """The form the Prefect UI shows for a run."""

    specs: list[SpecRef] = Field(
        min_length=1, description="Project specs (the specs folder's files, or paths); each project is one partition"
    )
    adjudicate: bool = Field(True, description=ADJUDICATE_HELP)
    method: Method = Field("smoothed-ds", description=METHOD_HELP)
    n_boot: int = Field(1000, ge=10, le=10_000, description=N_BOOT_HELP)


class OpsReportParams(BaseModel):
    """The form the Prefect UI shows for a run."""

    spec: SpecRef = Field(description=SPEC_HELP)
    stale_hours: float = Field(24.0, gt=0, description="A task in progress with no answer for this long is stale")
    n_boot: int = Field(300, ge=10, le=10_000, description="Bootstrap resamples for the model's F1 intervals")


class ExportDatasetParams(BaseModel):
    """The form the Prefect UI shows for a run."""

    spec: SpecRef = Field(description=SPEC_HELP)
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
        raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
