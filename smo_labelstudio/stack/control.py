"""The local stack: bring services up, report on them, stop them, export how to reach them.

State (credentials and the processes we started) lives in `<home>/stack.json`, mode 0600. What the
services write (Label Studio's database and uploads, Prefect's database, the logs) is their user's only:
they run with umask 077 and `up` tightens files an older version left readable.
`up` is idempotent; a failure stops whatever this call started, so nothing is left half-up.
"""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg

from smo_labelstudio.core import errors
from smo_labelstudio.core import state as state_file
from smo_labelstudio.core.files import atomic_write
from smo_labelstudio.core.postgres import redact
from smo_labelstudio.core.state import state_path
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.envs import EnvError
from smo_labelstudio.stack.services import ServiceError, Settings, services

Say = Callable[[str], None]
ADMIN_EMAIL = "admin@smo.local"
BACKEND_USER = "smo-backend"


class StackError(errors.ServiceError):
    """A one-line, user-facing reason the stack could not do what was asked."""


# -- state file ------------------------------------------------------------------------------
def load_state(home: Path) -> dict:
    """The state of the stack at `home` (core.state reads it), `{}` when there is none yet."""
    try:
        return state_file.load_state(home)
    except state_file.StateError as exc:
        raise StackError(str(exc)) from None


def save_state(home: Path, state: dict) -> None:
    """Write atomically, readable only by the user: it holds the admin password and API token."""
    atomic_write(state_path(home), lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2)), mode=0o600)


PRIVATE = ("label-studio", "prefect", "logs")  # folders of <home> that hold tokens, databases or logs


def protect(home: Path) -> None:
    """Make the stack's state file and the folders in PRIVATE readable by their owner only (files 0600,
    folders 0700): Label Studio's SQLite database holds every API token in plain text."""
    state = state_path(home)
    if state.exists():
        state.chmod(0o600)
    for name in PRIVATE:
        root = home / name
        if not root.is_dir():
            continue
        root.chmod(0o700)
        for path in root.rglob("*"):
            if path.is_symlink():
                continue
            path.chmod(0o700 if path.is_dir() else 0o600)


def _credentials(state: dict) -> None:
    state.setdefault(
        "label_studio",
        {
            "email": ADMIN_EMAIL,
            "password": secrets.token_urlsafe(18),
            "token": secrets.token_hex(20),  # a legacy token until `up` records the admin's PAT here
        },
    )
    state["label_studio"].setdefault("annotator_secret", secrets.token_urlsafe(32))  # simulated annotators' passwords
    state.setdefault("backend", {})
    state["backend"].setdefault("user", BACKEND_USER)
    state["backend"].setdefault("password", secrets.token_urlsafe(24))
    state["backend"].pop("webhook_secret", None)  # webhooks carry no secret now: they are only hints
    state["backend"].setdefault("admin_password", secrets.token_urlsafe(24))  # never given to Label Studio
    state.setdefault("services", {})


# -- commands --------------------------------------------------------------------------------
def up(settings: Settings, say: Say = print, only: tuple[str, ...] | None = None) -> dict:
    """Start every service (or those named in `only`) not already running and healthy; return the state."""
    home = settings.home
    state = load_state(home)
    _credentials(state)
    running = {n: r for n, r in state["services"].items() if procs.alive(r)}
    if running and state.get("database") != settings.database:
        raise StackError(
            f"the stack is running on {state.get('database')}; run `smo stack down` before "
            f"switching to {settings.database}"
        )
    state["database"] = settings.database
    state["services"] = running
    save_state(home, state)
    protect(home)

    started: list[str] = []
    current = "stack"
    try:
        for svc in services(settings):
            if only and svc.name not in only:
                continue
            current = svc.name
            record = running.get(svc.name)
            if record and svc.port and record.get("url") != svc.url:
                # started by a version before SSRF protection stayed on (no recorded URL), or at another address:
                # its settings are not these, so it starts again
                say(f"{svc.name}: restarting with this version's settings")
                procs.stop(running.pop(svc.name))
                save_state(home, state)
                record = None
            if record:
                if procs.wait_healthy(svc.health_url, record, timeout=120, auth=svc.health_auth(state)) is None:
                    say(f"{svc.name}: already running at {svc.url}")
                    svc.ready(state, say)
                    save_state(home, state)
                    continue
                raise StackError(f"{svc.name}: running (pid {record['pid']}) but not healthy (log: {svc.log})")
            if svc.port and procs.port_in_use(svc.host, svc.port):
                raise StackError(
                    f"{svc.name}: port {svc.port} is already in use by another program "
                    f"(set {svc.port_setting} to move it; log: {svc.log})"
                )
            svc.prepare(state, say)
            save_state(home, state)
            protect(home)  # what prepare copied or created (a seeded database, a log)
            argv, cwd = svc.argv()
            say(f"{svc.name}: starting" + (f" on {svc.url}" if svc.port else ""))
            record = procs.spawn(argv, env=svc.environ(state), cwd=cwd, log=svc.log)
            record["port"] = svc.port
            if svc.port:
                record["url"] = svc.url
            state["services"][svc.name] = record
            save_state(home, state)
            started.append(svc.name)
            problem = procs.wait_healthy(svc.health_url, record, timeout=300, auth=svc.health_auth(state))
            if problem:
                raise StackError(f"{svc.name}: {problem} (log: {svc.log})")
            say(f"{svc.name}: healthy")
            svc.ready(state, say)
            save_state(home, state)
    except BaseException as exc:  # roll back what this call started, Ctrl-C included
        for name in reversed(started):
            procs.stop(state["services"].pop(name))
        save_state(home, state)
        if isinstance(exc, (StackError, ServiceError, EnvError)):
            raise StackError(str(exc)) from None
        if isinstance(exc, (OSError, psycopg.Error)):
            raise StackError(f"{current}: {str(exc).strip().splitlines()[0]}") from None
        raise
    return state


