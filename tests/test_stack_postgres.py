"""`smo stack up --postgres URL`: Label Studio and Prefect on this machine's PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from test_launch_pull import _files
from test_stack_cli import our_processes, ports, smo

from smo_labelstudio.core.paths import LABEL_CONFIGS_DIR
from smo_labelstudio.core.postgres import PgUrl, drop_database
from smo_labelstudio.labelstudio import client

PG_SERVER = "postgresql://root@127.0.0.1:5432"


def _query(dbname: str, sql: str):
    with psycopg.connect(PgUrl.parse(f"{PG_SERVER}/{dbname}").conninfo(), connect_timeout=10) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.postgres
@pytest.mark.slow
def test_stack_runs_label_studio_and_prefect_on_postgres(tmp_path, unique):
    db = f"smo_test_{unique}"
    env = ports()
    pg = PgUrl.parse(f"{PG_SERVER}/{db}")
    try:
        up = smo(tmp_path, "stack", "up", "--postgres", f"{PG_SERVER}/{db}", env=env, timeout=1800)
        assert up.returncode == 0, up.stderr
        assert f"{PG_SERVER}/{db}" in up.stdout
        state = json.loads((tmp_path / "stack.json").read_text())
        assert state["database"] == f"{PG_SERVER}/{db}"

        # Label Studio writes to PostgreSQL: a project created through the API is a row there.
        ls = client.connect(f"http://127.0.0.1:{env['SMO_LS_PORT']}", state["label_studio"]["token"])
        title = f"pg project {unique}"
        pid = client.create_project(ls, title, (LABEL_CONFIGS_DIR / "text_moderation.xml").read_text())
        assert client.import_tasks(ls, pid, [{"data": {"text": "hello", "language": "en"}}]) == 1
        assert _query(db, f"select title from project where id = {pid}") == [(title,)]
        assert _query(db, f"select count(*) from task where project_id = {pid}") == [(1,)]

        # Prefect writes to PostgreSQL: a flow run against this server is a row in <db>_prefect.
        script = textwrap.dedent("""
            from prefect import flow
            @flow(name="pg-check")
            def check():
                return 1
            check()
        """)
        run = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            env={
                "PATH": "/usr/bin:/bin",
                "PREFECT_HOME": str(tmp_path / "client"),
                "PREFECT_API_URL": f"http://127.0.0.1:{env['SMO_PREFECT_PORT']}/api",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            },
        )
        assert run.returncode == 0, run.stderr[-2000:]
        rows = _query(f"{db}_prefect", "select f.name, r.state_type from flow_run r join flow f on f.id = r.flow_id")
        assert ("pg-check", "COMPLETED") in rows

        # The data line on this stack: launch (flow run), simulated annotators, pull (flow run), quality.
        t0 = time.monotonic()
        _data_line_on(tmp_path, env, db, unique)
        print(f"data line on PostgreSQL: {time.monotonic() - t0:.1f} s")
    finally:
        smo(tmp_path, "stack", "down", env=env)
        assert not our_processes(tmp_path)
        drop_database(pg, db)
        drop_database(pg, f"{db}_prefect")


def _data_line_on(home, env: dict, db: str, unique: str) -> None:
    """launch -> simulate -> pull -> quality through the CLI on the PostgreSQL stack in `home`, with
    the counts checked in Label Studio's and Prefect's PostgreSQL tables."""
    files = home / "files"
    files.mkdir()
    spec, data, gold = _files(files, f"pg line {unique}")
    launched = smo(home, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json", env=env)
    assert launched.returncode == 0, launched.stderr[-3000:]
    m = json.loads(launched.stdout)
    assert (m["imported"], m["gold"], m["predictions"], m["missing_predictions"]) == (12, 3, 15, 0)
    pid = m["project_id"]
    assert _query(db, f"select count(*), count(distinct data->>'item_id') from task where project_id = {pid}") == [
        (15, 15)
    ]
    assert _query(
        db, f"select count(*) from prediction p join task t on t.id = p.task_id where t.project_id = {pid}"
    ) == [(15,)]

    sim = smo(home, "simulate", "--spec", str(spec), "--annotators", "3", "--json", env=env)
    assert sim.returncode == 0, sim.stderr[-3000:]
    written = json.loads(sim.stdout)["annotations_written"]
    pulled = smo(home, "pull", "--spec", str(spec), "--json", env=env)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert json.loads(pulled.stdout)["annotations"] == written > 15
    assert _query(
        db, f"select count(*) from task_completion c join task t on t.id = c.task_id where t.project_id = {pid}"
    ) == [(written,)]

    quality = smo(home, "quality", "--spec", str(spec), "--no-adjudicate", "--json", env=env)
    assert quality.returncode in (0, 3), quality.stderr[-3000:]
    assert json.loads(quality.stdout)["n_annotations"] > 0

    runs = _query(f"{db}_prefect", "select f.name, r.state_type from flow_run r join flow f on f.id = r.flow_id")
    assert ("create-tasks", "COMPLETED") in runs and ("pull-completions", "COMPLETED") in runs
