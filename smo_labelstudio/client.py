"""Everything that talks to Label Studio, so retries, timeouts and credentials live in one place."""

from __future__ import annotations

import os
from typing import Iterable

import httpx

from label_studio_sdk import LabelStudio

from .paths import state_home
from .stack import load_state

DEFAULT_TIMEOUT = 300.0  # the SDK's 60 s is too short for large imports and exports
NO_RETRY = {"max_retries": 0}  # a retried POST can import twice: imports rely on external ids instead


class ConnectionSettingsError(RuntimeError):
    """No Label Studio URL or token could be found."""


def connection_settings(url: str | None = None, token: str | None = None) -> tuple[str, str]:
    """URL and token from the arguments, else `SMO_LS_URL`/`SMO_LS_TOKEN`, else the stack's state."""
    url = url or os.environ.get("SMO_LS_URL")
    token = token or os.environ.get("SMO_LS_TOKEN")
    if not (url and token):
        state = load_state(state_home())
        port = state.get("services", {}).get("label-studio", {}).get("port", 8080)
        url = url or f"http://127.0.0.1:{port}"
        token = token or state.get("label_studio", {}).get("token")
    if not token:
        raise ConnectionSettingsError(
            "no Label Studio token: set SMO_LS_URL and SMO_LS_TOKEN (eval \"$(smo stack env)\") or run `smo stack up`")
    return url.rstrip("/"), token


def reachable(url: str) -> bool:
    """True when Label Studio answers its health check."""
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def connect(url: str | None = None, token: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> LabelStudio:
    """An SDK client for the configured Label Studio."""
    url, token = connection_settings(url, token)
    return LabelStudio(base_url=url, api_key=token, timeout=timeout)


def find_project(ls: LabelStudio, title: str) -> int | None:
    """The id of the project with this exact title, if there is one."""
    for project in ls.projects.list(title=title):
        if project.title == title:
            return project.id
    return None


def create_project(ls: LabelStudio, title: str, label_config: str, description: str = "",
                   instructions: str | None = None) -> int:
    """Create a project; Label Studio validates the label config and refuses a bad one.

    `instructions` (HTML) are shown to annotators before labeling and from the labeling screen.
    """
    extra = {"expert_instruction": instructions, "show_instruction": True} if instructions else {}
    project = ls.projects.create(title=title, label_config=label_config, description=description, **extra)
    return project.id


def validate_config(url: str, token: str, label_config: str) -> str | None:
    """Ask Label Studio whether it accepts a label config: None if it does, else its reason."""
    resp = httpx.post(f"{url}/api/projects/validate/", json={"label_config": label_config},
                      headers={"Authorization": f"Token {token}"}, timeout=60)
    if resp.status_code < 300:
        return None
    try:
        detail = resp.json()
        detail = detail.get("validation_errors") or detail.get("detail") or detail
    except ValueError:
        detail = resp.text[:300]
    return f"HTTP {resp.status_code}: {detail}"


def import_tasks(ls: LabelStudio, project_id: int, tasks: Iterable[dict]) -> int:
    """Import tasks in one request, never retried (a retry could import them twice)."""
    tasks = list(tasks)
    if not tasks:
        return 0
    response = ls.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True,
                                        request_options=NO_RETRY)
    return int(response.task_count or 0)


def list_tasks(ls: LabelStudio, project_id: int) -> list[dict]:
    """Every task of a project with its data (fine for slices; bulk reads use exports)."""
    return [
        {"id": task.id, "data": task.data}
        for task in ls.tasks.list(project=project_id, fields="all", page_size=500)
    ]
