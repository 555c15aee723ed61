"""The production deployment without a Docker engine: docker-compose.yml validated against the Compose
Specification's JSON schema (deploy/compose-spec.schema.json) after interpolating .env.example, and
checked for what our code expects (services, health checks, ports, variables, no literal secrets,
Dockerfiles that copy what exists); prefect.yaml registered with `prefect deploy --all` on the test's
Prefect server and one deployment run by name by a process worker."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from smo_labelstudio.core.paths import REPO_ROOT
from smo_labelstudio.core.settings import Settings as EnvSettings
from smo_labelstudio.core.settings import env_name
from smo_labelstudio.stack.services import LabelStudio, MLBackend, PrefectServer, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SCHEMA = REPO_ROOT / "deploy" / "compose-spec.schema.json"
SERVICES = {"postgres", "redis", "label-studio", "ml-backend", "ml-worker", "prefect-server", "prefect-worker"}
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")
_VAR = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    pass


# -- helpers: the parts of Compose's file handling the checks need ------------------------------------
def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines skipped), as Compose reads .env."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation on every string of a loaded file: ${VAR}, $VAR, ${VAR:-default},
    ${VAR-default}, ${VAR:?message}, ${VAR?message}, and $$ for a literal $."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg")
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in ("-", ":-"):
            return arg if missing else current
        if op in ("?", ":?"):
            if missing:
                raise InterpolationError(f"{name}: {arg}")
            return current
        return current or ""

    return _VAR.sub(one, value)


def variables(value) -> set[str]:
    """Every variable a loaded file refers to."""
    if isinstance(value, dict):
        return set().union(*(variables(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value)) if value else set()
    if isinstance(value, str):
        return {m.group("braced") or m.group("plain") for m in _VAR.finditer(value) if m.group(0) != "$$"}
    return set()


def validate(document: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(document)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def code_reads(*paths: Path) -> set[str]:
    """The environment variables Python files read with os.environ[...] / os.environ.get(...), and
    the SMO_* settings fields of core/settings.py (read through pydantic-settings) when it is among them."""
    found = set()
    pattern = re.compile(r"os\.environ(?:\.get\(|\[)\s*[\"']([A-Z][A-Z0-9_]*)[\"']")
    for path in paths:
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            found |= set(pattern.findall(file.read_text()))
            if file.resolve() == (REPO_ROOT / "smo_labelstudio" / "core" / "settings.py").resolve():
                found |= {env_name(name) for name in EnvSettings.model_fields}
    return found


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw, example_env) -> dict:
    """The file as Compose sees it with .env.example filled in (its empty secrets given stand-ins)."""
    env = {k: v or f"stand-in-{k.lower()}" for k, v in example_env.items()}
    return interpolate(raw, env)


# -- the compose file -----------------------------------------------------------------------------------
def test_compose_file_is_valid_against_the_compose_specification(compose):
    validate(compose)


def test_the_schema_check_catches_mistakes(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["label-studio"]["healthcheck"]["intervall"] = "5s"  # misspelt key
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        validate(broken)
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["depends_on"] = {"postgres": {"condition": "when_ready"}}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = copy.deepcopy(compose)
    broken["volumes"]["bad volume name"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_secrets_must_be_set_and_interpolation_behaves_like_compose(raw, example_env):
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        interpolate(raw, example_env)  # .env.example leaves the secrets empty: compose stops
    assert interpolate("${A:-x} ${B-y} ${C} $$D $E", {"B": "", "C": "c", "E": "e"}) == "x  c $D e"
    with pytest.raises(InterpolationError, match="A: give A"):
        interpolate("${A:?give A}", {"A": ""})
    assert variables({"a": ["${A:-1}", "$$B", "$C"]}) == {"A", "C"}


def test_every_service_with_a_health_check_and_dependencies_that_exist(compose):
    services = compose["services"]
    assert SERVICES <= set(services)
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        if not one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency]
            if rule["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart") == "no"
    # the images run what the local stack runs
    assert services["label-studio"]["image"] == "heartexlabs/label-studio:1.23.2"
    assert services["prefect-server"]["image"].startswith("prefecthq/prefect:3.8.8-")
    for name in ("postgres", "label-studio", "ml-backend", "ml-worker", "prefect-worker"):
        assert services[name].get("volumes"), f"{name} keeps no data"
    assert {"postgres-data", "label-studio-data", "smo-data"} <= set(compose["volumes"])


def test_ports_our_code_expects(compose, tmp_path):
    defaults = Settings(home=tmp_path)
    published = {
        name: {str(p).rsplit(":", 1)[-1] for p in s.get("ports", [])} for name, s in compose["services"].items()
    }
    assert published["label-studio"] == {str(defaults.ls_port)} == {"8080"}
    assert published["prefect-server"] == {str(defaults.prefect_port)} == {"4200"}
    assert published["ml-backend"] == {str(defaults.backend_port)}
    for name in ("label-studio", "prefect-server", "ml-backend"):
        for port in compose["services"][name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    # how services reach each other on the compose network
    worker = environment(compose["services"]["prefect-worker"])
    assert worker["PREFECT_API_URL"] == f"http://prefect-server:{defaults.prefect_port}/api"
    assert worker["SMO_LS_URL"] == f"http://label-studio:{defaults.ls_port}"
    assert worker["SMO_BACKEND_URL"] == f"http://ml-backend:{defaults.backend_port}"
    assert environment(compose["services"]["ml-backend"])["SMO_LS_URL"] == worker["SMO_LS_URL"]
    # the image serves the backend as the local stack does, on the same port
    local = MLBackend(defaults).argv()[0]
    image = (REPO_ROOT / "ml_backend" / "Dockerfile").read_text()
    assert f'"0.0.0.0:{defaults.backend_port}"' in image and "_wsgi:app" in image and local[3] == "_wsgi:app"


def test_every_variable_is_in_env_example_and_no_literal_secrets(raw, example_env):
    missing = variables(raw) - set(example_env)
    assert not missing, f"variables used in docker-compose.yml but not in .env.example: {sorted(missing)}"
    for name, service in raw["services"].items():
        for key, value in environment(service).items():
            if any(word in key for word in SECRET_WORDS) and value not in ("true", "false"):
                # required (`${VAR:?message}`), or optional with nothing written out (`${VAR:-}`: a team model's token)
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]+|:-)\}", value), f"{name}: {key} is not a ${{VAR}}"
            masked = re.sub(r"\$\{[^}]*\}", "VAR", value)
            for credentials in re.findall(r"://([^/@\s]+)@", masked):
                user, _, password = credentials.rpartition(":")
                assert password == "VAR" and user in ("VAR", "default"), f"{name}: {key} has credentials written out"
    text = COMPOSE.read_text()
    token = re.compile(r"\b[0-9a-f]{32,}\b")
    assert not token.search(text), "a token-like literal in docker-compose.yml"
    for key in [k for k in example_env if any(w in k for w in SECRET_WORDS)]:
        assert example_env[key] == "", f".env.example holds a value for the secret {key}"


def test_variables_our_code_reads_are_set_where_it_runs(compose, tmp_path, monkeypatch):
    for var in [k for k in os.environ if k.startswith(("SMO_", "LABEL_STUDIO_"))]:
        monkeypatch.delenv(var)  # only what the stack itself sets
    services = compose["services"]
    backend_reads = code_reads(REPO_ROOT / "ml_backend")
    assert {
        "SMO_BACKEND_USER",
        "SMO_BACKEND_PASSWORD",
        "SMO_BACKEND_ADMIN_PASSWORD",
        "SMO_MODEL_DIR",
        "SMO_REDIS_URL",
        "SMO_LS_URL",
        "SMO_LS_TOKEN",
    } <= backend_reads
    for name in ("ml-backend", "ml-worker"):
        env = environment(services[name])
        assert backend_reads <= set(env), f"{name} lacks {sorted(backend_reads - set(env))}"
        assert env["SMO_REDIS_URL"] == "redis://default:stand-in-redis_password@redis:6379/0"
    assert environment(services["ml-backend"])["SMO_MODEL_DIR"].startswith("/data/smo")
    # what the local stack gives the backend, compose gives too (PYTHONPATH is the image's)
    local = MLBackend(Settings(home=tmp_path)).environ({})
    assert {k for k in local if k.startswith("SMO_")} <= set(environment(services["ml-backend"]))

    flows_read = {
        "SMO_LS_URL",
        "SMO_LS_TOKEN",
        "SMO_BACKEND_URL",
        "SMO_BACKEND_USER",
        "SMO_BACKEND_PASSWORD",
        "SMO_BACKEND_ADMIN_PASSWORD",
        "SMO_HOME",
        "PREFECT_API_URL",
        "SMO_APP_DIR",
        "SMO_TASK_RUNNER",
        "SMO_DASK_ADDRESS",
    }
    assert {"SMO_LS_URL", "SMO_LS_TOKEN", "SMO_BACKEND_ADMIN_PASSWORD", "SMO_HOME"} <= code_reads(
        REPO_ROOT / "smo_labelstudio"
    ) | {"SMO_BACKEND_URL"}
    for name in ("prefect-worker", "prefect-deploy", "dask-worker"):
        env = environment(services[name])
        assert flows_read <= set(env), f"{name} lacks {sorted(flows_read - set(env))}"
    worker, backend = environment(services["prefect-worker"]), environment(services["ml-backend"])
    for key in ("SMO_BACKEND_USER", "SMO_BACKEND_PASSWORD", "SMO_BACKEND_ADMIN_PASSWORD", "SMO_LS_TOKEN"):
        assert worker[key] == backend[key], f"{key} differs between the flows and the backend"
    assert environment(services["label-studio"])["LABEL_STUDIO_USER_TOKEN"] == worker["SMO_LS_TOKEN"]

    # Label Studio: every fixed setting `smo stack up --legacy-token` uses (SSRF protection on, legacy
    # token, nothing sent out), plus PostgreSQL. Compose provisions the admin's token at init
    # (LABEL_STUDIO_USER_TOKEN), which only a legacy token can be; see the comment in docker-compose.yml.
    ls = environment(services["label-studio"])
    local = LabelStudio(Settings(home=tmp_path, legacy_token=True)).environ()
    fixed = {
        k: v
        for k, v in local.items()
        if k
        in {
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN",
            "LABEL_STUDIO_ML_BLOCK_LOCAL_IP",
            "LABEL_STUDIO_SSRF_PROTECTION_ENABLED",
            "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS",
            "SENTRY_DSN",
            "LABEL_STUDIO_SENTRY_DSN",
            "FRONTEND_SENTRY_DSN",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN",
            "COLLECT_ANALYTICS",
            "LATEST_VERSION_CHECK",
        }
    }
    assert len(fixed) == 10 and {k: ls.get(k) for k in fixed} == fixed
    assert ls["DJANGO_DB"] == "postgresql" and ls["POSTGRE_HOST"] == "postgres"
    assert ls["POSTGRE_PASSWORD"] == environment(services["postgres"])["POSTGRES_PASSWORD"]

    prefect = environment(services["prefect-server"])
    assert prefect["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert prefect["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("@postgres:5432/prefect")
    assert set(PrefectServer(Settings(home=tmp_path)).environ()) >= {"PREFECT_SERVER_ANALYTICS_ENABLED"}
    assert prefect["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    init = (REPO_ROOT / "deploy" / "postgres-init.sql").read_text()
    assert "CREATE DATABASE prefect" in init and "pg_trgm" in init


def _strings(value) -> list[str]:
    """Every string in a loaded file (commands, environments, health checks)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_redis_requires_a_password_and_every_redis_url_carries_it(raw, compose):
    """Compose's Redis (the training queue: a job on it runs code next to the Label Studio token) needs a
    password from .env; every service that uses Redis has it in its URL; no command line shows it."""
    redis = compose["services"]["redis"]
    assert environment(raw["services"]["redis"])["REDIS_PASSWORD"] == "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    server = " ".join(redis["command"])
    assert 'requirepass "$REDIS_PASSWORD"' in server and "exec redis-server -" in server  # config on stdin
    assert "REDISCLI_AUTH=" in " ".join(redis["healthcheck"]["test"])
    password = "stand-in-redis_password"
    urls = {
        (name, text)
        for name, service in compose["services"].items()
        for text in _strings(service)
        for text in re.findall(r"redis://\S+", text)
    }
    users = {name for name, _ in urls}
    assert {"ml-backend", "ml-worker"} <= users, urls
    for name, url in urls:
        assert url.startswith(f"redis://default:{password}@redis:6379/"), (name, url)
    for name, service in compose["services"].items():  # `ps` on the host shows command lines
        assert password not in " ".join(_strings(service.get("command", []))), name
    worker = compose["services"]["ml-worker"]
    assert "--url" not in worker["command"] and environment(worker)["RQ_REDIS_URL"].startswith("redis://default:")


