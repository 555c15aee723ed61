"""Everything that talks to Label Studio, so retries, timeouts and credentials live in one place."""

from __future__ import annotations

import functools
import json
import logging
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, cast

import httpx

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.settings import get_settings, secret
from smo_labelstudio.core.state import load_state
from smo_labelstudio.labelstudio.auth import TokenAuth
from smo_labelstudio.labelstudio.retry import LabelStudioUnavailable as LabelStudioUnavailable  # re-exported
from smo_labelstudio.labelstudio.retry import backoff as backoff  # re-exported: launch's import loop
from smo_labelstudio.labelstudio.retry import retry_policy as retry_policy  # re-exported
from smo_labelstudio.labelstudio.retry import transient, unavailable
from smo_labelstudio.labelstudio.tokens import LabelStudioError as LabelStudioError  # defined there, used from here
from smo_labelstudio.labelstudio.tokens import untrusted_certificate as untrusted_certificate

if TYPE_CHECKING:  # the SDK takes a second or two to import: loaded only by the calls that use it
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.request_options import RequestOptions
    from label_studio_sdk.types import AllRolesProjectList, ImportApiRequest, RoleBasedTask

DEFAULT_TIMEOUT = 300.0  # the SDK's 60 s is too short for large imports and exports
NO_RETRY: RequestOptions = {"max_retries": 0}  # a retried POST can import twice: imports rely on external ids instead
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def environment_errors() -> tuple[type[Exception], ...]:
    """Label Studio not answering, or answering with an error (HTTP or SDK): the environment's doing, shown as one
    line by the CLI."""
    from label_studio_sdk.core.api_error import ApiError  # noqa: PLC0415 - start-up time: the SDK is slow to import

    return (httpx.TransportError, httpx.HTTPStatusError, ApiError)


class ConnectionSettingsError(ConfigError, RuntimeError):
    """No Label Studio URL or token could be found."""


