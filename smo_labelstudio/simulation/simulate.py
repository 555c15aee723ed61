"""Simulated annotators labeling a real Label Studio project, for demos and tests.

Each task that still needs answers gets them from distinct simulated annotators (real accounts, see
`annotators.py`), posted with that annotator's own token so `completed_by` is that user. The truth
behind the answers is kept in the project's workspace only. Re-running never makes an annotator
answer a task twice: who already answered is read back from Label Studio before anything is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.labelstudio.client import (
    LabelStudioError,
    connection_settings,
    http_client,
    post_annotation,
    project_detail,
    tasks_page,
)
from smo_labelstudio.labelstudio.label_config import config_labels, control_target
from smo_labelstudio.labelstudio.users import Annotator, ensure_annotators
from smo_labelstudio.pull.completions import item_ledger
from smo_labelstudio.simulation.answers import Targets, Truth, accuracy_matrix, answer, draw_truth, lead_time, rng_for
from smo_labelstudio.simulation.truth import (
    SimulationInputError,
    TruthFile,
    load_saved_truth,
    read_confusion,
    read_gold_truth,
    read_truth_file,
    save_truth,
    truth_path,
)

PAGE_SIZE = 500
# Not `total_annotations`: that stored counter loses updates when one task gets concurrent writes.
TASK_FIELDS = "id,data,meta,overlap,annotations,annotators"


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...
    def close(self) -> object: ...


@dataclass(frozen=True)
class SimulationSettings:
    """How the simulated annotators behave (settings only; the work happens in `simulate`)."""

    annotators: int
    accuracy: float | tuple[float, ...] = 0.85  # chance each true policy is answered as itself; a tuple
    # gives annotator i accuracy[i % len] (careful and careless people)
    confusion_file: Path | None = None  # rows it gives replace the accuracy's rows
    truth_file: Path | None = None
    lead_time: float = 30.0  # mean seconds per annotation
    limit: int | None = None  # at most this many tasks get answers in one run
    seed: int = 0
    workers: int = 3  # concurrent annotation writes (Label Studio takes a handful a second)
    span_rate: float = 0.3  # share of violation answers that also mark a harmful span


def accuracy_of(settings: SimulationSettings, index: int) -> float:
    """The accuracy of the annotator at `index` (0-based, in account order)."""
    accuracies = settings.accuracy if isinstance(settings.accuracy, tuple) else (settings.accuracy,)
    return float(accuracies[index % len(accuracies)])


@dataclass(frozen=True)
class Behaviour:
    """How one annotator answers: the confusion rows and the accuracy (also used for severity)."""

    confusion: dict[str, dict[str, float]]
    accuracy: float


@dataclass
class ProjectTask:
    """What the simulation needs to know about one task."""

    id: int
    external_id: str | None
    text: str | None
    overlap: int
    answered: int  # annotations that count (not cancelled)
    annotators: set[int] = field(default_factory=set)  # everyone who annotated or skipped it

    @property
    def key(self) -> str:
        """What seeds this task's randomness: its external id, stable across re-imports."""
        return self.external_id if self.external_id is not None else f"task-{self.id}"


def project_targets(http: httpx.Client, project_id: int) -> tuple[Targets, int]:
    """The controls and values of the project's label config, and its maximum annotations per task."""
    project = _json(project_detail(http, project_id))
    xml = project["label_config"]
    labels = config_labels(xml)
    if "policy" not in labels:
        raise SimulationInputError(f"project {project_id}'s label config has no `policy` choices to simulate")
    targets = Targets(
        policies=tuple(sorted(labels["policy"])),
        to_name=control_target(xml, "policy") or "text",
        severities=tuple(sorted(labels.get("severity", ()))),
        span_labels=tuple(sorted(labels.get("spans", ()))),
        has_escalation="escalation" in labels,
    )
    return targets, int(project.get("maximum_annotations") or 1)


