"""Fast checks of the stack's building blocks, no services needed."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from smo_labelstudio.core.paths import CONSTRAINTS_DIR
from smo_labelstudio.core.postgres import PgUrl, redact
from smo_labelstudio.labelstudio.ssrf import DEFAULT_BANNED_SUBNETS, banned_subnets_except
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.envs import LABEL_STUDIO_ENV, ML_BACKEND_ENV
from smo_labelstudio.stack.services import LabelStudio, MLBackend, MLWorker, PrefectServer, Settings, redis_answers


def test_state_file_is_private_and_keeps_credentials(tmp_path):
    state = {}
    stack._credentials(state)
    stack.save_state(tmp_path, state)
    path = stack.state_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(state["label_studio"]["token"]) == 40 and int(state["label_studio"]["token"], 16) >= 0
    again = stack.load_state(tmp_path)
    stack._credentials(again)
    assert again == state  # credentials are made once, never rotated by a second `up`


def test_unreadable_state_is_a_clear_error(tmp_path):
    stack.state_path(tmp_path).write_text("{not json")
    with pytest.raises(stack.StackError, match="stack.json"):
        stack.load_state(tmp_path)


def test_env_lines_are_shell_safe(tmp_path):
    state = {
        "label_studio": {"token": "t" * 40},
        "backend": {"user": "u", "password": "p'w $x", "admin_password": "s&1 `id`"},
        "services": {},
    }
    stack.save_state(tmp_path, state)
    lines = stack.env_lines(Settings(home=tmp_path, ls_port=8123))
    out = subprocess.run(
        ["bash", "-c", "\n".join(lines) + '\necho "$SMO_BACKEND_PASSWORD|$SMO_LS_URL|$SMO_BACKEND_ADMIN_PASSWORD"'],
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "p'w $x|http://127.0.0.1:8123|s&1 `id`"


def test_stop_only_touches_the_recorded_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    record = {"pid": proc.pid, "start_time": procs._start_time(proc.pid)}
    impostor = dict(record, start_time=record["start_time"] - 1)  # same pid, another process's start time
    assert procs.alive(record) and not procs.alive(impostor)
    procs.stop(impostor)
    assert proc.poll() is None
    procs.stop(record, timeout=5)
    assert proc.wait(timeout=5) is not None and not procs.alive(record)


def test_port_in_use_detects_a_listener():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert procs.port_in_use("127.0.0.1", sock.getsockname()[1])
    assert not procs.port_in_use("127.0.0.1", procs.free_port())


def test_postgres_url_parsing_and_redaction():
    pg = PgUrl.parse("postgresql://smo:s3cret@db.internal:5433/labels")
    assert (pg.user, pg.password, pg.host, pg.port, pg.dbname) == ("smo", "s3cret", "db.internal", 5433, "labels")
    assert "s3cret" not in pg.display() and "s3cret" not in redact("postgresql://smo:s3cret@h/db")
    assert pg.sqlalchemy_async().startswith("postgresql+asyncpg://smo:s3cret@db.internal:5433/labels")
    with pytest.raises(ValueError, match="postgresql://"):
        PgUrl.parse("postgresql://host-without-db")


def test_label_studio_is_configured_for_a_local_deployment(tmp_path):
    env = LabelStudio(Settings(home=tmp_path)).environ()
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "false"  # as a fresh Label Studio: personal access tokens
    legacy = LabelStudio(Settings(home=tmp_path, legacy_token=True)).environ()
    assert legacy["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"  # `smo stack up --legacy-token`
    # SSRF protection on, the default banned list replaced by the same list without the backend's address
    assert env["LABEL_STUDIO_ML_BLOCK_LOCAL_IP"] == env["LABEL_STUDIO_SSRF_PROTECTION_ENABLED"] == "true"
    assert env["LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS"] == "false"
    assert env["LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS"] == ",".join(banned_subnets_except("127.0.0.2"))
    assert env["SENTRY_DSN"] == "" and env["FRONTEND_SENTRY_DSN"] == ""
    assert "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env
    pg_env = LabelStudio(Settings(home=tmp_path, postgres_url="postgresql://u@h:1/d")).environ()
    assert (pg_env["DJANGO_DB"], pg_env["POSTGRE_NAME"], pg_env["POSTGRE_PORT"]) == ("postgresql", "d", "1")
    prefect = PrefectServer(Settings(home=tmp_path, postgres_url="postgresql://u@h:1/d")).environ()
    assert prefect["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("/d_prefect")
    assert prefect["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_the_backend_listens_on_the_one_address_label_studio_may_reach(tmp_path):
    """The backend binds its own loopback address, the only one carved out of Label Studio's banned list;
    Label Studio, Prefect (and the machine's Redis and PostgreSQL) stay on 127.0.0.1, which stays banned."""
    settings = Settings(home=tmp_path, backend_port=9191)
    backend, ls = MLBackend(settings), LabelStudio(settings)
    assert backend.url == stack.backend_url(settings) == "http://127.0.0.2:9191"
    assert "127.0.0.2:9191" in backend.argv()[0] and ls.host == PrefectServer(settings).host == "127.0.0.1"
    banned = [ipaddress.ip_network(n) for n in ls.environ()["LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS"].split(",")]
    assert not any(ipaddress.ip_address(backend.host) in n for n in banned)
    for address in ("127.0.0.1", "127.0.0.3", "169.254.169.254", "10.1.2.3", "172.17.0.1", "192.168.0.1", "::1"):
        assert any(ipaddress.ip_address(address) in n for n in banned), address
    # the carve-out removes one address, nothing else
    default = [ipaddress.ip_network(n) for n in DEFAULT_BANNED_SUBNETS]
    assert sum(n.num_addresses for n in banned) == sum(n.num_addresses for n in default) - 1


def test_stack_files_holding_secrets_are_made_private(tmp_path):
    """`up` (stack.protect) tightens what an older version left readable: the state file, Label Studio's data
    folder (its SQLite database holds every token), Prefect's and the logs; reading the state file tightens
    it too. Workspaces (reports colleagues read) are left alone."""
    (tmp_path / "label-studio" / "media" / "upload").mkdir(parents=True)
    db = tmp_path / "label-studio" / "label_studio.sqlite3"
    db.write_text("tokens")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "label-studio.log").write_text("log")
    (tmp_path / "prefect").mkdir()
    (tmp_path / "prefect" / "prefect.db").write_text("db")
    (tmp_path / "workspaces").mkdir()
    (tmp_path / "workspaces" / "report.html").write_text("report")
    state = stack.state_path(tmp_path)
    state.write_text("{}")
    for path in [*tmp_path.rglob("*"), tmp_path]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    stack.protect(tmp_path)
    mode = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert mode["label-studio/label_studio.sqlite3"] == mode["logs/label-studio.log"] == 0o600
    assert mode["prefect/prefect.db"] == mode["stack.json"] == 0o600
    assert mode["label-studio"] == mode["label-studio/media/upload"] == mode["logs"] == mode["prefect"] == 0o700
    assert mode["workspaces/report.html"] == 0o644 and mode["workspaces"] == 0o755
    state.chmod(0o644)
    assert stack.load_state(tmp_path) == {} and stat.S_IMODE(state.stat().st_mode) == 0o600


