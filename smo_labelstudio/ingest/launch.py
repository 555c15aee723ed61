"""Launching a labeling batch: plan it (read, validate, de-duplicate, sample, mix in gold), then
import it batch by batch with pre-annotations, then write the run manifest.

The plan is saved in the workspace before anything is imported, keyed by its inputs, and every
batch is marked started and done around its import. A re-run of the same inputs loads the same plan
and imports only batches not done; a batch that was started but not marked done (a crash in between)
is looked up in Label Studio by its first task's `item_id` before it is sent again. Gold answers stay
in the workspace: Label Studio sees gold items exactly like others.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from smo_labelstudio.core.csvcells import safe_frame
from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.guideline_history import record_version
from smo_labelstudio.core.keys import item_key
from smo_labelstudio.core.lock import workspace_lock
from smo_labelstudio.core.spec import Spec
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.core.workspace import (
    Workspace,
    WorkspaceFileError,
    read_json,
    read_table,
    task_external_id,
    write_json,
    write_parquet,
)
from smo_labelstudio.ingest.items import QUARANTINE_COLUMNS, Prepared, prepare, stratified_sample
from smo_labelstudio.ingest.query import Query, QuerySource, open_query
from smo_labelstudio.ingest.queue import order_batch
from smo_labelstudio.ingest.sources import Source, file_digest, read_rows
from smo_labelstudio.labelstudio import client
from smo_labelstudio.labelstudio.configs import labeling_interface

Progress = Callable[[int, int], None]
GOLD_CONTROLS = ("policy", "severity")


class LaunchError(InputError):
    """The launch cannot go ahead as asked; the message says why and what to change."""


@dataclass
class Plan:
    """Everything a launch will do, saved before it does any of it."""

    workspace: Workspace
    plan_id: str
    project_id: int
    items: pd.DataFrame  # ITEM_COLUMNS + batch, in import order
    counts: dict
    versions: dict
    label_config: str
    overlap: tuple[int, int] = (1, 100)  # the spec's (`maximum_annotations`, cohort %), applied after the last batch
    gold_corrections: dict = field(default_factory=dict)  # `_merge_gold_answers`' report, kept in plan.json
    source: dict = field(default_factory=dict, kw_only=True)  # where this run's rows came from (the manifest's)
    queue_order: str = "source"  # the spec's `queue.order`: each batch's import order (ingest/queue.py)
    seed: int = 0  # the launch's seed (the random queue order shuffles each batch with it)

    @property
    def folder(self) -> Path:
        return self.workspace.runs / self.plan_id

    @property
    def batches(self) -> list[int]:
        return sorted(self.items["batch"].unique().tolist())


def overlap_settings(spec: Spec) -> tuple[int, int]:
    """Label Studio Community's two-tier overlap (`maximum_annotations`, cohort %) for the spec's plan."""
    o = spec.overlap
    if o.annotators == 1:
        return (o.extra_annotators, int(round(o.share * 100))) if o.share > 0 else (1, 100)
    if o.share == 0 or o.extra_annotators == o.annotators:
        return o.annotators, 100
    raise LaunchError(
        f"overlap: Label Studio Community gives one annotator to most tasks and N to a share; "
        f"annotators={o.annotators} with share={o.share} cannot be expressed. Use annotators: 1 "
        f"(and extra_annotators for the share) or share: 0"
    )


def _file_digest(path: Path | None) -> str:
    """A file's SHA-256 (read in chunks: constant memory), part of the plan's key; `-` for no file."""
    return file_digest(Path(path)) if path else "-"


def _known_items(ws: Workspace, project_id: int) -> dict[str, str]:
    """Item ids and content hashes of every item a launch of this workspace imported into this project (done
    batches; a plan saved before plans named their project is this project's unless `--adopt` moved the
    workspace since); `plan_launch` adds the item ids the project holds, which a lost workspace no longer knows."""
    known: dict[str, str] = {}
    for plan_file in sorted(ws.runs.glob("*/plan.parquet")):
        done = set((read_json(plan_file.parent / "batches.json") or {}).get("done", []))
        if not done or (read_json(plan_file.parent / "plan.json") or {}).get("project_id", project_id) != project_id:
            continue
        plan = read_table(plan_file, columns=["item_id", "content_hash", "batch"])
        for item, digest in plan.loc[plan["batch"].isin(done), ["item_id", "content_hash"]].itertuples(index=False):
            known[item] = item
            known[digest] = item
    return known


def read_gold(
    path: Path, spec: Spec, labels: list[str], known: dict[str, str], label_config: str, key: bytes | None = None
) -> tuple[Prepared, pd.DataFrame]:
    """Gold items (prepared like any rows, kind "gold") and their answers: `policy` (policy ids,
    `|`-separated) and optional `severity`. A row with an unknown or missing answer is quarantined. Answers
    cover the items to import and the gold items the project already holds (a corrected answer replaces theirs)."""
    rows = read_rows(path)
    good, bad = [], []
    for row in rows:
        fields = row.fields or {}
        policies = [p.strip() for p in str(fields.get("policy") or "").split("|") if p.strip()]
        unknown = sorted(set(policies) - set(labels))
        severity = fields.get("severity")
        if row.fields is not None and (not policies or unknown):
            bad.append(
                {
                    "file": str(path),
                    "row": row.number,
                    "lines": row.lines,
                    "external_id": fields.get(spec.columns.id or "id"),
                    "reason": "gold answer `policy` "
                    + ("has unknown ids " + ", ".join(unknown) if unknown else "is empty"),
                    "raw": row.raw[:500],
                }
            )
        elif row.fields is not None and severity not in (None, "") and str(severity).strip() not in "1234":
            bad.append(
                {
                    "file": str(path),
                    "row": row.number,
                    "lines": row.lines,
                    "external_id": fields.get(spec.columns.id or "id"),
                    "reason": f"gold answer `severity` {severity!r} is not 1-4",
                    "raw": row.raw[:500],
                }
            )
        else:
            good.append(row)
    prepared = prepare(good, spec.columns, **_needs(label_config), file=str(path), kind="gold", known=known, key=key)
    prepared.quarantine = pd.concat(
        [prepared.quarantine, pd.DataFrame(bad, columns=QUARANTINE_COLUMNS)], ignore_index=True
    )
    prepared.rows_read = rows.records  # the reader's count of the file's records, not of what `prepare` saw
    prepared.accounted = rows.accounted()
    by_row = {r.number: r.fields for r in good if r.fields is not None}  # a row without fields is no item
    answers = []
    held = prepared.duplicates[prepared.duplicates["item_id"].isin(known)]  # this gold item itself, imported before
    held = held[["row", "external_id", "item_id"]].drop_duplicates("item_id")
    for item in pd.concat([prepared.items[["row", "external_id", "item_id"]], held]).itertuples(index=False):
        fields = by_row[item.row]
        for policy in str(fields["policy"]).split("|"):
            if policy.strip():
                answers.append(
                    {
                        "external_id": task_external_id(item.external_id, True),
                        "item_id": item.item_id,
                        "control": "policy",
                        "label": policy.strip(),
                    }
                )
        if fields.get("severity") not in (None, ""):
            answers.append(
                {
                    "external_id": task_external_id(item.external_id, True),
                    "item_id": item.item_id,
                    "control": "severity",
                    "label": str(fields["severity"]).strip(),
                }
            )
    return prepared, pd.DataFrame(answers, columns=["external_id", "item_id", "control", "label"])


def _needs(label_config: str) -> dict:
    """Which content a label config shows (`$text`, `$image`): rows without it are refused."""
    return {"needs_text": "$text" in label_config, "needs_image": "$image" in label_config}


def ensure_project(
    spec: Spec,
    url: str,
    token: str,
    ui: dict | None = None,
    *,
    home: Path | None = None,
    adopt: int | None = None,
) -> int:
    """The workspace's project (`resolve_project`), with the spec's overlap set; under the workspace lock, so two
    first launches never create two projects."""
    ui = ui or labeling_interface(spec.config)
    ws = Workspace.for_title(spec.title, home)
    with workspace_lock(ws, "launch"):
        project_id = resolve_project(spec, url, token, ws, ui, adopt)
        client.set_overlap(url, token, project_id, *overlap_settings(spec))
    return project_id


def resolve_project(spec: Spec, url: str, token: str, ws: Workspace, ui: dict, adopt: int | None = None) -> int:
    """Which project this launch fills. The id is the identity, never the title:

    - `adopt` given: that project becomes the workspace's (its label config and guidelines set to the spec's);
    - a project recorded: that one, if Label Studio still has it under the title recorded; a project that is
      gone, or renamed since, is refused in one line naming `--adopt` (a rename confirmed with `--adopt <same id>`
      is recorded, and later launches take it silently);
    - none recorded: a new project, recorded before any further call; never one found by title (another
      project with our title is someone else's). A launch killed between creating and recording it finds its
      own project again by the marker it put in the description (`project.pending.json`)."""
    if adopt is not None:
        return _adopt(spec, url, token, ws, ui, adopt)
    recorded = ws.project()
    if recorded and recorded.get("project_id") is not None:
        project_id = int(recorded["project_id"])
        title = client.project_title(url, token, project_id)
        expected = recorded.get("ls_title", recorded.get("title"))
        if title is None:
            raise LaunchError(
                f"project {project_id} (recorded in {ws.project_file}) is gone from Label Studio at {url}: "
                f"re-run `smo launch` with --adopt PROJECT_ID to continue in another project (an empty one works)"
            )
        if title != expected:
            raise LaunchError(
                f"project {project_id} (recorded in {ws.project_file}) is now titled {title!r}, not {expected!r}: "
                f"re-run `smo launch` with --adopt {project_id} to keep it, or --adopt PROJECT_ID for another"
            )
        return project_id
    return _create(spec, url, token, ws, ui)


def _record(ws: Workspace, spec: Spec, url: str, project_id: int, ls_title: str, adopted: bool) -> None:
    ws.record_project(
        {
            "project_id": project_id,
            "url": f"{url}/projects/{project_id}/data",
            "title": spec.title,
            "config": spec.config,
            "ls_title": ls_title,
            "adopted": adopted,
        }
    )


def _create(spec: Spec, url: str, token: str, ws: Workspace, ui: dict) -> int:
    ls = client.connect(url, token)
    pending = read_json(ws.pending_project_file)
    if pending and pending.get("title") == spec.title:  # a launch killed right after creating it
        found = client.find_project(ls, spec.title, marker=pending["marker"])
        if found is not None:
            _record(ws, spec, url, found, spec.title, adopted=False)
            ws.pending_project_file.unlink(missing_ok=True)
            return found
    else:
        pending = {"marker": f"smo-launch-{secrets.token_hex(8)}", "title": spec.title}
        write_json(ws.pending_project_file, pending)
    project_id = client.create_project(
        ls,
        spec.title,
        ui["label_config"],
        instructions=ui["instructions"],
        description=f"Created by `smo launch`; config {spec.config}, taxonomy {ui['taxonomy_version']}, "
        f"guidelines {ui['guidelines_version']} ({pending['marker']}).",
    )
    _record(ws, spec, url, project_id, spec.title, adopted=False)  # first, before any other call can fail
    ws.pending_project_file.unlink(missing_ok=True)
    record_version(ws, ui["taxonomy_version"], ui["guidelines_version"], None, "launch")  # from the beginning
    return project_id


def _adopt(spec: Spec, url: str, token: str, ws: Workspace, ui: dict, project_id: int) -> int:
    title = client.project_title(url, token, project_id)
    if title is None:
        raise LaunchError(f"--adopt {project_id}: Label Studio at {url} has no project {project_id} this token can see")
    client.update_project(
        url,
        token,
        project_id,
        label_config=ui["label_config"],
        expert_instruction=ui["instructions"],
        show_instruction=bool(ui["instructions"]),
    )
    previous = ws.project()
    if previous and previous.get("project_id") not in (None, project_id):
        _stamp_plans(ws, int(previous["project_id"]))
    _record(ws, spec, url, project_id, title, adopted=True)
    ws.pending_project_file.unlink(missing_ok=True)
    since = datetime.now(UTC) + timedelta(seconds=1)  # its earlier answers were given under unknown guidelines
    record_version(ws, ui["taxonomy_version"], ui["guidelines_version"], since, "launch --adopt")
    return project_id


def _stamp_plans(ws: Workspace, project_id: int) -> None:
    """Name the project of plans saved before plans recorded one, as the workspace moves to another project:
    their items are in the old project, not the new one."""
    for plan_json in ws.runs.glob("*/plan.json"):
        saved = read_json(plan_json) or {}
        if "project_id" not in saved:
            write_json(plan_json, {**saved, "project_id": project_id})


def plan_launch(
    spec: Spec,
    data: Path | Query,
    url: str,
    token: str,
    gold: Path | None = None,
    sample: float | int | None = None,
    batch_size: int = 10_000,
    seed: int = 0,
    home: Path | None = None,
    adopt: int | None = None,
) -> Plan:
    """Read, validate, de-duplicate, sample and mix in gold; save the plan (or load the saved one). The rows come
    from a file or a `Query` (ingest/query.py), keyed by their digest. The project is the workspace's
    (`resolve_project`; `adopt` names another), part of the plan's key. Holds the workspace lock (core/lock.py);
    hold it around plan, imports and `finish` to make the whole launch one (the flow and `launch` do)."""
    with workspace_lock(Workspace.for_title(spec.title, home), "launch"), _opened(data) as source:
        plan = _plan_launch(spec, source, url, token, gold, sample, batch_size, seed, home, adopt)
        return replace(plan, source=source.describe())


@contextmanager
def _opened(data: Path | Query) -> Iterator[Source | QuerySource]:
    """A file's records, or a query's rows on an open read-only connection (closed on leaving)."""
    if isinstance(data, Query):
        with open_query(data) as rows:
            yield rows
    else:
        yield read_rows(data)


def _plan_launch(
    spec: Spec,
    source: Source | QuerySource,
    url: str,
    token: str,
    gold: Path | None,
    sample: float | int | None,
    batch_size: int,
    seed: int,
    home: Path | None,
    adopt: int | None,
) -> Plan:
    if batch_size < 1:
        raise LaunchError("batch size must be at least 1")
    digest = source.digest()  # first: a query that cannot run fails before a project is created
    ui = labeling_interface(spec.config)
    ws = Workspace.for_title(spec.title, home)
    project_id = ensure_project(spec, url, token, ui, home=home, adopt=adopt)
    inputs = json.dumps(
        {
            "project_id": project_id,
            "spec": _plan_spec(spec),
            "data": digest,
            "gold": _file_digest(gold),
            "sample": sample,
            "batch_size": batch_size,
            "seed": seed,
        },
        sort_keys=True,
    )
    plan_id = hashlib.sha256(inputs.encode()).hexdigest()[:12]
    with _overlap_lock:
        _failed_plans.discard(plan_id)  # a new run of the plan: batches go in under IMPORT_OVERLAP again
    folder = ws.runs / plan_id
    versions = {
        "taxonomy": ui["taxonomy_version"],
        "guidelines": ui["guidelines_version"],
        "config": spec.config,
        "config_sha256": hashlib.sha256(ui["label_config"].encode()).hexdigest()[:16],
    }
    label_config = ui["label_config"]
    if (folder / "plan.parquet").exists():  # the same inputs again: resume the saved plan
        saved = read_json(folder / "plan.json")
        if saved is None:  # written before plan.parquet: gone only if removed by hand
            raise WorkspaceFileError(folder / "plan.json", "missing beside plan.parquet")
        return Plan(
            ws,
            plan_id,
            project_id,
            read_table(folder / "plan.parquet"),
            saved["counts"],
            versions,
            label_config,
            overlap_settings(spec),
            saved.get("gold_corrections", {}),
            spec.queue.order,
            seed,
        )

    known = _known_items(ws, project_id)
    for item in client.task_ids_by_item(url, token, project_id):  # a lost workspace or an abandoned plan
        known.setdefault(item, item)
    key = item_key(home)  # item ids are keyed per deployment: gold and work look alike to annotators
    header = source.header if isinstance(source, QuerySource) else None  # a query's columns, known with no row
    prepared = prepare(
        source, spec.columns, **_needs(ui["label_config"]), file=source.name, known=known, key=key, header=header
    )
    items = prepared.items
    present = prepared.duplicates["duplicate_of"].str.startswith("project item")
    if sample is not None:
        before = len(items)
        items = stratified_sample(items, sample, ["language", "source"], seed)
        sampled_out = before - len(items)
    else:
        sampled_out = 0
    gold_items, answers, gold_quarantine, gold_rows, gold_accounted = items.head(0), None, None, 0, True
    if gold is not None and spec.gold_rate > 0:
        gold_prepared, answers = read_gold(gold, spec, load_taxonomy().ids, known, ui["label_config"], key)
        gold_rows, gold_quarantine = gold_prepared.rows_read, gold_prepared.quarantine
        gold_accounted = gold_prepared.accounted
        wanted = math.ceil(len(items) * spec.gold_rate / (1 - spec.gold_rate)) if len(items) else 0
        # a gold item whose text is also a work item of this launch would show an annotator the same text twice
        pool = gold_prepared.items[~gold_prepared.items["content_hash"].isin(items["content_hash"])]
        gold_items = pool.sample(n=min(wanted, len(pool)), random_state=seed) if wanted else pool.head(0)
        answers = answers[answers["item_id"].isin(gold_items["item_id"]) | answers["item_id"].isin(known)]
    batch = pd.concat([items, gold_items], ignore_index=True)
    batch = batch.sample(frac=1, random_state=seed).reset_index(drop=True)  # gold spread through the batch
    batch["batch"] = np.arange(len(batch)) // batch_size
    batch["is_gold"] = batch["is_gold"].astype(bool)  # an empty frame's columns come back as object
    counts = {
        "rows_read": source.records,  # counted by the reader, apart from where `prepare` put each row
        # each physical line (Parquet row) of both files is in one record, blank or a header, by an independent count
        "lines_accounted": source.accounted() and prepared.rows_read == source.records and gold_accounted,
        "to_import": int((~batch["is_gold"]).sum()),
        "duplicates": int((~present).sum()),
        "already_present": int(present.sum()),
        "quarantined": len(prepared.quarantine),
        "sampled_out": sampled_out,
        "gold": len(gold_items),
        "gold_rows_read": gold_rows,
        "gold_quarantined": 0 if gold_quarantine is None else len(gold_quarantine),
    }
    quarantine = pd.concat(
        [q for q in (prepared.quarantine, gold_quarantine) if q is not None and len(q)] or [prepared.quarantine],
        ignore_index=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    write_parquet(folder / "quarantine.parquet", quarantine.astype(str))
    write_parquet(folder / "duplicates.parquet", prepared.duplicates)
    corrections = _merge_gold_answers(ws, answers) if answers is not None and len(answers) else {}
    write_json(
        folder / "plan.json",
        {
            "plan_id": plan_id,
            "project_id": project_id,
            "counts": counts,
            "gold_corrections": corrections,
            "data": source.name,
            "source": source.describe(),
            "gold": str(gold) if gold else None,
            "created": time.time(),
        },
    )
    write_parquet(folder / "plan.parquet", batch)  # last: its presence means the plan is complete
    _append_quarantine(ws, quarantine, plan_id)
    return Plan(
        ws,
        plan_id,
        project_id,
        batch,
        counts,
        versions,
        label_config,
        overlap_settings(spec),
        corrections,
        spec.queue.order,
        seed,
    )


def _plan_spec(spec: Spec) -> dict:
    """The spec as part of a plan's key: who adjudicates and whether the model votes in consensus are no part of
    what a launch imports; the default queue order is left out, so plans saved before it existed keep their ids."""
    dump = spec.model_dump(exclude={"adjudicators"})
    dump["quality"].pop("model_voter", None)
    if spec.queue.order == "source":
        dump.pop("queue", None)
    return dump


def _merge_gold_answers(ws: Workspace, answers: pd.DataFrame) -> dict:
    """Save the gold answers: each (item, control) the new answers give replaces the saved answer of that item and
    control (a corrected gold file corrects, never adds to, an item's answer, imported or not); returns what
    changed: `corrected` (items whose saved answer changed) and `corrected_items` (their external ids)."""
    old = read_table(ws.gold_answers) if ws.gold_answers.exists() else answers.head(0)
    keys = ["item_id", "control"]
    replaced = old.merge(answers[keys].drop_duplicates(), on=keys, how="inner")
    before = replaced.groupby(keys)["label"].agg(frozenset)
    after = answers.merge(replaced[keys].drop_duplicates(), on=keys).groupby(keys)["label"].agg(frozenset)
    changed = sorted({item for item, _ in before.index[before != after.reindex(before.index)]})
    kept = old.merge(answers[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    kept = kept[kept["_merge"] == "left_only"].drop(columns="_merge")
    merged = pd.concat([kept, answers.drop_duplicates([*keys, "label"])], ignore_index=True)
    write_parquet(ws.gold_answers, merged[list(old.columns) if len(old.columns) else list(answers.columns)])
    ids = answers.drop_duplicates("item_id").set_index("item_id")["external_id"]
    return {"corrected": len(changed), "corrected_items": sorted(str(ids[item]) for item in changed)}


def _append_quarantine(ws: Workspace, quarantine: pd.DataFrame, plan_id: str) -> None:
    """The workspace-wide quarantine CSV a project manager opens: one line per refused row."""
    if quarantine.empty:
        return
    frame = quarantine.assign(run=plan_id)
    if ws.quarantine.exists():
        with open(ws.quarantine, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if header != list(frame.columns):  # written before a column was added (`lines`): rewritten once, aligned
            old = pd.read_csv(ws.quarantine, dtype=str, keep_default_na=False)
            safe_frame(pd.concat([old, frame], ignore_index=True)[list(frame.columns)]).to_csv(
                ws.quarantine, index=False
            )
            return
    safe_frame(frame).to_csv(ws.quarantine, mode="a", header=not ws.quarantine.exists(), index=False)


# batches.json is read, changed and written by the threads of one launch (`import_all`'s workers); other processes
# are kept out by the workspace lock every entry point holds (core/lock.py).
_batch_lock = threading.Lock()


def _batch_state(plan: Plan) -> dict:
    return read_json(plan.folder / "batches.json") or {"started": [], "done": []}


def _mark(plan: Plan, batch: int, state: str, result: dict | None = None) -> None:
    with _batch_lock:
        current = _batch_state(plan)
        if batch not in current[state]:
            current[state].append(batch)
        if result is not None:
            current.setdefault("results", {})[str(batch)] = result
        write_json(plan.folder / "batches.json", current)


def pending_batches(plan: Plan) -> list[int]:
    """Batches not yet imported, in order."""
    done = set(_batch_state(plan)["done"])
    return [b for b in plan.batches if b not in done]


def predict(
    backend: tuple[str, tuple[str, str]] | None, label_config: str, texts: list[str]
) -> tuple[list | None, str | None]:
    """Predictions for a batch from the ML backend, or (None, why not) when it cannot give them."""
    if backend is None:
        return None, "no ML backend configured"
    url, auth = backend
    try:
        resp = httpx.post(
            f"{url}/predict",
            auth=auth,
            timeout=120,
            json={"tasks": [{"data": {"text": t}} for t in texts], "label_config": label_config},
        )
    except httpx.HTTPError as exc:
        return None, f"ML backend unreachable ({exc.__class__.__name__})"
    if resp.status_code != 200:
        try:
            return None, f"ML backend answered {resp.status_code}: {resp.json().get('error', '')[:200]}"
        except ValueError:
            return None, f"ML backend answered {resp.status_code}"
    results = resp.json().get("results")
    if not isinstance(results, list) or len(results) != len(texts):
        return None, "ML backend answered with a different number of predictions than tasks"
    return results, None


PREDICTION_COLUMNS = ["item_id", "model_version", "score", "policy", "severity", "label_scores"]


def prediction_rows(rows: pd.DataFrame, predictions: list[dict]) -> pd.DataFrame:
    """The pre-annotations we imported, kept in the workspace for model evaluation: chosen policies
    (`|`-joined), severity, task score and every policy's probability (JSON)."""
    out = []
    for item, pred in zip(rows["item_id"], predictions):
        by_control = {r.get("from_name"): r for r in pred.get("result", [])}
        policy, severity = by_control.get("policy", {}), by_control.get("severity", {})
        out.append(
            {
                "item_id": item,
                "model_version": pred.get("model_version"),
                "score": pred.get("score"),
                "policy": "|".join(policy.get("value", {}).get("choices", [])),
                "severity": "|".join(severity.get("value", {}).get("choices", [])) or None,
                "label_scores": json.dumps(policy.get("label_scores", {}), sort_keys=True),
            }
        )
    return pd.DataFrame(out, columns=PREDICTION_COLUMNS)


# While batches go in, the project asks for one annotator per task; the spec's overlap is applied once,
# after the last batch. Label Studio re-plans the overlap cohort across the whole project after every import
# into a project with a cohort (`maximum_annotations` > 1, cohort < 100 %), so ten batches of 10,000 would
# pay 1 + 2 + ... + 10 re-plans of 10,000 tasks; this way a launch pays one, as a single import request does.
IMPORT_OVERLAP = (1, 100)
_overlap_lock = threading.Lock()
_failed_plans: set[str] = set()  # plans a batch failed for in this run: their other batches keep the spec's overlap


def _replans(overlap: tuple[int, int]) -> bool:
    """Whether Label Studio re-plans the cohort on every import under these overlap settings."""
    return overlap[0] > 1 and overlap[1] < 100


def import_batch(plan: Plan, batch: int, url: str, token: str, backend: tuple[str, tuple[str, str]] | None) -> dict:
    """Pre-annotate and import one batch, exactly once (see the module docstring); after the plan's last
    batch, apply the spec's overlap (one re-plan, see `IMPORT_OVERLAP`). An import that fails puts the spec's
    overlap back before the error goes up (best effort: a killed launch's re-run sets it in `ensure_project`).
    Under the workspace lock: another process's launch finds the batch done, never imports it again."""
    with workspace_lock(plan.workspace, "launch"):
        try:
            result = _import_batch(plan, batch, url, token, backend)
        except Exception:
            _drop_ahead(plan)
            if _replans(plan.overlap):
                try:
                    with _overlap_lock:
                        _failed_plans.add(plan.plan_id)
                        client.set_overlap(url, token, plan.project_id, *plan.overlap)
                except Exception:  # noqa: BLE001, S110 - Label Studio failing is what the raised error reports
                    pass
            raise
        if _replans(plan.overlap) and (plan.plan_id in _failed_plans or not pending_batches(plan)):
            with _overlap_lock:
                client.set_overlap(url, token, plan.project_id, *plan.overlap)
        return result


Backend = tuple[str, tuple[str, str]] | None
BatchTasks = tuple[pd.DataFrame, list[dict], list | None, str | None]  # rows, tasks, predictions, why none
# The next batch's tasks (and pre-annotations), built on a thread of their own while this batch's import request
# is in Label Studio: one batch ahead, keyed by plan, batch and backend; nothing here touches the workspace.
_ahead: dict[tuple[str, int, Backend], Future[BatchTasks]] = {}
_ahead_lock = threading.Lock()
_builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smo-batch-ahead")


def batch_tasks(plan: Plan, batch: int, backend: Backend) -> BatchTasks:
    """A batch's rows and the tasks to send, with the backend's pre-annotations when it gives them (else why not),
    in the spec's queue order (ingest/queue.py): the order Label Studio serves them in."""
    rows = plan.items[plan.items["batch"] == batch]
    texts = rows["text"].fillna("").tolist()
    predictions, why = (
        (None, "the model predicts from text")
        if not rows["text"].notna().all()
        else predict(backend, plan.label_config, texts)
    )
    columns = [c for c in ("text", "image", "language") if rows[c].notna().any()]
    tasks: list[dict] = []
    for i, values in enumerate(zip(rows["item_id"], *(rows[c] for c in columns))):
        data = {"item_id": values[0]}
        for key, value in zip(columns, values[1:]):
            if value is not None and value == value:  # neither None nor NaN
                data[key] = value
        task: dict[str, object] = {"data": data}
        if predictions is not None:
            task["predictions"] = [predictions[i]]
        tasks.append(task)
    order = order_batch(
        plan.queue_order,
        predictions,
        rows["language"].tolist(),
        gold=rows["is_gold"].tolist(),
        seed=plan.seed * 1_000_003 + batch,
    )
    if order != list(range(len(order))):  # the import order is the order Label Studio serves them in
        rows, tasks = rows.iloc[order], [tasks[i] for i in order]
        predictions = [predictions[i] for i in order] if predictions is not None else None
    return rows, tasks, predictions, why


def _build_ahead(plan: Plan, batch: int, backend: Backend, started: list[int]) -> None:
    """Start building the pending batch after `batch` (one not started before: a started one is looked up first)."""
    later = [b for b in plan.batches if b > batch and b not in started]
    if later:
        with _ahead_lock:
            key = (plan.plan_id, later[0], backend)
            if key not in _ahead:
                _ahead[key] = _builder.submit(batch_tasks, plan, later[0], backend)


def _built(plan: Plan, batch: int, backend: Backend) -> BatchTasks:
    """The batch's tasks, built ahead when they were (dropping what was built for other batches), else now."""
    with _ahead_lock:
        mine = _ahead.pop((plan.plan_id, batch, backend), None)
    return mine.result() if mine is not None else batch_tasks(plan, batch, backend)


def _drop_ahead(plan: Plan) -> None:
    """Forget what was built ahead for a plan whose import stopped (a failed batch): its re-run builds again."""
    with _ahead_lock:
        for key in [k for k in _ahead if k[0] == plan.plan_id]:
            _ahead.pop(key).cancel()


def _import_batch(plan: Plan, batch: int, url: str, token: str, backend: tuple[str, tuple[str, str]] | None) -> dict:
    rows = plan.items[plan.items["batch"] == batch]
    state = _batch_state(plan)
    if batch in state["done"]:
        return state.get("results", {}).get(str(batch), {"imported": 0})
    if batch in state["started"]:
        if client.tasks_with_data(url, token, plan.project_id, "item_id", [rows["item_id"].iloc[0]]):
            # Whether its predictions went in with it is unknown: the backfill checks and adds what is missing.
            note = "found already imported after an interruption"
            _list_missing(plan, batch, rows, note)
            result = {
                "imported": len(rows),
                "gold": int(rows["is_gold"].sum()),
                "predictions": 0,
                "missing_predictions": len(rows),
                "note": note,
                "model_version": None,
            }
            _mark(plan, batch, "done", result)
            return result
    rows, tasks, predictions, why = _built(plan, batch, backend)
    _build_ahead(plan, batch, backend, state["started"])  # built while this batch is in Label Studio
    if _replans(plan.overlap) and len(pending_batches(plan)) > 1:  # the last one goes in under either setting
        with _overlap_lock:
            if plan.plan_id not in _failed_plans:  # after a failure, batches still queued keep the spec's
                client.set_overlap(url, token, plan.project_id, *IMPORT_OVERLAP)
    _mark(plan, batch, "started")
    imported = _send(plan, batch, rows, tasks, url, token)
    if predictions is not None:
        write_parquet(plan.folder / "predictions" / f"batch-{batch:05d}.parquet", prediction_rows(rows, predictions))
    else:
        _list_missing(plan, batch, rows, why or "")  # predict() always says why it gives none
    result = {
        "imported": imported,
        "gold": int(rows["is_gold"].sum()),
        "predictions": len(tasks) if predictions is not None else 0,
        "missing_predictions": 0 if predictions is not None else len(tasks),
        "model_version": predictions[0].get("model_version") if predictions else None,
        "note": why,
    }
    _mark(plan, batch, "done", result)
    return result


def _list_missing(plan: Plan, batch: int, rows: pd.DataFrame, why: str) -> None:
    """Add a batch's items to `missing_predictions.csv`: the list a project manager (or a later backfill) works from."""
    with _batch_lock:
        missing = plan.folder / "missing_predictions.csv"
        safe_frame(rows[["item_id", "external_id"]].assign(batch=batch, reason=why)).to_csv(
            missing, mode="a", header=not missing.exists(), index=False
        )


def _send(plan: Plan, batch: int, rows: pd.DataFrame, tasks: list[dict], url: str, token: str) -> int:
    """Import a batch, retrying (with the client's backoff) only when Label Studio cannot have taken it
    or we can see whether it did: after a 5xx, or a connection that could not be made, the batch's first
    `item_id` is looked up, and the import is sent again only if it is absent. An import that may still be
    running in Label Studio, its batch not yet visible to a lookup, is never re-sent: a timeout, a 504 (a
    proxy in front of Label Studio that stopped waiting: nginx's default is 60 s) or a connection cut after
    the batch was sent (a load balancer's idle timeout, or Label Studio killed). The error says to re-run,
    which looks the batch up first."""
    attempts, base = client.retry_policy()
    first, started, last = rows["item_id"].iloc[0], time.monotonic(), ""
    path = client.import_path(plan.project_id)

    def still_importing(what: str) -> client.LabelStudioUnavailable:
        return client.LabelStudioUnavailable(
            f"{what} to POST {path} (batch {batch}); Label Studio may still be importing it: re-run the launch "
            f"(the batch is looked up by item_id before it is sent again)"
        )

    for attempt in range(1, attempts + 1):
        try:
            return client.import_json(url, token, plan.project_id, tasks)
        except httpx.TimeoutException:
            raise still_importing(f"no answer within SMO_LS_TIMEOUT={client.ls_timeout(1800):g} s") from None
        except httpx.ConnectError as exc:  # never reached Label Studio
            last = exc.__class__.__name__
        except (httpx.NetworkError, httpx.RemoteProtocolError):
            raise still_importing("the connection broke after the batch was sent") from None
        except client.LabelStudioError as exc:
            if getattr(exc, "status", 0) == 504:
                raise still_importing("a gateway timeout (HTTP 504) from the proxy in front of Label Studio") from None
            if getattr(exc, "status", 0) < 500:
                raise
            last = f"HTTP {exc.status}"
        if client.tasks_with_data(url, token, plan.project_id, "item_id", [first]):
            return len(tasks)  # it went in before the failure
        if attempt < attempts:
            time.sleep(client.backoff(attempt, base))
    raise client.unavailable("POST", path, attempts, time.monotonic() - started, last)


def backfill_predictions(
    plan: Plan, url: str, token: str, backend: tuple[str, tuple[str, str]] | None, chunk: int = 1000
) -> dict:
    """Pre-annotate the tasks an earlier run imported without predictions (`missing_predictions.csv`),
    now that the backend answers: predictions are posted through Label Studio's predictions API, a task
    that already has a prediction of the same model version is skipped (a re-run adds none twice), and
    the list keeps only what is still missing (it is removed when empty). Under the workspace lock."""
    with workspace_lock(plan.workspace, "launch"):
        return _backfill_predictions(plan, url, token, backend, chunk)


def _backfill_predictions(
    plan: Plan, url: str, token: str, backend: tuple[str, tuple[str, str]] | None, chunk: int
) -> dict:
    missing_file = plan.folder / "missing_predictions.csv"
    out: dict[str, int | str | None] = {"backfilled": 0, "still_missing": 0, "problem": None}
    if not missing_file.exists():
        return out
    missing = pd.read_csv(missing_file, dtype=str)
    items = plan.items.set_index("item_id")
    missing = missing[missing["item_id"].isin(items.index)].drop_duplicates("item_id")
    if missing.empty or backend is None:
        out["still_missing"] = len(missing)
        return out
    # tasks listed once the backend has answered: a big project lists slowly
    tasks: dict[str, int] | None = None
    existing: dict[int, set[str]] = {}
    version = None
    done, problem = [], None
    for start in range(0, len(missing), chunk):
        part = missing.iloc[start : start + chunk]
        rows = items.loc[part["item_id"]].reset_index()
        if not rows["text"].notna().all():
            problem = "the model predicts from text"
            continue
        predictions, why = predict(backend, plan.label_config, rows["text"].tolist())
        if predictions is None:
            problem = why
            break
        if tasks is None:
            tasks = client.task_ids_by_item(url, token, plan.project_id)
            existing = client.prediction_versions(url, token, plan.project_id)
        body, posted = [], []
        for item, pred in zip(rows["item_id"], predictions):
            task = tasks.get(item)
            if task is None:
                continue
            if pred.get("model_version") not in existing.get(task, set()):
                body.append({**pred, "task": task})
            posted.append(item)
        client.import_predictions(url, token, plan.project_id, body)
        kept = prediction_rows(rows, predictions)
        kept = kept[kept["item_id"].isin(posted)].merge(part[["item_id", "batch"]], on="item_id")
        for batch, frame in kept.groupby("batch"):  # beside the batch's own file, which exports read too
            write_parquet(
                plan.folder / "predictions" / f"batch-{int(batch):05d}-backfill-{time.time_ns()}.parquet",
                frame.drop(columns="batch"),
            )
        done += posted
        version = version or predictions[0].get("model_version")
    with _batch_lock:
        left = missing[~missing["item_id"].isin(done)]
        if left.empty:
            missing_file.unlink()
        else:
            safe_frame(left).to_csv(missing_file.with_suffix(".tmp"), index=False)
            missing_file.with_suffix(".tmp").replace(missing_file)
        current = _batch_state(plan)
        current["backfilled"] = current.get("backfilled", 0) + len(done)
        if version:
            current["backfill_model_version"] = version
        write_json(plan.folder / "batches.json", current)
    out.update(backfilled=len(done), still_missing=len(left), problem=problem)
    return out


def import_all(
    plan: Plan,
    url: str,
    token: str,
    backend: tuple[str, tuple[str, str]] | None,
    workers: int = 1,
    progress: Progress | None = None,
) -> list[dict]:
    """Every pending batch, in plan order (what the flow does with Prefect tasks), under the workspace lock; more
    than one worker helps only on a database that takes concurrent writes."""
    with workspace_lock(plan.workspace, "launch"):
        pending = pending_batches(plan)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # each worker runs in a copy of this context: it holds the lock this call took
            futures = [
                pool.submit(contextvars.copy_context().run, import_batch, plan, b, url, token, backend) for b in pending
            ]
            results = []
            for done, future in enumerate(futures, start=1):
                results.append(future.result())
                if progress:
                    progress(done, len(futures))
        if backend is not None:  # without one there is nothing to backfill
            backfill_predictions(plan, url, token, backend)
    return results


def finish(plan: Plan, results: list[dict], url: str) -> dict:
    """The run manifest: the counts add up (rows read = imported + duplicates + quarantined +
    already present + sampled out), gold and prediction counts, versions. Saved in the workspace, under its lock."""
    with workspace_lock(plan.workspace, "launch"):
        return _finish(plan, results, url)


def _finish(plan: Plan, results: list[dict], url: str) -> dict:
    state = _batch_state(plan)
    all_results = list(state.get("results", {}).values())
    imported_total = sum(r.get("imported", 0) for r in all_results)
    gold_imported = sum(r.get("gold", 0) for r in results)  # in this run
    c = plan.counts
    waiting = plan.items[plan.items["batch"].isin(pending_batches(plan))]
    pending = int((~waiting["is_gold"]).sum())
    imported_now = sum(r.get("imported", 0) - r.get("gold", 0) for r in results)
    missing = max(0, sum(r.get("missing_predictions", 0) for r in all_results) - state.get("backfilled", 0))
    manifest = {
        "project_id": plan.project_id,
        "project_url": f"{url}/projects/{plan.project_id}/data",
        "plan_id": plan.plan_id,
        "complete": waiting.empty,
        "rows_read": c["rows_read"],
        "imported": imported_now,
        "duplicates": c["duplicates"],
        "quarantined": c["quarantined"],
        "already_present": c["already_present"] + c["to_import"] - imported_now - pending,
        "sampled_out": c["sampled_out"],
        "pending": pending,
        "gold": gold_imported,
        "gold_rows_read": c["gold_rows_read"],
        "gold_quarantined": c["gold_quarantined"],
        "gold_corrected": plan.gold_corrections.get("corrected", 0),  # saved gold answers this plan's gold file changed
        "gold_corrected_items": plan.gold_corrections.get("corrected_items", []),
        "predictions": sum(r.get("predictions", 0) for r in all_results) + state.get("backfilled", 0),
        "missing_predictions": missing,
        "prediction_problems": sorted({r["note"] for r in all_results if r.get("note")}) if missing else [],
        "missing_predictions_file": str(plan.folder / "missing_predictions.csv")
        if (plan.folder / "missing_predictions.csv").exists()
        else None,
        "tasks_in_plan": len(plan.items),
        "tasks_imported_total": imported_total,
        "queue_order": plan.queue_order,  # the order each batch went in, which Label Studio serves (ingest/queue.py)
        "versions": {
            **plan.versions,
            "model": next(
                (r["model_version"] for r in all_results if r.get("model_version")), state.get("backfill_model_version")
            ),
        },
        "quarantine_file": str(plan.workspace.quarantine),
        "workspace": str(plan.workspace.root),
        "source": plan.source,  # the file, or the query text and database; with its digest
    }
    manifest["lines_accounted"] = c.get("lines_accounted", True)  # a plan saved before this count: not checked
    manifest["counts_add_up"] = manifest["lines_accounted"] and (
        manifest["rows_read"]
        == manifest["imported"]
        + manifest["duplicates"]
        + manifest["quarantined"]
        + manifest["already_present"]
        + manifest["sampled_out"]
        + manifest["pending"]
    )
    write_json(plan.folder / "manifest.json", manifest)
    return manifest
