"""Tests of :mod:`hyperdock.samplers.tpe` (Hyperdock's TPE), through the sampler the
supervisor uses: an :class:`~hyperdock.samplers.optuna.OptunaSampler` rebuilt per trial
over a mirror of the trials, with several asynchronous workers."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pytest

from hyperdock import hp
from hyperdock.samplers import Sampler, make_sampler
from hyperdock.samplers.optuna import build_optuna_sampler
from hyperdock.samplers.tpe import RankWeightedTPESampler, bandwidth_scale, rank_weights
from hyperdock.space import Space
from hyperdock.trial import Trial, TrialState

Loss = Callable[[dict[str, Any]], float]


def sphere_space(dims: int = 4) -> Space:
    return Space.from_obj({f"x{i}": hp.uniform(f"x{i}", -2, 2) for i in range(dims)})


def sphere(p: dict[str, Any]) -> float:
    return float(sum((v - 0.5) ** 2 for k, v in p.items() if k.startswith("x")))


def conditional_space() -> Space:
    return Space.from_obj(
        {
            "model": hp.choice(
                "model",
                [
                    {"kind": "a", "a": hp.uniform("a", -5, 5)},
                    {
                        "kind": "b",
                        "lr": hp.loguniform("lr", math.log(1e-4), 0.0),
                        "units": hp.quniform("units", 8, 64, 8),
                    },
                ],
            )
        }
    )


def conditional(p: dict[str, Any]) -> float:
    m = p["model"]
    if m["kind"] == "a":
        return 1.0 + 0.1 * (m["a"] - 1) ** 2
    return (math.log10(m["lr"]) + 2) ** 2 + ((m["units"] - 32) / 32) ** 2


def key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def run(
    space: Space, loss: Loss, seed: int, n: int, workers: int = 4, sampler: Sampler | None = None
) -> tuple[list[Trial], list[list[dict[str, Any]]]]:
    """``n`` trials with ``workers`` asynchronous workers (random durations): a fresh
    trial is asked for whenever one finishes. Returns the trials and, per suggestion,
    the params of the trials pending when it was made."""
    sampler = sampler or make_sampler("tpe", space, seed)
    rng = random.Random(seed)
    trials: list[Trial] = []
    running: list[tuple[float, int]] = []  # (finish time, index in trials)
    pending_at: list[list[dict[str, Any]]] = []
    now = 0.0
    while len(trials) < n or running:
        while len(running) < workers and len(trials) < n:
            params = sampler.suggest(len(trials), trials)
            assert params is not None
            pending_at.append([trials[i].params for _, i in running])
            number = len(trials)
            trials.append(Trial(number + 1, 1, number, params, TrialState.RUNNING))
            running.append((now + rng.lognormvariate(0.0, 0.5), number))
        running.sort()
        now, i = running.pop(0)
        t = trials[i]
        trials[i] = Trial(t.id, 1, t.number, t.params, TrialState.COMPLETED, loss=loss(t.params))
    return trials, pending_at


def test_tpe_is_the_rank_weighted_sampler() -> None:
    sampler = build_optuna_sampler("tpe", 3)
    assert isinstance(sampler, RankWeightedTPESampler)


def test_rank_weights_and_bandwidths_favour_the_best_late() -> None:
    assert rank_weights(np.array([2, 0, 1])).tolist() == pytest.approx([1 / 3, 1.0, 0.5])
    assert rank_weights(np.array([0, 5]), power=0.0).tolist() == [1.0, 1.0]
    assert bandwidth_scale(0) == bandwidth_scale(10) == 1.0
    assert bandwidth_scale(40) == pytest.approx(0.5)
    assert bandwidth_scale(1000) < bandwidth_scale(100) < 1.0


def test_the_best_trial_weighs_most_in_the_good_density() -> None:
    study = optuna.create_study()
    dist = optuna.distributions.FloatDistribution(0, 1)
    values = [0.5, 0.1, 0.3, 0.9]
    for i, v in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(params={"x": i / 4}, distributions={"x": dist}, value=v)
        )
    sampler = RankWeightedTPESampler(seed=0)
    trials = study.get_trials(deepcopy=False)
    mpe = sampler._build_parzen_estimator(study, {"x": dist}, trials, handle_below=True)
    weights = mpe._mixture_distribution.weights[:-1]  # the last one is the prior's
    assert int(np.argmax(weights)) == 1 and int(np.argmin(weights)) == 3


def test_four_workers_never_share_pending_params() -> None:
    trials, pending_at = run(sphere_space(), sphere, seed=5, n=40)
    assert len({key(t.params) for t in trials}) == 40
    for t, pending in zip(trials, pending_at, strict=True):
        assert key(t.params) not in {key(p) for p in pending}


def test_no_pending_point_twice_in_a_small_discrete_space() -> None:
    # 98 points: the liar alone lets TPE propose a pending point again here.
    space = Space.from_obj(
        {
            "a": hp.quniform("a", 0, 6, 1),
            "b": hp.quniform("b", 0, 6, 1),
            "c": hp.choice("c", [0, 1]),
        }
    )

    def loss(p: dict[str, Any]) -> float:
        return float((p["a"] - 2) ** 2 + (p["b"] - 4) ** 2 + p["c"])

    for seed in range(5):
        trials, pending_at = run(space, loss, seed, n=60)
        # After the random start (10 completed trials, so up to trial 13 with 4 workers).
        for t, pending in list(zip(trials, pending_at, strict=True))[14:]:
            assert key(t.params) not in {key(p) for p in pending}, (seed, t.number)


def test_seeded_runs_are_reproducible_and_seeds_differ() -> None:
    a, _ = run(sphere_space(), sphere, seed=7, n=30)
    b, _ = run(sphere_space(), sphere, seed=7, n=30)
    c, _ = run(sphere_space(), sphere, seed=8, n=30)
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.params for t in a] != [t.params for t in c]


def test_a_restarted_sampler_suggests_what_the_old_one_would() -> None:
    space = sphere_space()
    old = make_sampler("tpe", space, 9)
    trials, _ = run(space, sphere, seed=9, n=30, sampler=old)
    # The last two trials still pending, as a supervisor that died would leave them.
    history = [
        *trials[:28],
        *(Trial(t.id, 1, t.number, t.params, TrialState.RUNNING) for t in trials[28:]),
    ]
    going_on = old.suggest(30, history)
    restarted = make_sampler("tpe", space, 9).suggest(30, history)
    assert going_on is not None and going_on == restarted
    assert key(going_on) not in {key(t.params) for t in trials}


def test_conditional_space_explores_both_branches_and_settles_on_the_better() -> None:
    trials, _ = run(conditional_space(), conditional, seed=4, n=60)
    kinds = [t.params["model"]["kind"] for t in trials]
    assert set(kinds) == {"a", "b"}
    for t in trials:
        m = t.params["model"]
        if m["kind"] == "a":
            assert set(m) == {"kind", "a"} and -5 <= m["a"] <= 5
        else:
            assert set(m) == {"kind", "lr", "units"} and m["units"] in {
                8.0 * i for i in range(1, 9)
            }
    assert kinds[30:].count("b") > kinds[:10].count("b")  # branch b holds the minimum
    assert min(t.loss for t in trials if t.loss is not None) < 0.2


def test_beats_random_search_with_four_workers() -> None:
    space = sphere_space(6)

    def best(name: str, seed: int) -> float:
        if name == "tpe":
            trials, _ = run(space, sphere, seed, 60)
            return min(t.loss for t in trials if t.loss is not None)
        sampler = make_sampler("random", space, seed)
        return min(sphere(sampler.suggest(i, []) or {}) for i in range(60))

    seeds = range(3)
    tpe = float(np.median([best("tpe", s) for s in seeds]))
    rnd = float(np.median([best("random", s) for s in seeds]))
    assert tpe < 0.5 * rnd
