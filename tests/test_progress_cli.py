"""The command line's progress display: plain lines with counts and an ETA off a terminal, tqdm on one."""

from __future__ import annotations

import io

from smo_labelstudio.cli import _progress
from smo_labelstudio.cli._progress import Bar


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_plain_lines_with_counts_and_an_eta_at_most_every_interval(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    out = io.StringIO()
    bar = Bar("import", "batches", stream=out, every=10)
    for done in range(1, 5):
        clock.now += 4
        bar.update_to(done, 4)
    bar.close()
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "import: 0 batches, 0 s"
    # 4 s per batch: the line at 12 s (3 done) says 1 left, 4 s to go; the last line has no ETA
    assert lines[1] == "import: 3/4 batches (75%), 12 s, ETA 4 s"
    assert lines[-1] == "import: 4/4 batches (100%), 16 s"
    assert len(lines) == 3


def test_on_a_terminal_a_tqdm_bar_and_disabled_prints_nothing():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    with Bar("simulated annotations", "annotations", 10, stream=tty) as bar:
        bar.update(10)
    assert "simulated annotations:" in tty.getvalue() and "/10" in tty.getvalue() and "\r" in tty.getvalue()

    quiet = io.StringIO()
    with Bar("import", "batches", disable=True, stream=quiet) as bar:
        bar.update_to(3, 3)
    assert quiet.getvalue() == ""


def test_long_runs_read_in_minutes():
    assert _progress._duration(125) == "2 min 05 s"
    assert _progress._duration(59.6) == "1 min 00 s"
