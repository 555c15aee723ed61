"""What the project manager's forms offer: the specs the deployment knows, the files in the landing folder, the
label configs; a new project described in a form (NewProject) and the spec file it is saved as.

Forms send names (`example.yaml`, `items.csv`), the CLI sends paths: `resolve_spec` and `resolve_landing` turn
a name into its file in the specs or landing folder and leave a path as it is."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.files import write_text
from smo_labelstudio.core.paths import LABEL_CONFIGS_DIR, REPO_ROOT, list_configs, state_home
from smo_labelstudio.core.settings import get_settings
from smo_labelstudio.core.spec import Columns, Overlap, Quality, Spec, SpecError, load_spec
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.core.workspace import slug

NEW_PROJECT = "(new project: describe it in new_project)"  # the spec dropdown's last choice
NO_FILE = "(none)"  # a file dropdown's "no file" choice (the rows come from a query; no gold file)
SPEC_SUFFIXES = (".yaml", ".yml")
DATA_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")  # what ingest/sources.py reads
DEFAULT_SPEC = "example.yaml"


class ChoiceError(ConfigError):
    """A form's choice that cannot be used (a new project clashing with a saved spec, a name not in a folder)."""


def specs_dir() -> Path:
    """The folder of project specs the forms offer (SMO_SPECS_DIR, default `specs/` in the repo)."""
    return Path(get_settings().specs_dir or REPO_ROOT / "specs").resolve()


def landing_dir() -> Path:
    """The landing folder the forms offer data and gold files from (SMO_LANDING_DIR, default `<state>/landing`)."""
    return Path(get_settings().landing_dir or state_home() / "landing").resolve()


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes]


def spec_choices(folder: Path | None = None) -> list[str]:
    """The spec files' names in the specs folder, sorted (`example.yaml` first when present)."""
    names = sorted(p.name for p in _files(folder or specs_dir(), SPEC_SUFFIXES))
    return sorted(names, key=lambda n: n != DEFAULT_SPEC)


def landing_choices(folder: Path | None = None) -> list[str]:
    """The data files' names in the landing folder, newest first (the one just dropped there is the default)."""
    files = _files(folder or landing_dir(), DATA_SUFFIXES)
    return [p.name for p in sorted(files, key=lambda p: (-p.stat().st_mtime, p.name))]


def config_choices() -> list[str]:
    """The label configs of label_configs/ (`smo configs list`)."""
    return list_configs()


def _named(value: str, folder: Path) -> str:
    """`value` as it is when it names an existing file or holds a folder part; else its file in `folder` when
    that exists (a form's choice); else as it is (the reader then says the file is missing)."""
    if Path(value).exists() or Path(value).name != value:
        return value
    candidate = folder / value
    return str(candidate) if candidate.is_file() else value


def resolve_spec(value: str) -> str:
    """A spec the form names (`example.yaml`) as its path in the specs folder; a path (the CLI's) unchanged."""
    return value if value == NEW_PROJECT else _named(value, specs_dir())


def resolve_landing(value: str | None) -> str | None:
    """A file the form names as its path in the landing folder; `(none)` or empty as None; a path unchanged."""
    if value is None or value.strip() in ("", NO_FILE):
        return None
    return _named(value, landing_dir())


class NewProject(BaseModel):
    """A project described in the create-tasks form instead of a spec file: saved as a spec in the specs folder
    (so the other forms offer it from then on); everything not asked for takes the spec's defaults."""

    model_config = ConfigDict(extra="forbid", title="describe a new project")

    title: str = Field(
        min_length=1, max_length=200, description="The Label Studio project's title (unique: it names the workspace)"
    )
    config: str = Field("text_moderation", description="The label config annotators see (label_configs/)")
    annotators: int = Field(1, ge=1, le=20, description="Annotators per task")
    extra_share: float = Field(
        0.2, ge=0, le=1, description="Share of tasks that get extra_annotators instead (for agreement)"
    )
    extra_annotators: int = Field(3, ge=1, le=20, description="Annotators on that share of tasks")
    gold_rate: float = Field(0.05, ge=0, le=0.5, description="Share of gold tasks mixed into each batch")
    min_gold_accuracy: float = Field(0.8, ge=0, le=1, description="Flag annotators below this accuracy on gold")
    min_alpha: float = Field(0.6, ge=-1, le=1, description="Krippendorff's alpha gate per policy")
    min_confidence: float = Field(0.7, ge=0, le=1, description="Consensus below this goes to adjudication")
    deadline: dt.date | None = Field(
        None, description="The date the batch should be done (the operations report's ETA is checked against it)"
    )

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the title is empty")
        return value.strip()

    @field_validator("config")
    @classmethod
    def _config(cls, value: str) -> str:
        names = config_choices()
        if value not in names:
            raise ValueError(f"{value!r} is not a label config (have: {', '.join(names)})")
        return value

    def spec(self) -> Spec:
        """The project spec this form describes (validated as a spec file would be)."""
        shows = (LABEL_CONFIGS_DIR / f"{self.config}.xml").read_text(encoding="utf-8")
        image = "$image" in shows and "$text" not in shows
        try:
            return Spec(
                title=self.title,
                config=self.config,
                guidelines_version=load_taxonomy().version,
                columns=Columns(text=None if image else "text", image="image" if image else None),
                overlap=Overlap(
                    annotators=self.annotators, share=self.extra_share, extra_annotators=self.extra_annotators
                ),
                gold_rate=self.gold_rate,
                quality=Quality(
                    min_gold_accuracy=self.min_gold_accuracy,
                    min_alpha=self.min_alpha,
                    min_confidence=self.min_confidence,
                ),
                deadline=self.deadline.isoformat() if self.deadline else None,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ChoiceError(f"new_project: {first['msg'].removeprefix('Value error, ')}") from None


def save_new_project(project: NewProject, folder: Path | None = None) -> Path:
    """Save the form's project as `<specs folder>/<title's slug>.yaml` and return it. Saving the same project again
    is a no-op; a file of that name holding another project, or this one with other settings, is an error (a
    running project's spec is edited in its file, not through a new form)."""
    folder = folder or specs_dir()
    spec = project.spec()
    path = folder / f"{slug(spec.title)[:60].strip('-') or 'project'}.yaml"
    text = (
        f"# Project spec for {spec.title!r}, described in the create-tasks form; every key is documented in "
        "specs/example.yaml.\n" + yaml.safe_dump(spec.model_dump(), sort_keys=False, allow_unicode=True)
    )
    if path.exists():
        try:
            saved = load_spec(path)
        except SpecError:
            saved = None
        if saved is not None and saved.title == spec.title:
            if saved == spec:
                return path
            raise ChoiceError(
                f"new_project: {path.name} already holds project {spec.title!r} with other settings; choose "
                f"{path.name} as the spec (edit the file to change its settings)"
            )
        raise ChoiceError(
            f"new_project: {path.name} in {folder} already holds another project; give the new project another title"
        )
    folder.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    return path
