"""Qualification and pause: whose answers count, decided from gold answers in the order they were given.

Every annotator starts *qualifying*: their first gold tasks are the qualification batch, and none of their
answers count (in consensus, agreement or the export) until they pass. The test is Wald's sequential
probability ratio test (`gold.sequential_check`'s arithmetic), run after every gold answer: H0 accuracy =
`good` against H1 accuracy = `bad`, with error rates `alpha` (stopping an annotator at `good`) and `beta`
(letting one at `bad` go on) that hold however often one looks. Log-likelihood ratio after n gold answers,
k right: k log(bad/good) + (n-k) log((1-bad)/(1-good)); a *pass* at <= log(beta/(1-alpha)), a *flag*
at >= log((1-beta)/alpha).

    qualifying --pass--> qualified (answers after the passing gold answer count)
    qualifying --flag--> paused    (failed qualification)
    qualified  --pass--> qualified (a passing check: the test restarts from zero)
    qualified  --flag--> paused    (every answer since the last passing check stops counting)
    any        --reinstated at t--> qualified (answers from t on count; the test restarts from zero)

So a qualified annotator is re-tested continuously, each test since their last passing check, and a pause
withdraws exactly the answers the failed test covers. With the defaults (good 0.9, bad 0.6, alpha 0.05,
beta 0.1) a perfect annotator passes after 6 gold answers and one who answers every gold task wrong is
flagged after 3 (`answers_needed`).

`decide` is pure over a tidy frame (`task, annotator, label, at`, optional `annotation_id`) and gold
(`task, label`); `workspace_decision` reads a workspace and its recorded reinstatements; `record` keeps the
state (qualified / paused / reinstated with timestamps) in the workspace's `annotators.json`, idempotent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd

from smo_labelstudio.core.errors import ConfigError, InputError
from smo_labelstudio.core.spec import Qualification, Spec
from smo_labelstudio.core.workspace import GOLD_PREFIX, Workspace, read_json, read_table, write_json
from smo_labelstudio.labelstudio.client import LabelStudioError, iter_tasks
from smo_labelstudio.labelstudio.overlap import raise_task_overlap, task_overlaps
from smo_labelstudio.pull.completions import item_ledger
from smo_labelstudio.quality.check import CheckResult, compute_check, load_inputs
from smo_labelstudio.quality.guideline_versions import workspace_superseded
from smo_labelstudio.quality.model_voter import load_model_answers

from . import inputs as qi
from ._frame import require_frame

__all__ = [
    "PAUSED_EVENT",
    "Decision",
    "answers_needed",
    "decide",
    "record",
    "reinstate",
    "workspace_decision",
]

PAUSED_EVENT = "smo.annotator.paused"
QUALIFYING, QUALIFIED, PAUSED = "qualifying", "qualified", "paused"
STATUS_COLUMNS = [
    "annotator",
    "status",
    "gold_n",
    "gold_correct",
    "llr",
    "qualified_at",
    "last_pass_at",
    "paused_at",
    "reason",
]


@dataclass(frozen=True)
class _Test:
    step_right: float
    step_wrong: float
    upper: float  # flag at or above
    lower: float  # pass at or below

    @classmethod
    def of(cls, q: Qualification) -> _Test:
        if not 0 < q.bad_accuracy < q.good_accuracy < 1:
            raise ConfigError(
                f"qualification: need 0 < bad_accuracy < good_accuracy < 1; got bad_accuracy={q.bad_accuracy!r}, "
                f"good_accuracy={q.good_accuracy!r}"
            )
        return cls(
            math.log(q.bad_accuracy / q.good_accuracy),
            math.log((1 - q.bad_accuracy) / (1 - q.good_accuracy)),
            math.log((1 - q.beta) / q.alpha),
            math.log(q.beta / (1 - q.alpha)),
        )


def answers_needed(q: Qualification) -> dict[str, int]:
    """The fewest gold answers the test needs: to pass someone always right, to flag someone always wrong."""
    t = _Test.of(q)
    return {"pass": math.ceil(t.lower / t.step_right - 1e-9), "flag": math.ceil(t.upper / t.step_wrong - 1e-9)}


@dataclass
class Decision:
    """`answers`: the input rows with `counts` (bool) and `status` (the annotator's state when they answered,
    as decided now); `annotators`: one row per annotator (STATUS_COLUMNS)."""

    answers: pd.DataFrame
    annotators: pd.DataFrame
    settings: Qualification | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def excluded(self) -> list:
        """The annotation ids of the answers that do not count."""
        if "annotation_id" not in self.answers.columns:
            return []
        return sorted(self.answers.loc[~self.answers["counts"], "annotation_id"].tolist())

    def status(self, annotator: str) -> str | None:
        """The annotator's current status (None when they never answered)."""
        row = self.annotators[self.annotators["annotator"] == annotator]
        return None if row.empty else str(row["status"].iloc[0])


