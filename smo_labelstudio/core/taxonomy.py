"""The policy taxonomy: load and validate `taxonomy.yaml`, the single source of truth for labels."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.paths import REPO_ROOT
from smo_labelstudio.core.yamlfile import load_model

TAXONOMY_FILE = REPO_ROOT / "taxonomy.yaml"
NO_VIOLATION = "no_violation"


class TaxonomyError(ConfigError):
    """The taxonomy file is missing or invalid; the message says where."""


class SeverityLevel(BaseModel):
    level: int = Field(ge=1)
    name: str
    rubric: str


class Policy(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    definition: str
    in_scope: list[str] = Field(min_length=1)
    out_of_scope: list[str] = Field(min_length=1)
    severity: dict[int, str] = {}
    languages: list[str] | str = "all"


class Taxonomy(BaseModel):
    version: str
    name: str
    languages: list[str] = Field(min_length=1)
    rtl_languages: list[str] = []
    severity: list[SeverityLevel] = Field(min_length=1)
    decision_order: list[str] = Field(min_length=1)
    escalate_when: list[str] = Field(min_length=1)
    policies: list[Policy] = Field(min_length=2)

    @field_validator("policies")
    @classmethod
    def _unique_ids(cls, policies: list[Policy]) -> list[Policy]:
        ids = [p.id for p in policies]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate policy ids: {', '.join(dupes)}")
        if NO_VIOLATION not in ids:
            raise ValueError(f"a policy with id {NO_VIOLATION!r} is required")
        return policies

    @model_validator(mode="after")
    def _severity_levels_exist(self) -> Taxonomy:
        levels = {s.level for s in self.severity}
        for p in self.policies:
            unknown = sorted(set(p.severity) - levels)
            if unknown:
                raise ValueError(f"policy {p.id!r} describes severity levels {unknown} that are not in `severity`")
            if isinstance(p.languages, str) and p.languages != "all":
                raise ValueError(f"policy {p.id!r}: languages must be a list or 'all'")
        return self

    @property
    def violations(self) -> list[Policy]:
        """The policies that are violations (all but "no violation")."""
        return [p for p in self.policies if p.id != NO_VIOLATION]

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.policies]

    def fingerprint(self) -> str:
        """A short hash of the content, recorded beside the version to catch unbumped edits."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def load_taxonomy(path: Path = TAXONOMY_FILE) -> Taxonomy:
    """Read and validate the taxonomy; errors name the file and the field."""
    return load_model(path, Taxonomy, TaxonomyError)
