"""Background retraining: on Redis (an RQ queue served by the stack's `ml-worker`) when Redis
answers, otherwise on one training thread of this process. Either way runs are serial and there is
at most one pending run per project: events that arrive while one waits are covered by it, so a
burst of annotations trains at most twice (the run under way and one after it)."""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path

from smo_labelstudio.labelstudio.rest import export_project
from smo_labelstudio.model.modelstore import ModelStore
from smo_labelstudio.model.training import retrain_from_export

log = logging.getLogger("smo.ml_backend.jobs")
QUEUE = os.environ.get("SMO_TRAINING_QUEUE") or "smo-training"  # one per stack sharing a Redis
_pending: set[int] = set()
_pending_lock = threading.Lock()
_thread_queue: queue.Queue[int] = queue.Queue()
_thread: threading.Thread | None = None


def _redis():
    url = os.environ.get("SMO_REDIS_URL")
    if not url:
        return None
    try:
        from redis import Redis  # noqa: PLC0415 - optional dependency, needed only when SMO_REDIS_URL is set

        conn = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
        conn.ping()
        return conn
    except Exception:  # noqa: BLE001 - Redis down or absent: fall back to a thread
        return None


def _pending_key(project_id: int) -> str:
    return f"smo:retrain:pending:{project_id}"


def run_retrain(project_id: int) -> dict:
    """The job body (RQ worker or thread): clear the pending mark first, then read the project with the
    backend's own Label Studio token (whatever the hint carried is never used) and train."""
    conn = _redis()
    if conn is not None:
        conn.delete(_pending_key(project_id))
    with _pending_lock:
        _pending.discard(project_id)
    if project_id not in ModelStore(Path(os.environ["SMO_MODEL_DIR"])).connected_projects():
        log.warning("retrain for project %s skipped: not connected to this backend", project_id)
        return {"skipped": "project not connected"}
    tasks = export_project(os.environ["SMO_LS_URL"], os.environ["SMO_LS_TOKEN"], project_id)
    metrics = retrain_from_export(os.environ["SMO_MODEL_DIR"], tasks, project_id)
    if "skipped" in metrics:
        log.warning("retrain for project %s skipped: %s", project_id, metrics["skipped"])
        return metrics
    log.warning(
        "retrained for project %s: version %s macro F1 %.3f promoted=%s",
        project_id,
        metrics["version"],
        metrics["macro_f1"],
        metrics["promoted"],
    )
    return metrics


def enqueue_retrain(project_id: int) -> dict:
    """Queue a retrain unless one is already pending for the project; returns at once."""
    conn = _redis()
    if conn is not None:
        from rq import Queue  # noqa: PLC0415 - optional: the app's venv (tests import this) has no rq

        if not conn.set(_pending_key(project_id), "1", nx=True, ex=3600):
            return {"queued": False, "backend": "redis", "reason": "a retrain is already pending"}
        job = Queue(QUEUE, connection=conn).enqueue(run_retrain, project_id, job_timeout=3600)
        return {"queued": True, "backend": "redis", "job": job.id}
    global _thread
    with _pending_lock:
        if project_id in _pending:
            return {"queued": False, "backend": "thread", "reason": "a retrain is already pending"}
        _pending.add(project_id)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_train_forever, name="smo-training", daemon=True)
            _thread.start()
    _thread_queue.put(project_id)
    return {"queued": True, "backend": "thread"}


def _train_forever() -> None:
    while True:
        project_id = _thread_queue.get()
        try:
            run_retrain(project_id)
        except Exception:  # noqa: BLE001 - a failed background run is logged, never raised into a request
            log.exception("retrain for project %s failed", project_id)
