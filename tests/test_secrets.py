"""Secrets never leak (issue 8): the flows run with known credentials (the Label Studio token, the
admin and backend passwords, the webhook secret, the invite link, the simulated annotators' tokens), and
not one of them appears in any file we wrote, any command's output, the Prefect server's logs and
artifacts for those runs, or the service logs. The token may also come from a Prefect Secret block."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from smo_cli import smo, stack_env
from test_launch_pull import _files

from smo_labelstudio.labelstudio.users import (
    annotator_email,
    annotator_password,
    annotator_token_path,
    ensure_annotators,
    password_key,
    stored_annotator_token,
)
from smo_labelstudio.stack.control import state_path


def _prefect_records(since: datetime) -> tuple[dict[str, str], str]:
    """Flow runs started since `since` (name -> state), and the text of their logs and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )

    async def read() -> tuple[dict[str, str], str]:
        async with get_client() as c:
            runs = await c.read_flow_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)), limit=200
            )
            names = {r.id: (await c.read_flow(r.flow_id)).name for r in runs}
            ids = [r.id for r in runs]
            text, offset = [], 0
            while True:
                logs = await c.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200, offset=offset
                )
                text += [f"{log.name} {log.message}" for log in logs]
                if len(logs) < 200:
                    break
                offset += 200
            artifacts = await c.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)), limit=200
            )
            text += [json.dumps(a.data, default=str) + (a.description or "") for a in artifacts]
            params = [json.dumps(r.parameters, default=str) for r in runs]
        return ({f"{names[r.id]}:{r.id}": r.state_type.value for r in runs}, "\n".join(text + params))

    return asyncio.run(read())


