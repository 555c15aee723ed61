"""Run a baseline script in the benchmark environment (constraints/bench.txt: crowd-kit, krippendorff),
on frames written to temporary parquet files; its last stdout line is a JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pandas as pd


def run_baseline(name: str, script: str, frames: dict[str, pd.DataFrame]) -> dict | None:
    """`script` gets one argument, a JSON map from frame name to parquet path. None (with a note
    printed) when the environment cannot be built or the script fails."""
    from smo_labelstudio.stack.envs import BENCH_ENV, EnvError

    try:
        BENCH_ENV.ensure(print)
    except EnvError as exc:
        print(f"{name} skipped: {exc}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for key, frame in frames.items():
            paths[key] = str(Path(tmp) / f"{key}.parquet")
            frame.to_parquet(paths[key], index=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        proc = subprocess.run(
            [str(BENCH_ENV.bin("python")), "-W", "ignore", "-c", script, json.dumps(paths)],
            capture_output=True,
            text=True,
            env=env,
        )
    if proc.returncode != 0:
        print(f"{name} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])