def ls_timeout(default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds to wait for one Label Studio answer: `SMO_LS_TIMEOUT`, else the caller's default."""
    return get_settings().ls_timeout or default


def _tls() -> ssl.SSLContext:
    """The TLS context of every Label Studio client: the public CAs, plus `SMO_LS_CA_BUNDLE`'s when set
    (a server behind a private CA)."""
    bundle = get_settings().ls_ca_bundle
    return _tls_context(str(bundle) if bundle else None)


@functools.lru_cache(maxsize=4)
def _tls_context(bundle: str | None) -> ssl.SSLContext:
    """One context per bundle, shared: httpx builds a new one per client (about 30 ms: the CA bundle)."""
    context = httpx.create_ssl_context()
    if bundle:
        try:
            context.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(
                f"SMO_LS_CA_BUNDLE={bundle}: not a readable PEM file of CA certificates ({reason})"
            ) from None
    return context


class RetryTransport(httpx.HTTPTransport):
    """Retries idempotent requests (GET, PUT, DELETE, ...) on 5xx, 408, 429, timeouts and connection
    errors with exponential backoff; never a POST or PATCH (a retried import could import twice).
    When every attempt fails it raises `LabelStudioUnavailable`: one line naming the method, the path
    (never the token or query) and the attempts."""

    def __init__(self, attempts: int | None = None, base: float | None = None, **kwargs):
        super().__init__(**{"verify": _tls(), **kwargs})
        default_attempts, default_base = retry_policy()
        self.attempts, self.base = attempts or default_attempts, base or default_base

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in IDEMPOTENT:
            try:
                return super().handle_request(request)
            except httpx.ConnectError as exc:
                if (untrusted := untrusted_certificate(exc)) is not None:
                    raise untrusted from None
                raise
        started, last = time.monotonic(), ""
        for attempt in range(1, self.attempts + 1):
            try:
                resp = super().handle_request(request)
                resp.read()  # a body cut off half-way is retried too, not raised later by the caller's read
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if (untrusted := untrusted_certificate(exc)) is not None:
                    raise untrusted from None
                last = f"{exc.__class__.__name__}"
            else:
                if not transient(resp.status_code):
                    return resp
                resp.close()
                last = f"HTTP {resp.status_code}"
            if attempt < self.attempts:
                time.sleep(backoff(attempt, self.base))
        raise unavailable(request.method, request.url.path, self.attempts, time.monotonic() - started, last)


def http_client(url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT, **kwargs) -> httpx.Client:
    """An httpx client for Label Studio: the token (either kind, see `auth.TokenAuth`), `SMO_LS_TIMEOUT`,
    retries for idempotent requests."""
    return httpx.Client(
        base_url=url,
        auth=TokenAuth(url, token, verify=_tls()) if token else None,
        timeout=ls_timeout(timeout),
        transport=RetryTransport(),
        **kwargs,
    )


def connection_settings(url: str | None = None, token: str | None = None) -> tuple[str, str]:
    """URL and token from the arguments, else `SMO_LS_URL`/`SMO_LS_TOKEN`, else the Prefect Secret block
    named by `SMO_LS_TOKEN_BLOCK` (read from the Prefect API), else the stack's state file."""
    settings = get_settings()
    url = url or settings.ls_url
    token = token or secret(settings.ls_token) or _token_from_block(settings.ls_token_block)
    if not (url and token):
        state = load_state()
        port = state.get("services", {}).get("label-studio", {}).get("port", 8080)
        url = url or f"http://127.0.0.1:{port}"
        token = token or state.get("label_studio", {}).get("token")
    if not token:
        raise ConnectionSettingsError(
            'no Label Studio token: set SMO_LS_URL and SMO_LS_TOKEN (eval "$(smo stack env)") or run `smo stack up`'
        )
    return url.rstrip("/"), token


def _token_from_block(name: str | None) -> str | None:
    """The token kept in a Prefect Secret block (`prefect.blocks.system.Secret`), when one is named."""
    if not name:
        return None
    from prefect.blocks.system import Secret  # noqa: PLC0415 - start-up time: Prefect only for a named block

    try:
        block = cast(Secret, Secret.load(name))  # sync_compatible: a block here, a coroutine only in async code
        return block.get()
    except ValueError as exc:  # Prefect's "Unable to find block document named ..."
        raise ConnectionSettingsError(f"SMO_LS_TOKEN_BLOCK={name}: {str(exc).splitlines()[0]}") from None


class _RedactQuery(logging.Filter):
    """httpx logs every request's full URL at INFO; a query may carry a secret (the invite link's
    `token=`), so logged URLs lose their query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                arg.copy_with(query=None) if isinstance(arg, httpx.URL) and arg.query else arg for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactQuery())


def reachable(url: str) -> bool:
    """True when Label Studio answers its health check; an untrusted TLS certificate is an error naming
    SMO_LS_CA_BUNDLE, not a server that is down."""
    try:
        return httpx.get(f"{url}/health", timeout=5, verify=_tls()).status_code == 200
    except httpx.HTTPError as exc:
        if (untrusted := untrusted_certificate(exc)) is not None:
            raise untrusted from None
        return False


def connect(url: str | None = None, token: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> LabelStudio:
    """An SDK client for the configured Label Studio."""
    url, token = connection_settings(url, token)
    timeout = ls_timeout(timeout)
    TokenAuth(url, token, verify=_tls()).header()  # a refused PAT: our one line (TokenRejected), not the SDK's
    from label_studio_sdk import LabelStudio  # noqa: PLC0415 - start-up time: the SDK is slow to import

    return LabelStudio(
        base_url=url + "/",  # the SDK's token refresh urljoin()s onto it: without the slash a path prefix is lost
        api_key=token,
        timeout=timeout,
        httpx_client=httpx.Client(timeout=timeout, transport=RetryTransport()),
    )


def find_project(ls: LabelStudio, title: str, marker: str | None = None) -> int | None:
    """The id of the project with this exact title (and, given a `marker`, whose description holds it), if
    there is one. A launch finds its own half-recorded project by marker, never someone else's by title."""
    projects: Iterable[AllRolesProjectList] = ls.projects.list(title=title)  # the SDK's pager leaves T unbound
    for project in projects:
        if project.title == title and (marker is None or marker in (project.description or "")):
            return project.id
    return None


def project_title(url: str, token: str, project_id: int) -> str | None:
    """A project's title, or None when Label Studio has no such project (404: deleted, or not visible)."""
    with http_client(url, token, timeout=120) as http:
        resp = project_detail(http, project_id)
        if resp.status_code == 404:
            return None
        return str(_json(resp).get("title") or "")


def update_project(url: str, token: str, project_id: int, **fields: object) -> None:
    """PATCH a project's fields (Label Studio refuses a label config that drops labels annotations use)."""
    with http_client(url, token, timeout=120) as http:
        _json(http.patch(f"/api/projects/{project_id}", json=fields))


def create_project(
    ls: LabelStudio, title: str, label_config: str, description: str = "", instructions: str | None = None
) -> int:
    """Create a project; Label Studio validates the label config and refuses a bad one.

    `instructions` (HTML) are shown to annotators before labeling and from the labeling screen.
    """
    if instructions:
        project = ls.projects.create(
            title=title,
            label_config=label_config,
            description=description,
            expert_instruction=instructions,
            show_instruction=True,
        )
    else:
        project = ls.projects.create(title=title, label_config=label_config, description=description)
    if project.id is None:
        raise LabelStudioError(f"Label Studio created project {title!r} without an id")
    return project.id


def validate_config(url: str, token: str, label_config: str) -> str | None:
    """Ask Label Studio whether it accepts a label config: None if it does, else its reason."""
    with http_client(url, token, timeout=60) as http:
        resp = http.post("/api/projects/validate/", json={"label_config": label_config})
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
    request = cast("list[ImportApiRequest]", tasks)  # the SDK encodes plain dicts as it does its models
    response = ls.projects.import_tasks(id=project_id, request=request, return_task_ids=True, request_options=NO_RETRY)
    return int(response.task_count or 0)


def list_tasks(ls: LabelStudio, project_id: int) -> list[dict]:
    """Every task of a project with its data (fine for slices; bulk reads use exports)."""
    tasks: Iterable[RoleBasedTask] = ls.tasks.list(project=project_id, fields="all", page_size=500)  # pager: T unbound
    return [{"id": task.id, "data": task.data} for task in tasks]


def task_data(ls: LabelStudio, project_id: int, task_ids: Iterable[int]) -> dict[int, dict]:
    """The data of the given tasks of a project, in one paged listing of just those tasks."""
    ids = sorted({int(t) for t in task_ids})
    if not ids:
        return {}
    query = json.dumps({"selectedItems": {"all": False, "included": ids}})
    wanted = set(ids)
    tasks: Iterable[RoleBasedTask] = ls.tasks.list(project=project_id, query=query, fields="task_only", page_size=500)
    return {task.id: dict(task.data) for task in tasks if task.id is not None and task.id in wanted}


WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]


