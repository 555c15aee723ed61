"""Quality check of several projects in one run, partitioned by project: one Prefect task per
project runs the same pass as `quality-check` (smo_labelstudio.reports.quality_pass.run_pass), on the task
runner the settings choose (smo_labelstudio.stack.taskrunners: a bounded thread pool, a local Dask cluster,
or an existing Dask cluster through SMO_DASK_ADDRESS). Results do not depend on the runner. Posts one
table of every project's gates and emits `smo.quality.gate-failed` for each project that fails one.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from flows.warehouse_step import publish
from smo_labelstudio.core.params import QualityScanParams
from smo_labelstudio.core.reportlinks import signed_link
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.reports import quality_pass as qp
from smo_labelstudio.reports.safe import plain_rows
from smo_labelstudio.stack.taskrunners import task_runner


def _where() -> str:
    """Where a task runs: a Dask worker's address, or the flow run's own process."""
    try:
        from distributed import get_worker  # noqa: PLC0415 - optional: present only with Dask installed

        return f"Dask worker {get_worker().address}"
    except (ImportError, ValueError):
        return "the flow run's process"


@task(cache_policy=NO_CACHE, name="quality pass of one project", task_run_name="quality pass: {spec}")
def project_pass(spec: str, adjudicate: bool, method: str, n_boot: int) -> qp.PassOutcome:
    get_run_logger().info("quality pass of %s on %s", spec, _where())
    return qp.run_pass(load_spec(Path(spec)), adjudicate=adjudicate, method=method, n_boot=n_boot)


def gates_table(outcomes: list[qp.PassOutcome]) -> list[dict]:
    """One row per project: its counts and which gates failed (text cells escaped: titles are free text)."""
    return plain_rows(
        [
            {
                "title": o.spec.title,
                "project_id": o.project.get("project_id"),
                "n_tasks": o.result.counts["n_tasks"],
                "n_annotators": o.result.counts["n_annotators"],
                "passed": not o.result.failed_gates,
                "failed_gates": ", ".join(g.name for g in o.result.failed_gates),
                "report": signed_link(o.report.html) or str(o.report.html),  # the reports service's link
            }
            for o in outcomes
        ]
    )


@flow(name="quality-scan", task_runner=task_runner(), log_prints=True)
def quality_scan(params: QualityScanParams) -> dict:
    """Check every listed project against its spec's quality gates, one partition per project."""
    # Absolute paths: a Dask worker may run in another directory or on another machine.
    specs = [str(Path(s).resolve()) for s in params.specs]
    futures = [project_pass.submit(s, params.adjudicate, params.method, params.n_boot) for s in specs]
    outcomes, errors = [], []
    for spec, future in zip(specs, futures):
        try:
            outcomes.append(future.result())
        except Exception as exc:  # noqa: BLE001 - one project's failure must not hide the others' results
            errors.append(f"{spec}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    if outcomes:
        create_table_artifact(
            key="quality-scan", table=gates_table(outcomes), description=f"Quality gates of {len(outcomes)} project(s)"
        )
    for outcome in outcomes:
        if outcome.result.failed_gates:
            emit_event(**qp.gate_event(outcome))
            print(f"{outcome.spec.title}: gates failed: {', '.join(g.name for g in outcome.result.failed_gates)}")
    for outcome in outcomes:
        publish(outcome.workspace, outcome.spec, outcome.summary())
    if errors:
        raise RuntimeError(f"quality pass failed for {len(errors)} of {len(specs)} project(s): " + "; ".join(errors))
    return {"passed": all(not o.result.failed_gates for o in outcomes), "projects": [o.summary() for o in outcomes]}


if __name__ == "__main__":
    import sys

    quality_scan(QualityScanParams(specs=sys.argv[1:]))