def _files_containing(root: Path, secrets: dict[str, str], skip: set[Path]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path not in skip and not any(s in path.parents for s in skip):
            raw = path.read_bytes()
            found += [f"{path}: {what}" for what, value in secrets.items() if value.encode() in raw]
    return found


@pytest.mark.slow
def test_no_secret_in_files_outputs_prefect_logs_or_service_logs(
    label_studio, ml_backend, prefect_api, tmp_path, unique, caplog
):
    from prefect.blocks.system import Secret

    started = datetime.now(UTC)
    home, out = tmp_path / "home", tmp_path / "export"
    spec, data, gold = _files(tmp_path, f"secrets {unique}")
    env = stack_env(label_studio, ml_backend, home) | {"SMO_BACKEND_ADMIN_PASSWORD": ml_backend.admin_auth[1]}
    outputs = []

    def run(e: dict, *args: str, ok=(0,)) -> subprocess.CompletedProcess:
        result = smo(e, *args, process=True)  # what the process prints, Prefect's console logs too
        assert result.returncode in ok, result.stderr[-3000:]
        outputs.append(result.stdout + result.stderr)
        return result

    run(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
    run(env, "simulate", "--spec", str(spec), "--annotators", "2", "--json")

    # The pull's token comes from a Prefect Secret block, not the environment or a state file.
    block = f"smo-ls-token-{unique}"
    Secret(value=label_studio.token).save(block, overwrite=True)
    no_token = {k: v for k, v in env.items() if k != "SMO_LS_TOKEN"} | {"SMO_LS_TOKEN_BLOCK": block}
    pulled = run(no_token, "pull", "--spec", str(spec), "--json")
    assert json.loads(pulled.stdout)["annotations"] > 0
    wrong = smo(no_token | {"SMO_LS_TOKEN_BLOCK": f"nothing-{unique}"}, "pull", "--spec", str(spec), process=True)
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines()[-1].startswith(
        f"error: SMO_LS_TOKEN_BLOCK=nothing-{unique}: "
    )

    run(env, "quality", "--spec", str(spec), "--json", ok=(0, 3))  # queues adjudication in Label Studio
    run(env, "report", "--spec", str(spec), "--json", ok=(0, 4))
    run(env, "export", "--spec", str(spec), "--out", str(out), "--json")
    script = textwrap.dedent(f"""
        from flows.quality_check import QualityCheckParams, quality_check
        from flows.ops_report import OpsReportParams, ops_report
        from flows.export_dataset import ExportDatasetParams, export_dataset
        quality_check(QualityCheckParams(spec={str(spec)!r}, n_boot=50))
        ops_report(OpsReportParams(spec={str(spec)!r}, n_boot=50))
        export_dataset(ExportDatasetParams(spec={str(spec)!r}, out={str(out / "flow")!r}))
    """)
    flows = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert flows.returncode == 0, flows.stderr[-3000:]
    outputs.append(flows.stdout + flows.stderr)

    # What must never appear anywhere.
    headers = label_studio.headers
    invite = httpx.get(f"{label_studio.url}/api/invite", headers=headers, timeout=60).json()["token"]
    caplog.set_level(logging.INFO, logger="httpx")
    # The very PATs the simulate run used, kept in its state folder (0600): taken again from there, as the
    # next run does (logged at INFO), and still the same.
    used = [stored_annotator_token(label_studio.url, annotator_email(i), home) for i in (1, 2)]
    assert all(used)
    annotators = ensure_annotators(2, label_studio.url, label_studio.token, home=home)
    assert [a.token for a in annotators] == used
    fresh = ensure_annotators(1, label_studio.url, label_studio.token, prefix=f"leak-{unique}", home=home)  # signs up
    assert "/user/signup/" in caplog.text  # the invite link was requested (and logged without its query)
    secrets = {
        "ls token": label_studio.token,
        "admin password": label_studio.password,
        "backend password": ml_backend.auth[1],
        "backend admin password": ml_backend.admin_auth[1],
        "invite token": invite,
    }
    for i, a in enumerate(annotators, start=1):
        secrets[f"annotator {i} token"] = a.token
        secrets[f"annotator {i} password"] = annotator_password(
            password_key(label_studio.token, home), annotator_email(i)
        )
    secrets["new annotator token"] = fresh[0].token
    assert all(len(v) >= 8 for v in secrets.values())

    leaks = [f"httpx log: {w}" for w, v in secrets.items() if v in caplog.text]
    leaks += [f"command output: {w}" for w, v in secrets.items() for text in outputs if v in text]
    # The annotators' token files are their secret store: 0600 in a 0700 folder, each holding its own PAT
    # and no other secret; every other file in the state folder is searched.
    store = annotator_token_path(label_studio.url, annotator_email(1), home).parent
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    kept = {p for p in store.iterdir() if p.suffix == ".json"}
    assert kept == {annotator_token_path(label_studio.url, a.email, home) for a in [*annotators, *fresh]}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in store.iterdir())
    for a in [*annotators, *fresh]:
        text = annotator_token_path(label_studio.url, a.email, home).read_text()
        assert a.token in text and not [w for w, v in secrets.items() if v in text and v != a.token]
    leaks += _files_containing(home, secrets, skip={store})
    leaks += _files_containing(out, secrets, skip=set())

    # The service logs we write; the state file is the secret store (0600) and Label Studio's own
    # data folder holds its database, so both are left out.
    stack_home = label_studio.home
    assert stat.S_IMODE(state_path(stack_home).stat().st_mode) == 0o600
    logs = stack_home / "logs"
    assert {"label-studio.log", "ml-backend.log"} <= {p.name for p in logs.iterdir()}
    leaks += _files_containing(logs, secrets, skip=set())
    leaks += _files_containing(stack_home / "models", secrets, skip=set())

    runs, text = _prefect_records(started)
    names = {key.split(":")[0] for key, state in runs.items() if state == "COMPLETED"}
    assert {"create-tasks", "pull-completions", "quality-check", "ops-report", "export-dataset"} <= names, runs
    assert len(text) > 1000  # logs and artifacts were read
    leaks += [f"Prefect logs/artifacts: {w}" for w, v in secrets.items() if v in text]
    assert not leaks, leaks
    Secret.load(block)  # still there for the record; removed with the session's Prefect server
    assert os.environ.get("SMO_LS_TOKEN") is None