def decide(
    answers: pd.DataFrame,
    gold: pd.DataFrame,
    settings: Qualification,
    reinstated: Mapping[str, Sequence[Any]] | None = None,
) -> Decision:
    """Walk each annotator's answers in `at` order (ties: row order) through the qualification state machine.

    answers: task, annotator, label, at (timestamps or numbers; reinstatements are compared with it);
    gold: task, label. An answer given at or after a reinstatement counts from then on.
    """
    require_frame(answers, ("task", "annotator", "label", "at"))
    require_frame(gold, ("task", "label"), what="gold")
    test = _Test.of(settings)
    truth = gold.loc[gold["label"].notna()].drop_duplicates("task", keep="last").set_index("task")["label"]
    reinstated = {str(k): sorted(v) for k, v in (reinstated or {}).items()}
    frame = answers.reset_index(drop=True).copy()
    frame["annotator"] = frame["annotator"].astype(str)
    counts = pd.Series(False, index=frame.index)
    status_at = pd.Series(QUALIFYING, index=frame.index, dtype=object)
    rows = []
    for annotator, part in frame.sort_values("at", kind="stable").groupby("annotator", sort=True):
        state, llr, n, k = QUALIFYING, 0.0, 0, 0
        since: list[int] = []  # counting answers since the last passing check
        marks: dict[str, Any] = {"qualified_at": None, "last_pass_at": None, "paused_at": None}
        reason = "qualifying: no gold answer yet"
        pending = list(reinstated.get(annotator, []))
        for idx, row in part.iterrows():
            while pending and _le(pending[0], row["at"]):
                state, llr, n, k, since = QUALIFIED, 0.0, 0, 0, []
                marks["last_pass_at"] = pending.pop(0)
                reason = f"reinstated at {marks['last_pass_at']}"
            status_at[idx] = state
            if state == QUALIFIED:
                counts[idx] = True
                since.append(idx)
            if state == PAUSED or row["task"] not in truth.index or pd.isna(row["label"]):
                continue
            right = bool(row["label"] == truth[row["task"]])
            n, k = n + 1, k + right
            llr += test.step_right if right else test.step_wrong
            if llr <= test.lower:
                if state == QUALIFYING:
                    marks["qualified_at"] = row["at"]
                    reason = f"qualified after {n} gold answers ({k} right)"
                else:
                    reason = f"passed a check after {n} gold answers ({k} right)"
                state, llr, n, k, since = QUALIFIED, 0.0, 0, 0, []
                marks["last_pass_at"] = row["at"]
            elif llr >= test.upper:
                what = "failed qualification" if state == QUALIFYING else "gold accuracy below the bar"
                reason = f"{what}: {k} of {n} gold answers right since the last passing check"
                counts[since] = False
                state, since = PAUSED, []
                marks["paused_at"] = row["at"]
            elif state == QUALIFYING:
                reason = f"qualifying: {k} of {n} gold answers right, no decision yet"
        for at in pending:  # reinstated after their last answer
            state, llr, n, k = QUALIFIED, 0.0, 0, 0
            marks["last_pass_at"], reason = at, f"reinstated at {at}"
        rows.append(
            {
                "annotator": annotator,
                "status": state,
                "gold_n": n,
                "gold_correct": k,
                "llr": llr,
                **marks,
                "reason": reason,
            }
        )
    frame["counts"] = counts.astype(bool)
    frame["status"] = status_at
    return Decision(frame, pd.DataFrame(rows, columns=STATUS_COLUMNS), settings)


def _le(a: Any, b: Any) -> bool:
    return bool(pd.Timestamp(a) <= pd.Timestamp(b)) if isinstance(a, str | datetime) else bool(a <= b)


# --- a workspace ---------------------------------------------------------------------------------------------


def state_path(ws: Workspace) -> str:
    """Where the annotators' qualification state is kept (`annotators.json` in the workspace)."""
    return str(ws.root / "annotators.json")


def load_state(ws: Workspace) -> dict[str, Any]:
    """The recorded state: {"annotators": {email: {"status", "history": [{"status", "at", ...}]}}}."""
    return read_json(ws.root / "annotators.json") or {"annotators": {}}


def _save_state(ws: Workspace, state: dict[str, Any]) -> None:
    write_json(ws.root / "annotators.json", state)


