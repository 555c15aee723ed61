"""What a simulated annotator answers: the truth of a task and a noisy copy of it in Label Studio's format.

Pure functions over seeded `random.Random` instances, so an answer depends only on the seed, the task
and the annotator (not on thread order), and a re-run reproduces it. Stored values are the config's
aliases: policy ids for `policy` and `spans`, "1".."4" for `severity`, `needs_escalation`.
"""

from __future__ import annotations

import math
import random
import re
import string
from dataclasses import dataclass

from smo_labelstudio.core.errors import ConfigError

NO_VIOLATION = "no_violation"
SEVERITY_WEIGHTS = (0.35, 0.35, 0.2, 0.1)  # drawn truth: most violations are low or medium
_WORDS = re.compile(r"\S+")


@dataclass(frozen=True)
class Truth:
    """A task's true policies (sorted policy ids) and, for a violation, its severity (1-4)."""

    labels: tuple[str, ...]
    severity: int | None = None

    @property
    def violations(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label != NO_VIOLATION)


@dataclass(frozen=True)
class Targets:
    """Where a project's controls point and which values they take (read from its label config)."""

    policies: tuple[str, ...]
    to_name: str
    severities: tuple[str, ...] = ("1", "2", "3", "4")
    span_labels: tuple[str, ...] = ()
    has_escalation: bool = False


def rng_for(seed: int, *parts: object) -> random.Random:
    """A generator determined by the seed and the parts (Python seeds str deterministically)."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def draw_truth(rng: random.Random, policies: tuple[str, ...], violation_rate: float = 0.5) -> Truth:
    """A plausible truth: no violation half the time, else one policy (or two, one time in five)."""
    violations = sorted(p for p in policies if p != NO_VIOLATION)
    if not violations or rng.random() >= violation_rate:
        return Truth((NO_VIOLATION,))
    k = 2 if len(violations) > 1 and rng.random() < 0.2 else 1
    chosen = tuple(sorted(rng.sample(violations, k)))
    return Truth(chosen, rng.choices((1, 2, 3, 4), weights=SEVERITY_WEIGHTS)[0])


def accuracy_matrix(policies: tuple[str, ...], accuracy: float) -> dict[str, dict[str, float]]:
    """A confusion matrix with `accuracy` on the diagonal and the rest spread evenly."""
    if not 0 <= accuracy <= 1:
        raise ConfigError(f"--accuracy must be between 0 and 1, got {accuracy}")
    off = (1 - accuracy) / (len(policies) - 1) if len(policies) > 1 else 0.0
    return {t: {a: (accuracy if a == t else off) for a in policies} for t in policies}


def answer(
    truth: Truth,
    targets: Targets,
    confusion: dict[str, dict[str, float]],
    accuracy: float,
    rng: random.Random,
    text: str | None = None,
    span_rate: float = 0.3,
) -> list[dict]:
    """One annotation's `result`: each true policy passed through its row of the confusion matrix,
    severity (exact with probability `accuracy`, else one level off) when a violation is chosen,
    sometimes a harmful span, and now and then the escalation flag on an answer that went wrong."""
    chosen = set()
    for label in truth.labels:
        row = confusion.get(label) or {label: 1.0}
        chosen.add(rng.choices(list(row), weights=list(row.values()))[0])
    if len(chosen) > 1:
        chosen.discard(NO_VIOLATION)  # the guidelines: no violation is chosen alone
    labels = sorted(chosen)
    result = [_choices("policy", targets.to_name, labels, rng)]
    violations = [label for label in labels if label != NO_VIOLATION]
    if violations:
        level = _severity(truth, violations, accuracy, rng)
        if str(level) in targets.severities:
            result.append(_choices("severity", targets.to_name, [str(level)], rng))
        spans = [v for v in violations if v in targets.span_labels]
        if text and spans and rng.random() < span_rate:
            result.append(_span(text, rng.choice(spans), targets.to_name, rng))
    wrong = tuple(labels) != truth.labels
    if targets.has_escalation and wrong and rng.random() < 0.1:
        result.append(_choices("escalation", targets.to_name, ["needs_escalation"], rng))
    return result


def lead_time(rng: random.Random, mean: float) -> float:
    """Seconds spent on a task: log-normal around `mean` (sigma 0.5), as real lead times skew long."""
    if mean <= 0:
        raise ConfigError(f"--lead-time must be positive, got {mean}")
    sigma = 0.5
    return round(rng.lognormvariate(math.log(mean) - sigma**2 / 2, sigma), 1)


def _severity(truth: Truth, violations: list[str], accuracy: float, rng: random.Random) -> int:
    if truth.severity is None or not set(violations) & set(truth.violations):
        return rng.choice((1, 2))  # a false alarm is rarely judged severe
    if rng.random() < accuracy:
        return truth.severity
    return min(4, max(1, truth.severity + rng.choice((-1, 1))))


def _region_id(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=10))


def _choices(control: str, to_name: str, values: list[str], rng: random.Random) -> dict:
    return {
        "id": _region_id(rng),
        "from_name": control,
        "to_name": to_name,
        "type": "choices",
        "origin": "manual",
        "value": {"choices": values},
    }


def harmful_words(text: str, label: str) -> tuple[int, int]:
    """The item's harmful words for a policy, as the simulation's truth: a run of one to three whole words
    drawn from the text and the policy alone, so every annotator of the item sees the same ones."""
    words = [(m.start(), m.end()) for m in _WORDS.finditer(text)] or [(0, len(text))]
    rng = random.Random(f"{text}|{label}")
    first = rng.randrange(len(words))
    return words[first][0], words[min(len(words) - 1, first + rng.randrange(3))][1]


def _span(text: str, label: str, to_name: str, rng: random.Random) -> dict:
    """Whole words with Label Studio's character offsets into the text: half the time exactly the item's
    harmful words (`harmful_words`), a quarter of the time those and the next word, else one word anywhere
    (the same two draws as before, so the rest of an annotator's answers stay as they were)."""
    words = [(m.start(), m.end()) for m in _WORDS.finditer(text)] or [(0, len(text))]
    anywhere, how = rng.randrange(len(words)), rng.randrange(4)
    start, end = harmful_words(text, label)
    if how == 2:
        after = [w for w in words if w[0] >= end]
        end = after[0][1] if after else end
    elif how == 3:
        start, end = words[anywhere]
    return {
        "id": _region_id(rng),
        "from_name": "spans",
        "to_name": to_name,
        "type": "labels",
        "origin": "manual",
        "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
    }
