"""JSON helpers: turn whatever a user's space or target produced into plain JSON."""

from __future__ import annotations

import json
import math
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types (dict, list, str, int, float, bool, None).

    numpy scalars and arrays, tuples, sets and other number-likes are converted, so that
    every store (MongoDB included) can hold them. Raises ``TypeError`` for anything else.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(value, key=repr)]
    # numpy and friends, without importing numpy.
    item = getattr(value, "item", None)
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", None):
        return to_jsonable(tolist())
    if callable(item):
        return to_jsonable(item())
    raise TypeError(f"{type(value).__name__} value {value!r} cannot be stored as JSON")


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON of ``value`` (after :func:`to_jsonable`)."""
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"))


def is_finite_number(value: Any) -> bool:
    """True for an int or float (not bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
