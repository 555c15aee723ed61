"""`smo relabel`: after a taxonomy change, send back for labeling the tasks whose answers the change concerns.

`plan_relabel` is pure over a tidy frame of the answers that count (task, annotator, annotation_id, label: the
policy set chosen, guideline_version, is_gold), the gold policy sets, the taxonomy and what was sent before. A
change (a changelog entry newer than `since`) concerns a task when one of its counted answers was given under a
version older than the change and the change touches a policy chosen on the task (`Change.selects`: a changed
policy was chosen, or a policy the new wording might add to what was chosen). Such a work task goes back once per
taxonomy version; a gold task is listed for review instead (its gold answer was written under the old wording).

`apply_relabel` does it on a project (the dynamic-overlap machinery, `labelstudio.overlap`): it sets the project's
guidelines to the current version and records the switch (`core.guideline_history`), records each task before
asking Label Studio (`relabel/requests.parquet`), then raises the task's overlap by as many answers as it has old
ones and marks it unlabeled, so Label Studio serves it to annotators who have not answered it; a request recorded
but not held by Label Studio (a crash between the two) is sent again, nothing is sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pandas as pd

from smo_labelstudio.core.errors import ConfigError, InputError
from smo_labelstudio.core.guideline_history import read_history, record_version
from smo_labelstudio.core.lock import workspace_lock
from smo_labelstudio.core.spec import Spec
from smo_labelstudio.core.taxonomy import Taxonomy
from smo_labelstudio.core.workspace import GOLD_PREFIX, Workspace, write_json, write_parquet
from smo_labelstudio.labelstudio.client import LabelStudioError, http_client
from smo_labelstudio.labelstudio.guidelines import instructions_html, pages_version, render_pages
from smo_labelstudio.labelstudio.overlap import raise_task_overlap, task_overlaps
from smo_labelstudio.quality import guideline_versions as gv
from smo_labelstudio.quality import inputs as qi
from smo_labelstudio.quality.check import load_inputs
from smo_labelstudio.quality.qualification import workspace_decision

ANSWER_COLUMNS = ["task", "annotator", "annotation_id", "label", "guideline_version", "is_gold"]
TASK_COLUMNS = ["task", "policies", "old_answers", "versions"]
GOLD_COLUMNS = ["task", "policies", "gold_version"]


@dataclass
class RelabelPlan:
    """What a relabel finds: `tasks` to send back, `already` sent for this version before, `gold` to review."""

    version: str
    tasks: pd.DataFrame
    already: pd.DataFrame
    gold: pd.DataFrame
    changes: list[str] = field(default_factory=list)

    def by_policy(self) -> list[dict[str, Any]]:
        """Counts per policy: tasks to send back, their old answers, tasks sent before, gold items to review."""
        counts: dict[str, dict[str, int]] = {}

        def add(frame: pd.DataFrame, key: str, weight: str | None = None) -> None:
            for row in frame.itertuples(index=False):
                for policy in row.policies:
                    entry = counts.setdefault(policy, {"tasks": 0, "old_answers": 0, "already_sent": 0, "gold": 0})
                    entry[key] += 1
                    if weight:
                        entry[weight] += int(getattr(row, weight))

        add(self.tasks, "tasks", "old_answers")
        add(self.already, "already_sent")
        add(self.gold, "gold")
        return [{"policy": p, **counts[p]} for p in sorted(counts)]


def _selecting(tax: Taxonomy, rank: dict[str, int], since_rank: int, oldest_rank: int, chosen: set[str]) -> set[str]:
    """The policies of every change newer than both `since` and the oldest answer's version that touch `chosen`."""
    hit: set[str] = set()
    for i, change in enumerate(tax.changelog):
        if i > since_rank and i > oldest_rank:
            hit |= change.selects(chosen)
    return hit


