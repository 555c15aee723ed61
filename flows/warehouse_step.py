"""The last step of every flow: record the run in the workspace's flow-runs table and publish the
project's tables to the warehouse (smo_labelstudio.warehouse.publish): the embedded DuckDB store, and
PostgreSQL when SMO_WAREHOUSE_URL is set. A failed run is recorded (and published) by the
`record_failure` hook, so the flow-runs table shows failures too."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.warehouse import publish as warehouse
from smo_labelstudio.warehouse.tables import record_flow_run


@task(cache_policy=NO_CACHE, name="publish to the warehouse")
def publish_tables(ws: Workspace, spec, run: dict) -> list[dict]:
    record_flow_run(ws, **run, ended_at=datetime.now(UTC), state="COMPLETED")
    done = warehouse.publish_after_flow(ws, spec)
    for d in done:
        get_run_logger().info("published %s rows to %s", sum(d["tables"].values()), d["store"])
    return done


def _run_info(ctx, counts: dict | None) -> dict:
    run = ctx.flow_run
    started = run.start_time or run.expected_start_time or datetime.now(UTC)
    return {"flow": ctx.flow.name, "flow_run_id": str(run.id), "started_at": started, "counts": counts or {}}


def publish(ws: Workspace, spec, summary: dict | None = None) -> list[dict]:
    """Call last in a flow body: record this run (with the summary's numbers) and publish."""
    return publish_tables(ws, spec, _run_info(FlowRunContext.get(), summary))


def record_failure(flow, flow_run, state) -> None:
    """Prefect `on_failure` hook: the failed run goes into the flow-runs table and the embedded store.
    Never raises (a hook's error would hide the flow's own)."""
    try:
        params = flow_run.parameters.get("params") or {}
        spec = load_spec(Path(params["spec"] if isinstance(params, dict) else params.spec))
        ws = Workspace.for_title(spec.title)
        if not ws.root.exists():
            return
        record_flow_run(
            ws,
            flow.name,
            str(flow_run.id),
            flow_run.start_time or flow_run.expected_start_time or datetime.now(UTC),
            datetime.now(UTC),
            state.type.value,
        )
        warehouse.publish(ws, spec)
    except Exception:  # noqa: BLE001 - see the docstring
        pass