def down(settings: Settings, say: Say = print, only: tuple[str, ...] | None = None) -> list[str]:
    """Stop only the processes this stack started (matched by pid and start time)."""
    state = load_state(settings.home)
    stopped = []
    for name, record in reversed(list(state.get("services", {}).items())):
        if only and name not in only:
            continue
        if procs.alive(record):
            procs.stop(record)
            stopped.append(name)
            say(f"{name}: stopped")
        del state["services"][name]
    if state:
        save_state(settings.home, state)
    if not stopped:
        say("stack: nothing of ours was running")
    return stopped


def _as_recorded(settings: Settings, state: dict) -> Settings:
    """The settings with the ports the running services were actually started on."""
    ports = {n: r.get("port") for n, r in state.get("services", {}).items()}
    return replace(
        settings,
        ls_port=ports.get("label-studio") or settings.ls_port,
        prefect_port=ports.get("prefect") or settings.prefect_port,
        backend_port=ports.get("ml-backend") or settings.backend_port,
        reports_port=ports.get("reports") or settings.reports_port,
    )


def status(settings: Settings) -> dict:
    """Each service: running or not, healthy or not, its URL, pid and log."""
    state = load_state(settings.home)
    settings = _as_recorded(settings, state)
    per_service: dict[str, dict[str, object]] = {}
    report = {
        "home": str(settings.home),
        "database": redact(state.get("database", settings.database)),
        "services": per_service,
    }
    for svc in services(settings):
        record = state.get("services", {}).get(svc.name)
        running = bool(record) and procs.alive(record)
        per_service[svc.name] = {
            "running": running,
            "healthy": running and procs.healthy(svc.health_url, auth=svc.health_auth(state)),
            "url": svc.url if svc.port else None,
            "pid": record["pid"] if running else None,
            "log": str(svc.log),
        }
    return report


def backend_url(settings: Settings) -> str:
    """Where the stack's ML backend listens (its own loopback address: Settings.backend_host)."""
    return f"http://{settings.backend_host}:{settings.backend_port}"


def env_lines(settings: Settings) -> list[str]:
    """`export` lines pointing a shell, script or notebook at this stack."""
    state = load_state(settings.home)
    if not state.get("label_studio"):
        raise StackError(f"no stack state in {settings.home}; run `smo stack up` first")
    ls, backend = state["label_studio"], state["backend"]
    settings = _as_recorded(settings, state)
    values = {
        "SMO_LS_URL": f"http://{settings.host}:{settings.ls_port}",
        "SMO_LS_TOKEN": ls["token"],
        "SMO_BACKEND_URL": backend_url(settings),
        "SMO_BACKEND_USER": backend["user"],
        "SMO_BACKEND_PASSWORD": backend["password"],
        "SMO_BACKEND_ADMIN_PASSWORD": backend["admin_password"],
        "PREFECT_API_URL": f"http://{settings.host}:{settings.prefect_port}/api",
    }
    if state.get("reports"):  # the managers' login to the reports service (docs: stack, project-manager guide)
        values["SMO_REPORTS_USER"] = state["reports"]["user"]
        values["SMO_REPORTS_PASSWORD"] = state["reports"]["password"]
    return [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
