"""How to prepare and launch each service of the local stack (Label Studio, Prefect).

Each service knows its environment, its one-time preparation (migrations, admin account) and
its command line; `stack.py` decides when to start and stop them.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as _version
from pathlib import Path
from urllib.parse import unquote, urlsplit

from smo_labelstudio.core import errors, postgres
from smo_labelstudio.core.paths import REPO_ROOT, cache_home
from smo_labelstudio.core.postgres import PgUrl
from smo_labelstudio.core.reportlinks import reports_key
from smo_labelstudio.core.settings import get_settings, secret
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.labelstudio import ssrf
from smo_labelstudio.labelstudio.auth import LEGACY, PAT, token_kind
from smo_labelstudio.labelstudio.users import issue_pat, legacy_token, login, pat_works, set_legacy_tokens
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.envs import LABEL_STUDIO_ENV, ML_BACKEND_ENV

Say = Callable[[str], None]

# Variables of our own environment that must not leak into a side environment's interpreter.
_FOREIGN = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


class ServiceError(errors.ServiceError):
    """A service could not be prepared or started; the message names the service and its log."""


@dataclass
class Settings:
    """Where the stack lives and how it is reached."""

    home: Path
    host: str = "127.0.0.1"
    # The ML backend listens on a loopback address of its own: Label Studio's SSRF protection bans addresses,
    # not ports, so this one address is let through and 127.0.0.1 (Prefect, Redis, PostgreSQL) stays banned.
    backend_host: str = "127.0.0.2"
    ls_port: int = 8080
    prefect_port: int = 4200
    backend_port: int = 9090
    reports_port: int = 4280
    postgres_url: str | None = None
    ls_workers: int = 4
    redis_url: str = "redis://127.0.0.1:6379/0"
    legacy_token: bool = False  # legacy API tokens on and one issued; default: off, a PAT issued

    @classmethod
    def from_env(cls, home: Path, postgres_url: str | None = None) -> Settings:
        """The stack's settings from the `SMO_*` variables (core.settings); `postgres_url` overrides theirs."""
        env = get_settings()
        return cls(
            home=home,
            ls_port=env.ls_port,
            prefect_port=env.prefect_port,
            backend_port=env.backend_port,
            reports_port=env.reports_port,
            postgres_url=postgres_url or secret(env.postgres_url),
            ls_workers=env.ls_workers,
            redis_url=env.redis_url,
            legacy_token=env.ls_legacy_token,
        )

    @property
    def pg(self) -> PgUrl | None:
        return PgUrl.parse(self.postgres_url) if self.postgres_url else None

    @property
    def database(self) -> str:
        """What the stack stores its data in, without secrets (recorded in the state file)."""
        return self.pg.display() if self.pg else "sqlite"

    @property
    def logs(self) -> Path:
        return self.home / "logs"


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _FOREIGN}


def _run_logged(name: str, argv: list[str], env: dict, cwd: Path | None, log: Path, timeout: float) -> None:
    with procs.open_log(log) as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            code = subprocess.run(
                argv,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                umask=procs.PRIVATE_UMASK,
            ).returncode
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{name}: {argv[1]} did not finish in {timeout:.0f} s (log: {log})") from None
    if code != 0:
        raise ServiceError(f"{name}: {argv[1]} failed with exit code {code} (log: {log})")


@contextmanager
def _template_lock(name: str) -> Iterator[Path]:
    """Hold the lock of the cached template `name` (two stacks starting at once build it once); yields the folder."""
    root = cache_home() / "templates"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root


def sqlite_template(name: str, build: Callable[[Path], None]) -> Path:
    """The cached folder `name` of an already-migrated SQLite database, built once by `build(folder)`.
    Migrations take a minute, a copy a moment."""
    with _template_lock(name) as root:
        target = root / name
        if not target.exists():
            folder = root / f".build-{name}-{os.getpid()}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            folder.rename(target)
    return target


