"""The points of a finite space, so that no point runs twice while another has not run.

A space is finite when every parameter is discrete (choices, grid axes, quantised and
integer ranges, conditions included). A sampler that is not the grid may suggest a
point that has a trial already (TPE on three points did so dozens of times); the
supervisor then swaps in a point without one, and ends the experiment once every
point was tried.

Spaces of up to :data:`LISTED_POINTS` points are listed once, duplicates dropped.
Larger ones are never enumerated: point ``k`` is decoded by index
(:meth:`Space.lazy_grid`), a free point is found by random draws and, failing those,
a scan from a random start that stops at the first free point (so it visits at most
one point more than the trials there are).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

from hyperdock.jsonutil import dumps
from hyperdock.space import Space

__all__ = ["LISTED_POINTS", "FinitePoints"]

#: A finite space with at most this many points is listed (and deduplicated) once.
LISTED_POINTS = 10_000
#: Random draws for a free point of a large space before scanning.
_DRAWS = 64


class FinitePoints:
    """The distinct points of one finite space.

    Build it with :meth:`of`. Points are compared as JSON (:func:`dumps`), the way the
    store keeps them.
    """

    def __init__(self, space: Space) -> None:
        """Use :meth:`of`: ``space`` must be finite."""
        self._listed = space.finite_points(LISTED_POINTS)
        self._keys = None if self._listed is None else [dumps(p) for p in self._listed]
        self._lazy = None if self._listed is not None else space.lazy_grid()

    @classmethod
    def of(cls, space: Space) -> FinitePoints | None:
        """The points of ``space``, or None when it is not finite (a continuous or
        unbounded parameter) or has no parameters (its one point is all it can do)."""
        if not space.parameters() or space.grid_size() is None:
            return None
        return cls(space)

    @property
    def size(self) -> int:
        """How many points: exact for a listed space; for a large one the grid's size
        (a point that two choice options both produce counts twice, which is rare)."""
        if self._keys is not None:
            return len(self._keys)
        assert self._lazy is not None
        return self._lazy.size

    def all_tried(self, seen: Iterable[str]) -> bool:
        """Whether every point is among ``seen`` (keys as :func:`dumps` gives them)."""
        seen = seen if isinstance(seen, set) else set(seen)
        if self._keys is not None:
            return seen.issuperset(self._keys)
        return len(seen) >= self.size or self.free_point(random.Random(0), seen) is None

    def free_point(self, rng: random.Random, seen: set[str]) -> dict[str, Any] | None:
        """A point whose key is not in ``seen``, picked with ``rng``; None when every
        point is in ``seen``. The point is a fresh copy."""
        if self._listed is not None and self._keys is not None:
            free = [p for p, k in zip(self._listed, self._keys, strict=True) if k not in seen]
            return _copy(rng.choice(free)) if free else None
        assert self._lazy is not None
        size = self._lazy.size
        for _ in range(_DRAWS):
            point = self._lazy.at(rng.randrange(size))
            if dumps(point) not in seen:
                return _copy(point)
        start = rng.randrange(size)
        for i in range(size):  # ends at the first free point: at most len(seen) + 1 steps
            point = self._lazy.at((start + i) % size)
            if dumps(point) not in seen:
                return _copy(point)
        return None


def _copy(point: Any) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(dumps(point))  # shares nothing with the space
    return copied
