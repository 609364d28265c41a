"""Exhaustive grid search over every combination of a finite space."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from hyperdock.jsonutil import dumps
from hyperdock.samplers.base import Sampler
from hyperdock.space import Space
from hyperdock.trial import Trial

#: Grids up to this many points are counted exactly (identical points once); a larger
#: one's size is computed (identical points, rare, counted each time).
EXACT_SIZE_LIMIT = 10_000


class GridSampler(Sampler):
    """Visits every distinct grid point once, in the space's order.

    Points are decoded from their index in the grid (nothing is enumerated ahead), so a
    grid of 10**9 points costs no more than the trials taken from it.

    Raises:
        SpaceError: on construction, when a parameter is continuous (names it).
    """

    name = "grid"

    def __init__(self, space: Space, seed: int) -> None:
        super().__init__(space, seed)
        self._grid = space.lazy_grid()
        self._next = 0  # index of the next grid point to look at
        self._points: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._size: int | None = None

    def _fill(self, upto: int) -> None:
        """Find the first ``upto`` distinct points (or all there are)."""
        with self._lock:
            while len(self._points) < upto and self._next < self._grid.size:
                point = self._grid.at(self._next)
                self._next += 1
                key = dumps(point)
                if key not in self._seen:
                    self._seen.add(key)
                    self._points.append(point)

    def size(self) -> int:
        """Number of distinct grid points: counted for a small grid, computed for a
        large one (then an upper bound: :meth:`suggest` may run out first)."""
        if self._size is None:
            if self._grid.size <= EXACT_SIZE_LIMIT:
                self._fill(self._grid.size)
                self._size = len(self._points)
            else:
                self._size = self._grid.size
        return self._size

    def suggest(self, number: int, trials: Sequence[Trial]) -> dict[str, Any] | None:
        self._fill(number + 1)
        if number >= len(self._points):
            return None
        point: dict[str, Any] = _json_copy(self._points[number])
        return point


def _json_copy(value: Any) -> Any:
    """A deep copy of JSON-native ``value`` (decoded points share containers)."""
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_copy(v) for v in value]
    return value