def reinstatements(state: Mapping[str, Any]) -> dict[str, list[pd.Timestamp]]:
    """Each annotator's reinstatement times, from the recorded history."""
    return {
        who: [pd.Timestamp(h["at"]) for h in entry.get("history", []) if h["status"] == "reinstated"]
        for who, entry in state.get("annotators", {}).items()
    }


def policy_answers(labels: pd.DataFrame, annotations: pd.DataFrame | None, cancelled: Iterable | None) -> pd.DataFrame:
    """task, annotator, label (policy-set key), annotation_id, at: each kept answer with when it was last given
    (the later of `created_at` and `updated_at` of the annotations table, so an old answer edited while paused
    does not count; the annotation id's order when there is no table)."""
    latest = qi.latest_annotations(labels, cancelled)
    keys = qi.policy_keys(qi.policy_sets(latest))[["task", "annotator", "label"]]
    ids = latest.groupby(["external_id", "annotator"], sort=False)["annotation_id"].max().rename("annotation_id")
    keys = keys.merge(ids, left_on=["task", "annotator"], right_index=True, how="left")
    if annotations is not None and "created_at" in annotations.columns:
        rows = annotations.drop_duplicates("annotation_id", keep="last").set_index("annotation_id")
        times = [pd.to_datetime(rows[c], utc=True, errors="coerce") for c in ("created_at", "updated_at") if c in rows]
        given = pd.concat(times, axis=1).max(axis=1)
        at = pd.to_datetime(keys["annotation_id"].map(given), utc=True, errors="coerce")
        keys["at"] = at.fillna(pd.Timestamp.max.tz_localize(UTC)) if at.isna().any() else at
    else:
        keys["at"] = pd.to_datetime(keys["annotation_id"], unit="s", utc=True)  # order only
    return keys.reset_index(drop=True)


def workspace_decision(ws: Workspace, settings: Qualification | None, inputs: Mapping[str, Any]) -> Decision | None:
    """The decision for a workspace's pulled labels (`check.load_inputs`), with its recorded reinstatements;
    None when the spec has no `qualification`, so every answer counts."""
    if settings is None:
        return None
    annotations = read_table(ws.annotations) if ws.annotations.exists() else None
    answers = policy_answers(inputs["labels"], annotations, inputs.get("cancelled"))
    gold = qi.gold_policy_keys(inputs.get("gold"))
    decision = decide(answers, gold, settings, reinstatements(load_state(ws)))
    if gold.empty:
        decision.notes.append("qualification: no gold answers in the workspace, so no annotator can qualify yet")
    return decision


def counted_check(
    ws: Workspace, spec: Spec, *, method: str = "smoothed-ds", n_boot: int = 1000
) -> tuple[CheckResult, dict[str, Any], Decision | None]:
    """The quality check over the workspace's pulled tables with the spec's thresholds, on the answers that count
    (the qualification decision's exclusions, and answers a relabel superseded: quality/guideline_versions.py); the
    inputs and the decision come back for the caller to act on."""
    inputs = load_inputs(ws)
    decision = workspace_decision(ws, spec.qualification, inputs)
    model = load_model_answers(ws) if spec.quality.model_voter else None  # the launches' copy, not Label Studio's
    result = compute_check(
        inputs["labels"],
        inputs["gold"],
        spec.quality,
        adjudicated=inputs["adjudicated"],
        cancelled=inputs["cancelled"],
        excluded=(decision.excluded if decision else []) + workspace_superseded(ws, inputs["cancelled"]) or None,
        method=method,
        n_boot=n_boot,
        texts=inputs.get("texts"),
        model=model,
    )
    return result, inputs, decision


def summary(decision: Decision, new_pauses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """JSON-ready: annotators per status, answers not counting, the pauses this pass found."""
    people = decision.annotators
    return {
        "statuses": {
            s: sorted(people.loc[people["status"] == s, "annotator"]) for s in (QUALIFYING, QUALIFIED, PAUSED)
        },
        "answers_not_counting": int((~decision.answers["counts"]).sum()),
        "new_pauses": [
            {"annotator": p["annotator"], "at": p["at"], "tasks": len(p["tasks"])} for p in new_pauses or []
        ],
        "notes": decision.notes,
    }


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None and not pd.isna(v)), None)


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).isoformat() if isinstance(value, str | datetime) else str(value)


