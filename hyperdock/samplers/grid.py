"""Exhaustive grid search over every combination of a finite space."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from hyperdock.jsonutil import dumps
from hyperdock.samplers.base import Sampler
from hyperdock.space import Space
from hyperdock.trial import Trial


class GridSampler(Sampler):
    """Visits every distinct grid point once, in the space's order.

    Raises:
        SpaceError: on construction, when a parameter is continuous (names it).
    """

    name = "grid"

    def __init__(self, space: Space, seed: int) -> None:
        super().__init__(space, seed)
        self._source: Iterator[dict[str, Any]] = self._unique(space.grid())
        self._points: list[dict[str, Any]] = []
        self._exhausted = False
        self._size: int | None = None
        self._lock = threading.Lock()
        self._fill(1)  # fail early on a continuous space

    @staticmethod
    def _unique(points: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        for point in points:
            key = dumps(point)
            if key not in seen:
                seen.add(key)
                yield point

    def _fill(self, upto: int) -> None:
        with self._lock:
            self._fill_unlocked(upto)

    def _fill_unlocked(self, upto: int) -> None:
        while not self._exhausted and len(self._points) < upto:
            nxt = next(self._source, None)
            if nxt is None:
                self._exhausted = True
                self._size = len(self._points)
            else:
                self._points.append(nxt)

    def size(self) -> int | None:
        """Number of distinct grid points (enumerates the grid once)."""
        self._fill(2**62)
        return self._size

    def suggest(self, number: int, trials: Sequence[Trial]) -> dict[str, Any] | None:
        self._fill(number + 1)
        return self._points[number] if number < len(self._points) else None
