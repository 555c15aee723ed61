"""One progress report for a flow's long step: a Prefect progress artifact in the UI, and the CLI's bar (the
hooks `smo` registers in core.params.PROGRESS_HOOKS) fed from the same `(done, total)` calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from smo_labelstudio.core.params import PROGRESS_HOOKS


def progress_reporter(description: str) -> Callable[[int, int], None]:
    """A `progress(done, total)` callback for the library's long steps (nothing to do, `total` 0, is done); call it
    from inside a flow or task run."""
    # in a sync flow Prefect's sync_compatible call returns the artifact id, not a coroutine
    shown = cast(UUID, create_progress_artifact(progress=0.0, description=description))

    def step(done: int, total: int) -> None:
        update_progress_artifact(shown, progress=100.0 * done / total if total else 100.0)
        for hook in PROGRESS_HOOKS:
            hook(done, total)

    return step
