"""Hyperdock's TPE: optuna's multivariate TPE with a sharper good-trial density.

A Tree-structured Parzen Estimator splits the finished trials into the best ``gamma``
share ("good") and the rest ("bad"), fits a Parzen estimator to each, ``l(x)`` and
``g(x)``, draws candidates from ``l(x)`` and takes the one with the largest
``l(x) / g(x)``. Three changes to optuna's (``TPESampler(multivariate=True,
group=True)``), all in ``l(x)`` and the candidates, make it exploit more as trials
accumulate, which is what a budget of a hundred or so trials needs:

* rank weights: the good trial of rank ``r`` (0 = best) weighs ``1 / (1 + r)`` in
  ``l(x)`` instead of all weighing the same (:func:`rank_weights`), so candidates come
  mostly from near the best few points;
* shrinking bandwidths: the kernels of ``l(x)`` (not its prior) are narrowed by
  ``sqrt(BANDWIDTH_TRIALS / n)`` once ``n`` trials have completed
  (:func:`bandwidth_scale`), so late candidates refine the best points;
* :data:`N_EI_CANDIDATES` candidates per suggestion instead of optuna's 24.

``g(x)``, the split (``gamma``), optuna's bandwidth rule, the prior, the random start
(10 trials) and the groups of a conditional space are optuna's. With several objectives
the sampler is optuna's unchanged (its ``l(x)`` is not rank-based there). It overrides
private methods of optuna 5's ``TPESampler`` (``_build_parzen_estimator``, ``_sample``,
``_compute_acquisition_func``), so Hyperdock uses it with optuna 5 only.

Pending trials (queued or running) stay in ``g(x)`` as optuna's constant liar has them,
so parallel workers get distinct points; in a discrete space, where the liar alone lets
a candidate equal to a pending point through, such a candidate is not picked while any
other is left (not across the groups of a conditional space, nor in the random start).

The sampler keeps no state between suggestions: Hyperdock rebuilds it for every trial
from the stored history and a seed, so a seeded run is reproducible and a restarted
supervisor proposes what the old one would have.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.probability_distributions import (
    _BatchedCategoricalDistributions,
    _BatchedDistributions,
)
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace, _SearchSpaceGroup
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

#: Candidates drawn from ``l(x)`` per suggestion (optuna's default is 24).
N_EI_CANDIDATES = 64
#: A good trial of rank ``r`` weighs ``1 / (1 + r) ** RANK_POWER`` in ``l(x)``.
RANK_POWER = 1.0
#: The kernels of ``l(x)`` keep optuna's width up to this many completed trials.
BANDWIDTH_TRIALS = 10
#: ... and narrow as ``(BANDWIDTH_TRIALS / n) ** BANDWIDTH_POWER`` after that.
BANDWIDTH_POWER = 0.5


def rank_weights(ranks: np.ndarray, power: float = RANK_POWER) -> np.ndarray:
    """Weights in ``l(x)`` for good trials of the given ranks (0 = best).

    Args:
        ranks: Each trial's rank among the good trials.
        power: How fast the weight falls with the rank (0: all equal, as optuna's).

    Returns:
        ``1 / (1 + rank) ** power``, one per trial.
    """
    out: np.ndarray = (1.0 + ranks.astype(float)) ** -power
    return out


def bandwidth_scale(
    completed: int, trials: int = BANDWIDTH_TRIALS, power: float = BANDWIDTH_POWER
) -> float:
    """The factor on the kernel widths of ``l(x)`` after ``completed`` completed trials.

    Args:
        completed: Trials completed so far in the study.
        trials: Up to this many, optuna's widths (factor 1).
        power: How fast the factor falls after that.

    Returns:
        ``min(1, (trials / completed) ** power)``.
    """
    if completed <= trials:
        return 1.0
    return math.pow(trials / completed, power)


class _ShrunkParzenEstimator(_ParzenEstimator):
    """optuna's Parzen estimator with its numerical kernels (not the prior) narrowed.

    Args:
        observations: Internal values of each parameter, one per trial.
        search_space: The parameters' distributions.
        parameters: optuna's estimator settings.
        predetermined_weights: One weight per trial, or None for optuna's.
        scale: The factor on the kernel widths.
    """

    def __init__(
        self,
        observations: dict[str, np.ndarray],
        search_space: dict[str, BaseDistribution],
        parameters: _ParzenEstimatorParameters,
        predetermined_weights: np.ndarray | None = None,
        *,
        scale: float = 1.0,
    ) -> None:
        self._scale = scale  # read by the base class's __init__, so set first
        super().__init__(observations, search_space, parameters, predetermined_weights)

    def _calculate_numerical_distributions(
        self,
        observations: np.ndarray,
        search_space: FloatDistribution | IntDistribution,
        parameters: _ParzenEstimatorParameters,
    ) -> _BatchedDistributions:
        dist = super()._calculate_numerical_distributions(observations, search_space, parameters)
        if self._scale == 1.0 or isinstance(dist, _BatchedCategoricalDistributions):
            return dist
        if len(dist.sigma) <= 1:  # the prior alone
            return dist
        sigma = dist.sigma.copy()
        sigma[:-1] *= self._scale  # the last kernel is the prior's
        return dist._replace(sigma=sigma)


def _rank_key(trial: FrozenTrial, sign: float) -> tuple[int, float, int]:
    """Sort key of a good trial: completed ones by value, then the others (pruned ones)
    by number."""
    if trial.state == TrialState.COMPLETE and trial.values is not None:
        return (0, sign * float(trial.values[0]), trial.number)
    return (1, 0.0, trial.number)


def _within(trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> bool:
    """``trial`` has a value for every parameter of ``search_space`` and none elsewhere
    (but for parameters that can take one value only)."""
    names = trial.params.keys()
    if not search_space.keys() <= names:
        return False
    return all(trial.distributions[n].single() for n in names - search_space.keys())


class _DistinctGroups(_GroupDecomposedSearchSpace):
    """optuna's grouping of a conditional space into parameter groups, reading each
    distinct distributions dict once: a window study's trials share them (one per set of
    parameters present), and a set seen before changes no group, so the groups are the
    same as optuna's."""

    def calculate(self, study: Study, use_cache: bool = False) -> _SearchSpaceGroup:
        states = (TrialState.COMPLETE, TrialState.PRUNED)[: 2 if self._include_pruned else 1]
        seen: set[int] = set()
        for trial in study._get_trials(deepcopy=False, states=states, use_cache=use_cache):
            if id(trial.distributions) not in seen:
                seen.add(id(trial.distributions))
                self._search_space.add_distributions(trial.distributions)
        return copy.deepcopy(self._search_space)


