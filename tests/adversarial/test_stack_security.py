"""Issue 16, the stack's trust boundary, against the session's real Label Studio (started by `smo stack up`'s
own code): SSRF protection stays on, so a member cannot make Label Studio fetch internal addresses (cloud
metadata, the Prefect API, Redis, private ranges) through URL imports, webhooks, ML backends or storages,
while the ML backend's one address still works (connection, webhook, predictions); the files that hold
tokens are their owner's only."""

from __future__ import annotations

import ast
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest

from smo_labelstudio.core.paths import LABEL_CONFIGS_DIR
from smo_labelstudio.labelstudio import client
from smo_labelstudio.labelstudio.auth import auth_header
from smo_labelstudio.labelstudio.ssrf import DEFAULT_BANNED_SUBNETS
from smo_labelstudio.labelstudio.users import ensure_annotator
from smo_labelstudio.stack.envs import LABEL_STUDIO_ENV

METADATA = "http://169.254.169.254/latest/meta-data/"
REFUSED = "reserved network address"


@pytest.fixture(scope="module")
def member(label_studio, tmp_path_factory):
    """An ordinary member of the organization (signed up through the invite link), with its own token."""
    home = tmp_path_factory.mktemp("member")
    return ensure_annotator(label_studio.url, label_studio.token, "ssrf-member@smo.local", home=home)


@pytest.fixture(scope="module")
def project(label_studio, ls_client_module):
    config = (LABEL_CONFIGS_DIR / "text_moderation.xml").read_text()
    return client.create_project(ls_client_module, "ssrf adversarial", config)


@pytest.fixture(scope="module")
def ls_client_module(label_studio):
    return client.connect(label_studio.url, label_studio.token)


# a 1x1 PNG, what an image task's media URL serves
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f6b0000000049454e44ae426082"
)


@contextmanager
def listener(host: str) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server of the test's own on `host`: its base URL and the paths it was asked for."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            body = b'[{"text": "fetched"}]' if self.path.endswith(".json") else PNG
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def _internal_urls() -> dict[str, str]:
    """Addresses a member must not reach through Label Studio: cloud metadata, this session's Prefect API,
    the machine's Redis (no password) and PostgreSQL, a private range, loopback by name and the metadata
    address written as a number."""
    prefect = os.environ["PREFECT_API_URL"]  # the session's Prefect API (conftest), 127.0.0.1:<port>/api
    return {
        "metadata": METADATA,
        "prefect": prefect.rstrip("/") + "/admin/settings",
        "redis": "http://127.0.0.1:6379/",
        "postgres": "http://127.0.0.1:5432/",
        "private": "http://10.0.0.1/tasks.json",
        "localhost": "http://localhost:8080/api/projects",
        "decimal": "http://2852039166/latest/meta-data/",  # 169.254.169.254 written as one number
    }


def _import_url(url: str, ls_url: str, token: str, project: int) -> httpx.Response:
    """A URL import as Label Studio's UI sends it (form field `url`)."""
    return httpx.post(
        f"{ls_url}/api/projects/{project}/import",
        data={"url": url},
        headers=auth_header(ls_url, token),
        timeout=60,
    )


def test_a_members_url_import_of_an_internal_address_is_refused(label_studio, member, project):
    """Cloud metadata, the Prefect API, Redis, PostgreSQL, 10/8, `localhost` and the metadata address as a
    number: each refused with Label Studio's SSRF error, and no task created."""
    with listener("127.0.0.1") as (local, hits):
        for name, url in {**_internal_urls(), "listener": local + "/tasks.json"}.items():
            resp = _import_url(url, label_studio.url, member.token, project)
            assert resp.status_code >= 400 and REFUSED in resp.text, (name, resp.status_code, resp.text[:300])
    assert hits == []  # refused before connecting: nothing on 127.0.0.1 was asked for anything
    tasks = httpx.get(
        f"{label_studio.url}/api/tasks", params={"project": project}, headers=label_studio.headers, timeout=60
    )
    assert tasks.json()["total"] == 0


def test_webhooks_ml_backends_and_storages_on_internal_addresses_are_refused(label_studio, member, project):
    """The other ways a member aims Label Studio at a URL: a webhook to the Prefect API, an ML backend at the
    metadata address or on 127.0.0.1, a Redis storage on the machine's Redis (a job on its queue runs code)."""
    headers = auth_header(label_studio.url, member.token)
    prefect = _internal_urls()["prefect"]
    hook = httpx.post(
        f"{label_studio.url}/api/webhooks/",
        json={"url": prefect, "project": project, "send_payload": True},
        headers=headers,
        timeout=60,
    )
    assert hook.status_code in (400, 403) and REFUSED in hook.text, hook.text[:300]
    for url in ("http://169.254.169.254/", f"http://127.0.0.1:{urlsplit(prefect).port}"):
        ml = httpx.post(
            f"{label_studio.url}/api/ml",
            json={"url": url, "project": project, "title": "x"},
            headers=headers,
            timeout=60,
        )
        assert ml.status_code in (400, 403) and REFUSED in ml.text, (url, ml.text[:300])
    redis = httpx.post(
        f"{label_studio.url}/api/storages/redis",
        json={"project": project, "host": "127.0.0.1", "port": "6379", "db": 1, "title": "x"},
        headers=headers,
        timeout=60,
    )
    assert redis.status_code in (400, 403) and REFUSED in redis.text, redis.text[:300]