def test_ssrf_protection_stays_on_and_lets_through_only_the_backend(compose):
    """Label Studio keeps SSRF protection and the ML-backend check on; its banned list is the default with
    only ml-backend's fixed address carved out: cloud metadata, the other services' addresses (prefect-server,
    redis, postgres on the same network), loopback and private ranges stay banned."""
    import ipaddress

    from smo_labelstudio.labelstudio.ssrf import DEFAULT_BANNED_SUBNETS, banned_subnets_except

    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if key.endswith(("SSRF_PROTECTION_ENABLED", "ML_BLOCK_LOCAL_IP")):
                assert value == "true", f"{name}: {key}={value}"
    ls = environment(compose["services"]["label-studio"])
    assert ls["LABEL_STUDIO_SSRF_PROTECTION_ENABLED"] == ls["LABEL_STUDIO_ML_BLOCK_LOCAL_IP"] == "true"
    assert ls["LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS"] == "false"
    backend = compose["services"]["ml-backend"]["networks"]["default"]["ipv4_address"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(backend) in ipaddress.ip_network(subnet)
    banned = ls["LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS"]
    assert " " not in banned and banned.split(",") == banned_subnets_except(backend)
    nets = [ipaddress.ip_network(n) for n in banned.split(",")]

    def refused(address: str) -> bool:
        return any(ipaddress.ip_address(address) in n for n in nets)

    assert not refused(backend)
    others = [str(a) for a in ipaddress.ip_network(subnet).hosts() if str(a) != backend]
    for address in ["169.254.169.254", "127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "fe80::1", *others]:
        assert refused(address), address
    # the carved-out list covers exactly the default list's addresses but the backend's
    default = [ipaddress.ip_network(n) for n in DEFAULT_BANNED_SUBNETS]
    assert sum(n.num_addresses for n in nets) == sum(n.num_addresses for n in default) - 1
    assert refused("8.8.8.8") is False  # a public address stays allowed


def _dockerfile_copies(dockerfile: Path) -> list[str]:
    text = dockerfile.read_text().replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].upper() in ("COPY", "ADD"):
            args = [p for p in parts[1:] if not p.startswith("--")]
            sources += args[:-1]
    return sources


def test_dockerfiles_exist_and_copy_what_exists(compose):
    seen = set()
    for name, service in compose["services"].items():
        build = service.get("build")
        if not build:
            continue
        context = REPO_ROOT / build["context"]
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        seen.add(dockerfile.relative_to(REPO_ROOT).as_posix())
        sources = _dockerfile_copies(dockerfile)
        assert sources, f"{dockerfile} copies nothing"
        for source in sources:
            assert (context / source).exists(), f"{dockerfile}: COPY {source} does not exist"
    assert seen == {"ml_backend/Dockerfile", "deploy/Dockerfile.app"}
    backend = (REPO_ROOT / "ml_backend" / "Dockerfile").read_text()
    assert "constraints/ml-backend.txt" in backend and "python:3.11-slim" in backend
    assert "constraints/app.txt" not in backend  # never our environment: its Jinja2 clashes with label-studio-ml
    pins = (REPO_ROOT / "constraints" / "ml-backend.txt").read_text().lower()
    assert "label-studio-ml==" in pins and "\nprefect" not in pins
    # the backend image holds every module of ours the backend imports, and those import nothing else of ours
    copied = set(_dockerfile_copies(REPO_ROOT / "ml_backend" / "Dockerfile"))
    needed, todo = set(), ["ml_backend/model.py", "ml_backend/_wsgi.py", "ml_backend/jobs.py"]
    while todo:
        source = re.sub(r"if TYPE_CHECKING:[^\n]*\n(?:[ \t]+.*\n)+", "", (REPO_ROOT / todo.pop()).read_text())
        for module in re.findall(r"^\s*(?:from|import) (smo_labelstudio(?:\.\w+)*)", source, re.M):
            parts = module.split(".")
            # the module itself and the __init__.py of every package on its way
            for path in [Path(*parts[:i], "__init__.py") for i in range(1, len(parts))] + [
                Path(*parts).with_suffix(".py")
            ]:
                if (REPO_ROOT / path).exists() and path.as_posix() not in needed:
                    needed.add(path.as_posix())
                    todo.append(path.as_posix())
    assert needed and needed <= copied, f"the backend image lacks {sorted(needed - copied)}"
    app = (REPO_ROOT / "deploy" / "Dockerfile.app").read_text()
    assert "constraints/app.txt" in app and "prefect.yaml" in app


# -- prefect.yaml -------------------------------------------------------------------------------------------
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
DAILY = {"pull-completions", "quality-check", "ops-report"}


def flow_names() -> dict[str, str]:
    """Every flow in flows/: its name -> the entrypoint `flows/<file>.py:<function>`."""
    found = {}
    for path in sorted((REPO_ROOT / "flows").glob("*.py")):
        for name, function in re.findall(r'@flow\(name="([^"]+)".*?\n(?:async )?def (\w+)', path.read_text(), re.S):
            found[name] = f"flows/{path.name}:{function}"
    return found


def test_prefect_yaml_has_a_deployment_for_every_flow():
    config = yaml.safe_load(PREFECT_YAML.read_text())
    flows = flow_names()
    assert {"create-tasks", "pull-completions", "quality-check", "quality-scan", "ops-report", "export-dataset"} <= set(
        flows
    )
    entrypoints = {d["entrypoint"]: d for d in config["deployments"]}
    assert set(entrypoints) == set(flows.values())
    for name, entrypoint in flows.items():
        deployment = entrypoints[entrypoint]
        assert deployment["name"] == "smo"  # as `smo serve` names them: <flow>/smo
        assert deployment["work_pool"]["name"] == "smo-pool"
        crons = [s["cron"] for s in deployment.get("schedules", [])]
        assert (len(crons) == 1) == (name in DAILY), name
    assert config["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ $SMO_APP_DIR }}"
    from smo_labelstudio.cli.deployments import FLOWS, NAME, flow_name  # what `smo serve` and the stack register

    assert NAME == "smo" and {flow_name(f) for f in FLOWS} == set(flows), "`smo serve` serves other flows"


async def _deployments() -> dict:
    from prefect import get_client

    async with get_client() as client:
        found = {}
        for d in await client.read_deployments():
            flow = await client.read_flow(d.flow_id)
            found[f"{flow.name}/{d.name}"] = d
        return found


async def _ensure_pool(name: str) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass


async def _remove(deployment_ids: list, pool: str) -> None:
    from prefect import get_client

    async with get_client() as client:
        for deployment_id in deployment_ids:
            await client.delete_deployment(deployment_id)
        await client.delete_work_pool(pool)


async def _flow_run(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        tasks = await client.read_task_runs()
    return run, [log.message for log in logs], [t for t in tasks if t.flow_run_id == flow_run_id]


def _workspace(tmp_path: Path, home: Path, title: str, seed: int) -> Path:
    """A spec and a pulled workspace (labels and gold tables) for it: a quality pass needs nothing else."""
    from quality_data import gold_table, labels_table, truth

    from smo_labelstudio.core.spec import EXAMPLE_SPEC
    from smo_labelstudio.core.workspace import Workspace, write_parquet

    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["title"] = title
    spec = tmp_path / f"spec-{seed}.yaml"
    spec.write_text(yaml.safe_dump(data))
    ws = Workspace.for_title(title, home)
    items = truth(90, seed=seed)
    gold_ids = set(items["external_id"].iloc[::5])
    accuracies = {f"ann-{i}": 0.9 for i in range(4)} | {"ann-bad": 0.3}
    write_parquet(ws.labels, labels_table(items, accuracies, gold_ids=gold_ids, seed=seed + 1))
    write_parquet(ws.gold_answers, gold_table(items, gold_ids))
    return spec


def test_prefect_deploy_all_registers_every_deployment_and_a_worker_runs_one(prefect_api, tmp_path, unique):
    """`prefect deploy --all` from the repository registers every deployment; a process worker (as
    compose's prefect-worker) runs quality-scan/smo by name on a local Dask cluster, chosen by job variables."""
    import asyncio

    from prefect.deployments import run_deployment

    pool = "smo-pool"
    asyncio.run(_ensure_pool(pool))
    env = {k: v for k, v in os.environ.items() if k != "SMO_APP_DIR"}
    started = time.perf_counter()
    deploy = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    deploy_seconds = time.perf_counter() - started
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    registered = asyncio.run(_deployments())
    wanted = {f"{name}/smo" for name in flow_names()}
    assert wanted <= set(registered), f"not registered: {sorted(wanted - set(registered))}"
    ours = [registered[name] for name in sorted(wanted)]
    try:
        for name in wanted:
            d = registered[name]
            assert d.work_pool_name == pool
            assert d.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SMO_APP_DIR }}"}}
            ]
            crons = [s.schedule.cron for s in d.schedules]
            assert len(crons) == (1 if name.split("/")[0] in DAILY else 0), (name, crons)
        assert registered["quality-check/smo"].parameters["params"]["spec"] == "specs/example.yaml"
        assert "params" in registered["create-tasks/smo"].parameter_openapi_schema["properties"]

        home = tmp_path / "home"
        specs = [str(_workspace(tmp_path, home, f"Deploy scan {unique} {i}", seed=i)) for i in (1, 2)]
        worker_env = env | {"SMO_HOME": str(home), "SMO_APP_DIR": str(REPO_ROOT), "PREFECT_LOGGING_LEVEL": "INFO"}
        log = open(tmp_path / "worker.log", "w")
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "prefect"),
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                "process",
                "--prefetch-seconds",
                "5",
            ],
            cwd=tmp_path,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            started = time.perf_counter()
            run = run_deployment(
                "quality-scan/smo",
                timeout=240,
                poll_interval=2,
                parameters={"params": {"specs": specs, "adjudicate": False, "n_boot": 30}},
                job_variables={"env": {"SMO_TASK_RUNNER": "dask", "SMO_DASK_WORKERS": "2"}},
            )
            run_seconds = time.perf_counter() - started
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
            log.close()
        assert run.state.is_completed(), (run.state, (tmp_path / "worker.log").read_text()[-4000:])
        flow_run, messages, task_runs = asyncio.run(_flow_run(run.id))
        assert flow_run.work_pool_name == pool
        assert sum("on Dask worker tcp://" in m for m in messages) == 2, messages  # the partitions ran on Dask
        passes = [t for t in task_runs if t.name.startswith("quality pass: ")]
        assert len(passes) == 2 and all(t.state.is_completed() for t in passes)
        for i in (1, 2):
            reports = list((home / "workspaces").glob(f"deploy-scan-{unique}-{i}-*/reports/quality-*/report.html"))
            assert len(reports) == 1
        print(
            f"prefect deploy --all: {deploy_seconds:.1f} s; quality-scan/smo on a process worker with a local "
            f"Dask cluster: {run_seconds:.1f} s"
        )
    finally:
        asyncio.run(_remove([d.id for d in ours], pool))