def pg_template(pg: PgUrl, name: str, build: Callable[[str], None]) -> str:
    """The PostgreSQL database `name`, already migrated by `build(database)` once, to create others from."""
    with _template_lock(name):
        if not postgres.database_exists(pg, name):
            scratch = f"{name}_build"
            postgres.drop_database(pg, scratch)
            postgres.create_database(pg, scratch)
            build(scratch)
            postgres.rename_database(pg, scratch, name)
    return name


class _Service:
    """What every service shares: its settings, URL and log file; what each defines: its port, health
    URL, environment, command line and one-time preparation."""

    name = ""
    port_setting = ""

    def __init__(self, settings: Settings):
        self.s = settings

    @property
    def port(self) -> int | None:
        """The port it listens on; None for a service without one (the worker, the deployments)."""
        return None

    @property
    def health_url(self) -> str | None:
        """Where it answers 200 when healthy; None: no HTTP of its own, healthy while the process runs."""
        return None

    def environ(self, state: dict | None = None) -> dict[str, str]:
        """The process environment to start it with."""
        raise NotImplementedError

    def prepare(self, state: dict, say: Say) -> None:
        """One-time work before the first start (environments, databases, credentials)."""
        raise NotImplementedError

    def argv(self) -> tuple[list[str], Path | None]:
        """Its command line and working directory (None: the current one)."""
        raise NotImplementedError

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self.s.host

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.s.logs / f"{self.name}.log"

    def health_auth(self, state: dict) -> tuple[str, str] | None:
        """Credentials the health check needs (none by default)."""
        return None

    def ready(self, state: dict, say: Say) -> None:
        """Work once it answers, on every `up` (nothing by default)."""


