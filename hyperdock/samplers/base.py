"""The sampler contract: which parameters the n-th trial of an experiment gets."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

from hyperdock.space import Space
from hyperdock.trial import Trial


class Sampler(abc.ABC):
    """Proposes parameter sets for an experiment.

    Rules:
        * ``suggest(number, trials)`` returns the parameters of trial ``number`` (0-based,
          in creation order), or ``None`` when the sampler has nothing left to propose.
        * Non-adaptive samplers (``adaptive = False``) depend only on the space, the seed
          and ``number``: a restarted supervisor proposes exactly what the old one would
          have, and the supervisor may queue many trials ahead.
        * Adaptive samplers also read ``trials``: the trials that changed since the
          last call, finished or not (they keep their own mirror of the experiment;
          the supervisor keeps that mirror in step itself and passes ``[]``). The
          supervisor then keeps the queue short.
        * Returned values are plain JSON (see :func:`hyperdock.jsonutil.to_jsonable`).
    """

    name: ClassVar[str] = ""
    adaptive: ClassVar[bool] = False

    def __init__(self, space: Space, seed: int) -> None:
        self.space = space
        self.seed = seed

    def size(self) -> int | None:
        """How many distinct parameter sets exist, or None when unbounded."""
        return None

    @abc.abstractmethod
    def suggest(self, number: int, trials: Sequence[Trial]) -> dict[str, Any] | None:
        """Parameters for trial ``number``; None when exhausted."""
