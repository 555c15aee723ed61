"""The policy taxonomy: load and validate `taxonomy.yaml`, the single source of truth for labels."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class Change(BaseModel):
    """One version of the taxonomy in its changelog: the policies whose definition or scope changed, and the
    policies the new wording might add to items where others were chosen (`smo relabel` sends those back)."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, description="the taxonomy version this entry describes")
    date: dt.date | None = Field(
        None, description="when the version took effect (ISO date); never earlier than the entry above"
    )
    changed: list[str] = Field(
        default_factory=list,
        description="policy ids whose definition or scope changed in this version: items where one of them was chosen "
        "under an older version go back for labeling",
    )
    may_add: dict[str, list[str]] = Field(
        default_factory=dict,
        description="policy id -> the policy ids chosen on items the new wording might add it to (e.g. `hate: "
        "[harassment, no_violation]`): those items go back too",
    )
    note: str = Field("", description="what changed, in a sentence, for people")

    def touched(self) -> set[str]:
        """Every policy this change concerns: the changed ones and those it might add."""
        return set(self.changed) | set(self.may_add)

    def selects(self, chosen: set[str]) -> set[str]:
        """The policies of this change that make an item whose answers chose `chosen` go back (empty: it stays)."""
        hit = {p for p in self.changed if p in chosen}
        hit |= {p for p, origins in self.may_add.items() if chosen & set(origins)}
        return hit


class Taxonomy(BaseModel):
    version: str
    name: str
    languages: list[str] = Field(min_length=1)
    rtl_languages: list[str] = []
    severity: list[SeverityLevel] = Field(min_length=1)
    decision_order: list[str] = Field(min_length=1)
    escalate_when: list[str] = Field(min_length=1)
    policies: list[Policy] = Field(min_length=2)
    changelog: list[Change] = Field(
        default_factory=list,
        description="every version, oldest first, the last one `version`: the policies each changed (see `Change`)",
    )

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

    @model_validator(mode="after")
    def _changelog_in_order(self) -> Taxonomy:
        if not self.changelog:
            return self
        ids, seen = set(self.ids), set[str]()
        last_date: dt.date | None = None
        for entry in self.changelog:
            where = f"changelog version {entry.version!r}"
            if entry.version in seen:
                raise ValueError(f"{where} is listed twice (each version once, oldest first)")
            seen.add(entry.version)
            named = [*entry.changed, *entry.may_add, *(p for v in entry.may_add.values() for p in v)]
            unknown = sorted({p for p in named if p not in ids})
            if unknown:
                raise ValueError(f"{where} names unknown policy ids {', '.join(unknown)} (have: {', '.join(self.ids)})")
            empty = sorted(p for p, origins in entry.may_add.items() if not origins)
            if empty:
                raise ValueError(f"{where}: may_add.{empty[0]} lists no policy it might be added to")
            if entry.date is not None and last_date is not None and entry.date < last_date:
                raise ValueError(f"{where} is dated {entry.date} before the version above it ({last_date})")
            last_date = entry.date or last_date
        if self.changelog[-1].version != self.version:
            raise ValueError(
                f"changelog: the last entry is version {self.changelog[-1].version!r}, not the taxonomy's version "
                f"{self.version!r}; add an entry for {self.version!r} naming the policies it changed"
            )
        return self

    @property
    def versions(self) -> list[str]:
        """The changelog's versions, oldest first (the taxonomy's version alone when it has no changelog)."""
        return [c.version for c in self.changelog] or [self.version]

    @property
    def violations(self) -> list[Policy]:
        """The policies that are violations (all but "no violation")."""
        return [p for p in self.policies if p.id != NO_VIOLATION]

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.policies]

    def fingerprint(self) -> str:
        """A short hash of the content, recorded beside the version to catch unbumped edits (the changelog is history,
        not content: adding an entry changes no label config)."""
        return hashlib.sha256(self.model_dump_json(exclude={"changelog"}).encode()).hexdigest()[:12]


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Read and validate the taxonomy (`TAXONOMY_FILE` unless given, looked up when called); errors name the file
    and the field."""
    return load_model(path or TAXONOMY_FILE, Taxonomy, TaxonomyError)
