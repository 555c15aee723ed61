"""Session fixtures that run the real components: Label Studio (gunicorn, from a migrated template)
and a Prefect API server, each started by the same code as `smo stack up`, on free ports, in a
throw-away state folder, and stopped at the end of the session.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from smo_labelstudio.labelstudio.auth import auth_header
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.services import Settings

# Prefect reads its settings when first imported: isolate it before any test imports it.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="smo-tests-"))
_PREFECT_PORT = procs.free_port()
os.environ.update(
    {
        "PREFECT_HOME": str(_SESSION_DIR / "prefect-client"),
        "PREFECT_API_URL": f"http://127.0.0.1:{_PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    }
)
for _var in ("SMO_LS_URL", "SMO_LS_TOKEN", "SMO_POSTGRES_URL"):
    os.environ.pop(_var, None)
os.environ["SMO_HOME"] = str(_SESSION_DIR / "no-stack")  # tests never touch a developer's .smo/


@dataclass
class LabelStudioServer:
    """The session's Label Studio: legacy tokens off (the stack's default), `token` the admin's PAT."""

    url: str
    token: str
    email: str
    password: str
    home: Path

    @property
    def headers(self) -> dict[str, str]:
        """`Authorization` for one raw request as the admin (the PAT's current access token)."""
        return auth_header(self.url, self.token)

    def headers_for(self, token: str) -> dict[str, str]:
        """`Authorization` for one raw request with another token (an annotator's), of either kind."""
        return auth_header(self.url, token)


def _say(message: str) -> None:
    print(message, flush=True)


@pytest.fixture(scope="session")
def test_stack_settings() -> Settings:
    return Settings(
        home=_SESSION_DIR / "stack",
        ls_port=procs.free_port(),
        prefect_port=_PREFECT_PORT,
        backend_port=procs.free_port(),
        ls_workers=2,
    )


@pytest.fixture(scope="session")
def label_studio(test_stack_settings: Settings) -> LabelStudioServer:
    """A real Label Studio 1.23.2 on SQLite, started from the cached migrated template, as `smo stack up`
    makes it: legacy API tokens off, the admin's personal access token issued."""
    state = stack.up(test_stack_settings, _say, only=("label-studio",))
    creds = state["label_studio"]
    yield LabelStudioServer(
        url=f"http://127.0.0.1:{test_stack_settings.ls_port}",
        token=creds["token"],
        email=creds["email"],
        password=creds["password"],
        home=test_stack_settings.home,
    )
    stack.down(test_stack_settings, _say, only=("label-studio",))


@pytest.fixture(scope="session")
def prefect_api(test_stack_settings: Settings) -> str:
    """A real Prefect API server; PREFECT_API_URL already points the test process at it."""
    stack.up(test_stack_settings, _say, only=("prefect",))
    yield os.environ["PREFECT_API_URL"]
    stack.down(test_stack_settings, _say, only=("prefect",))


@dataclass
class Backend:
    """`auth` is the predict-only pair Label Studio holds; `admin_auth` the admin pair it never sees."""

    url: str
    auth: tuple[str, str]
    admin_auth: tuple[str, str]
    model_dir: Path


@pytest.fixture(scope="session")
def ml_backend(label_studio: LabelStudioServer, test_stack_settings: Settings) -> Backend:
    """The real ML backend (gunicorn, its own environment) and, with Redis, its RQ worker."""
    from smo_labelstudio.stack.services import MLBackend

    state = stack.up(test_stack_settings, _say, only=("ml-backend", "ml-worker"))
    b = state["backend"]
    yield Backend(
        url=MLBackend(test_stack_settings).url,  # its own loopback address (Settings.backend_host)
        auth=(b["user"], b["password"]),
        admin_auth=("admin", b["admin_password"]),
        model_dir=MLBackend(test_stack_settings).model_dir,
    )
    stack.down(test_stack_settings, _say, only=("ml-backend", "ml-worker"))


@pytest.fixture
def ls_client(label_studio: LabelStudioServer):
    from smo_labelstudio.labelstudio.client import connect

    return connect(label_studio.url, label_studio.token)


@pytest.fixture
def on_label_studio(label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`smo` settings for the session's Label Studio, a home of the test's own and no ML backend (whatever the
    developer's shell exports); the home."""
    home = tmp_path / "home"
    for var in ("SMO_BACKEND_URL", "SMO_BACKEND_USER", "SMO_BACKEND_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SMO_HOME", str(home))
    monkeypatch.setenv("SMO_LS_URL", label_studio.url)
    monkeypatch.setenv("SMO_LS_TOKEN", label_studio.token)
    return home


@pytest.fixture
def unique() -> str:
    return secrets.token_hex(4)


# The longest files first, measured (`pytest --durations=0`): `make test` hands whole files to two workers in
# collection order (--no-loadscope-reorder), so a long file left for last no longer runs alone at the end.
# A file missing here only runs later; nothing depends on the order.
LONGEST_FIRST = (
    "test_faults.py",
    "test_stack_cli.py",
    "test_launch_pull.py",
    "test_stack_postgres.py",
    "test_export.py",
    "test_projects_by_id.py",
    "test_byo_server.py",
    "test_deploy.py",
    "test_warehouse.py",
    "test_secrets.py",
    "adversarial/test_backend.py",
    "test_tokens.py",
    "test_ops_report.py",
    "test_qualification.py",
    "test_relabel.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.as_posix()
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith("tests/" + name)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the files' own order, and each file's tests in order, are kept