class LabelStudio(_Service):
    """Label Studio 1.23.2 from its own environment, served by gunicorn."""

    name = "label-studio"
    port_setting = "SMO_LS_PORT"

    @property
    def port(self) -> int:
        return self.s.ls_port

    @property
    def health_url(self) -> str:
        return self.url + "/health"

    @property
    def data_dir(self) -> Path:
        return self.s.home / "label-studio"

    def environ(
        self, state: dict | None = None, pg: PgUrl | None = None, data_dir: Path | None = None
    ) -> dict[str, str]:
        """Settings for a local deployment: legacy tokens off unless asked for (`legacy_token`), SSRF protection
        on with only the ML backend's address let through (labelstudio/ssrf.py), error reporting, analytics and
        version checks off so no content leaves the machine."""
        env = _clean_environ()
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir or self.data_dir),
                "LABEL_STUDIO_HOST": self.url,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true" if self.s.legacy_token else "false",
                **ssrf.label_studio_settings(self.s.backend_host),
                "SENTRY_DSN": "",
                "LABEL_STUDIO_SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
                "COLLECT_ANALYTICS": "false",
                "LATEST_VERSION_CHECK": "false",
                "LOG_LEVEL": "WARNING",
                "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
            }
        )
        pg = pg or self.s.pg
        if pg:
            env.update(
                {
                    "DJANGO_DB": "postgresql",
                    "POSTGRE_NAME": pg.dbname,
                    "POSTGRE_USER": pg.user,
                    "POSTGRE_PASSWORD": pg.password,
                    "POSTGRE_HOST": pg.host,
                    "POSTGRE_PORT": str(pg.port),
                }
            )
        else:
            env["DJANGO_DB"] = "sqlite"
        return env

    # -- one-time preparation ---------------------------------------------------------------
    def prepare(self, state: dict, say: Say) -> None:
        """Build the environment, seed a migrated database, create the admin account (and, with
        `legacy_token`, its legacy token; a PAT can only be made once it answers: `ready`)."""
        creds = state["label_studio"]
        LABEL_STUDIO_ENV.ensure(say)
        if creds.get("initialized_for") == self.s.database and self._database_present():
            return
        self._seed_database(say)
        # Credentials go through the environment, not argv, so `ps` never shows them.
        env = self.environ() | {"LABEL_STUDIO_USERNAME": creds["email"], "LABEL_STUDIO_PASSWORD": creds["password"]}
        argv = [str(LABEL_STUDIO_ENV.bin("label-studio")), "init", "--quiet"]
        if self.s.legacy_token:
            recorded = creds.get("token", "")
            env["LABEL_STUDIO_USER_TOKEN"] = recorded if recorded and token_kind(recorded) == LEGACY else _legacy()
            argv.append("--enable-legacy-api-token")
        _run_logged(self.name, argv, env, None, self.log, timeout=900)
        creds["initialized_for"] = self.s.database

    def ready(self, state: dict, say: Say) -> None:
        """Once it answers, as the admin (a session): the organization's legacy tokens switched on or off
        as asked, then the token recorded as `label_studio.token` (what `smo stack env` exports): the
        legacy token, or the admin's PAT. The recorded PAT is kept while Label Studio takes it; a lost or
        revoked one is replaced (Label Studio keeps one per user: the old one is revoked first)."""
        creds = state["label_studio"]
        with login(self.url, creds["email"], creds["password"]) as session:
            jwt = set_legacy_tokens(session, self.s.legacy_token)
            if self.s.legacy_token:
                token = legacy_token(session)
            else:
                recorded = creds.get("pat")
                token = recorded if recorded and pat_works(self.url, recorded) else issue_pat(session)
                if token != recorded:
                    say(f"{self.name}: issued a personal access token for {creds['email']}")
                creds["pat"] = token
        creds["token"], creds["token_kind"] = token, (LEGACY if self.s.legacy_token else PAT)
        creds["legacy_tokens_enabled"] = bool(jwt.get("legacy_api_tokens_enabled"))

    def _database_present(self) -> bool:
        pg = self.s.pg
        if pg:
            return postgres.database_exists(pg)
        return (self.data_dir / "label_studio.sqlite3").exists()

    def _seed_database(self, say: Say) -> None:
        """Start from a cached, already-migrated database: migrations take minutes, a copy seconds."""
        pg = self.s.pg
        if pg:
            if not postgres.database_exists(pg):
                postgres.create_database(pg, template=self._pg_template(pg, say))
        elif not (self.data_dir / "label_studio.sqlite3").exists():
            shutil.copytree(self._sqlite_template(say), self.data_dir, dirs_exist_ok=True)

    def _migrate(self, env: dict, say: Say, what: str) -> None:
        say(f"{self.name}: migrating a new {what} database (about a minute, once)")
        # `label-studio version` runs Label Studio's own migrations and nothing else.
        _run_logged(
            self.name, [str(LABEL_STUDIO_ENV.bin("label-studio")), "version"], env, None, self.log, timeout=1200
        )

    def _sqlite_template(self, say: Say) -> Path:
        def build(folder: Path) -> None:
            self._migrate(self.environ(data_dir=folder), say, "SQLite")

        return sqlite_template(f"label-studio-{LABEL_STUDIO_ENV.key}-sqlite", build)

    def _pg_template(self, pg: PgUrl, say: Say) -> str:
        def build(db: str) -> None:
            self._migrate(self.environ(pg=pg.with_db(db), data_dir=self.data_dir), say, "PostgreSQL")

        return pg_template(pg, f"smo_ls_template_{LABEL_STUDIO_ENV.key}", build)

    def argv(self) -> tuple[list[str], Path]:
        """gunicorn, not the development server `label-studio start` runs; cwd is the package."""
        package = LABEL_STUDIO_ENV.site_packages() / "label_studio"
        return (
            [
                str(LABEL_STUDIO_ENV.bin("gunicorn")),
                "core.wsgi:application",
                "--bind",
                f"{self.host}:{self.port}",
                "--workers",
                str(self.s.ls_workers),
                "--threads",
                "2",
                "--timeout",
                "600",
                "--graceful-timeout",
                "10",
                "--no-control-socket",
            ],
            package,
        )


