"""Every `SMO_*` environment variable in one place: its type, default and meaning.

`get_settings()` follows the environment (read again whenever an `SMO_*` variable changed: tests and
flow runs change it), and a bad value is a `ConfigError` naming the variable. The ML backend's image
has no pydantic: it reads its few variables itself (ml_backend/), and model/ never imports this module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from smo_labelstudio.core.errors import ConfigError

PREFIX = "SMO_"
RUNNERS = ("thread", "dask")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _positive_int(value: Any) -> Any:
    if isinstance(value, str) and (not value.strip().isdigit() or int(value) < 1):
        raise ValueError("must be a positive whole number")
    if isinstance(value, int) and value < 1:
        raise ValueError("must be a positive whole number")
    return value


def _positive_float(value: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number of seconds") from None
    if number <= 0:
        raise ValueError("must be positive")
    return number


def _seconds_or_zero(value: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number of seconds") from None
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _flag(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be true or false")
    return value


def _runner(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        if value not in RUNNERS:
            raise ValueError(f"must be one of {', '.join(RUNNERS)}")
    return value


def _stripped(value: Any) -> Any:
    return value.strip() or None if isinstance(value, str) else value


PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
Seconds = Annotated[float, BeforeValidator(_positive_float)]
SecondsOrZero = Annotated[float, BeforeValidator(_seconds_or_zero)]
Flag = Annotated[bool, BeforeValidator(_flag)]


class Settings(BaseSettings):
    """The `SMO_*` variables (an empty value counts as unset). Secrets are `SecretStr`: never in a repr or log."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore")

    # -- where things live
    home: Path | None = Field(
        None, description="The stack's state folder: data, logs, credentials, workspaces (default `.smo/` in the repo)."
    )
    cache_dir: Path | None = Field(
        None,
        description="Shared, rebuildable cache: side environments, migrated templates "
        "(default `$XDG_CACHE_HOME/smo-labelstudio`).",
    )
    model_dir: Path | None = Field(
        None, description="The ML backend's model store (the local stack sets it; `models/` otherwise)."
    )
    app_dir: Path | None = Field(
        None, description="Where prefect.yaml's pull step runs a deployed flow (`/app` in the app image)."
    )

    # -- Label Studio
    ls_url: str | None = Field(None, description="Label Studio's URL (default: the local stack's, from its state).")
    ls_token: SecretStr | None = Field(
        None, description="Label Studio API token (default: the local stack's, from its state)."
    )
    ls_token_block: str | None = Field(None, description="Name of a Prefect Secret block holding the token instead.")
    ls_timeout: Seconds | None = Field(
        None, description="Seconds to wait for one Label Studio answer (default: per call, 60 to 1800)."
    )
    ls_retries: PositiveInt = Field(4, description="Attempts for an idempotent Label Studio request.")
    ls_backoff: Seconds = Field(
        0.5, description="Base delay in seconds between attempts (doubled each time, jittered)."
    )
    ls_ca_bundle: Path | None = Field(
        None,
        description="A PEM file of CA certificates to trust for Label Studio's HTTPS (a private CA), "
        "on top of the usual public ones.",
    )

    # -- the local stack
    ls_port: PositiveInt = Field(8080, description="Label Studio's port in the local stack.")
    prefect_port: PositiveInt = Field(4200, description="The Prefect server's port in the local stack.")
    backend_port: PositiveInt = Field(9090, description="The ML backend's port in the local stack.")
    reports_port: PositiveInt = Field(4280, description="The reports service's port in the local stack.")
    reports_url: str | None = Field(
        None,
        description="The address report links point at, when the reports service is reached through a proxy "
        "(default: the stack's own, `http://127.0.0.1:SMO_REPORTS_PORT`).",
    )
    ls_workers: PositiveInt = Field(4, description="Label Studio's web server workers in the local stack.")
    ls_legacy_token: bool = Field(
        False,
        description="`smo stack up` with legacy API tokens on and a legacy token issued, as before 1.2x made "
        "personal access tokens the default (same as `--legacy-token`).",
    )
    postgres_url: SecretStr | None = Field(
        None, description="PostgreSQL for Label Studio and Prefect (`postgresql://...`; default SQLite)."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the ML backend's training queue.")
    image_tag: str = Field("latest", description="Tag of the app and ML backend images (docker-compose.yml).")

    # -- the ML backend
    backend_url: str | None = Field(
        None, description="The ML backend's URL (default: the local stack's, from its state)."
    )
    backend_user: str | None = Field(None, description="The ML backend's predict-only basic-auth user.")
    backend_password: SecretStr | None = Field(
        None, description="The ML backend's predict-only basic-auth password (Label Studio holds it)."
    )
    backend_admin_password: SecretStr | None = Field(
        None,
        description="The ML backend's admin password (basic-auth user `admin`): connects projects and lists "
        "versions. Never given to Label Studio, which holds only the predict-only user and password.",
    )
    training_queue: str = Field(
        "smo-training", description="RQ queue name of training jobs (one per stack sharing a Redis)."
    )
    model_files: Path | None = Field(
        None,
        description="The trusted models folder: the only place `smo backend use --model PATH` and the backend load "
        "a joblib file from (it runs code when loaded); it and the file must be yours and writable by no one else "
        "(default `files/` in the model store).",
    )
    model_token: SecretStr | None = Field(
        None,
        description="Bearer token sent to the team's HTTP model endpoint (`smo backend use --model URL` keeps it in "
        "the model store, mode 0600).",
    )
    model_timeout: Seconds = Field(
        10.0,
        description="Seconds the backend gives the served model for one batch before Label Studio gets no "
        "prediction and the reason is logged (kept by `smo backend use`; well under Label Studio's ML timeout).",
    )

    # -- running flows
    task_runner: Annotated[Literal["thread", "dask"] | None, BeforeValidator(_runner)] = Field(
        None, description="`thread` (default): a bounded thread pool; `dask`: a local Dask cluster per run."
    )
    task_workers: PositiveInt = Field(4, description="Threads of the thread pool.")
    dask_address: Annotated[str | None, BeforeValidator(_stripped)] = Field(
        None, description="An existing Dask cluster's scheduler (`tcp://host:8786`); implies the dask runner."
    )
    dask_workers: PositiveInt = Field(2, description="Workers of the local Dask cluster.")
    dask_processes: Flag = Field(True, description="`true`: Dask worker processes; `false`: threads.")

    # -- the project manager's forms (the deployments `smo stack up` and `smo serve` register)
    specs_dir: Path | None = Field(
        None,
        description="The folder of project specs the forms offer in their dropdown, and where a project described in "
        "the create-tasks form is saved (default `specs/` in the repo).",
    )
    landing_dir: Path | None = Field(
        None,
        description="The landing folder: CSV, JSONL and Parquet files dropped here are the forms' choice of data and "
        "gold files (default `landing/` in the state folder).",
    )
    schedule_spec: str | None = Field(
        None,
        description="The spec (a file name in the specs folder, or a path) whose daily pull, quality check and report "
        "the stack's deployments run; unset: the daily schedules are registered paused.",
    )
    forms_refresh: Seconds = Field(
        15.0,
        description="Seconds between two looks at the specs and landing folders by the served deployments: a new "
        "file shows up in the forms' dropdowns within this time.",
    )

    # -- workspaces
    lock_timeout: SecondsOrZero = Field(
        600.0,
        description="Seconds a launch, pull, quality check, export or adjudication waits for another one holding "
        "the same workspace before it gives up with one line naming the holder (0: give up at once).",
    )

    # -- the warehouse
    warehouse_url: SecretStr | None = Field(
        None,
        description="PostgreSQL the warehouse tables are published to after each flow (none when unset); "
        "also the URL of `smo warehouse sync` without `--url` and of `smo sql` without `--url` and `--spec`.",
    )
    warehouse_schema: str = Field("smo", description="PostgreSQL schema of the warehouse tables.")
    source_url: SecretStr | None = Field(
        None,
        description="PostgreSQL a launch's `--query` reads its rows from (the team's warehouse; "
        "`postgresql://user[:password]@host[:port]/db`); `--source-url` overrides it.",
    )
    source_timeout: Seconds = Field(
        300.0,
        description="Seconds a launch's `--query` may run, per pass over its rows (PostgreSQL's statement_timeout "
        "on every statement, and the whole read stopped past it).",
    )

    # -- notifications
    notify_block: str | None = Field(
        None,
        description="The Prefect notification block the automations send through, as `TYPE/NAME` "
        "(`slack-webhook/team-alerts`, `custom-webhook/smo-notify`, `sendgrid-email/pm`); read by `smo notify "
        "setup` and `smo notify test` when no block flag is given.",
    )

    # -- tests
    test_artifacts: Path | None = Field(
        None, description="Where tests keep screenshots and other artifacts (default `test-artifacts/`)."
    )


class _MappingSettings(Settings):
    """Settings from the given values only: no environment, no dotenv, no secrets directory."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, *_: Any, **__: Any) -> tuple[Any, ...]:
        return (init_settings,)


def env_name(field: str) -> str:
    """The environment variable of a settings field (`ls_url` -> `SMO_LS_URL`)."""
    return PREFIX + field.upper()


def _problem(error: Any) -> str:
    name = env_name(str(error["loc"][0])) if error.get("loc") else "setting"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name} {message[0].lower()}{message[1:]}, got {error.get('input')!r}"


def get_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from the process environment (or only from `environ`, when given), read now: built again
    whenever an `SMO_*` variable changed, else the last ones (building them takes 10 to 30 ms, and every
    Label Studio client reads them)."""
    try:
        if environ is None:
            return _from_environment(
                tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(PREFIX)))
            )
        values: dict[str, Any] = {
            field: environ[env_name(field)] for field in Settings.model_fields if environ.get(env_name(field), "") != ""
        }
        return _MappingSettings(**values)
    except ValidationError as exc:
        raise ConfigError("; ".join(_problem(e) for e in exc.errors())) from None


@functools.lru_cache(maxsize=8)
def _from_environment(_smo_variables: tuple[tuple[str, str], ...]) -> Settings:
    """Settings() for one state of the `SMO_*` variables (the key: Settings reads nothing else)."""
    return Settings()


def secret(value: SecretStr | None) -> str | None:
    """The plain value of an optional secret setting."""
    return value.get_secret_value() if value is not None else None