def record(ws: Workspace, decision: Decision) -> list[dict[str, Any]]:
    """Record each annotator's status change in the workspace; return the new pauses (each once, however often
    this runs): annotator, at, reason and `tasks`, the external ids whose answers the pause withdrew."""
    state = load_state(ws)
    people = state.setdefault("annotators", {})
    paused = []
    for row in decision.annotators.itertuples(index=False):
        entry = people.setdefault(row.annotator, {"status": None, "history": []})
        if entry["status"] == row.status:
            continue
        if row.status == QUALIFYING and entry["status"] is None:
            entry["status"] = QUALIFYING
            continue
        qualified_at = _iso(_first(row.qualified_at))
        if qualified_at and not any(h["status"] == QUALIFIED for h in entry["history"]):
            entry["history"].append({"status": QUALIFIED, "at": qualified_at})
            if row.status == QUALIFIED:
                entry["status"] = QUALIFIED
                continue
        at = _iso(row.paused_at if row.status == PAUSED else _first(row.last_pass_at, row.qualified_at))
        change: dict[str, Any] = {"status": row.status, "at": at, "reason": row.reason}
        if row.status == PAUSED:
            earlier = {t for h in entry["history"] for t in h.get("tasks", [])}
            mine = decision.answers[
                (decision.answers["annotator"] == row.annotator)
                & ~decision.answers["counts"]
                & (decision.answers["status"] == QUALIFIED)
            ]
            change["tasks"] = sorted({str(t) for t in mine["task"]} - earlier)
            paused.append({"annotator": row.annotator, **change})
        entry["status"] = row.status
        entry["history"].append(change)
    _save_state(ws, state)
    return paused


def reinstate(ws: Workspace, annotator: str, at: datetime | None = None) -> dict[str, Any]:
    """Reinstate a paused annotator from `at` (now) on; idempotent: an annotator not paused is left as is."""
    state = load_state(ws)
    entry = state.get("annotators", {}).get(annotator)
    if entry is None:
        known = ", ".join(sorted(state.get("annotators", {}))) or "none recorded yet"
        raise InputError(f"{annotator}: no such annotator in {state_path(ws)} (known: {known})")
    if entry["status"] != PAUSED:
        return {"annotator": annotator, "status": entry["status"], "changed": False}
    when = (at or datetime.now(UTC)).isoformat()
    entry["status"] = QUALIFIED
    entry["history"].append({"status": "reinstated", "at": when})
    _save_state(ws, state)
    return {"annotator": annotator, "status": QUALIFIED, "reinstated_at": when, "changed": True}


def pending(ws: Workspace, step: str) -> list[dict[str, Any]]:
    """The latest pause of each paused annotator that `step` ("notified", "recovered") has not handled yet."""
    out = []
    for who, entry in load_state(ws).get("annotators", {}).items():
        last = entry["history"][-1] if entry.get("history") else None
        if entry.get("status") == PAUSED and last and last["status"] == PAUSED and not last.get(step):
            out.append({"annotator": who, **last})
    return out


def mark(ws: Workspace, annotator: str, step: str, **facts: Any) -> None:
    """Note that `step` handled the annotator's latest pause (so it happens once), with any `facts`."""
    state = load_state(ws)
    entry = state.get("annotators", {}).get(annotator)
    if entry and entry["history"]:
        entry["history"][-1].update({step: True, **facts})
        _save_state(ws, state)


def paused_event(pause: Mapping[str, Any], project_resource: str, title: str) -> dict[str, Any]:
    """The arguments of `prefect.events.emit_event` announcing one pause (resource `smo.annotator.<e-mail>`,
    the project as a related resource), so an automation can notify the project manager."""
    return {
        "event": PAUSED_EVENT,
        "resource": {"prefect.resource.id": f"smo.annotator.{pause['annotator']}"},
        "related": [
            {
                "prefect.resource.id": project_resource,
                "prefect.resource.role": "project",
                "prefect.resource.name": title,
            }
        ],
        "payload": {
            "annotator": pause["annotator"],
            "paused_at": pause.get("at"),
            "reason": pause.get("reason", ""),
            "tasks_withdrawn": len(pause.get("tasks", [])),
        },
    }


# --- Label Studio --------------------------------------------------------------------------------------------


