"""One flow run at a time per project: the 06:00 pull, the 06:30 quality check, a launch and an export of the same
project never overlap, on one machine or many.

Two locks, outermost first: the workspace's file lock (smo_labelstudio.core.lock: the same machine's CLI,
notebooks and flows), then a slot of the Prefect global concurrency limit `smo-project-<workspace folder>` (one
slot, created on first use: a run on another worker waits for it). Each waits up to `SMO_LOCK_TIMEOUT` seconds,
then the run fails with one line. A run killed holding the slot: the next run on its machine gives the slot back
(the lease id is in the lock's sidecar); elsewhere the lease lapses within a minute.
"""

from __future__ import annotations

import functools
import logging
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from prefect import get_client

# Prefect's own acquire-with-lease and lease renewal (what `prefect.concurrency.sync.concurrency` runs), called
# directly for the lease id, which `concurrency()` keeps to itself; Prefect is pinned (constraints/app.txt).
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import acquire_concurrency_slots_with_lease

from smo_labelstudio.core.lock import WorkspaceBusy, holder, note_holder, workspace_lock
from smo_labelstudio.core.settings import get_settings
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace

R = TypeVar("R")
log = logging.getLogger(__name__)
QUICK_TRY = 2.0  # seconds a `SMO_LOCK_TIMEOUT=0` run gives Prefect to answer one request for the slot
LEASE_SECONDS = 60  # the server's shortest: a slot whose holder vanished (another machine) is free a minute later


def limit_name(ws: Workspace) -> str:
    """The project's Prefect global concurrency limit: one per workspace (its stable key)."""
    return f"smo-project-{ws.root.name}"


def ensure_limit(name: str) -> None:
    """Create the one-slot limit when it does not exist (an operator's own limit of that name is kept as it is)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except Exception:  # noqa: BLE001 - prefect raises ObjectNotFound; any other problem shows in the upsert
            client.upsert_global_concurrency_limit_by_name(name, 1)


def holder_line(ws: Workspace) -> str:
    """Who holds the workspace, as far as this machine can see (its lock's sidecar)."""
    info = holder(ws.root)
    if not info:
        return "on another machine, or between its steps"
    what, pid, host, since = (info.get(k, "?") for k in ("what", "pid", "host", "since"))
    return f"{what}, pid {pid} on {host}, since {since}"


@contextmanager
def project_slot(ws: Workspace, what: str) -> Iterator[None]:
    """Hold the project's workspace lock, then its Prefect concurrency slot, for `what` (launch, pull, quality,
    export). The slot's lease id goes into the lock's sidecar: a run killed holding both leaves it there, and the
    next run on the workspace, once it has the lock (so that run is gone), gives the slot back at once instead of
    waiting for the lease to lapse."""
    name = limit_name(ws)
    ensure_limit(name)
    wait = get_settings().lock_timeout
    with workspace_lock(ws, what) as stale:
        if stale and stale.get("prefect_lease"):
            _release(stale["prefect_lease"])
        lease = _acquire(ws, name, what, wait)
        note_holder(ws, prefect_lease=str(lease))
        try:
            with maintain_concurrency_lease(lease, LEASE_SECONDS, raise_on_lease_renewal_failure=False):
                yield
        finally:
            _release(lease)


def _acquire(ws: Workspace, name: str, what: str, wait: float) -> UUID:
    """A lease on one slot of the limit: a quick try, then (saying so) up to `wait` seconds."""
    for attempt, seconds in enumerate((QUICK_TRY, wait - QUICK_TRY)):
        if attempt and seconds <= 0:
            break
        if attempt:
            log.warning("project %s is busy (%s); this %s waits up to %g s", ws.root.name, holder_line(ws), what, wait)
        try:
            return acquire_concurrency_slots_with_lease(
                [name], 1, timeout_seconds=seconds, lease_duration=LEASE_SECONDS, strict=True
            ).lease_id
        except TimeoutError:
            continue
    raise WorkspaceBusy(_busy(ws, name, what, wait))


def _release(lease: str | UUID) -> None:
    """Give a lease's slot back (a lease that already lapsed is nothing to give back)."""
    with get_client(sync_client=True) as client:
        try:
            client.release_concurrency_slots_with_lease(UUID(str(lease)))
        except Exception:  # noqa: BLE001, S110 - lapsed, or released already: the slot is free either way
            pass


def _busy(ws: Workspace, name: str, what: str, wait: float) -> str:
    return (
        f"project workspace {ws.root} is busy: another flow run holds its Prefect concurrency limit {name} "
        f"({holder_line(ws)}); this {what} waited {wait:g} s (SMO_LOCK_TIMEOUT); run it again when that one is done"
    )


def one_per_project(what: str) -> Callable[[Callable[[Any], R]], Callable[[Any], R]]:
    """Decorate a flow function of `params` (with `params.spec`) to run its whole body in `project_slot`."""

    def wrap(fn: Callable[[Any], R]) -> Callable[[Any], R]:
        @functools.wraps(fn)
        def run(params: Any) -> R:
            spec = load_spec(Path(params.spec))
            with project_slot(Workspace.for_title(spec.title), what):
                return fn(params)

        # Prefect validates parameters against the signature: give it the flow's types, resolved in its module.
        run.__annotations__ = typing.get_type_hints(fn)
        del run.__wrapped__
        return run

    return wrap


def spec_file_first(fn: Callable[[Any], R]) -> Callable[[Any], R]:
    """Decorate the create-tasks flow function (outside `one_per_project`): a project described in the form's
    new_project is saved as a spec file in the specs folder first, and the run goes on with that file."""

    @functools.wraps(fn)
    def run(params: Any) -> R:
        return fn(params.with_spec_file())

    run.__annotations__ = typing.get_type_hints(fn)  # the flow's types, for Prefect's parameter validation
    del run.__wrapped__
    return run
