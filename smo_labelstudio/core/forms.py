"""The forms the Prefect UI shows for each flow: the flow's parameter model with its free-text names turned into
choice lists computed now (the specs folder, the landing folder, the label configs), which the UI renders as
dropdowns (an `enum` in the form's JSON schema). The flow itself still takes the general model (params.py), so the
CLI may pass any path; a deployment's form is this narrower model, rebuilt when a folder changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, Field, create_model

from smo_labelstudio.core import params as p
from smo_labelstudio.core.choices import (
    NEW_PROJECT,
    NO_FILE,
    NewProject,
    config_choices,
    landing_choices,
    landing_dir,
    spec_choices,
    specs_dir,
)


@dataclass(frozen=True)
class Choices:
    """The choice lists at one moment: a form is rebuilt when they change."""

    specs: tuple[str, ...]
    landing: tuple[str, ...]
    configs: tuple[str, ...]
    specs_folder: str
    landing_folder: str

    @classmethod
    def now(cls) -> Choices:
        """The folders' contents now."""
        return cls(
            specs=tuple(spec_choices()),
            landing=tuple(landing_choices()),
            configs=tuple(config_choices()),
            specs_folder=str(specs_dir()),
            landing_folder=str(landing_dir()),
        )


def _one_of(values: tuple[str, ...]) -> Any:
    """`Literal[values]`: the form's dropdown."""
    return Literal[values]


def _dropdown(values: tuple[str, ...], default: str, description: str) -> tuple[Any, Any]:
    """A field choosing one of `values`: an `enum` even for a single value (pydantic writes a lone `const`, which
    the UI shows as a box)."""
    return _one_of(values), Field(default, description=description, json_schema_extra={"enum": list(values)})


def _spec_field(c: Choices, new_project: bool) -> tuple[Any, Any]:
    values = c.specs + ((NEW_PROJECT,) if new_project else ())
    if not values:  # an empty folder: the one choice says where to put specs
        values = (f"(no spec in {c.specs_folder})",)
    where = f"one of the files in {c.specs_folder}"
    more = f", or {NEW_PROJECT!r} to describe a new project in new_project" if new_project else ""
    return _dropdown(values, values[0], f"The project spec: {where}{more}")


def _file_field(c: Choices, what: str, default_none: bool) -> tuple[Any, Any]:
    values = (c.landing + (NO_FILE,)) if not default_none else ((NO_FILE,) + c.landing)
    return _dropdown(
        values,
        values[0],
        f"{what}: a CSV, JSONL or Parquet file in the landing folder {c.landing_folder} (newest first; "
        f"drop a file there and it is listed within a minute), or {NO_FILE}",
    )


def new_project_form(c: Choices) -> type[BaseModel]:
    """NewProject with the label config as a dropdown."""
    configs = c.configs or ("text_moderation",)
    default = "text_moderation" if "text_moderation" in configs else configs[0]
    return create_model(
        "NewProjectForm",
        __base__=NewProject,
        config=_dropdown(configs, default, "The label config annotators see (label_configs/)"),
    )


def launch_form(c: Choices) -> type[BaseModel]:
    """The create-tasks form: spec or new project, data and gold from the landing folder."""
    nested: Any = Optional[new_project_form(c)]  # noqa: UP045 - a runtime-built type: Optional[...] reads clearer
    return create_model(
        "CreateTasksForm",
        __base__=p.LaunchParams,
        __doc__=p.LaunchParams.__doc__,
        spec=_spec_field(c, new_project=True),
        new_project=(
            nested,
            Field(
                None,
                description=f"Only with spec {NEW_PROJECT!r}: choose the new project here and fill in its title, "
                "label config, overlap, gold rate, quality thresholds and deadline; it is saved as a spec in "
                f"{c.specs_folder}, which the other forms then offer",
            ),
        ),
        data=_file_field(c, "The items", default_none=False),
        gold=_file_field(c, "Gold items with their answers (policy, severity)", default_none=True),
    )


def _with_spec(model: type[BaseModel], c: Choices, name: str) -> type[BaseModel]:
    return create_model(name, __base__=model, __doc__=model.__doc__, spec=_spec_field(c, new_project=False))


def scan_form(c: Choices) -> type[BaseModel]:
    """The quality-scan form: several specs from the dropdown."""
    values = c.specs or (f"(no spec in {c.specs_folder})",)
    item: Any = Annotated[_one_of(values), Field(json_schema_extra={"enum": list(values)})]
    many: Any = list[item]
    return create_model(
        "QualityScanForm",
        __base__=p.QualityScanParams,
        __doc__=p.QualityScanParams.__doc__,
        specs=(
            many,
            Field(
                [values[0]],
                min_length=1,
                description=f"Project specs from {c.specs_folder}; each project is one partition",
            ),
        ),
    )


def form_models(c: Choices) -> dict[str, type[BaseModel]]:
    """Each flow's form by the flow's file name in flows/."""
    return {
        "create_tasks": launch_form(c),
        "pull_completions": _with_spec(p.PullParams, c, "PullForm"),
        "quality_check": _with_spec(p.QualityCheckParams, c, "QualityCheckForm"),
        "quality_scan": scan_form(c),
        "ops_report": _with_spec(p.OpsReportParams, c, "OpsReportForm"),
        "export_dataset": _with_spec(p.ExportDatasetParams, c, "ExportDatasetForm"),
    }


def missing_descriptions(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> list[str]:
    """Fields of a form (and of the forms nested in it) without a description: every field must say what it is."""
    seen = seen or set()
    seen.add(model)
    missing = []
    for name, field in model.model_fields.items():
        if not field.description:
            missing.append(f"{model.__name__}.{name}")
        for arg in getattr(field.annotation, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in seen:
                missing += missing_descriptions(arg, seen)
    return missing