def plan_relabel(
    answers: pd.DataFrame,
    gold: pd.DataFrame,
    tax: Taxonomy,
    since: str | None = None,
    requests: pd.DataFrame | None = None,
    gold_versions: dict[str, str | None] | None = None,
) -> RelabelPlan:
    """The tasks to send back and the gold items to review (see the module docstring). Pure.

    answers: ANSWER_COLUMNS, the counted answers (label: a frozenset of policy ids); gold: task, label (frozenset),
    the gold answers; requests: REQUEST_COLUMNS, sent before; gold_versions: the version each gold item was last
    reviewed under (absent: the project's first version, `answers`' oldest)."""
    rank = gv.version_rank(tax)
    if since is not None and since not in rank:
        raise ConfigError(f"--since {since!r} is not a version in the taxonomy's changelog ({', '.join(tax.versions)})")
    since_rank = rank[since] if since is not None else gv.UNKNOWN_RANK
    current = tax.version
    changes = [c.version for i, c in enumerate(tax.changelog) if i > since_rank and (c.changed or c.may_add)]
    sent = requests if requests is not None else pd.DataFrame(columns=gv.REQUEST_COLUMNS)
    sent_now = set(sent.loc[sent["version"].astype(str) == current, "task"])
    tasks: list[dict[str, Any]] = []
    already: list[dict[str, Any]] = []
    gold_rows: list[dict[str, Any]] = []
    gold_sets = dict(zip(gold["task"], gold["label"])) if len(gold) else {}
    first_version = None
    if len(answers):
        known = answers["guideline_version"].dropna()
        first_version = min(known, key=lambda v: gv.rank_of(rank, v)) if len(known) else None
    for task, part in answers.groupby("task", sort=True):
        chosen = set().union(*part["label"]) if len(part) else set()
        ranks = [gv.rank_of(rank, v) for v in part["guideline_version"]]
        is_gold = bool(part["is_gold"].any()) or str(task).startswith(GOLD_PREFIX)
        if is_gold:
            continue  # gold tasks below, with their gold answer
        hit = _selecting(tax, rank, since_rank, min(ranks), chosen)
        if not hit:
            continue
        row = {
            "task": task,
            "policies": sorted(hit),
            "old_answers": sum(r < rank[current] for r in ranks),
            "versions": sorted({str(v) for v in part["guideline_version"]}),
        }
        (already if task in sent_now else tasks).append(row)
    gold_answered = {t: set().union(*p["label"]) for t, p in answers[answers["task"].isin(gold_sets)].groupby("task")}
    for task in sorted(set(gold_sets) | set(gold_answered)):
        if not str(task).startswith(GOLD_PREFIX) and task not in gold_sets:
            continue
        chosen = set(gold_sets.get(task, frozenset())) | gold_answered.get(task, set())
        version = (gold_versions or {}).get(task, first_version)
        hit = _selecting(tax, rank, since_rank, gv.rank_of(rank, version), chosen)
        if hit:
            gold_rows.append({"task": task, "policies": sorted(hit), "gold_version": version})
    return RelabelPlan(
        current,
        pd.DataFrame(tasks, columns=TASK_COLUMNS),
        pd.DataFrame(already, columns=TASK_COLUMNS),
        pd.DataFrame(gold_rows, columns=GOLD_COLUMNS),
        changes,
    )


# --- a workspace --------------------------------------------------------------------------------------------


def counted_answers(ws: Workspace, spec: Spec, tax: Taxonomy, inputs: dict[str, Any] | None = None) -> pd.DataFrame:
    """ANSWER_COLUMNS for the workspace's pulled answers that count (the quality pass's: latest per annotator, not
    cancelled, not excluded by qualification, not superseded by an earlier relabel), with their versions."""
    inputs = inputs or load_inputs(ws)
    decision = workspace_decision(ws, spec.qualification, inputs)
    cancelled = list(inputs.get("cancelled") or [])
    excluded = set(decision.excluded if decision else []) | set(gv.workspace_superseded(ws, cancelled, tax))
    latest = qi.latest_annotations(inputs["labels"], cancelled)
    latest = latest[~latest["annotation_id"].isin(excluded)]
    if latest.empty:
        return pd.DataFrame(columns=ANSWER_COLUMNS)
    sets = qi.policy_sets(latest)[["task", "annotator", "label"]]
    ids = latest.groupby(["external_id", "annotator"], sort=False)["annotation_id"].max().rename("annotation_id")
    sets = sets.merge(ids, left_on=["task", "annotator"], right_index=True, how="left")
    versions = gv.workspace_answer_versions(ws).set_index("annotation_id")["guideline_version"]
    sets["guideline_version"] = sets["annotation_id"].map(versions)
    gold_flags = latest.groupby("external_id")["is_gold"].max() if "is_gold" in latest else pd.Series(dtype=bool)
    sets["is_gold"] = sets["task"].map(gold_flags).fillna(False).astype(bool)
    return sets[ANSWER_COLUMNS].reset_index(drop=True)


