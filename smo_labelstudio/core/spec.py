"""The project spec: the YAML file a project manager edits to start and run a labeling project."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.paths import REPO_ROOT, list_configs
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.core.yamlfile import load_model

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class SpecError(ConfigError):
    """The spec file is missing or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not silently ignored


class Columns(_Strict):
    """Which source columns hold what (the default spec reads `id`, `text`, `language`)."""

    id: str | None = "id"
    text: str | None = "text"
    image: str | None = None
    language: str | None = "language"
    source: str | None = None


class DynamicOverlap(_Strict):
    """More annotators where consensus is weak: after each pull and quality check, every task whose
    calibrated consensus confidence is below `target` and that has fewer than `max_annotators` answers
    gets one more annotator, lowest confidence first, until `budget` extra answers are spent."""

    target: float = Field(
        0.9, gt=0, le=1, description="the calibrated consensus confidence a task should reach; below it, it is raised"
    )
    max_annotators: int = Field(5, ge=2, le=20, description="no task is raised past this many annotators")
    budget: int = Field(
        ge=0,
        description="extra answers dynamic overlap may ask for over the whole project (one per raise); "
        "raises already recorded in the workspace count against it",
    )


class Overlap(_Strict):
    """Every task gets `annotators`; a `share` of tasks gets `extra_annotators` instead; `dynamic`
    (optional) then raises weak tasks one annotator at a time."""

    annotators: int = Field(1, ge=1, le=20)
    share: float = Field(0.2, ge=0, le=1)
    extra_annotators: int = Field(3, ge=1, le=20)
    dynamic: DynamicOverlap | None = Field(
        None, description="dynamic overlap (more annotators where confidence is low); off when absent"
    )

    @model_validator(mode="after")
    def _cap_above_static(self) -> Overlap:
        if self.dynamic is not None and self.dynamic.max_annotators <= self.annotators:
            raise ValueError(
                f"overlap.dynamic.max_annotators ({self.dynamic.max_annotators}) must exceed overlap.annotators "
                f"({self.annotators}), or no task could ever be raised"
            )
        return self


class Quality(_Strict):
    min_gold_accuracy: float = Field(0.8, ge=0, le=1)
    min_gold_answers: int = Field(10, ge=1)
    min_alpha: float = Field(0.6, ge=-1, le=1)
    min_severity_alpha: float | None = Field(None, ge=-1, le=1)  # ordinal alpha on severity; None: not gated
    min_confidence: float = Field(0.7, ge=0, le=1)
    model_voter: bool = Field(
        False,
        description="count the pre-annotation model as one more voter in consensus (its reliability learned like an "
        "annotator's, anchored and checked on gold); never an annotator in agreement, overlap or scorecards",
    )


class Qualification(_Strict):
    """Onboarding and pause on gold: an annotator's answers count only once they pass a sequential test on
    their gold answers (Wald's SPRT: accuracy `good_accuracy` against `bad_accuracy`), and stop counting,
    back to their last passing check, when a later test flags them (see quality/qualification.py)."""

    gold_tasks: int = Field(
        10, ge=1, le=200, description="the qualification batch: gold tasks Label Studio serves a new annotator first"
    )
    good_accuracy: float = Field(0.9, gt=0, lt=1, description="gold accuracy of an annotator who should pass")
    bad_accuracy: float = Field(0.6, gt=0, lt=1, description="gold accuracy at which an annotator must be stopped")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="chance of stopping an annotator at good_accuracy")
    beta: float = Field(0.1, gt=0, lt=0.5, description="chance of letting an annotator at bad_accuracy go on")
    remove_from_organization: bool = Field(
        False,
        description="on a pause, also remove the annotator from the Label Studio organization (Community's only "
        "way to stop a user taking tasks; an administrator restores the membership)",
    )

    @model_validator(mode="after")
    def _bad_below_good(self) -> Qualification:
        if self.bad_accuracy >= self.good_accuracy:
            raise ValueError(
                f"qualification: bad_accuracy ({self.bad_accuracy}) must be below good_accuracy ({self.good_accuracy})"
            )
        return self


QUEUE_ORDERS = ("source", "uncertainty", "severity", "random")


class Queue(_Strict):
    """The order each batch's tasks are imported in, which is the order Label Studio Community serves them in
    (see ingest/queue.py); languages are interleaved in every order but `source`."""

    order: Literal["source", "uncertainty", "severity", "random"] = Field(
        "source",
        description="source: the plan's order (as before); uncertainty: lowest model margin first; severity: most "
        "severe predicted first; random: seeded by the launch's seed",
    )


class Wellness(_Strict):
    """Exposure limits for the operations report: items at or above `high_severity` (consensus severity)
    an annotator may see per day before the report raises an alert."""

    high_severity: int = Field(3, ge=1, le=4)
    max_high_severity_per_day: int = Field(200, ge=1)


class Spec(_Strict):
    title: str = Field(min_length=1)
    config: str
    guidelines_version: str = Field(
        description="the taxonomy version the guidelines must come from; after a policy change (a new version in "
        "taxonomy.yaml's changelog) set the new one and run `smo relabel --spec SPEC`"
    )
    columns: Columns = Columns()
    overlap: Overlap = Overlap()
    gold_rate: float = Field(0.05, ge=0, le=0.5)
    quality: Quality = Quality()
    deadline: str | None = None
    wellness: Wellness = Wellness()
    queue: Queue = Field(Queue(), description="the order Label Studio serves each batch's tasks in")
    qualification: Qualification | None = Field(
        None, description="onboarding on gold and pausing annotators below the bar; off when absent (all count)"
    )
    adjudicators: list[str] = Field(
        default_factory=list,
        description="the Label Studio e-mails whose annotations in the review project decide low-confidence tasks; "
        "annotations by anyone else are ignored, and with none listed no adjudication answer is read",
    )

    @field_validator("adjudicators")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _EMAIL.fullmatch(v.strip())]
        if bad:
            raise ValueError(f"adjudicators: {bad[0]!r} is not an e-mail address (list Label Studio account e-mails)")
        return sorted({v.strip().lower() for v in value})

    @model_validator(mode="after")
    def _refers_to_what_exists(self) -> Spec:
        tax = load_taxonomy()
        if self.guidelines_version != tax.version:
            raise ValueError(
                f"guidelines_version {self.guidelines_version!r} does not match taxonomy.yaml "
                f"version {tax.version!r}; update the spec (after a policy change, then run `smo relabel --spec SPEC`) "
                f"or check out that taxonomy"
            )
        names = list_configs()
        if self.config not in names:
            raise ValueError(f"config {self.config!r} is not in label_configs/ (have: {', '.join(names)})")
        if not (self.columns.text or self.columns.image):
            raise ValueError("columns: map at least one of text or image")
        return self


def load_spec(path: Path) -> Spec:
    """Read and validate a spec; every error names the file and the field."""
    return load_model(path, Spec, SpecError)


EXAMPLE_SPEC = REPO_ROOT / "specs" / "example.yaml"