def test_service_processes_and_logs_are_private(tmp_path):
    """What a service creates is its user's only (umask 077), and so is its log."""
    log = tmp_path / "logs" / "svc.log"
    created = tmp_path / "made-by-the-service"
    record = procs.spawn(
        [sys.executable, "-c", f"open({str(created)!r}, 'w').write('x'); print('hello')"], env={}, cwd=None, log=log
    )
    deadline = time.monotonic() + 10
    while procs.alive(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_a_redis_password_is_used_and_kept_off_command_lines(tmp_path):
    """A Redis URL with a password (a shared machine's Redis should have one): the stack's check
    authenticates with it, and the worker gets the URL through RQ_REDIS_URL, not its command line."""
    port, password = procs.free_port(), "p@ss word:1"
    server = subprocess.Popen(
        ["redis-server", "-", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        server.communicate(f'requirepass "{password}"\n'.encode(), timeout=0.1)
    except subprocess.TimeoutExpired:
        pass  # still serving, as it should
    try:
        url = f"redis://default:{quote(password, safe='')}@127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not redis_answers(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert redis_answers(url)
        assert not redis_answers(f"redis://127.0.0.1:{port}/0")  # NOAUTH
        assert not redis_answers(f"redis://default:wrong@127.0.0.1:{port}/0")
        worker = MLWorker(Settings(home=tmp_path, redis_url=url))
        assert url not in " ".join(worker.argv()[0]) and "--url" not in worker.argv()[0]
        assert worker.environ({})["RQ_REDIS_URL"] == url
    finally:
        server.kill()
        server.wait()


def test_up_restarts_a_service_started_by_an_older_version(tmp_path, monkeypatch):
    """A service running from before SSRF protection stayed on (its record has no URL: Label Studio with the
    protection off, the backend on 127.0.0.1) is stopped and started again with this version's settings."""

    class Sleeper(PrefectServer):
        name = "sleeper"

        @property
        def health_url(self) -> str | None:
            return None

        def prepare(self, state: dict, say) -> None:
            pass

        def argv(self) -> tuple[list[str], None]:
            return [sys.executable, "-c", "import time; time.sleep(60)"], None

    settings = Settings(home=tmp_path, prefect_port=procs.free_port())
    monkeypatch.setattr(stack, "services", lambda s: [Sleeper(s)])
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    record = {"pid": old.pid, "start_time": procs._start_time(old.pid), "port": 1}
    state: dict = {"database": settings.database, "services": {"sleeper": record}}
    stack.save_state(tmp_path, state)
    said: list[str] = []
    try:
        new = stack.up(settings, said.append)["services"]["sleeper"]
        assert old.wait(timeout=10) is not None and new["pid"] != old.pid and procs.alive(new)
        assert new["url"] == Sleeper(settings).url and "sleeper: restarting with this version's settings" in said
        again: list[str] = []
        stack.up(settings, again.append)  # recorded with its URL now: kept
        assert procs.alive(new) and any("already running" in m for m in again)
    finally:
        stack.down(settings, lambda _m: None)
        old.kill()


def _pins(name: str) -> dict:
    lines = (CONSTRAINTS_DIR / name).read_text().splitlines()
    return dict(line.lower().split("==", 1) for line in lines if "==" in line)


def test_pins_shared_by_environments_agree():
    """A model pickled in one environment must load in the other: same numpy and scikit-learn."""
    app, backend, server = _pins("app.txt"), _pins("ml-backend.txt"), _pins("label-studio.txt")
    for package in ("numpy", "scikit-learn"):
        assert app[package] == backend[package]
    assert app["label-studio-sdk"] == "2.1.2" and "label-studio" not in app
    assert server["label-studio"] == "1.23.2" and "prefect" not in server
    assert backend["label-studio-ml"] == "1.0.9" and "prefect" not in backend
    assert app["prefect"].startswith("3.8.")


def test_side_environments_hold_what_they_should():
    """The backend's environment imports label_studio_ml, redis and rq, and has no Prefect."""
    ML_BACKEND_ENV.ensure(print)
    check = (
        "import importlib.util as u, label_studio_ml, redis, rq, sklearn;"
        "assert u.find_spec('prefect') is None; print(sklearn.__version__)"
    )
    out = subprocess.run([str(ML_BACKEND_ENV.bin("python")), "-c", check], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _pins("app.txt")["scikit-learn"]
    assert LABEL_STUDIO_ENV.ensure(print) and LABEL_STUDIO_ENV.bin("gunicorn").exists()
