"""Read annotation and gold CSV files into tidy frames, with one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smo_labelstudio.core.errors import InputError

from ._frame import require_frame


def read_csv_frame(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read `path` keeping every cell as text; an empty cell becomes a missing value."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a CSV file") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file, expected a header {','.join(columns)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    try:
        require_frame(frame, columns, what=str(path))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    for column in ("task", "annotator"):
        if column in columns and frame[column].isna().any():
            row = int(frame[column].isna().to_numpy().argmax()) + 2
            raise InputError(f"{path}: line {row}: empty {column}")
    return frame


def read_annotations(path: Path) -> pd.DataFrame:
    """A CSV with columns task, annotator, label (other columns are kept, e.g. for grouping)."""
    return read_csv_frame(path, ("task", "annotator", "label"), "annotations")


def read_gold(path: Path) -> pd.DataFrame:
    """A CSV with columns task, label: the gold answer per task."""
    return read_csv_frame(path, ("task", "label"), "gold")
