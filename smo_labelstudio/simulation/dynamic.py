"""Static against dynamic overlap on the real Label Studio, with simulated annotators of known accuracy.

An arm is one project: the simulation answers every task up to its overlap; in the dynamic arm the
consensus is then computed, the weak tasks raised (`quality.dynamic`), and the simulation run again
until nothing more is raised. Both arms use the same seed, so a task has the same truth, and an annotator
gives a task the same answer, in either arm. The consensus here is Dawid-Skene's posterior (the
simulation has no gold to calibrate on); a project's quality check uses the calibrated confidence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smo_labelstudio.core.spec import DynamicOverlap
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.labelstudio.client import connect, create_project, import_json, set_overlap
from smo_labelstudio.labelstudio.configs import labeling_interface
from smo_labelstudio.labelstudio.rest import export_project
from smo_labelstudio.quality.consensus import consensus_frame, fit_consensus
from smo_labelstudio.quality.dynamic import apply_dynamic_overlap
from smo_labelstudio.quality.inputs import set_key
from smo_labelstudio.simulation.simulate import SimulationSettings, simulate
from smo_labelstudio.simulation.truth import load_saved_truth

MAX_ROUNDS = 20


@dataclass(frozen=True)
class ArmResult:
    """One arm's outcome: answers written, consensus accuracy against the simulated truth, rounds."""

    name: str
    tasks: int
    answers: int
    correct: int
    rounds: int
    seconds: float

    @property
    def accuracy(self) -> float:
        """Share of tasks whose consensus policy set is the true one."""
        return self.correct / self.tasks if self.tasks else 0.0


def answers_frame(url: str, token: str, project_id: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every answer (task: external id, annotator, label: the policy set's key) and the task id of each key."""
    rows, ids = [], {}
    for task in export_project(url, token, project_id):
        key = str((task.get("data") or {}).get("external_id", f"task-{task['id']}"))
        ids[key] = int(task["id"])
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            chosen = [
                choice
                for r in annotation.get("result") or []
                if r.get("from_name") == "policy"
                for choice in r.get("value", {}).get("choices", [])
            ]
            who = annotation.get("completed_by")
            who = who.get("id") if isinstance(who, dict) else who
            rows.append({"task": key, "annotator": str(who), "label": set_key(chosen)})
    return pd.DataFrame(rows, columns=["task", "annotator", "label"]), ids


def policy_consensus(answers: pd.DataFrame, method: str = "ds") -> pd.DataFrame:
    """task, label, confidence, source ("consensus") from the answers."""
    return consensus_frame(fit_consensus(method, answers)).assign(source="consensus")


def run_arm(
    name: str,
    project_id: int,
    settings: SimulationSettings,
    workspace: Workspace,
    url: str,
    token: str,
    dynamic: DynamicOverlap | None = None,
    method: str = "ds",
) -> ArmResult:
    """Simulate one arm to the end (static: one pass; dynamic: pass, raise, pass, ... until nothing is raised)."""
    started = time.monotonic()
    rounds = 0
    while True:
        simulate(project_id, settings, workspace, url, token)
        rounds += 1
        answers, ids = answers_frame(url, token, project_id)
        consensus = policy_consensus(answers, method)
        if dynamic is None or rounds >= MAX_ROUNDS:
            break
        outcome = apply_dynamic_overlap(workspace, dynamic, consensus, ids, project_id, url, token)
        if outcome.raised.empty and not outcome.resent:
            break
    truth = {ext: set_key(t.labels) for ext, t in load_saved_truth(workspace).values() if ext is not None}
    decided = dict(zip(consensus["task"], consensus["label"]))
    correct = sum(decided.get(key) == label for key, label in truth.items())
    return ArmResult(name, len(ids), len(answers), correct, rounds, round(time.monotonic() - started, 1))


def compare_arms(
    url: str,
    token: str,
    workdir: Path,
    n_tasks: int,
    accuracy: tuple[float, ...],
    arms: dict[str, DynamicOverlap | None],
    seed: int = 0,
    start: int = 2,
    static: int = 3,
    label: str = "",
    workers: int = 3,
) -> dict[str, ArmResult]:
    """Each arm on a fresh project of the same `n_tasks` items (same seed, same annotators: one account per
    entry of `accuracy`): an arm without settings is static overlap `static`; one with settings starts at
    `start` answers per task and raises with them."""
    config = labeling_interface("text_moderation")["label_config"]
    settings = SimulationSettings(annotators=len(accuracy), accuracy=accuracy, seed=seed, lead_time=20, workers=workers)
    items = [{"data": {"external_id": f"t{i:05d}", "text": f"item {i}"}} for i in range(n_tasks)]
    results = {}
    for name, arm in arms.items():
        project_id = create_project(connect(url, token), f"overlap {name} {label}".strip(), config)
        set_overlap(url, token, project_id, static if arm is None else start, 100)
        import_json(url, token, project_id, items)
        results[name] = run_arm(name, project_id, settings, Workspace(workdir / name), url, token, arm)
    return results
