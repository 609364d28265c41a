"""Adaptive samplers through optuna's ask/tell: tpe, gp, cmaes, nsga2 and qmc.

Each suggestion syncs the experiment's trials into a :class:`~hyperdock.study.StudyMirror`
and asks the named optuna sampler for the next point, on a bounded window of the
history (see :mod:`hyperdock.history`: TPE sees at most 1,000 finished trials, the GP
128, CMA-ES its recent generations). The sampler is rebuilt for every
trial number with a seed derived from ``(seed, number)`` (QMC keeps the experiment's
seed: its sequence must stay one sequence), so a seeded run is reproducible and a
restarted supervisor proposes what the old one would have, given the same history. The
GP carries one thing across suggestions: its fitted hyperparameters, the start of the
next fit (see :class:`~hyperdock.samplers.gp.FitState`); a restarted supervisor fits
them afresh, so its first GP suggestions may differ slightly from the old one's.

``tpe`` is :class:`~hyperdock.samplers.tpe.RankWeightedTPESampler`: optuna's
multivariate TPE with a sharper good-trial density (rank weights, bandwidths that
narrow as trials complete, 64 candidates). It builds on optuna 5's TPE internals, so
with another major version of optuna ``tpe`` is optuna's own TPE. The other samplers
are optuna's own.

Pending trials (queued or running) are ``RUNNING`` in the mirror: TPE runs with
``constant_liar=True`` and the GP sampler with its own liar, so parallel workers get
distinct points. Parts of a space a sampler cannot model (CMA-ES and QMC: categorical
and conditional parameters) are sampled independently, with optuna's warning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from hyperdock.errors import ConfigError
from hyperdock.objectives import Objectives
from hyperdock.optunautil import import_optuna
from hyperdock.samplers.base import Sampler
from hyperdock.space import Space
from hyperdock.study import StudyMirror
from hyperdock.trial import Trial

#: The optuna-backed sampler names.
OPTUNA_SAMPLERS = ("tpe", "gp", "cmaes", "nsga2", "qmc")
#: Samplers that handle one objective only.
SINGLE_OBJECTIVE = ("gp", "cmaes")


def derive_seed(seed: int, number: int) -> int:
    """A 32-bit seed for trial ``number`` of an experiment seeded ``seed``."""
    digest = hashlib.blake2b(f"hyperdock:{seed}:{number}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def build_optuna_sampler(name: str, seed: int, state: Any = None) -> Any:
    """The optuna sampler called ``name``, seeded; ``state``: what the GP carries from
    one suggestion to the next (a :class:`~hyperdock.samplers.gp.FitState`)."""
    opt = import_optuna()
    if name == "tpe":
        if int(opt.__version__.split(".")[0]) == 5:
            from hyperdock.samplers.tpe import RankWeightedTPESampler

            return RankWeightedTPESampler(seed=seed)
        # other optuna versions: its own TPE (ours builds on optuna 5's TPE internals).
        return opt.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True, group=True)
    if name == "gp":
        from hyperdock.samplers.gp import GPSampler

        return GPSampler(seed=seed, fit_state=state)
    if name == "cmaes":
        return opt.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=True)
    if name == "nsga2":
        return opt.samplers.NSGAIISampler(seed=seed)
    if name == "qmc":
        return opt.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=True)
    raise ConfigError(f"unknown optuna sampler {name!r}")  # pragma: no cover


class OptunaSampler(Sampler):
    """One of :data:`OPTUNA_SAMPLERS`, driving a :class:`StudyMirror`.

    Args:
        name: The sampler's name.
        space: The experiment's space.
        seed: The experiment's seed.
        objectives: What the experiment optimises.

    Raises:
        ConfigError: the sampler cannot handle several objectives.
    """

    adaptive = True

    def __init__(
        self, name: str, space: Space, seed: int, objectives: Objectives | None = None
    ) -> None:
        super().__init__(space, seed)
        objectives = objectives or Objectives()
        if objectives.multi and name in SINGLE_OBJECTIVE:
            raise ConfigError(
                f"the {name} sampler handles one objective; with several use tpe or nsga2"
            )
        if name == "cmaes":
            import importlib.util

            if importlib.util.find_spec("cmaes") is None:
                raise ConfigError("the cmaes sampler needs the cmaes package: pip install cmaes")
        self.kind = name
        self.mirror = StudyMirror(space, objectives)
        self._state: Any = None  # the GP's fit, warm-started from one suggestion to the next
        if name == "gp":
            from hyperdock.samplers.gp import FitState

            self._state = FitState()

    def suggest(self, number: int, trials: Sequence[Trial]) -> dict[str, Any] | None:
        self.mirror.sync(trials)
        seed = self.seed % 2**32 if self.kind == "qmc" else derive_seed(self.seed, number)
        sampler = build_optuna_sampler(self.kind, seed, self._state)
        return self.mirror.ask(number, sampler, kind=self.kind, seed=derive_seed(self.seed, number))
