"""ML backend speed: single-task /predict latency over HTTP and batch throughput, against the same
model called directly in this process, in one run. Ratios are HTTP / in-process.

The backend is the real service (gunicorn, its own environment, basic auth) started by the stack
code on a free port in a throw-away folder, serving the starter model. Goals on 2 cores:
single-task p99 <= 50 ms, batch >= 5,000 texts/s.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smo_labelstudio.model.modelstore import ModelStore  # noqa: E402
from smo_labelstudio.model.textmodel import predict_tasks  # noqa: E402
from smo_labelstudio.model.training import starter_data  # noqa: E402
from smo_labelstudio.stack import control as stack  # noqa: E402
from smo_labelstudio.stack import procs  # noqa: E402
from smo_labelstudio.stack.services import MLBackend, Settings  # noqa: E402

SINGLE_CALLS = 500
BATCH_SIZE = 1_000
BATCHES = 10


def bench_texts() -> list[str]:
    """Generated posts of realistic length (one to four sentences, several languages)."""
    rng = np.random.default_rng(7)
    phrases = starter_data(n_per_label=60, seed=7)["text"].tolist()
    return [" ".join(rng.choice(phrases, size=rng.integers(1, 5))) for _ in range(4_000)]


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="smo-bench-backend-"))
    settings = Settings(
        home=home, ls_port=procs.free_port(), prefect_port=procs.free_port(), backend_port=procs.free_port()
    )
    state = stack.up(settings, lambda m: print("  " + m, flush=True), only=("ml-backend",))
    try:
        url = MLBackend(settings).url
        auth = (state["backend"]["user"], state["backend"]["password"])
        version, model = ModelStore(MLBackend(settings).model_dir).current()
        texts = bench_texts()
        rng = np.random.default_rng(0)
        singles = [texts[i] for i in rng.integers(0, len(texts), SINGLE_CALLS)]
        batches = [[texts[i] for i in rng.integers(0, len(texts), BATCH_SIZE)] for _ in range(BATCHES)]

        with httpx.Client(base_url=url, auth=auth, timeout=60) as http:
            for text in singles[:20]:  # warm both paths: connections, workers, caches
                http.post("/predict", json={"tasks": [{"data": {"text": text}}]}).raise_for_status()
                predict_tasks(model, version, [text], "text")

            http_single, local_single = [], []
            for text in singles:
                t0 = time.perf_counter()
                r = http.post("/predict", json={"tasks": [{"data": {"text": text}}]})
                http_single.append(time.perf_counter() - t0)
                r.raise_for_status()
                t0 = time.perf_counter()
                predict_tasks(model, version, [text], "text")
                local_single.append(time.perf_counter() - t0)

            http_batch, local_batch = [], []
            for batch in batches:
                body = {"tasks": [{"data": {"text": t}} for t in batch]}
                t0 = time.perf_counter()
                r = http.post("/predict", json=body)
                http_batch.append(time.perf_counter() - t0)
                r.raise_for_status()
                assert len(r.json()["results"]) == len(batch)
                t0 = time.perf_counter()
                predict_tasks(model, version, batch, "text")
                local_batch.append(time.perf_counter() - t0)
    finally:
        stack.down(settings, lambda m: None, only=("ml-backend",))

    hp50, hp99 = percentiles(http_single)
    lp50, lp99 = percentiles(local_single)
    http_tps = BATCH_SIZE / statistics.median(http_batch)
    local_tps = BATCH_SIZE / statistics.median(local_batch)
    print(f"model {version}; {SINGLE_CALLS} single-task calls, {BATCHES} batches of {BATCH_SIZE} texts")
    print(f"{'':28}{'HTTP':>12}{'in process':>14}{'ratio':>9}")
    print(f"{'single-task p50 (ms)':28}{hp50:12.2f}{lp50:14.2f}{hp50 / lp50:9.2f}")
    print(f"{'single-task p99 (ms)':28}{hp99:12.2f}{lp99:14.2f}{hp99 / lp99:9.2f}")
    print(f"{'batch throughput (texts/s)':28}{http_tps:12,.0f}{local_tps:14,.0f}{http_tps / local_tps:9.2f}")
    print(
        f"goals: p99 <= 50 ms over HTTP: {'met' if hp99 <= 50 else 'NOT met'}; "
        f">= 5,000 texts/s over HTTP: {'met' if http_tps >= 5000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