class PrefectServer(_Service):
    """The Prefect API and UI from our own environment."""

    name = "prefect"
    port_setting = "SMO_PREFECT_PORT"

    @property
    def port(self) -> int:
        return self.s.prefect_port

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    @property
    def health_url(self) -> str:
        return self.api_url + "/health"

    def pg(self) -> PgUrl | None:
        return self.s.pg.with_db(self.s.pg.dbname + "_prefect") if self.s.pg else None

    def environ(self, state: dict | None = None) -> dict[str, str]:
        env = _clean_environ()
        env.pop("PREFECT_API_URL", None)
        env.update(
            {
                "PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_API_URL": self.api_url,
                "PREFECT_LOGGING_LEVEL": "WARNING",
            }
        )
        pg = self.pg()
        if pg:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = pg.sqlalchemy_async()
        return env

    def prepare(self, state: dict, say: Say) -> None:
        """A new database starts as a copy of a migrated one (the first start of a fresh SQLite file took 22 s
        here, 7.5 s from a copy); an existing one is left to Prefect's own migrations."""
        pg = self.pg()
        if pg:
            if not postgres.database_exists(pg):
                postgres.create_database(pg, template=self._pg_template(pg, say))
            postgres.ensure_extension(pg, "pg_trgm")
        elif not (self.home / "prefect.db").exists():
            self.home.mkdir(parents=True, exist_ok=True)
            for part in self._sqlite_template(say).glob("prefect.db*"):
                shutil.copy2(part, self.home / part.name)

    @property
    def home(self) -> Path:
        return self.s.home / "prefect"

    def _upgrade(self, env: dict[str, str], say: Say, what: str) -> None:
        say(f"{self.name}: migrating a new {what} database (once)")
        prefect = Path(sys.executable).parent / "prefect"
        _run_logged(self.name, [str(prefect), "server", "database", "upgrade", "-y"], env, None, self.log, timeout=600)

    def _sqlite_template(self, say: Say) -> Path:
        def build(folder: Path) -> None:
            self._upgrade(self.environ() | {"PREFECT_HOME": str(folder)}, say, "SQLite")

        return sqlite_template(f"prefect-{_version('prefect')}-sqlite", build)

    def _pg_template(self, pg: PgUrl, say: Say) -> str:
        def build(db: str) -> None:
            postgres.ensure_extension(pg.with_db(db), "pg_trgm")
            env = self.environ() | {"PREFECT_API_DATABASE_CONNECTION_URL": pg.with_db(db).sqlalchemy_async()}
            self._upgrade(env, say, "PostgreSQL")

        return pg_template(pg, "smo_prefect_template_" + re.sub(r"\W", "_", _version("prefect")), build)

    def argv(self) -> tuple[list[str], Path | None]:
        prefect = Path(sys.executable).parent / "prefect"
        return ([str(prefect), "server", "start", "--host", self.s.host, "--port", str(self.port)], None)