def connect_backend(
    url: str,
    token: str,
    project_id: int,
    backend_url: str,
    predict_auth: tuple[str, str],
    admin_auth: tuple[str, str],
) -> dict:
    """Register the ML backend with a project (idempotent). Label Studio gets only the predict-only
    credential (every member can read ML-backend and webhook settings in Community): in the ML-backend
    setting, and in the training webhook, which sends no payload and only hints that the project
    changed. Then the backend itself is told, with the admin credential Label Studio never sees, that
    this project may retrain it."""
    backend_url = backend_url.rstrip("/")
    with http_client(url, token, timeout=60) as http:
        existing = [
            b
            for b in _json(http.get("/api/ml", params={"project": project_id}))
            if b.get("url", "").rstrip("/") == backend_url
        ]
        body = {
            "url": backend_url,
            "project": project_id,
            "title": "smo pre-annotation",
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": predict_auth[0],
            "basic_auth_pass": predict_auth[1],
            "is_interactive": False,
            "auto_update": True,
        }
        if existing:
            backend = _json(http.patch(f"/api/ml/{existing[0]['id']}", json=body))
        else:
            backend = _json(http.post("/api/ml", json=body))
        _json(
            http.patch(
                f"/api/projects/{project_id}",
                json={"evaluate_predictions_automatically": True, "show_collab_predictions": True},
            )
        )
        hook_url = f"{backend_url}/webhook?project={int(project_id)}"
        hooks = [
            h
            for h in _json(http.get("/api/webhooks/", params={"project": project_id}))
            if str(h.get("url", "")).startswith(backend_url + "/webhook")  # older ones too: their headers go
        ]
        hook = {
            "url": hook_url,
            "project": project_id,
            "send_payload": False,
            "send_for_all_actions": False,
            "actions": WEBHOOK_ACTIONS,
            "is_active": True,
            "headers": {"Authorization": httpx.BasicAuth(*predict_auth)._auth_header},
        }
        if hooks:
            webhook = _json(http.patch(f"/api/webhooks/{hooks[0]['id']}/", json=hook))
            for extra in hooks[1:]:
                http.delete(f"/api/webhooks/{extra['id']}/")
        else:
            webhook = _json(http.post("/api/webhooks/", json=hook))
    with httpx.Client(base_url=backend_url, auth=admin_auth, timeout=30) as admin:
        connected = admin.post("/connect", json={"project": int(project_id)})
    if connected.status_code != 200:
        error = LabelStudioError(
            f"the ML backend at {backend_url} answered {connected.status_code} to /connect; "
            "is SMO_BACKEND_ADMIN_PASSWORD the backend's?"
        )
        error.status = connected.status_code
        raise error
    return {"ml_backend_id": backend["id"], "webhook_id": webhook["id"], "state": backend.get("state")}