def list_project_tasks(
    http: httpx.Client, project_id: int, default_overlap: int, ledger: dict[str, str] | None = None
) -> list[ProjectTask]:
    """Every task with who has annotated it (paged tasks API, only the fields needed). `ledger` maps
    a task's `data.item_id` to the source id our launches recorded (gold ids as `gold:<id>`)."""
    ledger = ledger or {}
    tasks: list[ProjectTask] = []
    page = 1
    while True:
        resp = tasks_page(http, project_id, page, PAGE_SIZE, fields="all", include=TASK_FIELDS)
        if resp.status_code == 404:  # past the last page
            break
        body = _json(resp)
        batch = body.get("tasks", [])
        for t in batch:
            data, meta = t.get("data") or {}, t.get("meta") or {}
            item_id, source_id = data.get("item_id"), data.get("external_id", meta.get("external_id"))
            external_id = ledger.get(item_id, source_id) if item_id is not None else source_id
            text = data.get("text")
            annotations = t.get("annotations") or []
            # The list's annotations may carry no `completed_by`; `annotators` (user ids) always does.
            user_ids = {_user_id(a.get("completed_by")) for a in annotations} | {
                _user_id(u) for u in t.get("annotators") or []
            }
            tasks.append(
                ProjectTask(
                    id=int(t["id"]),
                    external_id=None if external_id is None else str(external_id),
                    text=text if isinstance(text, str) else None,
                    overlap=int(t.get("overlap") or default_overlap),
                    answered=sum(not a.get("was_cancelled") for a in annotations),
                    annotators={uid for uid in user_ids if uid is not None},
                )
            )
        if not batch or len(tasks) >= int(body.get("total", 0)):
            break
        page += 1
    return sorted(tasks, key=lambda task: task.id)


@dataclass
class Plan:
    """Who answers what in this run, and what was left alone."""

    jobs: list[tuple[ProjectTask, Annotator]]
    already_done: int
    left_for_later: int
    short_of_annotators: int


def plan(tasks: list[ProjectTask], annotators: list[Annotator], seed: int, limit: int | None) -> Plan:
    """Fill each open task's missing answers with annotators who have not touched it (seeded order)."""
    jobs: list[tuple[ProjectTask, Annotator]] = []
    done = later = short = worked = 0
    for task in tasks:
        missing = task.overlap - task.answered
        candidates = [a for a in annotators if a.user_id not in task.annotators]
        if missing > len(candidates):
            short += 1
        if missing <= 0 or not candidates:
            done += 1
            continue
        if limit is not None and worked >= limit:
            later += 1
            continue
        rng_for(seed, "assign", task.key).shuffle(candidates)
        jobs += [(task, a) for a in candidates[:missing]]
        worked += 1
    return Plan(jobs, done, later, short)


def resolve_truths(
    tasks: list[ProjectTask],
    targets: Targets,
    seed: int,
    saved: dict[int, tuple[str | None, Truth]],
    gold: TruthFile,
    truth_file: TruthFile | None,
) -> tuple[dict[int, tuple[str | None, Truth]], dict]:
    """Each task's truth: as saved before, else the gold answer, else the truth file, else drawn (seeded
    by the task). Returns the truths and how many came from gold and from the file."""
    truths: dict[int, tuple[str | None, Truth]] = {}
    counts = {"gold": 0, "file": 0}
    for task in tasks:
        if task.id in saved:
            truths[task.id] = saved[task.id]
            continue
        found = gold.find(task.external_id, None)
        counts["gold"] += found is not None
        if found is None and truth_file is not None:
            found = truth_file.find(task.external_id, task.text)
            counts["file"] += found is not None
        truths[task.id] = (task.external_id, found or draw_truth(rng_for(seed, "truth", task.key), targets.policies))
    return truths, counts


