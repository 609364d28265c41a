"""Random search: independent draws, reproducible per seed and trial number."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from hyperdock.samplers.base import Sampler
from hyperdock.trial import Trial


class RandomSampler(Sampler):
    """Draws trial ``n`` from a generator seeded with ``(seed, n)``.

    So trial ``n`` gets the same parameters whatever the order, the number of workers or
    supervisor restarts, and different trials get different draws.
    """

    name = "random"

    def suggest(self, number: int, trials: Sequence[Trial]) -> dict[str, Any] | None:
        return self.space.sample(random.Random(f"hyperdock:{self.seed}:{number}"))
