"""When the project will finish at the recent answer rate, and whether that is before the spec's deadline.
Pure over frames."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd


def eta(
    progress_all: dict[str, Any],
    annotations: pd.DataFrame,
    deadline: str | None,
    now: datetime,
    window_hours: float = 24 * 7,
) -> dict[str, Any]:
    """Answers per hour over the last `window_hours` (from the first answer in the window to now), the
    estimated finish, and whether it is before the spec's deadline (end of that day, UTC, for a date)."""
    out: dict[str, Any] = {"remaining_answers": progress_all.get("answers_remaining", 0), "deadline": deadline}
    done = annotations[~annotations["was_cancelled"].fillna(False).astype(bool)]
    created = pd.to_datetime(done["created_at"], utc=True)
    now_ts = pd.Timestamp(now)
    recent = created[created >= now_ts - pd.Timedelta(hours=window_hours)]
    hours = max((now_ts - recent.min()).total_seconds() / 3600, 1 / 60) if len(recent) else math.nan
    rate = len(recent) / hours if len(recent) else 0.0
    out["answers_per_hour"] = rate
    remaining = out["remaining_answers"]
    if remaining == 0:
        finish = now_ts
    elif rate > 0:
        finish = now_ts + pd.Timedelta(hours=remaining / rate)
    else:
        finish = None
    out["eta"] = finish.isoformat() if finish is not None else None
    if deadline:
        due = pd.Timestamp(deadline)
        due = due.tz_localize("UTC") if due.tzinfo is None else due.tz_convert("UTC")
        if len(str(deadline)) <= 10:
            due = due + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        out["deadline_at"] = due.isoformat()
        out["on_track"] = bool(finish is not None and finish <= due)
        if rate >= 0 and due > now_ts:
            out["needed_per_hour"] = remaining / max((due - now_ts).total_seconds() / 3600, 1e-9)
    else:
        out["on_track"] = None
    return out