class RankWeightedTPESampler(TPESampler):
    """optuna's multivariate, grouped, constant-liar ``TPESampler`` with a sharper
    ``l(x)``: rank-weighted good trials and kernels that narrow as trials complete (see
    the module docstring).

    Args:
        seed: The seed of this suggestion.
        rank_power: See :func:`rank_weights`.
        bandwidth_trials: See :func:`bandwidth_scale`.
        bandwidth_power: See :func:`bandwidth_scale`.
        n_ei_candidates: Candidates drawn from ``l(x)`` per suggestion.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        rank_power: float = RANK_POWER,
        bandwidth_trials: int = BANDWIDTH_TRIALS,
        bandwidth_power: float = BANDWIDTH_POWER,
        n_ei_candidates: int = N_EI_CANDIDATES,
    ) -> None:
        super().__init__(
            seed=seed,
            constant_liar=True,
            multivariate=True,
            group=True,
            n_ei_candidates=n_ei_candidates,
        )
        self._group_decomposed_search_space = _DistinctGroups(True)
        self.rank_power = rank_power
        self.bandwidth_trials = bandwidth_trials
        self.bandwidth_power = bandwidth_power
        self._pending: np.ndarray | None = None  # set during one _sample call
        #: Completed trials of the whole history when the study holds a window of it
        #: (None: count the study's); the bandwidths narrow with the whole history.
        self.completed_total: int | None = None

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """optuna's, with the pending trials' points (internal values, one row each) at
        hand so that no candidate equal to one of them is picked.

        Only pending trials whose every (non-constant) parameter is in ``search_space``
        count: in a conditional space, sampled one group of parameters at a time, equal
        values in one group (the same branch of a choice, say) do not make equal points.
        """
        running = study._get_trials(deepcopy=False, states=(TrialState.RUNNING,), use_cache=False)
        others = [t for t in running if t.number != trial.number and _within(t, search_space)]
        if others:
            values = self._get_internal_repr(others, search_space, study)
            self._pending = np.column_stack([values[name] for name in search_space])
        try:
            return super()._sample(study, trial, search_space)
        finally:
            self._pending = None

    def _compute_acquisition_func(
        self,
        samples: dict[str, np.ndarray],
        mpe_below: _ParzenEstimator,
        mpe_above: _ParzenEstimator,
    ) -> np.ndarray:
        acq = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        if self._pending is None:
            return acq
        candidates = np.column_stack(list(samples.values()))
        taken = (candidates[:, None, :] == self._pending[None, :, :]).all(axis=2).any(axis=1)
        if taken.all():  # nothing else to offer: optuna's choice
            return acq
        out: np.ndarray = np.where(taken, -np.inf, acq)
        return out

    def _build_parzen_estimator(
        self,
        study: Study,
        search_space: dict[str, BaseDistribution],
        trials: list[FrozenTrial],
        handle_below: bool,
    ) -> _ParzenEstimator:
        if not handle_below or study._is_multi_objective():
            return super()._build_parzen_estimator(study, search_space, trials, handle_below)
        # The trials optuna's estimator uses: those that have every parameter here.
        usable = [t for t in trials if search_space.keys() <= self._get_params(t, study).keys()]
        observations = self._get_internal_repr(usable, search_space, study)
        weights = None
        if usable:
            sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
            order = sorted(range(len(usable)), key=lambda i: _rank_key(usable[i], sign))
            ranks = np.empty(len(usable), dtype=int)
            ranks[order] = np.arange(len(usable))
            weights = rank_weights(ranks, self.rank_power)
        completed = self.completed_total
        if completed is None:
            completed = len(
                study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=False)
            )
        scale = bandwidth_scale(completed, self.bandwidth_trials, self.bandwidth_power)
        return _ShrunkParzenEstimator(
            observations, search_space, self._parzen_estimator_parameters, weights, scale=scale
        )