def test_the_ml_backend_still_works_through_the_protection(label_studio, ml_backend, ls_client, unique):
    """Label Studio accepts the backend's URL (checked against the banned list, then its /health and /setup
    called through the guarded HTTP adapter) and a webhook to it, and asks it for a prediction when a task
    is opened."""
    config = (LABEL_CONFIGS_DIR / "text_moderation.xml").read_text()
    project = client.create_project(ls_client, f"ssrf backend {unique}", config)
    user, password = ml_backend.auth
    backend = {"url": ml_backend.url, "project": project, "title": "smo", "is_interactive": False}
    backend |= {"auth_method": "BASIC_AUTH", "basic_auth_user": user, "basic_auth_pass": password}
    added = httpx.post(f"{label_studio.url}/api/ml", json=backend, headers=label_studio.headers, timeout=60)
    assert added.status_code == 201, added.text[:300]
    hook = {"url": ml_backend.url + "/webhook", "project": project, "send_payload": False, "is_active": False}
    hooked = httpx.post(f"{label_studio.url}/api/webhooks/", json=hook, headers=label_studio.headers, timeout=60)
    assert hooked.status_code == 201, hooked.text[:300]
    client.import_tasks(ls_client, project, [{"data": {"text": "an ordinary sentence", "language": "en"}}])
    (task,) = client.list_tasks(ls_client, project)
    opened = httpx.get(f"{label_studio.url}/api/tasks/{task['id']}", headers=label_studio.headers, timeout=60)
    predictions = opened.json()["predictions"]
    assert len(predictions) == 1 and predictions[0]["result"][0]["from_name"] == "policy", opened.text[:500]
    # the carve-out is by address: a URL import from the backend's address passes the check (and then meets
    # the backend's basic auth), so the refusals above are the banned list at work, not a broken fetch
    through = _import_url(ml_backend.url + "/tasks.json", label_studio.url, label_studio.token, project)
    assert REFUSED not in through.text, through.text[:300]


IMAGE_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<RectangleLabels name="box" toName="image"><Label value="thing"/></RectangleLabels></View>'
)


def test_media_urls_in_task_data_are_not_fetched_from_internal_addresses(label_studio, ls_client, ml_backend):
    """The task-data path: an export with `download_resources` downloads each task's media into the archive.
    A member's task pointing at 127.0.0.1 gets nothing fetched; one on the backend's address (the one let
    through) is fetched, so the export did try."""
    with listener("127.0.0.1") as (internal, refused), listener(urlsplit(ml_backend.url).hostname) as (allowed, hits):
        project = client.create_project(ls_client, "ssrf media", IMAGE_CONFIG)
        box = {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["thing"]}
        result = [{"from_name": "box", "to_name": "image", "type": "rectanglelabels", "value": box}]
        result[0] |= {"original_width": 1, "original_height": 1}
        tasks = [
            {"data": {"image": f"{url}/{name}.png"}, "annotations": [{"result": result}]}
            for url, name in ((internal, "internal"), (allowed, "allowed"))
        ]
        client.import_tasks(ls_client, project, tasks)
        export = httpx.get(
            f"{label_studio.url}/api/projects/{project}/export",
            params={"exportType": "YOLO_WITH_IMAGES", "download_resources": "true"},
            headers=label_studio.headers,
            timeout=120,
        )
        assert export.status_code == 200, export.text[:300]
    assert refused == [] and hits == ["/allowed.png"], (refused, hits)


def test_files_holding_tokens_are_private(label_studio):
    """Label Studio's SQLite database (every token in plain text), its data folder, the state file and the
    logs, as `smo stack up` left them for the session."""
    home = label_studio.home
    data = home / "label-studio"
    files = [data / "label_studio.sqlite3", home / "stack.json", home / "logs" / "label-studio.log"]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (data, home / "logs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    # Django writes uploads 0644 whatever the umask (its FILE_UPLOAD_PERMISSIONS, not settable through Label
    # Studio's environment); every folder on the way is 0700, so no other user reaches them, and the next
    # `up` tightens them to 0600
    open_folders = [p for p in data.rglob("*") if p.is_dir() and not p.is_symlink() and p.stat().st_mode & 0o077]
    assert open_folders == [], open_folders
    databases = list(data.glob("label_studio.sqlite3*"))
    assert databases and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in databases), databases


def test_our_copy_of_the_default_banned_subnets_is_label_studios():
    """labelstudio/ssrf.py carves the backend out of a copy of Label Studio's list: it must be the installed
    one's, or an upgrade could quietly unban a range."""
    source = (LABEL_STUDIO_ENV.site_packages() / "label_studio" / "core" / "utils" / "io.py").read_text()
    listed = re.search(r"default_banned_subnets = (\[.*?\])\n", source, re.S)
    assert listed, "Label Studio's default_banned_subnets not found"
    assert tuple(ast.literal_eval(listed.group(1))) == DEFAULT_BANNED_SUBNETS
