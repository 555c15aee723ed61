"""Everything that talks to Label Studio, so retries, timeouts and credentials live in one place."""

from __future__ import annotations

import json
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


WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]


def connect_backend(url: str, token: str, project_id: int, backend_url: str, user: str, password: str,
                    webhook_secret: str) -> dict:
    """Register the ML backend with a project (idempotent): basic auth, predictions fetched when a
    task without one is opened, and the training webhook Label Studio creates given our credentials."""
    auth = {"Authorization": f"Token {token}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
        existing = [b for b in _json(http.get("/api/ml", params={"project": project_id}))
                    if b.get("url", "").rstrip("/") == backend_url.rstrip("/")]
        body = {"url": backend_url, "project": project_id, "title": "smo pre-annotation",
                "auth_method": "BASIC_AUTH", "basic_auth_user": user, "basic_auth_pass": password,
                "is_interactive": False, "auto_update": True}
        if existing:
            backend = _json(http.patch(f"/api/ml/{existing[0]['id']}", json=body))
        else:
            backend = _json(http.post("/api/ml", json=body))
        _json(http.patch(f"/api/projects/{project_id}", json={"evaluate_predictions_automatically": True,
                                                              "show_collab_predictions": True}))
        hook_url = backend_url.rstrip("/") + "/webhook"
        hooks = [h for h in _json(http.get("/api/webhooks/", params={"project": project_id}))
                 if h.get("url") == hook_url]
        basic = httpx.BasicAuth(user, password)._auth_header
        hook = {"url": hook_url, "project": project_id, "send_payload": True, "send_for_all_actions": False,
                "actions": WEBHOOK_ACTIONS, "is_active": True,
                "headers": {"Authorization": basic, "X-SMO-Webhook-Secret": webhook_secret}}
        if hooks:
            webhook = _json(http.patch(f"/api/webhooks/{hooks[0]['id']}/", json=hook))
        else:
            webhook = _json(http.post("/api/webhooks/", json=hook))
    return {"ml_backend_id": backend["id"], "webhook_id": webhook["id"], "state": backend.get("state")}


class LabelStudioError(RuntimeError):
    """Label Studio refused a request; the message carries its status and reason."""


def _json(resp: httpx.Response):
    if resp.status_code >= 400:
        raise LabelStudioError(f"Label Studio answered {resp.status_code} to {resp.request.method} "
                               f"{resp.request.url.path}: {resp.text[:300]}")
    return resp.json()


def backend_settings() -> tuple[str, tuple[str, str]] | None:
    """The ML backend's URL and basic-auth pair from `SMO_BACKEND_*`, else the stack's state; None
    when no backend is configured."""
    url, user, password = (os.environ.get(f"SMO_BACKEND_{k}") for k in ("URL", "USER", "PASSWORD"))
    if not url:
        state = load_state(state_home())
        record, creds = state.get("services", {}).get("ml-backend"), state.get("backend", {})
        if not record:
            return None
        url, user, password = f"http://127.0.0.1:{record['port']}", creds.get("user"), creds.get("password")
    return url.rstrip("/"), (user or "", password or "")


def connect_stack_backend(url: str, token: str, project_id: int) -> dict | None:
    """Register the configured ML backend with a project when its webhook secret is known
    (`SMO_WEBHOOK_SECRET` or the stack's state); None when there is no backend to connect."""
    backend = backend_settings()
    secret = os.environ.get("SMO_WEBHOOK_SECRET") or load_state(state_home()).get("backend", {}).get("webhook_secret")
    if backend is None or not secret:
        return None
    return connect_backend(url, token, project_id, backend[0], *backend[1], secret)


def set_overlap(url: str, token: str, project_id: int, maximum_annotations: int, cohort_percentage: int) -> None:
    """Label Studio's overlap: `cohort_percentage` % of tasks get `maximum_annotations` annotators, the rest
    one. Changed only when different: a change makes Label Studio re-plan overlap across the project."""
    wanted = {"maximum_annotations": maximum_annotations, "overlap_cohort_percentage": cohort_percentage}
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=120) as http:
        current = _json(http.get(f"/api/projects/{project_id}"))
        if any(current.get(k) != v for k, v in wanted.items()):
            _json(http.patch(f"/api/projects/{project_id}", json=wanted))


def tasks_with_data(url: str, token: str, project_id: int, key: str, values: list[str]) -> dict[str, int]:
    """Task ids whose `data[key]` equals one of `values` (a data-manager filter, one small query each)."""
    found = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=120) as http:
        for value in values:
            query = {"filters": {"conjunction": "and", "items": [
                {"filter": f"filter:tasks:data.{key}", "operator": "equal", "type": "String", "value": value}]}}
            page = _json(http.get("/api/tasks", params={"project": project_id, "fields": "task_only",
                                                        "page_size": 10, "query": json.dumps(query)}))
            for task in page.get("tasks", []):
                if (task.get("data") or {}).get(key) == value:
                    found[value] = task["id"]
    return found


def import_json(url: str, token: str, project_id: int, tasks: list[dict], timeout: float = 1800) -> int:
    """Import tasks in one request, never retried (a retry could import twice), without the SDK's
    per-field encoding (a third of the client's time at 10k tasks)."""
    if not tasks:
        return 0
    resp = httpx.post(f"{url}/api/projects/{project_id}/import", params={"return_task_ids": "false"},
                      content=json.dumps(tasks, ensure_ascii=False).encode(),
                      headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
                      timeout=timeout)
    return int(_json(resp).get("task_count", 0))