def recover_tasks(ws: Workspace, http: httpx.Client, project_id: int, labels: pd.DataFrame) -> dict[str, int]:
    """For each pause not yet handled: one more annotator on every work task whose answer the pause withdrew
    (overlap + 1 and `is_labeled` false, `labelstudio.overlap.raise_task_overlap`), so Label Studio serves it
    to someone who has not answered it. Gold tasks are not raised. Returns the tasks raised per annotator."""
    done: dict[str, int] = {}
    todo = pending(ws, "recovered")
    if not todo:
        return done
    ids = labels.drop_duplicates("external_id").set_index("external_id")["task"]
    current = {t.task_id: t for t in task_overlaps(http, project_id)}
    for pause in todo:
        targets: dict[str, int] = dict(pause.get("targets", {}))
        if not targets:  # the target overlap is recorded before Label Studio is asked: a re-run re-sends it
            for external_id in pause.get("tasks", []):
                if str(external_id).startswith(GOLD_PREFIX) or external_id not in ids.index:
                    continue
                task = current.get(int(ids[external_id]))
                if task is not None:
                    targets[str(task.task_id)] = task.overlap + 1
            mark(ws, pause["annotator"], "planned", targets=targets)
        for task_id, overlap in targets.items():
            task = current.get(int(task_id))
            raise_task_overlap(http, int(task_id), overlap, task.answers if task else 0)
        mark(ws, pause["annotator"], "recovered")
        done[pause["annotator"]] = len(targets)
    return done


def remove_from_organization(http: httpx.Client, email: str) -> bool:
    """Remove a user from the caller's Label Studio organization (Community's only way to stop someone taking
    tasks; the API cannot restore it). False when there is no such member."""
    me = http.get("/api/current-user/whoami")
    if me.status_code >= 300:
        raise LabelStudioError(f"Label Studio answered {me.status_code} to whoami")
    org = me.json().get("active_organization")
    users = http.get("/api/users/")
    if users.status_code >= 300:
        raise LabelStudioError(f"Label Studio answered {users.status_code} listing users")
    found = [u["id"] for u in users.json() if str(u.get("email", "")).lower() == email.lower()]
    if not found:
        return False
    resp = http.delete(f"/api/organizations/{org}/memberships/{found[0]}/")
    if resp.status_code == 404:
        return False
    if resp.status_code >= 300:
        raise LabelStudioError(f"Label Studio answered {resp.status_code} removing a member: {resp.text[:200]}")
    return True


QUALIFICATION_OVERLAP = 1000  # a qualification task stays unlabeled, so every new annotator is served it


def serve_first(http: httpx.Client, project_id: int, task_ids: Sequence[int]) -> int:
    """Make Label Studio Community serve these (gold) tasks first to every annotator who has not answered them.

    Label Studio's next-task logic (`projects/functions/next_task.py`, `_try_onboarding_ground_truth`) serves a
    member the unanswered tasks holding a ground-truth annotation before anything else when the project has
    `annotator_evaluation_enabled`; in Community only tasks with `is_labeled` false are candidates, so each task
    also gets an overlap no project reaches. The ground-truth annotation carries an empty result: the gold answer
    never leaves the workspace. Idempotent; returns the tasks newly marked."""
    resp = http.patch(f"/api/projects/{project_id}", json={"annotator_evaluation_enabled": True})
    if resp.status_code >= 300:
        raise LabelStudioError(f"Label Studio answered {resp.status_code} enabling annotator evaluation")
    marked = 0
    for task_id in task_ids:
        task = http.get(f"/api/tasks/{task_id}")
        if task.status_code >= 300:
            raise LabelStudioError(f"Label Studio answered {task.status_code} reading task {task_id}")
        body = task.json()
        if int(body.get("overlap") or 1) < QUALIFICATION_OVERLAP:
            raise_task_overlap(http, int(task_id), QUALIFICATION_OVERLAP, 0)
        if any(a.get("ground_truth") for a in body.get("annotations") or []):
            continue
        made = http.post(f"/api/tasks/{task_id}/annotations/", json={"result": [], "ground_truth": True})
        if made.status_code >= 300:
            raise LabelStudioError(
                f"Label Studio answered {made.status_code} marking task {task_id}: {made.text[:200]}"
            )
        marked += 1
    return marked


def qualification_batch(ws: Workspace, http: httpx.Client, project_id: int, settings: Qualification) -> list[int]:
    """The project's qualification batch: the first `gold_tasks` gold tasks (by task id) of the workspace's
    launches, chosen once and kept in `annotators.json`, served first (`serve_first`)."""
    state = load_state(ws)
    batch = [int(t) for t in state.get("batch", [])]
    if not batch:
        ledger = item_ledger(ws)
        gold_items = set(ledger.loc[ledger["is_gold"].astype(bool), "item_id"])
        if not gold_items:
            raise InputError(f"no gold task launched into project {project_id}: launch with --gold first")
        ids = sorted(
            int(t["id"]) for t in iter_tasks(http, project_id) if (t.get("data") or {}).get("item_id") in gold_items
        )
        batch = ids[: settings.gold_tasks]
        state["batch"] = batch
        _save_state(ws, state)
    serve_first(http, project_id, batch)
    return batch
