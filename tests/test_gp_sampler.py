"""Tests of :mod:`hyperdock.samplers.gp` (numpy/scipy Gaussian-process sampler for optuna)."""

from __future__ import annotations

import logging
import math
import statistics

import numpy as np
import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import Trial, create_trial

from hyperdock.samplers.gp import FitState, GPSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

BRANIN_MIN = 0.397887


def branin(trial: Trial) -> float:
    x1 = trial.suggest_float("x1", -5.0, 10.0)
    x2 = trial.suggest_float("x2", 0.0, 15.0)
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    t = 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def best_values(make_sampler: type[optuna.samplers.BaseSampler] | type[GPSampler]) -> list[float]:
    values = []
    for seed in range(5):
        study = optuna.create_study(sampler=make_sampler(seed=seed))
        study.optimize(branin, n_trials=40)
        values.append(study.best_value)
    return values


def test_branin_beats_random_search() -> None:
    gp = statistics.median(best_values(GPSampler))
    rnd = statistics.median(best_values(optuna.samplers.RandomSampler))
    assert gp < 0.6
    assert gp - BRANIN_MIN < 0.5 * (rnd - BRANIN_MIN)


def test_maximize_direction() -> None:
    study = optuna.create_study(direction="maximize", sampler=GPSampler(seed=0))
    study.optimize(lambda t: -branin(t), n_trials=30)
    assert study.best_value > -1.0


def test_mixed_space_suggestions_are_valid() -> None:
    seen: list[dict[str, object]] = []

    def objective(trial: Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        units = trial.suggest_int("units", 16, 256, step=16)
        layers = trial.suggest_int("layers", 1, 5)
        drop = trial.suggest_float("drop", 0.0, 0.5, step=0.1)
        act = trial.suggest_categorical("act", ["relu", "tanh", "gelu"])
        seen.append(dict(trial.params))
        penalty = {"relu": 0.0, "tanh": 0.5, "gelu": 0.2}[act]
        return (math.log10(lr) + 3) ** 2 + (units - 128) ** 2 / 1e4 + layers + drop + penalty

    study = optuna.create_study(sampler=GPSampler(seed=1))
    study.optimize(objective, n_trials=25)
    assert len(seen) == 25
    for p in seen:
        assert isinstance(p["lr"], float) and 1e-5 <= p["lr"] <= 1e-1
        assert type(p["units"]) is int and 16 <= p["units"] <= 256 and p["units"] % 16 == 0
        assert type(p["layers"]) is int and 1 <= p["layers"] <= 5
        assert isinstance(p["drop"], float) and 0.0 <= p["drop"] <= 0.5
        assert abs(p["drop"] * 10 - round(p["drop"] * 10)) < 1e-8
        assert p["act"] in ("relu", "tanh", "gelu")
    assert len({p["lr"] for p in seen[10:]}) > 1


def test_pending_trials_get_distinct_suggestions() -> None:
    study = optuna.create_study(sampler=GPSampler(seed=3))
    study.optimize(branin, n_trials=12)
    points = []
    for _ in range(4):
        trial = study.ask()  # left RUNNING: never told
        x1, x2 = trial.suggest_float("x1", -5.0, 10.0), trial.suggest_float("x2", 0.0, 15.0)
        points.append(np.array([(x1 + 5.0) / 15.0, x2 / 15.0]))
    for i in range(4):
        for j in range(i):
            assert np.linalg.norm(points[i] - points[j]) > 1e-3


def test_multi_objective_is_rejected() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=GPSampler())
    with pytest.raises(ValueError, match="one objective"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1)


def _history_study(seed: int) -> optuna.Study:
    rng = np.random.default_rng(42)
    dists: dict[str, BaseDistribution] = {
        "a": FloatDistribution(-1.0, 1.0),
        "b": FloatDistribution(1e-3, 1.0, log=True),
    }
    study = optuna.create_study(sampler=GPSampler(seed=seed))
    for _ in range(15):
        params = {"a": float(rng.uniform(-1, 1)), "b": float(10 ** rng.uniform(-3, 0))}
        value = params["a"] ** 2 + math.log10(params["b"]) ** 2
        study.add_trial(create_trial(params=params, distributions=dists, value=value))
    return study


def test_same_seed_and_history_give_same_suggestion() -> None:
    def suggest(study: optuna.Study) -> tuple[float, float]:
        trial = study.ask()
        return trial.suggest_float("a", -1.0, 1.0), trial.suggest_float("b", 1e-3, 1.0, log=True)

    assert suggest(_history_study(7)) == suggest(_history_study(7))


def test_independent_sampling_warns_once_per_parameter(caplog: pytest.LogCaptureFixture) -> None:
    def objective(trial: Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number % 2:
            return x + trial.suggest_float("extra", 0.0, 1.0)
        return x

    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=4))
    with caplog.at_level(logging.WARNING, logger="hyperdock.samplers.gp"):
        study.optimize(objective, n_trials=12)
    warnings = [r for r in caplog.records if r.name == "hyperdock.samplers.gp"]
    assert len(warnings) == 1
    assert "'extra'" in warnings[0].getMessage()


def test_warm_started_fits_keep_a_seeded_run_reproducible() -> None:
    """Each fit starts from the previous suggestion's hyperparameters (a full fit every
    few): the same seed still gives the same trials."""

    def run() -> tuple[list[dict[str, object]], GPSampler]:
        sampler = GPSampler(seed=11)
        study = optuna.create_study(sampler=sampler)
        study.optimize(branin, n_trials=35)
        return [t.params for t in study.trials], sampler

    (first, sampler), (second, _) = run(), run()
    assert first == second
    assert sampler.fit_state.fits == 25 and sampler.fit_state.theta is not None


def test_fresh_samplers_sharing_a_fit_state_are_reproducible() -> None:
    """Hyperdock builds a sampler per suggestion (its own seed) around one FitState: the
    fit carries over, and the same seeds give the same trials."""

    def run() -> tuple[list[tuple[float, float]], FitState]:
        state, study, out = FitState(), _history_study(0), []
        for i in range(6):
            study.sampler = GPSampler(seed=100 + i, fit_state=state)
            trial = study.ask()
            a = trial.suggest_float("a", -1.0, 1.0)
            b = trial.suggest_float("b", 1e-3, 1.0, log=True)
            study.tell(trial, a**2 + math.log10(b) ** 2)
            out.append((a, b))
        return out, state

    (first, state), (second, _) = run(), run()
    assert first == second
    assert state.fits == 6 and state.full_n == 19  # full fits at 15 and 19 points only