class MLBackend(_Service):
    """The label-studio-ml backend (gunicorn, its own environment) serving ml_backend/_wsgi.py."""

    name = "ml-backend"
    port_setting = "SMO_BACKEND_PORT"
    workers = 2

    @property
    def port(self) -> int | None:  # `| None`: its subclass MLWorker has no port
        return self.s.backend_port

    @property
    def host(self) -> str:
        """Its own loopback address, the one Label Studio's SSRF protection lets through (Settings.backend_host)."""
        return self.s.backend_host

    @property
    def health_url(self) -> str | None:  # `| None`: nor a health URL
        return self.url + "/health"

    @property
    def model_dir(self) -> Path:
        return self.s.home / "models"

    def health_auth(self, state: dict) -> tuple[str, str] | None:
        backend = state.get("backend", {})
        return (backend.get("user", ""), backend.get("password", ""))

    def environ(self, state: dict | None = None) -> dict[str, str]:
        """The predict-only and admin credentials, the model store, how to reach Label Studio and Redis."""
        state = state or {}
        backend, ls = state.get("backend", {}), state.get("label_studio", {})
        env = _clean_environ()
        for var in [k for k in env if k.startswith("PREFECT_")]:
            env.pop(var)
        env.update(
            {
                "PYTHONPATH": str(REPO_ROOT),
                "SMO_MODEL_DIR": str(self.model_dir),
                "SMO_BACKEND_USER": backend.get("user", ""),
                "SMO_BACKEND_PASSWORD": backend.get("password", ""),
                "SMO_BACKEND_ADMIN_PASSWORD": backend.get("admin_password", ""),
                "SMO_LS_URL": f"http://{self.s.host}:{self.s.ls_port}",
                "SMO_LS_TOKEN": ls.get("token", ""),
                # Only with a worker to serve the queue (started when Redis answers); else in-process.
                "SMO_REDIS_URL": self.s.redis_url if redis_answers(self.s.redis_url) else "",
                "SMO_TRAINING_QUEUE": self.training_queue,
                "SMO_MODEL_FILES": str(self.model_files),
            }
        )
        return env

    @property
    def model_files(self) -> Path:
        """The trusted folder joblib model files are loaded from (SMO_MODEL_FILES, else `files/` in the store)."""
        return get_settings().model_files or self.model_dir / "files"

    @property
    def training_queue(self) -> str:
        """The RQ queue of this stack's retrains: one per backend port, so two stacks sharing a Redis
        never train each other's models."""
        return f"smo-training-{self.s.backend_port}"

    def prepare(self, state: dict, say: Say) -> None:
        """Build the environment; train a starting model from generated data if none is promoted."""
        ML_BACKEND_ENV.ensure(say)
        # start-up time: scikit-learn and pandas load only when a stack starts its ML backend
        from smo_labelstudio.model.modelstore import ModelStore  # noqa: PLC0415 - start-up time (above)
        from smo_labelstudio.model.training import ensure_starter_model  # noqa: PLC0415 - start-up time (above)

        store = ModelStore(self.model_dir)
        self.model_files.mkdir(parents=True, exist_ok=True, mode=0o700)  # where team joblib files go (trusted)
        if not store.current_version():
            say(f"{self.name}: training a starting model from generated data")
            ensure_starter_model(store, load_taxonomy().ids)

    def argv(self) -> tuple[list[str], Path | None]:
        return (
            [
                str(ML_BACKEND_ENV.bin("gunicorn")),
                "--chdir",
                str(REPO_ROOT / "ml_backend"),
                "_wsgi:app",
                "--bind",
                f"{self.host}:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                "4",
                "--timeout",
                "120",
                "--no-control-socket",
            ],
            REPO_ROOT / "ml_backend",
        )


class MLWorker(MLBackend):
    """The RQ worker that runs retraining jobs queued by the backend (started when Redis answers)."""

    name = "ml-worker"
    port_setting = ""

    @property
    def port(self) -> int | None:
        return None

    @property
    def health_url(self) -> str | None:
        """No HTTP: healthy while the process runs."""
        return None

    def prepare(self, state: dict, say: Say) -> None:
        ML_BACKEND_ENV.ensure(say)

    def environ(self, state: dict | None = None) -> dict[str, str]:
        """The backend's, plus the Redis URL for `rq worker` (RQ_REDIS_URL: a password in it stays off the
        command line, which `ps` shows every user)."""
        return super().environ(state) | {"RQ_REDIS_URL": self.s.redis_url}

    def argv(self) -> tuple[list[str], Path | None]:
        return (
            [
                str(ML_BACKEND_ENV.bin("rq")),
                "worker",
                self.training_queue,
                "--path",
                str(REPO_ROOT / "ml_backend"),
                "--path",
                str(REPO_ROOT),
            ],
            REPO_ROOT / "ml_backend",
        )


