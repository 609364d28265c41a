"""Gaussian-process Bayesian optimisation as an optuna sampler, with numpy and scipy only.

Model:
    Every parameter of the study's intersection search space is encoded into the unit cube:
    floats and ints linearly or on a log scale (ints and stepped floats padded by half a step
    so that each grid value owns an equal slice, and rounded back when decoding),
    categoricals one-hot. Objective values are negated for ``maximize`` and standardised.
    The surrogate is a zero-mean GP with a Matern-5/2 ARD kernel, a signal variance and a
    noise variance (at least 1e-6); its log-parameters maximise the log marginal likelihood
    (analytic gradient, scipy L-BFGS-B, a default start plus two random restarts).

Warm start (:class:`FitState`):
    A full fit (three starts, up to 200 iterations each) costs hundreds of milliseconds
    on the 128 points of a large experiment's window. When the sampler is given the
    previous suggestion's fitted log-parameters, it refines them instead: one L-BFGS-B
    start from there, at most :data:`WARM_ITERATIONS` iterations. A full fit (which also
    starts from the previous optimum) still runs on the first suggestion, every
    :data:`FULL_FIT_EVERY`-th one, and when the observations grew by more than a
    quarter since the last full fit (an early experiment's model changes fast). The
    fits depend only on the sequence of suggestions and the seeds: the same history and
    seed give the same suggestions.

Pending trials (a "constant liar"):
    Trials that are still RUNNING (queued or being evaluated by other workers) are added,
    after the hyperparameters have been fitted on the real observations only, as fake
    observations at the best value seen so far. The posterior variance collapses there and
    the posterior mean between a lie and a real point is pulled back towards the prior mean,
    so the expected improvement near pending points vanishes and parallel suggestions spread
    out instead of piling onto the incumbent.

Acquisition:
    Log expected improvement, using the numerically stable formulation of Ament et al.
    (2023, "Unexpected Improvements to Expected Improvement") based on ``erfcx``, so that
    it keeps a useful slope far from the incumbent where plain EI underflows to zero. It is
    maximised over scrambled-Sobol points plus Gaussian perturbations of the best
    observations; the five best candidates are refined with L-BFGS-B over the numeric
    dimensions (categorical one-hot blocks stay fixed; the five in one run on the sum of
    their acquisitions, so each step scores all of them in one batch) and snapped back
    to the grid.

Why not ``optuna.samplers.GPSampler``: it needs torch, which is far too heavy a dependency
for hyperdock's supervisor; this module only needs numpy and scipy.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from scipy.linalg import cho_solve, solve_triangular
from scipy.linalg.lapack import dpotri
from scipy.optimize import minimize
from scipy.special import erfcx, ndtr
from scipy.stats import qmc

__all__ = ["FitState", "GPSampler"]

_logger = logging.getLogger("hyperdock.samplers.gp")

_Array = npt.NDArray[np.float64]
_Numeric = FloatDistribution | IntDistribution
_SQRT5 = math.sqrt(5.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LS_BOUNDS = (math.log(1e-2), math.log(1e1))
_SF2_BOUNDS = (math.log(1e-2), math.log(1e2))
_SN2_BOUNDS = (math.log(1e-6), math.log(1.0))
#: Best candidates of the acquisition refined by L-BFGS-B.
REFINED = 5
#: L-BFGS-B iterations of a warm-started hyperparameter fit.
WARM_ITERATIONS = 25
#: Every this many fits is a full one (three starts).
FULL_FIT_EVERY = 10
#: A full fit when the observations grew by more than this factor since the last one.
FULL_FIT_GROWTH = 1.25


@dataclass
class FitState:
    """The GP's hyperparameter fit carried from one suggestion to the next (see the module
    docstring): give the same object to the samplers of successive suggestions.

    Attributes:
        theta: The last fitted log-parameters (None: no fit yet).
        fits: Fits done so far.
        full_n: Observations at the last full fit.
    """

    theta: _Array | None = None
    fits: int = 0
    full_n: int = 0


class _Encoder:
    """Maps parameter dicts to feature rows (unit cube, one-hot) and back."""

    def __init__(self, space: dict[str, BaseDistribution]) -> None:
        self.names = sorted(space)
        self.dists = [space[n] for n in self.names]
        self.cols: list[slice] = []
        start = 0
        for d in self.dists:
            width = len(d.choices) if isinstance(d, CategoricalDistribution) else 1
            self.cols.append(slice(start, start + width))
            start += width
        self.dim = start
        self.numeric = np.zeros(start, dtype=bool)
        for d, c in zip(self.dists, self.cols, strict=True):
            self.numeric[c] = not isinstance(d, CategoricalDistribution)

    @staticmethod
    def _bounds(d: _Numeric) -> tuple[float, float]:
        half = 0.5 * d.step if d.step is not None else 0.0
        lo, hi = d.low - half, d.high + half
        return (math.log(lo), math.log(hi)) if d.log else (lo, hi)

    def _to_unit(self, d: _Numeric, v: _Array) -> _Array:
        lo, hi = self._bounds(d)
        t = np.log(v) if d.log else v
        return np.clip((t - lo) / (hi - lo), 0.0, 1.0)

    def _from_unit(self, d: _Numeric, u: _Array) -> _Array:
        lo, hi = self._bounds(d)
        v = lo + np.clip(u, 0.0, 1.0) * (hi - lo)
        v = np.exp(v) if d.log else v
        if d.step is not None:
            v = d.low + np.round((v - d.low) / d.step) * d.step
        return np.clip(v, d.low, d.high)

    def encode(self, params: dict[str, Any]) -> _Array:
        x = np.zeros(self.dim)
        for name, d, c in zip(self.names, self.dists, self.cols, strict=True):
            if isinstance(d, CategoricalDistribution):
                x[c.start + int(d.to_internal_repr(params[name]))] = 1.0
            else:
                assert isinstance(d, _Numeric)
                x[c] = self._to_unit(d, np.array([float(params[name])]))
        return x

    def snap(self, x: _Array) -> _Array:
        """Rounds ints and stepped floats of feature rows ``x`` to their grid, in place."""
        for d, c in zip(self.dists, self.cols, strict=True):
            if isinstance(d, _Numeric) and d.step is not None:
                x[..., c.start] = self._to_unit(d, self._from_unit(d, x[..., c.start]))
        return x

    def from_param_unit(self, u: _Array) -> _Array:
        """Feature rows from one uniform [0, 1) value per parameter."""
        x = np.zeros((len(u), self.dim))
        for j, (d, c) in enumerate(zip(self.dists, self.cols, strict=True)):
            if isinstance(d, CategoricalDistribution):
                k = len(d.choices)
                idx = np.minimum((u[:, j] * k).astype(int), k - 1)
                x[np.arange(len(u)), c.start + idx] = 1.0
            else:
                x[:, c.start] = u[:, j]
        return self.snap(x)

    def to_param_unit(self, x: _Array) -> _Array:
        u = np.zeros((len(x), len(self.dists)))
        for j, (d, c) in enumerate(zip(self.dists, self.cols, strict=True)):
            if isinstance(d, CategoricalDistribution):
                u[:, j] = (np.argmax(x[:, c], axis=1) + 0.5) / len(d.choices)
            else:
                u[:, j] = x[:, c.start]
        return u

    def decode(self, x: _Array) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, d, c in zip(self.names, self.dists, self.cols, strict=True):
            if isinstance(d, CategoricalDistribution):
                params[name] = d.choices[int(np.argmax(x[c]))]
            else:
                assert isinstance(d, _Numeric)
                v = float(self._from_unit(d, x[c])[0])
                params[name] = round(v) if isinstance(d, IntDistribution) else v
        return params


def _sq_diff(x1: _Array, x2: _Array) -> _Array:
    """Squared coordinate differences, shape ``(len(x1), len(x2), dim)``."""
    return (x1[:, None, :] - x2[None, :, :]) ** 2


def _matern(sq: _Array, ls: _Array) -> tuple[_Array, _Array]:
    """Unit-variance Matern-5/2 kernel from squared differences; also returns sqrt(5) * r."""
    s5r = _SQRT5 * np.sqrt(sq @ (1.0 / ls**2))
    return (1.0 + s5r + s5r**2 / 3.0) * np.exp(-s5r), s5r


def _neg_log_likelihood(theta: _Array, sq: _Array, y: _Array) -> tuple[float, _Array]:
    """Negative log marginal likelihood and its gradient in the log-parameters."""
    ls, sf2, sn2 = np.exp(theta[:-2]), math.exp(theta[-2]), math.exp(theta[-1])
    k, s5r = _matern(sq, ls)
    n = len(y)
    try:
        chol = np.linalg.cholesky(sf2 * k + (sn2 + 1e-8) * np.eye(n))
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    alpha = cho_solve((chol, True), y)
    nll = 0.5 * float(y @ alpha) + float(np.log(np.diag(chol)).sum()) + n * _LOG_SQRT_2PI
    # d nll / d theta = 0.5 * tr((K^-1 - alpha alpha^T) dK / d theta)
    inv, info = dpotri(chol, lower=True)  # K^-1 from its Cholesky factor (lower triangle)
    if info != 0:
        return 1e10, np.zeros_like(theta)
    inv = np.tril(inv) + np.tril(inv, -1).T
    w = inv - np.outer(alpha, alpha)
    g_ls = w * (sf2 * (5.0 / 3.0) * (1.0 + s5r) * np.exp(-s5r))
    grad = np.empty_like(theta)
    grad[:-2] = 0.5 * (g_ls.reshape(-1) @ sq.reshape(n * n, -1)) / ls**2
    grad[-2] = 0.5 * sf2 * float((w * k).sum())
    grad[-1] = 0.5 * sn2 * float(np.trace(w))
    return nll, grad


def _log_h(z: _Array) -> _Array:
    """log(phi(z) + z * Phi(z)), stable for very negative z (Ament et al., 2023)."""
    out = -0.5 * z**2 - _LOG_SQRT_2PI - 2.0 * np.log(np.maximum(-z, 1.0))  # z < -1e5 tail
    hi, mid = z > -1.0, (z <= -1.0) & (z >= -1e5)
    zh, zm = z[hi], z[mid]
    out[hi] = np.log(np.exp(-0.5 * zh**2) / math.sqrt(2 * math.pi) + zh * ndtr(zh))
    # phi(z) + z Phi(z) = phi(z) * (1 - |z| sqrt(pi / 2) erfcx(-z / sqrt(2))) for z < 0.
    a = np.log(-zm) + np.log(erfcx(-zm / math.sqrt(2.0))) + 0.5 * math.log(math.pi / 2.0)
    a = np.minimum(a, -1e-300)
    big = a > -math.log(2.0)
    log1mexp = np.empty_like(a)
    log1mexp[big] = np.log(-np.expm1(a[big]))
    log1mexp[~big] = np.log1p(-np.exp(a[~big]))
    out[mid] = -0.5 * zm**2 - _LOG_SQRT_2PI + log1mexp
    return out


class _GP:
    """A GP conditioned on ``(x, y)`` with fixed hyperparameters ``theta``."""

    def __init__(self, theta: _Array, x: _Array, y: _Array) -> None:
        self.ls, self.sf2, sn2 = np.exp(theta[:-2]), math.exp(theta[-2]), math.exp(theta[-1])
        self.x = x
        k = self.sf2 * _matern(_sq_diff(x, x), self.ls)[0]
        for jitter in (1e-8, 1e-6, 1e-4, 1e-2):
            try:
                self.chol = np.linalg.cholesky(k + (sn2 + jitter) * np.eye(len(y)))
                break
            except np.linalg.LinAlgError:
                continue
        self.alpha: _Array = np.asarray(cho_solve((self.chol, True), y), dtype=np.float64)

    def log_ei(self, xc: _Array, best: float) -> _Array:
        ks = self.sf2 * _matern(_sq_diff(xc, self.x), self.ls)[0]
        mu = ks @ self.alpha
        v: _Array = solve_triangular(self.chol, ks.T, lower=True)
        sigma = np.sqrt(np.maximum(self.sf2 - (v**2).sum(axis=0), 1e-12))
        out: _Array = _log_h((best - mu) / sigma) + np.log(sigma)
        return out


class GPSampler(BaseSampler):
    """Bayesian optimisation with a numpy/scipy Gaussian process and log expected improvement.

    Args:
        seed: Seed of both random generators (GP sampler and fallback random sampler).
        n_startup_trials: Completed trials sampled at random before the GP takes over.
        n_candidates: Candidate points scored by the acquisition before local refinement.
        warn_independent_sampling: Log once per parameter name when a parameter outside the
            relative search space (e.g. a conditional one) is sampled at random.
        fit_state: Where the hyperparameter fit is carried between suggestions (shared by
            the samplers of successive suggestions); None: a state of this sampler's own.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_candidates: int = 2048,
        warn_independent_sampling: bool = True,
        fit_state: FitState | None = None,
    ) -> None:
        self.fit_state = fit_state if fit_state is not None else FitState()
        self._rng = np.random.default_rng(seed)
        self._random_sampler = RandomSampler(seed=seed)
        self._n_startup_trials = n_startup_trials
        self._n_candidates = n_candidates
        self._warn_independent_sampling = warn_independent_sampling
        self._warned: set[str] = set()
        self._search_space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random_sampler.reseed_rng()

    @staticmethod
    def _check_single_objective(study: Study) -> None:
        if len(study.directions) > 1:
            raise ValueError("GPSampler handles one objective; use tpe or nsga2")

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        self._check_single_objective(study)
        return {
            name: d
            for name, d in self._search_space.calculate(study).items()
            if isinstance(d, FloatDistribution | IntDistribution | CategoricalDistribution)
            and not d.single()
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._check_single_objective(study)
        done = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
        if not search_space or len(done) < self._n_startup_trials:
            return {}
        enc = _Encoder(search_space)
        done = [t for t in done if all(n in t.params for n in enc.names)]
        x = np.array([enc.encode(t.params) for t in done])
        y = np.array([t.value for t in done], dtype=np.float64)
        finite = y[np.isfinite(y)]
        y = np.clip(y, finite.min(), finite.max()) if len(finite) else np.zeros_like(y)
        if study.direction == StudyDirection.MAXIMIZE:
            y = -y
        y = (y - y.mean()) / (y.std() if y.std() > 0 else 1.0)
        pending = [
            enc.encode(t.params)
            for t in study._get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number != trial.number
            and all(t.distributions.get(n) == d for n, d in search_space.items())
        ]
        gp_x = np.vstack([x, *pending]) if pending else x
        best = float(y.min())
        gp = _GP(self._fit(x, y), gp_x, np.concatenate([y, np.full(len(pending), best)]))
        return enc.decode(self._maximise(gp, enc, x, y, best))

    def _fit(self, x: _Array, y: _Array) -> _Array:
        d, st = x.shape[1], self.fit_state
        bounds = [_LS_BOUNDS] * d + [_SF2_BOUNDS, _SN2_BOUNDS]
        default = np.array([math.log(0.5)] * d + [0.0, math.log(1e-3)])
        prev = st.theta if st.theta is not None and len(st.theta) == d + 2 else None
        full = prev is None or st.fits % FULL_FIT_EVERY == 0 or len(y) > FULL_FIT_GROWTH * st.full_n
        if full:
            starts = [default if prev is None else prev]
            starts += [self._rng.uniform(*np.array(bounds).T) for _ in range(2)]
            st.full_n = len(y)
        else:
            assert prev is not None
            starts = [prev]
        best_theta, best_nll, sq = starts[0], math.inf, _sq_diff(x, x)
        for theta0 in starts:
            res = minimize(
                _neg_log_likelihood, theta0, args=(sq, y), jac=True, method="L-BFGS-B",
                bounds=bounds, options={"maxiter": 200 if full else WARM_ITERATIONS},
            )  # fmt: skip
            if float(res.fun) < best_nll:
                best_theta, best_nll = np.asarray(res.x, dtype=np.float64), float(res.fun)
        st.theta, st.fits = best_theta, st.fits + 1
        return best_theta

    def _maximise(self, gp: _GP, enc: _Encoder, x: _Array, y: _Array, best: float) -> _Array:
        n_local = self._n_candidates // 4
        n_sobol = max(self._n_candidates - n_local, 1)
        sobol = qmc.Sobol(len(enc.dists), scramble=True, seed=int(self._rng.integers(2**31)))
        u = np.asarray(sobol.random_base2(math.ceil(math.log2(n_sobol))))[:n_sobol]
        top = enc.to_param_unit(x[np.argsort(y)[:5]])
        local = top[self._rng.integers(len(top), size=n_local)]
        local += self._rng.normal(0.0, 0.05, size=local.shape)
        cand = enc.from_param_unit(np.clip(np.vstack([u, local]), 0.0, 1.0 - 1e-9))
        scores, free = gp.log_ei(cand, best), enc.numeric
        n_free = int(free.sum())
        top_i = np.argsort(-scores)[: REFINED if n_free else 0]
        if len(top_i):
            refined = self._refine(gp, enc, cand[top_i], best)
            better = refined[1] > scores[top_i]
            cand[top_i[better]], scores[top_i[better]] = refined[0][better], refined[1][better]
        return np.asarray(cand[int(np.argmax(scores))], dtype=np.float64)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if self._warn_independent_sampling and param_name not in self._warned:
            done = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
            if len(done) >= self._n_startup_trials:
                self._warned.add(param_name)
                _logger.warning(
                    "GPSampler samples parameter %r independently at random (it is not in "
                    "the relative search space, e.g. because it is conditional).",
                    param_name,
                )
        return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)

    @staticmethod
    def _refine(gp: _GP, enc: _Encoder, x0: _Array, best: float) -> tuple[_Array, _Array]:
        """The rows ``x0`` moved by L-BFGS-B over their numeric features to a higher log EI
        (snapped to the grid), and their scores. All rows are refined in one run on the
        sum of their (independent) objectives, so that each step scores every row's
        forward differences in one batch instead of one optimiser run per row."""
        free, k = enc.numeric, len(x0)
        n_free = int(free.sum())
        steps = np.vstack([np.zeros(n_free), 1e-6 * np.eye(n_free)])

        def negacq(z: _Array) -> tuple[float, _Array]:
            xs = np.repeat(x0[:, None, :], n_free + 1, axis=1)
            xs[:, :, free] = z.reshape(k, 1, n_free) + steps
            f = -gp.log_ei(xs.reshape(-1, x0.shape[1]), best).reshape(k, n_free + 1)
            return float(f[:, 0].sum()), ((f[:, 1:] - f[:, :1]) / 1e-6).reshape(-1)

        res = minimize(
            negacq, x0[:, free].reshape(-1), jac=True, method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * (k * n_free), options={"maxiter": 50},
        )  # fmt: skip
        xr = x0.copy()
        xr[:, free] = np.asarray(res.x, dtype=np.float64).reshape(k, n_free)
        enc.snap(xr)
        return xr, gp.log_ei(xr, best)
