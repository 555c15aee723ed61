"""Import and pull against one real Label Studio (SQLite, gunicorn), in one run, at a task count given
as the only positional argument (10,000 when none: what `make bench` runs), e.g.
`python benchmarks/bench_launch_pull.py 100000`.

Prints ratios (baseline time / our time, so higher is better):
  - our import (plan + batched import, what `smo launch` runs) vs one raw bulk import request of
    the same tasks (goal >= 0.9x);
  - a full first pull vs paging the tasks API with annotations (goal >= 2x) and vs one raw export
    request (goal >= 0.9x);
  - an incremental pull after 1 % of tasks changed, as a share of the full pull's time (goal <= 5 %).

The import is measured fairly: both sides pay the same cold costs and neither gains from going second.
Before anything is timed, each side runs once untimed on a few hundred tasks (every gunicorn worker of
Label Studio and our own code paths warm). Then `--rounds` rounds, each into two fresh projects with the
spec's overlap already set, alternating which side goes first (ours then raw, raw then ours, ...): 5 by
default under 50,000 tasks (one raw request of 10,000 took from 2.2 to 3.2 s within one run here), 2 above
(a round at 100,000 takes a minute, and each import grows Label Studio's database: the same raw request took
23.8 s after 100,000 other tasks and 30.8 s after 200,000, so each side goes first once). Every figure is
printed; the ratio is median raw / median ours.
`--no-paging` skips the paging baseline (minutes at 100,000), the pull ratio against paging is then not shown.

Annotations for the pull are imported inline with their tasks (10,000 per request) so the set-up takes
seconds; the 1 % change is made through the annotations API. Every request carries the stack's own
token (a personal access token or a legacy one, whichever the stack issued) through our client.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smo_labelstudio.core.spec import EXAMPLE_SPEC, load_spec  # noqa: E402
from smo_labelstudio.core.workspace import Workspace, write_json  # noqa: E402
from smo_labelstudio.ingest import launch  # noqa: E402
from smo_labelstudio.labelstudio import client  # noqa: E402
from smo_labelstudio.labelstudio.configs import labeling_interface  # noqa: E402
from smo_labelstudio.model.training import starter_data  # noqa: E402
from smo_labelstudio.pull import completions as pull  # noqa: E402
from smo_labelstudio.stack import control as stack  # noqa: E402
from smo_labelstudio.stack import procs  # noqa: E402
from smo_labelstudio.stack.services import Settings  # noqa: E402

DEFAULT_N = 10_000
BATCH = 10_000  # `smo launch`'s default --batch-size
WARM_UP = 300  # tasks of each side's untimed warm-up run
POLICIES = ["no_violation", "hate", "spam_scams", "harassment"]


def timed(fn, label: str = ""):
    """(fn's result, seconds it took); a label prints the seconds as they come (big runs take minutes)."""
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    if label:
        print(f"  {label}: {seconds:.2f} s", flush=True)
    return out, seconds


def main(n: int = DEFAULT_N, rounds: int | None = None, with_paging: bool = True) -> None:
    """Run every measurement at `n` tasks and print the table."""
    rounds = rounds or (5 if n < 50_000 else 2)
    home = Path(tempfile.mkdtemp(prefix="smo-bench-launch-"))
    settings = Settings(
        home=home, ls_port=procs.free_port(), prefect_port=procs.free_port(), backend_port=procs.free_port()
    )
    state = stack.up(settings, lambda m: print("  " + m, flush=True), only=("label-studio",))
    url, token = f"http://127.0.0.1:{settings.ls_port}", state["label_studio"]["token"]
    http = client.http_client(url, token, timeout=1800)
    ls = client.connect(url, token)
    config = labeling_interface("text_moderation")["label_config"]
    try:
        rng = np.random.default_rng(0)
        phrases = starter_data(n_per_label=60, seed=3)["text"].tolist()
        texts = [f"{' '.join(rng.choice(phrases, size=rng.integers(1, 4)))} #{i}" for i in range(n)]
        data = home / "items.csv"
        data.write_text("id,text,language\n" + "\n".join(f'x{i},"{t}",en' for i, t in enumerate(texts)) + "\n")

        # 1. Import: one raw request vs our planned, batched import of the same file, each into a fresh
        # project with the spec's overlap set (Label Studio re-plans overlap across the project on every
        # import it receives; ours imports in batches with overlap held at one annotator and applies the
        # spec's overlap once, after the last one). Warm-up first, then rounds alternating who goes first.
        base = load_spec(EXAMPLE_SPEC).model_copy(update={"gold_rate": 0.0})
        raw_tasks = [{"data": {"item_id": f"x{i}", "text": t, "language": "en"}} for i, t in enumerate(texts)]
        warm = home / "warm-up.csv"
        warm.write_text("\n".join(data.read_text().splitlines()[: WARM_UP + 1]) + "\n")

        def raw_side(label: str, tasks: list[dict]) -> float:
            project = client.create_project(ls, f"bench raw import {label}", config)
            client.set_overlap(url, token, project, *launch.overlap_settings(base))
            _, seconds = timed(lambda: client.import_json(url, token, project, tasks))
            return seconds

        def our_side(label: str, source: Path, rows: int) -> tuple[float, float, float, list[float]]:
            spec = base.model_copy(update={"title": f"bench our import {label}"})
            launch.ensure_project(spec, url, token, home=home)  # recorded in the workspace the launch uses
            plan, plan_s = timed(lambda: launch.plan_launch(spec, source, url, token, batch_size=BATCH, home=home))
            marks = [time.perf_counter()]
            results, import_s = timed(
                lambda: launch.import_all(
                    plan, url, token, None, workers=1, progress=lambda d, t: marks.append(time.perf_counter())
                )
            )
            manifest = launch.finish(plan, results, url)
            assert manifest["imported"] == rows, manifest
            return plan_s + import_s, plan_s, import_s, [b - a for a, b in zip(marks, marks[1:])]

        for worker in range(settings.ls_workers):  # untimed: every gunicorn worker and our code paths warm
            raw_side(f"warm-up {worker}", raw_tasks[:WARM_UP])
        our_side("warm-up", warm, WARM_UP)
        raw_times: list[float] = []
        our_runs: list[tuple[float, float, float, list[float]]] = []
        for r in range(rounds):
            for side in ("ours", "raw") if r % 2 == 0 else ("raw", "ours"):
                if side == "raw":
                    raw_times.append(raw_side(f"round {r + 1}", raw_tasks))
                    print(f"  round {r + 1}: raw import {raw_times[-1]:.2f} s", flush=True)
                else:
                    our_runs.append(our_side(f"round {r + 1}", data, n))
                    total, plan_s, import_s, per_batch = our_runs[-1]
                    batches = ", ".join(f"{b:.2f}" for b in per_batch)
                    print(
                        f"  round {r + 1}: our import {total:.2f} s (plan {plan_s:.2f}, batches {import_s:.2f}: "
                        f"{batches})",
                        flush=True,
                    )
        raw_import = statistics.median(raw_times)
        our_import = statistics.median(run[0] for run in our_runs)
        phases = {
            "plan": statistics.median(run[1] for run in our_runs),
            "import": statistics.median(run[2] for run in our_runs),
        }

        # 2. Pull: a project whose 10k tasks each carry one annotation.
        pull_project = client.create_project(ls, "bench pull", config)
        annotated = [
            {
                "data": {"item_id": f"x{i}", "text": t, "language": "en"},
                "annotations": [
                    {
                        "ground_truth": False,
                        "lead_time": 3.0,
                        "result": [
                            {
                                "from_name": "policy",
                                "to_name": "text",
                                "type": "choices",
                                "value": {"choices": [POLICIES[i % len(POLICIES)]]},
                            }
                        ],
                    }
                ],
            }
            for i, t in enumerate(texts)
        ]
        for start in range(0, n, BATCH):  # set-up, untimed: requests of 10,000 stay within the client's timeout
            client.import_json(url, token, pull_project, annotated[start : start + BATCH])
        ws = Workspace(home / "workspaces" / "bench-pull")
        write_json(
            ws.project_file,
            {"project_id": pull_project, "url": url, "title": "bench pull", "config": "text_moderation"},
        )
        time.sleep(pull.MARGIN.total_seconds() + 0.5)

        def paging():
            page, n = 1, 0
            while True:
                resp = http.get(
                    "/api/tasks", params={"project": pull_project, "fields": "all", "page": page, "page_size": 500}
                )
                if resp.status_code == 404:
                    return n
                batch = resp.json()["tasks"]
                n += len(batch)
                if not batch:
                    return n
                page += 1

        _, raw_export = timed(
            lambda: http.get(f"/api/projects/{pull_project}/export", params={"exportType": "JSON"}).json(),
            "raw export",
        )
        full, full_pull = timed(lambda: pull.pull(ws, url, token, full=True), "full pull")
        assert full["annotations"] == n, full
        paging_time = None
        if with_paging:
            paged, paging_time = timed(paging, "paging")
            assert paged == n, paged

        # 3. Incremental after 1 % changed.
        tasks = http.get(f"/api/projects/{pull_project}/export", params={"exportType": "JSON"}).json()
        changed = rng.choice(len(tasks), size=n // 100, replace=False)
        for i in changed:
            ann = tasks[i]["annotations"][0]
            http.patch(
                f"/api/annotations/{ann['id']}",
                json={
                    "result": [
                        {
                            "from_name": "policy",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": ["misinformation"]},
                        }
                    ]
                },
            ).raise_for_status()
        incremental, inc_pull = timed(lambda: pull.pull(ws, url, token), "incremental pull")
        assert incremental["mode"] == "incremental" and incremental["updated"] == len(changed), incremental
    finally:
        stack.down(settings, lambda m: None, only=("label-studio",))

    print(f"{n:,} tasks, Label Studio 1.23.2 on SQLite (gunicorn, {settings.ls_workers} workers)")
    print(f"{'':44}{'seconds':>9}{'ratio':>8}  goal")
    print(f"import: medians of {rounds} round(s), alternating order; every figure above")
    print(f"{'raw bulk import, one request':44}{raw_import:9.2f}")
    print(f"{f'our import (plan + batches of {BATCH:,})':44}{our_import:9.2f}{raw_import / our_import:8.2f}  >= 0.9")
    print(f"{'  of which plan (read, validate, save)':44}{phases['plan']:9.2f}")
    print(f"{'  of which batches, overlap, bookkeeping':44}{phases['import']:9.2f}")
    if paging_time is not None:
        print(f"{'paging the tasks API with annotations':44}{paging_time:9.2f}")
    print(f"{'one raw export request':44}{raw_export:9.2f}")
    if paging_time is not None:
        print(f"{'our full first pull vs paging':44}{full_pull:9.2f}{paging_time / full_pull:8.2f}  >= 2")
    print(f"{'our full first pull vs raw export':44}{full_pull:9.2f}{raw_export / full_pull:8.2f}  >= 0.9")
    print(f"{'incremental pull after 1 % changed':44}{inc_pull:9.2f}{inc_pull / full_pull:8.1%}  <= 5 % of full")
    print(f"  ({incremental['tasks_fetched']} tasks fetched, {incremental['updated']} annotations updated)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="?", default=str(DEFAULT_N), help="task count (10000, 100_000, ...)")
    parser.add_argument("--rounds", type=int, default=None, help="import rounds (default 5 under 50,000 tasks, else 2)")
    parser.add_argument("--no-paging", action="store_true", help="skip the paging baseline (minutes at 100,000)")
    args = parser.parse_args()
    main(int(args.tasks.replace("_", "")), args.rounds, not args.no_paging)
