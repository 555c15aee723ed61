"""The command line's progress display: a bar with counts and an ETA on a terminal (tqdm), plain lines on
anything else (a CI log, a pipe, a file), so long work is visible without `\\r` noise in logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class Bar:
    """`update_to(done, total)` or `update(n)`; `close()` when done. Disabled (`--json`) it prints nothing.

    Not a terminal: one line when it starts, then at most one per `every` seconds, and one at the end,
    each `desc: done/total unit (pct%), elapsed, ETA`."""

    def __init__(
        self,
        desc: str,
        unit: str,
        total: int | None = None,
        *,
        disable: bool = False,
        stream: TextIO | None = None,
        every: float = 10.0,
    ):
        self.desc, self.unit, self.total, self.n = desc, unit, total, 0
        self.stream = stream or sys.stderr
        self.disable, self.every = disable, every
        self.started = self._printed = time.monotonic()
        self._tqdm = None
        self._last_line = ""
        if disable:
            return
        if self.stream.isatty():
            from tqdm import tqdm  # noqa: PLC0415 - start-up time

            self._tqdm = tqdm(total=total, unit=unit, desc=desc, file=self.stream, leave=False)
        else:
            self._print()

    def line(self) -> str:
        """The plain line for the current count."""
        elapsed = time.monotonic() - self.started
        if not self.total:
            return f"{self.desc}: {self.n:,} {self.unit}, {_duration(elapsed)}"
        pct = 100.0 * self.n / self.total
        eta = elapsed / self.n * (self.total - self.n) if self.n else None
        return f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} ({pct:.0f}%), {_duration(elapsed)}" + (
            f", ETA {_duration(eta)}" if eta is not None and self.n < self.total else ""
        )

    def _print(self) -> None:
        text = self.line()
        if text != self._last_line:
            print(text, file=self.stream, flush=True)
            self._last_line = text
        self._printed = time.monotonic()

    def update_to(self, done: int, total: int | None = None) -> None:
        """Set the count (and the total, when it becomes known)."""
        if total is not None:
            self.total = total
        self.update(done - self.n)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        if self._tqdm is not None:
            if self.total is not None and self._tqdm.total != self.total:
                self._tqdm.total = self.total
                self._tqdm.refresh()
            self._tqdm.update(n)
        elif time.monotonic() - self._printed >= self.every:
            self._print()

    def close(self) -> None:
        if self.disable:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            self._print()
        self.disable = True  # closing twice prints once

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
