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

from collections.abc import Mapping
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.settings import get_settings


def runner_settings(environ: Mapping[str, str] | None = None) -> dict:
    """What the settings ask for: {"kind": "thread", "max_workers": n} or {"kind": "dask", "address"
    or "cluster_kwargs": ...}; a misspelt value is a ConfigError (a ValueError) naming the variable.
    `environ` replaces the process environment (tests, a deployment's job variables)."""
    env = get_settings(environ)
    address = env.dask_address or ""
    kind = env.task_runner or ("dask" if address else "thread")
    if kind == "thread":
        if address:
            raise ConfigError("SMO_DASK_ADDRESS is set but SMO_TASK_RUNNER is 'thread': unset one of them")
        return {"kind": "thread", "max_workers": env.task_workers}
    if address:
        return {"kind": "dask", "address": address}
    return {
        "kind": "dask",
        "cluster_kwargs": {
            "n_workers": env.dask_workers,
            "processes": env.dask_processes,
            "threads_per_worker": 1,
            "dashboard_address": None,
        },
    }


def task_runner(environ: Mapping[str, str] | None = None) -> Any:
    """A Prefect task runner from the settings: ThreadPoolTaskRunner or prefect-dask's DaskTaskRunner."""
    settings = runner_settings(environ)
    if settings["kind"] == "thread":
        return ThreadPoolTaskRunner(max_workers=settings["max_workers"])
    from prefect_dask import DaskTaskRunner  # noqa: PLC0415 - start-up time: Dask loads only when a run asks for it

    if "address" in settings:
        return DaskTaskRunner(address=settings["address"])
    return DaskTaskRunner(cluster_kwargs=settings["cluster_kwargs"])