def test_the_backend_image_files_are_enough_to_serve_and_refuse_strangers(tmp_path):
    """What ml_backend/Dockerfile copies, laid out as in the image (/app), imported by the backend's own
    environment (constraints/ml-backend.txt, as the image installs): it starts, answers /health with the
    credentials compose passes, refuses a request without them, the predict-only credential on an admin
    route, and label-studio-ml's own routes."""
    from smo_labelstudio.stack.envs import ML_BACKEND_ENV

    dockerfile = REPO_ROOT / "ml_backend" / "Dockerfile"
    app = tmp_path / "app"
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        parts = [p for p in line.split() if not p.startswith("--")]
        if not parts or parts[0] != "COPY":
            continue
        *sources, dest = parts[1:]
        for source in sources:
            src, target = REPO_ROOT / source, app / dest
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True)
            else:
                (target if dest.endswith("/") else target.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target / src.name if dest.endswith("/") else target)
    python = ML_BACKEND_ENV.ensure()
    probe = (
        "import base64, json, _wsgi\n"
        "from werkzeug.test import Client\n"
        "c = Client(_wsgi.app)\n"
        "auth = {'Authorization': 'Basic ' + base64.b64encode(b'backend:pw').decode()}\n"
        "codes = [c.get('/health').status_code, c.get('/health', headers=auth).status_code]\n"
        "codes += [c.get('/versions', headers=auth).status_code, c.post('/train', headers=auth).status_code]\n"
        "print(json.dumps(codes))\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(app),
        "SMO_MODEL_DIR": str(tmp_path / "models"),
        "SMO_BACKEND_USER": "backend",
        "SMO_BACKEND_PASSWORD": "pw",
        "SMO_BACKEND_ADMIN_PASSWORD": "s3cret",
        "HOME": str(tmp_path),
    }
    out = subprocess.run(
        [str(python / "bin" / "python"), "-c", probe],
        cwd=app / "ml_backend",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [401, 200, 403, 404]
