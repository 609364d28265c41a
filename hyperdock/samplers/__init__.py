"""Samplers: grid and random natively; :func:`make_sampler` picks one by name."""

from __future__ import annotations

from hyperdock.errors import ConfigError
from hyperdock.samplers.base import Sampler
from hyperdock.space import Space

__all__ = ["SAMPLERS", "Sampler", "make_sampler"]

#: Names accepted by ``--sampler``.
SAMPLERS = ("grid", "random")


def make_sampler(name: str, space: Space, seed: int) -> Sampler:
    """Build the sampler called ``name`` for ``space``.

    Raises:
        ConfigError: unknown name.
        SpaceError: the sampler cannot handle the space (grid on a continuous one).
    """
    if name == "grid":
        from hyperdock.samplers.grid import GridSampler

        return GridSampler(space, seed)
    if name == "random":
        from hyperdock.samplers.random import RandomSampler

        return RandomSampler(space, seed)
    raise ConfigError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
