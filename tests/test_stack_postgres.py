"""`smo stack up --postgres URL`: Label Studio and Prefect on this machine's PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import psycopg
import pytest

from smo_labelstudio import client
from smo_labelstudio.paths import LABEL_CONFIGS_DIR
from smo_labelstudio.postgres import PgUrl, drop_database

from test_stack_cli import our_processes, ports, smo

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
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
            env={"PATH": "/usr/bin:/bin", "PREFECT_HOME": str(tmp_path / "client"),
                 "PREFECT_API_URL": f"http://127.0.0.1:{env['SMO_PREFECT_PORT']}/api",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        assert run.returncode == 0, run.stderr[-2000:]
        rows = _query(f"{db}_prefect", "select f.name, r.state_type from flow_run r join flow f on f.id = r.flow_id")
        assert ("pg-check", "COMPLETED") in rows
    finally:
        smo(tmp_path, "stack", "down", env=env)
        assert not our_processes(tmp_path)
        drop_database(pg, db)
        drop_database(pg, f"{db}_prefect")