def _json(resp: httpx.Response):
    if resp.status_code >= 400:
        error = LabelStudioError(
            f"Label Studio answered {resp.status_code} to {resp.request.method} "
            f"{resp.request.url.path}: {' '.join(resp.text[:300].split())}"
        )
        error.status = resp.status_code
        raise error
    return resp.json()


def backend_settings() -> tuple[str, tuple[str, str]] | None:
    """The ML backend's URL and predict-only basic-auth pair from `SMO_BACKEND_*`, else the stack's
    state; None when no backend is configured."""
    settings = get_settings()
    url, user, password = settings.backend_url, settings.backend_user, secret(settings.backend_password)
    if not url:
        state = load_state()
        record, creds = state.get("services", {}).get("ml-backend"), state.get("backend", {})
        if not record:
            return None
        url = record.get("url") or f"http://127.0.0.1:{record['port']}"  # recorded since the backend left 127.0.0.1
        user, password = creds.get("user"), creds.get("password")
    return url.rstrip("/"), (user or "", password or "")


def backend_admin_auth() -> tuple[str, str] | None:
    """The ML backend's admin basic-auth pair (`SMO_BACKEND_ADMIN_PASSWORD`, else the stack's state)."""
    password = secret(get_settings().backend_admin_password) or load_state().get("backend", {}).get("admin_password")
    return ("admin", password) if password else None


def connect_stack_backend(url: str, token: str, project_id: int) -> dict | None:
    """Register the configured ML backend with a project when its admin password is known
    (`SMO_BACKEND_ADMIN_PASSWORD` or the stack's state); None when there is no backend to connect."""
    backend, admin = backend_settings(), backend_admin_auth()
    if backend is None or admin is None:
        return None
    return connect_backend(url, token, project_id, backend[0], backend[1], admin)


def set_overlap(url: str, token: str, project_id: int, maximum_annotations: int, cohort_percentage: int) -> bool:
    """Label Studio's overlap: `cohort_percentage` % of tasks get `maximum_annotations` annotators, the rest
    one. Changed only when different (True when changed): a change makes Label Studio re-plan overlap across
    the project within the PATCH. The two settings are read from the project list (`include`), not the
    project detail, which counts every task and annotation first (seconds on a big project)."""
    wanted = {"maximum_annotations": maximum_annotations, "overlap_cohort_percentage": cohort_percentage}
    with http_client(url, token, timeout=1800) as http:  # the PATCH re-plans every task
        body = _json(http.get("/api/projects/", params={"ids": project_id, "include": ",".join(["id", *wanted])}))
        found = body.get("results", []) if isinstance(body, dict) else body
        if len(found) != 1:
            raise LabelStudioError(f"project {project_id} is not in Label Studio (or this token cannot see it)")
        if all(found[0].get(k) == v for k, v in wanted.items()):
            return False
        _json(http.patch(f"/api/projects/{project_id}", json=wanted))
    return True


def tasks_with_data(url: str, token: str, project_id: int, key: str, values: list[str]) -> dict[str, int]:
    """Task ids whose `data[key]` equals one of `values` (a data-manager filter, one small query each)."""
    found = {}
    with http_client(url, token, timeout=120) as http:
        for value in values:
            query = {
                "filters": {
                    "conjunction": "and",
                    "items": [
                        {"filter": f"filter:tasks:data.{key}", "operator": "equal", "type": "String", "value": value}
                    ],
                }
            }
            page = _json(
                http.get(
                    "/api/tasks",
                    params={"project": project_id, "fields": "task_only", "page_size": 10, "query": json.dumps(query)},
                )
            )
            for task in page.get("tasks", []):
                if (task.get("data") or {}).get(key) == value:
                    found[value] = task["id"]
    return found


