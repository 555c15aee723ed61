"""Static overlap 3 against dynamic overlap, on the real Label Studio, with simulated annotators of known
accuracy and the same seed in both arms; prints both arms side by side.

`python benchmarks/bench_dynamic_overlap.py [TASKS] [--seeds N]` (200 tasks and 3 seeds by default)
starts its own Label Studio (SQLite, gunicorn) in a throw-away folder. Two dynamic arms run against the
static one: "fewer" (25 % fewer answers than static 3: two answers each, then a budget of a quarter of
the tasks) and "same" (as many answers as static 3: a budget of one answer per task).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smo_labelstudio.core.spec import DynamicOverlap  # noqa: E402
from smo_labelstudio.simulation.dynamic import compare_arms  # noqa: E402
from smo_labelstudio.stack import control as stack  # noqa: E402
from smo_labelstudio.stack import procs  # noqa: E402
from smo_labelstudio.stack.services import Settings  # noqa: E402

ACCURACIES = (0.9, 0.8, 0.7, 0.85, 0.75, 0.65)
TARGET, CAP = 0.9, 5


def main(n: int, seeds: int) -> None:
    """Run every arm for each seed and print one row per arm and seed, then the totals."""
    home = Path(tempfile.mkdtemp(prefix="smo-bench-overlap-"))
    os.environ["SMO_HOME"] = str(home)  # the annotator accounts' tokens stay in the throw-away folder
    settings = Settings(
        home=home, ls_port=procs.free_port(), prefect_port=procs.free_port(), backend_port=procs.free_port()
    )
    state = stack.up(settings, lambda m: print("  " + m, flush=True), only=("label-studio",))
    url, token = f"http://127.0.0.1:{settings.ls_port}", state["label_studio"]["token"]
    print(f"{n} tasks, annotators at {ACCURACIES}, target {TARGET}, cap {CAP}", flush=True)
    print(f"{'seed':>4} {'arm':<9} {'answers':>8} {'vs static':>9} {'accuracy':>9} {'rounds':>6} {'seconds':>8}")
    totals: dict[str, list[int]] = {}
    arms = {
        "static 3": None,
        "dyn-fewer": DynamicOverlap(target=TARGET, max_annotators=CAP, budget=n // 4),
        "dyn-same": DynamicOverlap(target=TARGET, max_annotators=CAP, budget=n),
    }
    try:
        for seed in range(seeds):
            results = compare_arms(url, token, home / f"s{seed}", n, ACCURACIES, arms, seed=seed, label=f"s{seed}")
            base = results["static 3"].answers
            for name, r in results.items():
                t = totals.setdefault(name, [0, 0, 0])
                t[0], t[1], t[2] = t[0] + r.answers, t[1] + r.correct, t[2] + r.tasks
                print(
                    f"{seed:>4} {name:<9} {r.answers:>8} {r.answers / base:>9.2f} "
                    f"{r.accuracy:>9.3f} {r.rounds:>6} {r.seconds:>8.1f}",
                    flush=True,
                )
        base = totals["static 3"][0]
        print("totals:")
        for name, (answers, correct, tasks) in totals.items():
            print(f"     {name:<9} {answers:>8} {answers / base:>9.2f} {correct / tasks:>9.3f}")
    finally:
        stack.down(settings, lambda m: None, only=("label-studio",))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="?", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    main(args.tasks, args.seeds)
