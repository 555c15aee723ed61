"""Writing files so a crash never leaves half of one: write beside, fsync, rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smo_labelstudio.core.jsonenc import dumps


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 kept reports from colleagues


def atomic_write(path: Path, write: Callable[[str], Any], mode: int | None = None) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    `mode` defaults to what a plain write would give; pass 0o600 for files that hold secrets.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE if mode is None else mode)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, mode: int | None = None) -> None:
    """Atomically write UTF-8 text."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), mode)


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Atomically write bytes."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), mode)


def write_json(path: Path, data: Any, mode: int | None = None) -> None:
    """Atomically write JSON (sorted keys, indented; numpy, NaN and dates handled by the one encoder)."""
    write_text(path, dumps(data, indent=2, sort_keys=True), mode)


def read_json_file(path: Path) -> Any:
    """The parsed JSON of `path`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
