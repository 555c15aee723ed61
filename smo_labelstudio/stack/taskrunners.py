"""The task runner a scalable flow runs its partitions on, chosen by settings, never by code changes.

    SMO_DASK_ADDRESS    an existing Dask cluster's scheduler (tcp://host:8786): tasks run on its
                        workers, which need this package installed and the same SMO_HOME contents
                        (a shared volume), as the app image and `docker compose --profile dask` give
    SMO_TASK_RUNNER     `thread` (default): a bounded thread pool in the flow run's process;
                        `dask`: a local Dask cluster started for the run and closed after it
    SMO_DASK_WORKERS    workers of that local cluster (2)
    SMO_DASK_PROCESSES  `true` (default): worker processes (no shared GIL); `false`: threads
    SMO_TASK_WORKERS    threads of the thread pool (4): bounded, so a large map never opens
                        thousands of concurrent requests

Read when a flow module is imported, that is in each flow run's process: a deployment's job
variables (`env`) or the worker's environment choose the runner per run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

RUNNERS = ("thread", "dask")


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name) or str(default)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = (environ.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def runner_settings(environ: Mapping[str, str] | None = None) -> dict:
    """What the settings ask for: {"kind": "thread", "max_workers": n} or {"kind": "dask", "address"
    or "cluster_kwargs": ...}; a misspelt value is a ValueError naming the variable."""
    env = os.environ if environ is None else environ
    address = (env.get("SMO_DASK_ADDRESS") or "").strip()
    kind = (env.get("SMO_TASK_RUNNER") or ("dask" if address else "thread")).strip().lower()
    if kind not in RUNNERS:
        raise ValueError(f"SMO_TASK_RUNNER must be one of {', '.join(RUNNERS)}, got {kind!r}")
    if kind == "thread":
        if address:
            raise ValueError("SMO_DASK_ADDRESS is set but SMO_TASK_RUNNER is 'thread': unset one of them")
        return {"kind": "thread", "max_workers": _positive(env, "SMO_TASK_WORKERS", 4)}
    if address:
        return {"kind": "dask", "address": address}
    return {
        "kind": "dask",
        "cluster_kwargs": {
            "n_workers": _positive(env, "SMO_DASK_WORKERS", 2),
            "processes": _flag(env, "SMO_DASK_PROCESSES", True),
            "threads_per_worker": 1,
            "dashboard_address": None,
        },
    }


def task_runner(environ: Mapping[str, str] | None = None):
    """A Prefect task runner from the settings: ThreadPoolTaskRunner or prefect-dask's DaskTaskRunner."""
    settings = runner_settings(environ)
    if settings["kind"] == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=settings["max_workers"])
    from prefect_dask import DaskTaskRunner

    if "address" in settings:
        return DaskTaskRunner(address=settings["address"])
    return DaskTaskRunner(cluster_kwargs=settings["cluster_kwargs"])