def workspace_plan(ws: Workspace, spec: Spec, tax: Taxonomy, since: str | None = None) -> RelabelPlan:
    """`plan_relabel` on the workspace's last pull (run `smo pull` first), its gold answers and earlier relabels."""
    if spec.guidelines_version != tax.version:
        raise ConfigError(
            f"the spec's guidelines_version {spec.guidelines_version!r} is not the taxonomy's {tax.version!r}"
        )
    if not tax.changelog:
        raise ConfigError("taxonomy.yaml has no changelog: add one naming the policies each version changed")
    inputs = load_inputs(ws)
    answers = counted_answers(ws, spec, tax, inputs)
    gold = qi.gold_policy_sets(inputs.get("gold"))
    review = gv.read_gold_review(ws)
    reviewed = {k: v.get("version") for k, v in review.items() if v.get("reviewed_at")}
    history = read_history(ws)
    gold_versions = {k: reviewed.get(k, history[0]["version"] if history else None) for k in gold["task"]}
    plan = plan_relabel(answers, gold, tax, since, gv.read_requests(ws), gold_versions)
    pending = {k for k, v in review.items() if not v.get("reviewed_at") and v.get("version") == tax.version}
    if pending:  # listed by an earlier run for this version: still listed until reviewed
        extra = pd.DataFrame(
            [
                {"task": k, "policies": review[k].get("policies", []), "gold_version": None}
                for k in sorted(pending - set(plan.gold["task"]))
            ],
            columns=GOLD_COLUMNS,
        )
        plan = replace(plan, gold=pd.concat([plan.gold, extra], ignore_index=True) if len(extra) else plan.gold)
    return plan


def _server_time(resp: httpx.Response) -> datetime:
    """Label Studio's clock from a response's Date header, one second later (its resolution): an answer created at
    or after it was certainly given under what the request set. The local clock when there is no header."""
    try:
        return parsedate_to_datetime(resp.headers["date"]).astimezone(UTC) + timedelta(seconds=1)
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC) + timedelta(seconds=1)


def set_guidelines(http: httpx.Client, project_id: int, tax: Taxonomy) -> tuple[str, datetime]:
    """Show the taxonomy's guidelines in the project (its instructions); their version and Label Studio's time."""
    pages = render_pages(tax)
    resp = http.patch(
        f"/api/projects/{project_id}",
        json={"expert_instruction": instructions_html(tax, pages), "show_instruction": True},
    )
    if resp.status_code >= 300:
        raise LabelStudioError(f"Label Studio answered {resp.status_code} setting project {project_id}'s guidelines")
    return pages_version(tax, pages), _server_time(resp)