def import_json(url: str, token: str, project_id: int, tasks: list[dict], timeout: float = 1800) -> int:
    """Import tasks in one request, never retried (a retry could import twice), without the SDK's
    per-field encoding (a third of the client's time at 10k tasks)."""
    if not tasks:
        return 0
    with http_client(url, token, timeout) as http:  # a POST: the transport never retries it
        resp = http.post(
            import_path(project_id),
            params={"return_task_ids": "false"},
            content=json.dumps(tasks, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
    return int(_json(resp).get("task_count", 0))


def project_counts(http: httpx.Client, project_id: int, *counters: str) -> dict[str, int]:
    """Some of a project's counters (`task_number`, `total_annotations_number`, ...) and only those:
    the project detail computes every counter, some of them slow on big projects."""
    body = _json(http.get("/api/projects/", params={"ids": project_id, "include": ",".join(counters)}))
    found = body.get("results", []) if isinstance(body, dict) else body  # `include` also picks the fields
    if len(found) != 1:
        raise LabelStudioError(f"project {project_id} is not in Label Studio (or this token cannot see it)")
    return {c: int(found[0].get(c) or 0) for c in counters}


def iter_tasks(http: httpx.Client, project_id: int, page_size: int = 1000) -> Iterator[dict]:
    """Every task of a project as the data manager lists it (`task_only`: id, data, counters), paged."""
    page, seen, total = 1, 0, None
    while total is None or seen < total:
        body = _json(
            http.get(
                "/api/tasks",
                params={"project": project_id, "fields": "task_only", "page_size": page_size, "page": page},
            )
        )
        batch, total = body.get("tasks", []), body.get("total", 0)
        if not batch:
            break
        yield from batch
        seen, page = seen + len(batch), page + 1


def task_ids_by_item(url: str, token: str, project_id: int) -> dict[str, int]:
    """Task id by `data.item_id` for every task of a project (no listing at all for an empty one)."""
    with http_client(url, token, timeout=300) as http:
        if project_counts(http, project_id, "task_number")["task_number"] == 0:
            return {}
        return {
            task["data"]["item_id"]: task["id"]
            for task in iter_tasks(http, project_id)
            if (task.get("data") or {}).get("item_id")
        }


def prediction_versions(url: str, token: str, project_id: int) -> dict[int, set[str]]:
    """The model versions of the predictions each task of a project already has."""
    with http_client(url, token, timeout=300) as http:
        rows = _json(http.get("/api/predictions/", params={"project": project_id}))
    found: dict[int, set[str]] = {}
    for row in rows if isinstance(rows, list) else rows.get("results", []):
        found.setdefault(row["task"], set()).add(row.get("model_version") or "")
    return found


def import_predictions(url: str, token: str, project_id: int, predictions: list[dict]) -> int:
    """Add predictions (each with its `task` id) in one request; Label Studio drops invalid ones
    silently, so fewer created than sent is an error."""
    if not predictions:
        return 0
    with http_client(url, token, timeout=600) as http:
        created = int(
            _json(http.post(f"/api/projects/{project_id}/import/predictions", json=predictions)).get("created", 0)
        )
    if created != len(predictions):
        raise LabelStudioError(
            f"Label Studio created {created} of {len(predictions)} predictions for project "
            f"{project_id}; the others were invalid for its label config"
        )
    return created


def project_detail(http: httpx.Client, project_id: int) -> httpx.Response:
    """GET a project's detail (label config, overlap); the caller reads the answer."""
    return http.get(f"/api/projects/{project_id}")


def tasks_page(
    http: httpx.Client, project_id: int, page: int, page_size: int, **params: str | int | float | bool | None
) -> httpx.Response:
    """GET one page of a project's tasks (data-manager listing); 404 past the last page."""
    return http.get("/api/tasks", params={"project": project_id, **params, "page": page, "page_size": page_size})


def post_annotation(http: httpx.Client, task_id: int, body: dict, headers: dict[str, str]) -> httpx.Response:
    """POST one annotation to a task as the user whose `Authorization` is in `headers` (never retried;
    the client's own token is then not sent)."""
    return http.post(f"/api/tasks/{task_id}/annotations/", json=body, headers=headers)


def import_path(project_id: int) -> str:
    """The path of a project's task import, as named in messages."""
    return f"/api/projects/{project_id}/import"
