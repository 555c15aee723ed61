"""Import and pull against one real Label Studio (SQLite, gunicorn), in one run, at a task count given
as the only argument (10,000 when none: what `make bench` runs), e.g. `python benchmarks/bench_launch_pull.py 100000`.

Prints ratios (baseline time / our time, so higher is better):
  - our import (plan + batched import, what `smo launch` runs) vs one raw bulk import request of
    the same tasks (goal >= 0.9x);
  - a full first pull vs paging the tasks API with annotations (goal >= 2x) and vs one raw export
    request (goal >= 0.9x);
  - an incremental pull after 1 % of tasks changed, as a share of the full pull's time (goal <= 5 %).
Annotations for the pull are imported inline with their tasks (one request) so the set-up takes
seconds; the 1 % change is made through the annotations API. Every request carries the stack's own
token (a personal access token or a legacy one, whichever the stack issued) through our client.
"""

from __future__ import annotations

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
POLICIES = ["no_violation", "hate", "spam_scams", "harassment"]


def timed(fn, label: str = ""):
    """(fn's result, seconds it took); a label prints the seconds as they come (big runs take minutes)."""
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    if label:
        print(f"  {label}: {seconds:.2f} s", flush=True)
    return out, seconds


def main(n: int = DEFAULT_N) -> None:
    """Run every measurement at `n` tasks and print the table."""
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

        # 1. Import: one raw request vs our planned, batched import of the same file.
        # Both projects exist beforehand with the same settings (the spec's overlap: Label Studio
        # re-plans overlap across the project on every import it receives; ours imports in batches
        # with overlap held at one annotator and applies the spec's overlap once, after the last one).
        spec = load_spec(EXAMPLE_SPEC).model_copy(update={"title": "bench our import", "gold_rate": 0.0})
        raw_project = client.create_project(ls, "bench raw import", config)
        client.set_overlap(url, token, raw_project, *launch.overlap_settings(spec))
        launch.ensure_project(spec, url, token, home=home)  # recorded in the workspace the launch uses
        raw_tasks = [{"data": {"item_id": f"x{i}", "text": t, "language": "en"}} for i, t in enumerate(texts)]
        _, raw_import = timed(lambda: client.import_json(url, token, raw_project, raw_tasks), "raw import")

        phases: dict[str, float] = {}

        def ours():
            plan, phases["plan"] = timed(
                lambda: launch.plan_launch(spec, data, url, token, batch_size=BATCH, home=home)
            )
            results, phases["import"] = timed(lambda: launch.import_all(plan, url, token, None, workers=1))
            return launch.finish(plan, results, url)

        manifest, our_import = timed(ours, "our import")
        print(f"    plan {phases['plan']:.2f} s, batches {phases['import']:.2f} s", flush=True)
        assert manifest["imported"] == n, manifest

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
    print(f"{'raw bulk import, one request':44}{raw_import:9.2f}")
    print(f"{f'our import (plan + batches of {BATCH:,})':44}{our_import:9.2f}{raw_import / our_import:8.2f}  >= 0.9")
    print(f"{'  of which plan (read, validate, save)':44}{phases['plan']:9.2f}")
    print(f"{'  of which batches, overlap, bookkeeping':44}{phases['import']:9.2f}")
    print(f"{'paging the tasks API with annotations':44}{paging_time:9.2f}")
    print(f"{'one raw export request':44}{raw_export:9.2f}")
    print(f"{'our full first pull vs paging':44}{full_pull:9.2f}{paging_time / full_pull:8.2f}  >= 2")
    print(f"{'our full first pull vs raw export':44}{full_pull:9.2f}{raw_export / full_pull:8.2f}  >= 0.9")
    print(f"{'incremental pull after 1 % changed':44}{inc_pull:9.2f}{inc_pull / full_pull:8.1%}  <= 5 % of full")
    print(f"  ({incremental['tasks_fetched']} tasks fetched, {incremental['updated']} annotations updated)")


if __name__ == "__main__":
    main(int(sys.argv[1].replace("_", "")) if len(sys.argv) > 1 else DEFAULT_N)