@dataclass
class RelabelOutcome:
    """What one run did (or, dry, would do)."""

    plan: RelabelPlan
    dry_run: bool
    sent: int = 0
    resent: int = 0
    guidelines_switched: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures for the CLI."""
        p = self.plan
        return {
            "version": p.version,
            "changes": p.changes,
            "dry_run": self.dry_run,
            "tasks": len(p.tasks),
            "old_answers": int(p.tasks["old_answers"].sum()) if len(p.tasks) else 0,
            "already_sent": len(p.already),
            "sent": self.sent,
            "resent": self.resent,
            "guidelines_switched": self.guidelines_switched,
            "by_policy": p.by_policy(),
            "task_ids": [str(t) for t in p.tasks["task"]],
            "gold_to_review": [
                {"task": str(r.task), "policies": list(r.policies)} for r in p.gold.itertuples(index=False)
            ],
            "notes": self.notes,
        }


def _task_ids(ws: Workspace) -> dict[str, int]:
    labels = load_inputs(ws)["labels"]
    pairs = labels[["external_id", "task"]].dropna().drop_duplicates("external_id")
    return {str(k): int(v) for k, v in zip(pairs["external_id"], pairs["task"])}


def apply_relabel(
    ws: Workspace, spec: Spec, tax: Taxonomy, url: str, token: str, since: str | None = None
) -> RelabelOutcome:
    """Switch the project's guidelines to the taxonomy's version and send back what the plan finds (see the module
    docstring), under the workspace lock; idempotent."""
    project_id = (ws.project() or {}).get("project_id")
    if not project_id:
        raise InputError(f"no project recorded in {ws.root}; run `smo launch --spec SPEC --data FILE` first")
    now = datetime.now(UTC).isoformat()
    with workspace_lock(ws, "relabel"):
        plan = workspace_plan(ws, spec, tax, since)
        outcome = RelabelOutcome(plan, dry_run=False)
        requests = gv.read_requests(ws)
        ids = _task_ids(ws)
        with http_client(url, token, timeout=300) as http:
            history = read_history(ws)
            if not history or history[-1]["version"] != tax.version:  # the switch: guidelines first, then the record
                guidelines, since_at = set_guidelines(http, int(project_id), tax)
                outcome.guidelines_switched = record_version(ws, tax.version, guidelines, since_at, "relabel")
            held = {t.task_id: t for t in task_overlaps(http, int(project_id))}
            if len(requests):  # recorded before a crash, not held by Label Studio yet
                wanted = requests.groupby("task_id")["to_overlap"].max()
                for task_id, overlap in wanted.items():
                    task = held.get(int(task_id))
                    if task is not None and task.overlap < overlap and task.answers < overlap:
                        raise_task_overlap(http, task.task_id, int(overlap), task.answers)
                        held[task.task_id] = replace(task, overlap=int(overlap))
                        outcome.resent += 1
            rows: list[dict[str, Any]] = []
            for row in plan.tasks.itertuples(index=False):
                task_id = ids.get(str(row.task))
                task = held.get(task_id) if task_id is not None else None
                if task is None:
                    outcome.notes.append(f"{row.task}: no longer in Label Studio, not sent back")
                    continue
                rows.append(
                    {
                        "task": str(row.task),
                        "task_id": task.task_id,
                        "version": tax.version,
                        "policies": "|".join(row.policies),
                        "old_answers": int(row.old_answers),
                        "to_overlap": task.answers + max(1, int(row.old_answers)),
                        "requested_at": now,
                        "answers": task.answers,
                    }
                )
            if rows:
                new = pd.DataFrame(rows)
                write_parquet(gv.requests_path(ws), pd.concat([requests, new[gv.REQUEST_COLUMNS]], ignore_index=True))
                for r in rows:
                    raise_task_overlap(http, int(r["task_id"]), int(r["to_overlap"]), int(r["answers"]))
                outcome.sent = len(rows)
        _list_gold(ws, plan, tax.version, now)
    return outcome


def _list_gold(ws: Workspace, plan: RelabelPlan, version: str, now: str) -> None:
    """Record the gold items to review (each once per version; a review recorded earlier is kept)."""
    items = gv.read_gold_review(ws)
    changed = False
    for row in plan.gold.itertuples(index=False):
        key = str(row.task)
        if items.get(key, {}).get("version") == version:
            continue
        items[key] = {"version": version, "policies": list(row.policies), "listed_at": now, "reviewed_at": None}
        changed = True
    if changed:
        write_json(gv.gold_review_path(ws), {"items": items})


def review_gold(ws: Workspace, keys: list[str]) -> dict[str, list[str]]:
    """Record that gold items listed for review were reviewed (their gold answer checked, and corrected with a
    re-launch of the corrected gold file where it was wrong): they are scored again. Idempotent."""
    items = gv.read_gold_review(ws)
    out: dict[str, list[str]] = {"reviewed": [], "already": []}
    unknown = [k for k in keys if k not in items]
    if unknown:
        listed = ", ".join(sorted(items)) or "none listed"
        raise InputError(f"{unknown[0]}: not a gold item listed for review (listed: {listed})")
    now = datetime.now(UTC).isoformat()
    for key in keys:
        if items[key].get("reviewed_at"):
            out["already"].append(key)
        else:
            items[key]["reviewed_at"] = now
            out["reviewed"].append(key)
    if out["reviewed"]:
        write_json(gv.gold_review_path(ws), {"items": items})
    return out