class Deployments(_Service):
    """`smo serve` as a stack service: registers every flow of flows/ as a deployment `<flow>/smo` on the stack's
    Prefect (forms with dropdowns, daily schedules) and runs their flow runs. It needs no port; `up` does not wait
    for the registration (Prefect loads first: seconds, tens of them on a loaded machine), so `up` adds about 2 s."""

    name = "deployments"  # no port, no HTTP of its own: healthy while it runs (Prefect shows each deployment READY)

    def environ(self, state: dict | None = None) -> dict[str, str]:
        """Our environment pointed at this stack: its Prefect API and its state folder (Label Studio's URL and token,
        the ML backend come from the state file, as for any `smo` command)."""
        env = _clean_environ()
        for var in ("SMO_LS_URL", "SMO_LS_TOKEN", "SMO_BACKEND_URL", "SMO_BACKEND_USER", "SMO_BACKEND_PASSWORD"):
            env.pop(var, None)  # a shell pointed at another stack must not send this one's runs there
        env.update(
            {
                "SMO_HOME": str(self.s.home),
                "PREFECT_API_URL": f"http://{self.s.host}:{self.s.prefect_port}/api",
                "PREFECT_HOME": str(self.s.home / "prefect" / "runner"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
        )
        return env

    def prepare(self, state: dict, say: Say) -> None:
        """The landing folder the forms offer files from (SMO_LANDING_DIR, default `<home>/landing`)."""
        folder = get_settings(self.environ()).landing_dir or self.s.home / "landing"
        Path(folder).mkdir(parents=True, exist_ok=True)

    def argv(self) -> tuple[list[str], Path | None]:
        return ([sys.executable, "-m", "smo_labelstudio.cli", "serve"], REPO_ROOT)


class Reports(_Service):
    """The report files of every workspace over HTTP, read-only (reports/server.py: stdlib http.server, starts in
    well under a second): a signed link opens one report file; the managers' login (`reports` in the state, shown
    by `smo stack env`) opens any, and the newest quality or operations report at `/w/<workspace>/latest/<kind>`."""

    name = "reports"
    port_setting = "SMO_REPORTS_PORT"

    @property
    def port(self) -> int:
        return self.s.reports_port

    @property
    def health_url(self) -> str:
        return self.url + "/health"

    def environ(self, state: dict | None = None) -> dict[str, str]:
        """Our environment with the home whose workspaces it serves and the managers' login."""
        login = (state or {}).get("reports", {})
        env = _clean_environ()
        env.update(
            {
                "SMO_HOME": str(self.s.home),
                "SMO_REPORTS_USER": login.get("user", ""),
                "SMO_REPORTS_PASSWORD": login.get("password", ""),
            }
        )
        return env

    def prepare(self, state: dict, say: Say) -> None:
        """The managers' login (made once) and the key report links are signed with (`keys/reports.key`)."""
        login = state.setdefault("reports", {})
        login.setdefault("user", "manager")
        login.setdefault("password", secrets.token_urlsafe(18))
        reports_key(self.s.home)

    def argv(self) -> tuple[list[str], Path | None]:
        return (
            [sys.executable, "-m", "smo_labelstudio.reports.server", "--host", self.host, "--port", str(self.port)],
            REPO_ROOT,
        )


def _legacy() -> str:
    """A new legacy token: 40 hex characters."""
    return secrets.token_hex(20)


def _resp(*words: str) -> bytes:
    """One Redis command in its wire format (RESP), safe for any bytes in a password."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at `url` (redis://[user:password@]host:port/db), after AUTH
    with the URL's password when it has one."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=0.5) as sock:
            replies = 1
            if parts.password is not None:
                sock.sendall(_resp("AUTH", unquote(parts.username or "default"), unquote(parts.password)))
                replies = 2
            sock.sendall(_resp("PING"))
            answer = b""
            while answer.count(b"\r\n") < replies:
                chunk = sock.recv(256)
                if not chunk:
                    return False
                answer += chunk
            return answer.split(b"\r\n")[replies - 1].startswith(b"+PONG")
    except OSError:
        return False


def services(settings: Settings) -> list[_Service]:
    """The stack's services in start order (the worker only when Redis answers; the deployments last: they need
    Prefect, and Label Studio's credentials in the state)."""
    found: list[_Service] = [LabelStudio(settings), PrefectServer(settings), MLBackend(settings)]
    if redis_answers(settings.redis_url):
        found.append(MLWorker(settings))
    found.append(Reports(settings))
    found.append(Deployments(settings))
    return found