def simulate(
    project_id: int,
    settings: SimulationSettings,
    workspace: Workspace,
    url: str | None = None,
    token: str | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> dict:
    """Run the simulation on one project; return the summary (counts, seconds, writes per second)."""
    started = time.monotonic()
    url, token = connection_settings(url, token)
    with http_client(url, token, timeout=120) as http:
        targets, max_annotations = project_targets(http, project_id)
        from_file = read_confusion(settings.confusion_file, targets.policies) if settings.confusion_file else {}
        truth_file = read_truth_file(settings.truth_file, targets.policies) if settings.truth_file else None
        annotators = ensure_annotators(settings.annotators, url, token)
        known = item_ledger(workspace)
        tasks = list_project_tasks(http, project_id, max_annotations, dict(zip(known["item_id"], known["external_id"])))
    work = plan(tasks, annotators, settings.seed, settings.limit)
    worked_on = {task.id: task for task, _ in work.jobs}
    saved = load_saved_truth(workspace)
    truths, sources = resolve_truths(
        list(worked_on.values()),
        targets,
        settings.seed,
        saved,
        read_gold_truth(workspace, targets.policies),
        truth_file,
    )
    if worked_on:  # the truth is on disk before any answer that depends on it is written
        save_truth(workspace, {**saved, **truths})

    write_started = time.monotonic()
    behaviours = {}
    for i, person in enumerate(annotators):
        accuracy = accuracy_of(settings, i)
        behaviours[person.email] = Behaviour({**accuracy_matrix(targets.policies, accuracy), **from_file}, accuracy)
    written, errors = _write_all(url, work.jobs, truths, targets, behaviours, settings, progress)
    write_seconds = time.monotonic() - write_started
    return {
        "project_id": project_id,
        "annotators": len(annotators),
        "accuracies": {person.email: behaviours[person.email].accuracy for person in annotators},
        "tasks": len(tasks),
        "tasks_simulated": len(worked_on),
        "already_done": work.already_done,
        "left_for_later": work.left_for_later,
        "short_of_annotators": work.short_of_annotators,
        "annotations_written": written,
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "truth_saved": str(truth_path(workspace)),
        "truth_from_gold": sources["gold"],
        "truth_from_file": sources["file"],
        "seconds": round(time.monotonic() - started, 2),
        "writes_per_second": round(written / write_seconds, 2) if written and write_seconds > 0 else None,
    }


def _write_all(
    url: str,
    jobs: list[tuple[ProjectTask, Annotator]],
    truths: dict[int, tuple[str | None, Truth]],
    targets: Targets,
    behaviours: dict[str, Behaviour],
    settings: SimulationSettings,
    progress: Callable[[int], Progress] | None,
) -> tuple[int, list[str]]:
    """Post every planned annotation through a small bounded pool, one task per pool job so no task
    gets concurrent writes (Label Studio's per-task counters lose updates then). Never retried: a
    retried POST could write twice, and a re-run fills whatever failed. Returns the count and errors."""
    by_task: dict[int, list[tuple[ProjectTask, Annotator]]] = {}
    for task, annotator in jobs:
        by_task.setdefault(task.id, []).append((task, annotator))
    bar = progress(len(jobs)) if progress else None
    written, errors = 0, []
    try:
        with (
            http_client(url, timeout=120, limits=httpx.Limits(max_connections=settings.workers)) as http,
            ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool,
        ):
            futures = [
                pool.submit(_write_task, http, task_jobs, truths, targets, behaviours, settings)
                for task_jobs in by_task.values()
            ]
            for future in as_completed(futures):
                outcomes = future.result()
                errors += [o for o in outcomes if o]
                written += sum(o is None for o in outcomes)
                if bar:
                    bar.update(len(outcomes))
    finally:
        if bar:
            bar.close()
    return written, errors


def _write_task(
    http: httpx.Client,
    task_jobs: list[tuple[ProjectTask, Annotator]],
    truths: dict[int, tuple[str | None, Truth]],
    targets: Targets,
    behaviours: dict[str, Behaviour],
    settings: SimulationSettings,
) -> list[str | None]:
    """One task's annotations, one after another."""
    return [
        _write_one(http, task, annotator, truths[task.id][1], targets, behaviours[annotator.email], settings)
        for task, annotator in task_jobs
    ]


def _write_one(
    http: httpx.Client,
    task: ProjectTask,
    annotator: Annotator,
    truth: Truth,
    targets: Targets,
    behaviour: Behaviour,
    settings: SimulationSettings,
) -> str | None:
    """Post one annotation as the annotator; None on success, else a one-line reason (no secrets)."""
    rng = rng_for(settings.seed, "answer", task.key, annotator.email)
    body = {
        "result": answer(truth, targets, behaviour.confusion, behaviour.accuracy, rng, task.text, settings.span_rate),
        "lead_time": lead_time(rng, settings.lead_time),
    }
    try:
        resp = post_annotation(http, task.id, body, annotator.headers)
    except httpx.HTTPError as exc:
        return f"task {task.id} by {annotator.email}: {type(exc).__name__}"
    if resp.status_code >= 300:
        return f"task {task.id} by {annotator.email}: Label Studio answered {resp.status_code}: {resp.text[:200]}"
    return None


def _user_id(completed_by: int | str | dict | None) -> int | None:
    """`completed_by` is a user id, or a user object in some serializations."""
    if isinstance(completed_by, dict):
        return completed_by.get("id")
    return int(completed_by) if completed_by is not None else None


def _json(resp: httpx.Response) -> dict:
    if resp.status_code >= 400:
        raise LabelStudioError(
            f"Label Studio answered {resp.status_code} to {resp.request.method} "
            f"{resp.request.url.path}: {resp.text[:200]}"
        )
    return resp.json()
