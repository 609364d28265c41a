"""Samplers: grid and random natively, tpe, gp, cmaes, nsga2 and qmc through optuna;
:func:`make_sampler` picks one by name."""

from __future__ import annotations

from hyperdock.errors import ConfigError
from hyperdock.objectives import Objectives
from hyperdock.samplers.base import Sampler
from hyperdock.space import Space

__all__ = ["SAMPLERS", "Sampler", "default_sampler", "make_sampler"]

#: Names accepted by ``--sampler``.
SAMPLERS = ("tpe", "gp", "cmaes", "nsga2", "qmc", "random", "grid")


def default_sampler(space: Space) -> str:
    """``grid`` for a space made of grid axes only (v0.4 data), else ``tpe`` (as v0.1)."""
    kinds = {p.kind for p in space.parameters()}
    if "grid" in kinds and kinds <= {"grid", "union"} and space.grid_size() is not None:
        return "grid"
    return "tpe"


def make_sampler(
    name: str, space: Space, seed: int, objectives: Objectives | None = None
) -> Sampler:
    """Build the sampler called ``name`` for ``space``.

    Raises:
        ConfigError: unknown name, or a single-objective sampler for several objectives.
        SpaceError: the sampler cannot handle the space (grid on a continuous one).
    """
    if name == "grid":
        from hyperdock.samplers.grid import GridSampler

        return GridSampler(space, seed)
    if name == "random":
        from hyperdock.samplers.random import RandomSampler

        return RandomSampler(space, seed)
    from hyperdock.samplers.optuna import OPTUNA_SAMPLERS, OptunaSampler

    if name in OPTUNA_SAMPLERS:
        return OptunaSampler(name, space, seed, objectives)
    raise ConfigError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
