"""The one JSON encoding: numpy scalars unwrapped, NaN and infinities as null, decimals as numbers,
dates and times as ISO text, bytes as hex. Used for summaries, manifests and query results alike."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """Plain Python values for json.dumps, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, decimal.Decimal):
        if value.is_nan() or value.is_infinite():
            return None
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)  # type: ignore[operator]
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `jsonable(value)`; anything still unknown is written with `str`."""
    return json.dumps(jsonable(value), allow_nan=False, default=str, **kwargs)
