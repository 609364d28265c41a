"""Search quality: Hyperdock's samplers with parallel workers against sequential optuna,
hyperopt and random search, and early stopping against no pruning.

Part 1 — regret. Four test functions with a known global minimum:
    * branin:        2-d, x1 in [-5, 10], x2 in [0, 15], minimum 0.397887;
    * hartmann6:     6-d, [0, 1]^6, minimum -3.32237;
    * rosenbrock10: 10-d, [-2.048, 2.048]^10, minimum 0;
    * conditional:   ``choice("model", [a, b])``: branch a (a1, a2 uniform) is a scaled
                     Branin whose minimum is 0.5; branch b (b1 loguniform, b2 quniform
                     step 1, b3 uniform) is a rotated quadratic in (log10 b1, b2, b3)
                     whose minimum, the global one, is 0 at b1 = 10^-2.5, b2 = 20, b3 = 0.3.
For each function, method and seed (``--seeds``) one search of ``--trials`` trials runs.
Regret after k trials = best loss of the first k finished trials - the known minimum;
reported: the median (and quartiles) of the final regret over seeds, and the median
regret curve. Methods:
    * hyperdock-tpe, hyperdock-gp, hyperdock-random: Hyperdock's real Supervisor and a
      real SQLite store; ``--workers`` simulated workers (a discrete-event loop on a
      virtual clock, no sleeping) claim trials, each trial taking a seeded random
      duration (lognormal, median 1, sigma 0.5), and finish them with the function's
      value. Every time a worker is free it calls ``Supervisor.step()`` (which asks the
      sampler for as many trials as there are idle slots) and then ``claim()``, so the
      adaptive samplers see exactly the results that are in when a slot frees up, and
      trials still running are pending for them. hyperdock-random is the random-search
      baseline (Hyperdock's own random sampler, same loop);
    * hyperdock-tpe-seq: the same with one worker (optional; not in the default set);
    * optuna-tpe-seq: ``optuna.samplers.TPESampler(seed=seed)`` (optuna's defaults),
      ``study.optimize`` one trial at a time (the ideal, no-parallelism case), the same
      space written define-by-run;
    * optuna-tpe-async: the same optuna sampler through ask/tell in the same simulated
      loop and durations as Hyperdock (``--workers`` trials in flight; optuna 5's TPE
      has multivariate and constant liar on by default): the cost of parallelism for TPE
      itself, so that hyperdock-tpe's gap to optuna-tpe-seq can be read;
    * hyperopt-tpe-seq: ``hyperopt.fmin(algo=tpe.suggest)``, one trial at a time,
      the same space in hyperopt's ``hp``;
    * optuna-random-seq: optuna's RandomSampler (optional).
Goals (per function): median final regret of hyperdock-tpe <= 1.10 x optuna-tpe-seq's
and <= 0.25 x hyperdock-random's. Each ratio comes with a 90% bootstrap interval
(seeds resampled, 2000 times): with 10 seeds it is wide, so read a "NO" near the line
with it. Also reported: after how many trials hyperdock-tpe's median regret curve
reaches optuna-tpe-seq's final median.

Part 2 — early stopping. A synthetic learning-curve target: trial params lr
(loguniform 1e-4..1), width and reg (uniform 0..1); its loss after step s (1..100) is
``f + c * exp(-s / tau) + noise``: final loss f = 0.1 + 0.3 u^2 + 0.2 (width - 0.7)^2 +
0.2 (reg - 0.2)^2 with u = (log10 lr + 2) / 2 (minimum 0.1), amplitude c = 0.2 + 0.3 width,
time constant tau = 5 + 15 (1 - (log10 lr + 4) / 4) steps (so curves cross: small lr
learns slowly, wide models start worse than they end), noise N(0, 0.0005) seeded per
trial and step. ``--workers`` simulated workers run the trials step by step (each trial
has its own random step duration, lognormal(0, 0.3)); after each step the worker calls
``add_progress``, the supervisor steps (its pruner may call ``prune_trial``) and the
worker heartbeats; a trial whose id comes back from the heartbeat ends ``pruned`` at that
step. Sampler tpe, the same seeds, once per pruner (``--pruners``: ``--pruner`` specs,
e.g. ``none,median,asha:min_resource=5,reduction_factor=2,hyperband``). Two criteria:
    * same trials: ``--es-trials`` trials (pruned ones count) per run; reported, the
      median over seeds of the best completed (final-step) loss and of the total steps
      run, against no pruning's. Pruning saves steps here but cannot spend them, so it
      ends with fewer full-length trials than no pruning;
    * same compute (the goal line): per seed, the pruned run keeps starting trials until
      its steps (all trials', pruned and unfinished ones included) reach 40% of that
      seed's no-pruning steps, then stops at once; trials cut off unfinished do not
      count. Reported: its best completed (full-length, final-step) loss, relative to
      no pruning's best with all the steps, median over seeds of the per-seed
      differences. ``none`` on the same budget is the baseline a pruner has to beat.
Goal: a pruner's best loss within 1% (relative) of no pruning's with <= 40% of its
steps, on the same-compute criterion: pruning exists to turn the steps it saves into
more trials. ``--seed-offset`` picks other seeds (the pruners' defaults were tuned on
seeds 100.. and are reported on 0..9); ``--budget-only`` / ``--no-budget`` run one
criterion.

Usage: ``python bench/quality.py [--seeds 10] [--seed-offset 0] [--trials 100]
[--functions branin,hartmann6,rosenbrock10,conditional] [--methods ...] [--pruners ...]
[--es-trials 100] [--budget-only | --no-budget] [--jobs N] [--quick]``; part 2 alone:
``--functions '' --methods ''``. Runs are spread over ``--jobs`` processes (default: one
per core). Prints the tables and writes ``bench/out/quality.json`` and (with part 1)
``bench/out/quality.png`` (median regret against trials, one panel per function, log
scale).
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import multiprocessing
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

#: Relative tolerance on the best loss for the early-stopping goal.
ES_TOLERANCE = 0.01
#: Share of no pruning's steps a pruner may use at most.
ES_STEP_GOAL = 0.40
#: hyperdock-tpe's median regret at most this many times optuna-tpe-seq's.
GOAL_VS_OPTUNA = 1.10
#: ... and at most this many times random search's.
GOAL_VS_RANDOM = 0.25
#: Steps of a learning-curve trial.
ES_STEPS = 100

METHODS = (
    "hyperdock-tpe",
    "hyperdock-gp",
    "optuna-tpe-seq",
    "optuna-tpe-async",
    "hyperopt-tpe-seq",
    "hyperdock-random",
)
OPTIONAL_METHODS = ("hyperdock-tpe-seq", "optuna-random-seq")
PRUNERS = ("none", "median", "asha", "hyperband")


# -- test functions ---------------------------------------------------------------------
def branin(x1: float, x2: float) -> float:
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(x: np.ndarray) -> float:
    return float(-(_H6_ALPHA * np.exp(-(_H6_A * (x - _H6_P) ** 2).sum(axis=1))).sum())


def rosenbrock(x: np.ndarray) -> float:
    return float((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum())


BRANIN_MIN = 0.397887
COND_A_MIN = 0.5


def conditional(p: dict[str, Any]) -> float:
    if p["kind"] == "a":
        return COND_A_MIN + 0.1 * (branin(p["a1"], p["a2"]) - BRANIN_MIN)
    u = (math.log10(p["b1"]) + 2.5) / 2.5
    v = (p["b2"] - 20) / 44
    w = p["b3"] - 0.3
    return (u + w) ** 2 + 0.5 * (u - w) ** 2 + 2 * v**2


@dataclass(frozen=True)
class Problem:
    """A test function in the three spaces' dialects.

    Attributes:
        name: Its name on the command line.
        minimum: The known global minimum.
        hyperdock: The space, built with ``hyperdock.hp`` (called lazily).
        hyperopt: The same space in ``hyperopt.hp``.
        optuna: Parameters for an optuna trial, define-by-run (same dict shape).
        evaluate: The function of a parameter dict.
    """

    name: str
    minimum: float
    hyperdock: Callable[[], dict[str, Any]]
    hyperopt: Callable[[], dict[str, Any]]
    optuna: Callable[[Any], dict[str, Any]]
    evaluate: Callable[[dict[str, Any]], float]


def _box(hp: Any, names: list[str], low: float, high: float) -> dict[str, Any]:
    return {n: hp.uniform(n, low, high) for n in names}


def _box_optuna(trial: Any, names: list[str], low: float, high: float) -> dict[str, Any]:
    return {n: trial.suggest_float(n, low, high) for n in names}


def _hd() -> Any:
    from hyperdock import hp

    return hp


def _ho() -> Any:
    from hyperopt import hp

    return hp


H6 = [f"x{i}" for i in range(6)]
R10 = [f"x{i}" for i in range(10)]
B_LOW, B_HIGH = math.log(1e-5), math.log(1.0)


def _conditional_space(hp: Any) -> dict[str, Any]:
    return {
        "model": hp.choice(
            "model",
            [
                {"kind": "a", "a1": hp.uniform("a1", -5, 10), "a2": hp.uniform("a2", 0, 15)},
                {
                    "kind": "b",
                    "b1": hp.loguniform("b1", B_LOW, B_HIGH),
                    "b2": hp.quniform("b2", 1, 64, 1),
                    "b3": hp.uniform("b3", 0, 1),
                },
            ],
        )
    }


def _conditional_optuna(trial: Any) -> dict[str, Any]:
    if trial.suggest_categorical("model", ["a", "b"]) == "a":
        branch = {
            "kind": "a",
            "a1": trial.suggest_float("a1", -5, 10),
            "a2": trial.suggest_float("a2", 0, 15),
        }
    else:
        branch = {
            "kind": "b",
            "b1": trial.suggest_float("b1", 1e-5, 1.0, log=True),
            "b2": float(trial.suggest_int("b2", 1, 64)),
            "b3": trial.suggest_float("b3", 0, 1),
        }
    return {"model": branch}


def _branin_space(hp: Any) -> dict[str, Any]:
    return {"x1": hp.uniform("x1", -5, 10), "x2": hp.uniform("x2", 0, 15)}


PROBLEMS: dict[str, Problem] = {
    "branin": Problem(
        "branin",
        BRANIN_MIN,
        lambda: _branin_space(_hd()),
        lambda: _branin_space(_ho()),
        lambda t: {"x1": t.suggest_float("x1", -5, 10), "x2": t.suggest_float("x2", 0, 15)},
        lambda p: branin(p["x1"], p["x2"]),
    ),
    "hartmann6": Problem(
        "hartmann6",
        -3.32237,
        lambda: _box(_hd(), H6, 0, 1),
        lambda: _box(_ho(), H6, 0, 1),
        lambda t: _box_optuna(t, H6, 0, 1),
        lambda p: hartmann6(np.array([p[n] for n in H6])),
    ),
    "rosenbrock10": Problem(
        "rosenbrock10",
        0.0,
        lambda: _box(_hd(), R10, -2.048, 2.048),
        lambda: _box(_ho(), R10, -2.048, 2.048),
        lambda t: _box_optuna(t, R10, -2.048, 2.048),
        lambda p: rosenbrock(np.array([p[n] for n in R10])),
    ),
    "conditional": Problem(
        "conditional",
        0.0,
        lambda: _conditional_space(_hd()),
        lambda: _conditional_space(_ho()),
        _conditional_optuna,
        lambda p: conditional(p["model"]),
    ),
}


# -- simulated workers ------------------------------------------------------------------
class SimWorkers:
    """``n`` worker records in a store, kept alive on wall time while time is simulated."""

    def __init__(self, store: Any, n: int) -> None:
        self.store = store
        self.ids = [f"sim{i}" for i in range(n)]
        self.running: dict[str, int] = {}
        self.idle = list(self.ids)
        for wid in self.ids:
            store.register_worker(wid, host="sim", pid=0, parallelism=1)
        self._beat = time.monotonic()

    def start(self, timed: Timed, experiment_id: int) -> Iterator[tuple[str, Any]]:
        """Give idle workers trials, as real ones would: the supervisor steps (queueing
        what idle slots take), then the first idle worker claims; until none is idle or
        the queue is empty. Yields each (worker id, trial) started."""
        while self.idle:
            timed.step()
            trial = self.store.claim(self.idle[0], experiment_id=experiment_id)
            if trial is None:
                return
            wid = self.idle.pop(0)
            self.running[wid] = trial.id
            yield wid, trial

    def free(self, wid: str) -> None:
        """Worker ``wid`` finished its trial."""
        del self.running[wid]
        self.idle.append(wid)

    def keep_alive(self) -> None:
        """Heartbeat every worker (and its trial) every few seconds of wall time."""
        if time.monotonic() - self._beat < 5.0:
            return
        self._beat = time.monotonic()
        for wid in self.ids:
            trial_id = self.running.get(wid)
            self.store.heartbeat(wid, [] if trial_id is None else [trial_id])


def _open(tmp: str, sampler: str, seed: int, trials: int, space: Any, pruner: str) -> Any:
    from hyperdock.objectives import Objectives
    from hyperdock.space import Space
    from hyperdock.storage import open_store
    from hyperdock.supervisor import Supervisor, open_experiment
    from hyperdock.trial import Target

    store = open_store(f"sqlite:///{tmp}/bench.db")
    exp, _ = open_experiment(
        store,
        "bench",
        space=Space.from_obj(space),
        target=Target(command=("true",)),
        sampler=sampler,
        seed=seed,
        max_trials=trials,
        max_retries=0,
        lease_timeout=3600.0,  # wall time; a slow sampler must not get trials reaped
        meta={"objectives": Objectives().to_meta(), "pruner": pruner},
    )
    return store, exp, Supervisor(store, exp)


class Timed:
    """Wall time spent in ``Supervisor.step`` (where the sampler is asked)."""

    def __init__(self, sup: Any) -> None:
        self.sup = sup
        self.seconds = 0.0

    def step(self) -> bool:
        start = time.perf_counter()
        try:
            return bool(self.sup.step())
        finally:
            self.seconds += time.perf_counter() - start


def run_hyperdock(
    problem: Problem, sampler: str, seed: int, trials: int, workers: int
) -> dict[str, Any]:
    """One search with the real supervisor and store and ``workers`` simulated workers."""
    from hyperdock.trial import TrialState

    with tempfile.TemporaryDirectory() as tmp:
        store, exp, sup = _open(tmp, sampler, seed, trials, problem.hyperdock(), "none")
        timed = Timed(sup)
        sim = SimWorkers(store, workers)
        rng = np.random.default_rng([seed, 7])
        events: list[tuple[float, int, str, Any]] = []
        now, seq, losses = 0.0, 0, []
        while True:
            for wid, trial in sim.start(timed, exp.id):
                seq += 1
                heapq.heappush(events, (now + rng.lognormal(0.0, 0.5), seq, wid, trial))
            if not events:
                break
            now, _, wid, trial = heapq.heappop(events)
            loss = problem.evaluate(trial.params)
            if not store.finish(trial.id, wid, state=TrialState.COMPLETED, loss=loss):
                raise RuntimeError(f"trial {trial.id} lost its lease")
            losses.append(loss)
            sim.free(wid)
            sim.keep_alive()
        if not timed.step() or len(losses) != trials:
            raise RuntimeError(f"{len(losses)} of {trials} trials ran; experiment not done")
        store.close()
    return {"losses": losses, "supervisor_s": timed.seconds}


def run_optuna(problem: Problem, sampler: str, seed: int, trials: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "tpe":
        smp: Any = optuna.samplers.TPESampler(seed=seed)
    else:
        smp = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=smp)
    study.optimize(lambda t: problem.evaluate(problem.optuna(t)), n_trials=trials)
    return {"losses": [float(t.value) for t in study.trials]}


def run_optuna_async(problem: Problem, seed: int, trials: int, workers: int) -> dict[str, Any]:
    """optuna's own TPE (its defaults, constant liar on) through ask/tell in the same
    simulated loop as Hyperdock: the parallelism penalty of TPE itself."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    rng = np.random.default_rng([seed, 7])
    events: list[tuple[float, int, Any, dict[str, Any]]] = []
    now, seq, asked, idle, losses = 0.0, 0, 0, workers, []
    while True:
        while idle and asked < trials:
            trial = study.ask()
            params = problem.optuna(trial)
            asked, idle, seq = asked + 1, idle - 1, seq + 1
            heapq.heappush(events, (now + rng.lognormal(0.0, 0.5), seq, trial, params))
        if not events:
            break
        now, _, trial, params = heapq.heappop(events)
        loss = problem.evaluate(params)
        study.tell(trial, loss)
        losses.append(loss)
        idle += 1
    return {"losses": losses}


def run_hyperopt(problem: Problem, seed: int, trials: int) -> dict[str, Any]:
    import hyperopt

    logging.getLogger("hyperopt").setLevel(logging.WARNING)
    history = hyperopt.Trials()
    hyperopt.fmin(
        problem.evaluate,
        problem.hyperopt(),
        algo=hyperopt.tpe.suggest,
        max_evals=trials,
        trials=history,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return {"losses": [float(x) for x in history.losses()]}


def run_method(name: str, fn: str, seed: int, trials: int, workers: int) -> dict[str, Any]:
    problem = PROBLEMS[fn]
    start = time.perf_counter()
    if name == "optuna-tpe-seq":
        out = run_optuna(problem, "tpe", seed, trials)
    elif name == "optuna-tpe-async":
        out = run_optuna_async(problem, seed, trials, workers)
    elif name == "optuna-random-seq":
        out = run_optuna(problem, "random", seed, trials)
    elif name == "hyperopt-tpe-seq":
        out = run_hyperopt(problem, seed, trials)
    elif name == "hyperdock-tpe-seq":
        out = run_hyperdock(problem, "tpe", seed, trials, 1)
    elif name.startswith("hyperdock-"):
        out = run_hyperdock(problem, name.removeprefix("hyperdock-"), seed, trials, workers)
    else:
        raise ValueError(f"unknown method {name!r}")
    out["seconds"] = time.perf_counter() - start
    best = np.minimum.accumulate(np.array(out.pop("losses"), dtype=float))
    out["regret"] = np.maximum(best - problem.minimum, 0.0).tolist()
    return out


# -- the learning-curve target ----------------------------------------------------------
LR_LOW, LR_HIGH = math.log(1e-4), math.log(1.0)
ES_NOISE = 0.0005


def curve_space() -> dict[str, Any]:
    from hyperdock import hp

    return {
        "lr": hp.loguniform("lr", LR_LOW, LR_HIGH),
        "width": hp.uniform("width", 0, 1),
        "reg": hp.uniform("reg", 0, 1),
    }


def curve_final(p: dict[str, Any]) -> float:
    """The loss the trial tends to (minimum 0.1 at lr 1e-2, width 0.7, reg 0.2)."""
    u = (math.log10(p["lr"]) + 2) / 2
    return 0.1 + 0.3 * u**2 + 0.2 * (p["width"] - 0.7) ** 2 + 0.2 * (p["reg"] - 0.2) ** 2


def curve(p: dict[str, Any], seed: int, number: int) -> np.ndarray:
    """Loss after steps 1..ES_STEPS."""
    amplitude = 0.2 + 0.3 * p["width"]
    tau = 5 + 15 * (1 - (math.log10(p["lr"]) + 4) / 4)
    steps = np.arange(1, ES_STEPS + 1)
    noise = np.random.default_rng([seed, number, 11]).normal(0, ES_NOISE, ES_STEPS)
    out: np.ndarray = curve_final(p) + amplitude * np.exp(-steps / tau) + noise
    return out


def run_pruning(
    pruner: str, seed: int, trials: int, workers: int, budget: int | None = None
) -> dict[str, Any]:
    """One tpe search on the learning-curve target with ``pruner`` (a ``--pruner`` spec).

    Without ``budget``: ``trials`` trials, all run to their end or pruned. With it: new
    trials keep starting until ``budget`` steps (of all trials, pruned and unfinished
    ones included) have run, and then everything stops; trials cut off unfinished do not
    count as completed.
    """
    from hyperdock.trial import TrialState

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        limit = trials if budget is None else budget  # at most one trial per step
        store, exp, sup = _open(tmp, "tpe", seed, limit, curve_space(), pruner)
        timed = Timed(sup)
        sim = SimWorkers(store, workers)
        rng = np.random.default_rng([seed, 13])
        events: list[tuple[float, int, str]] = []
        state: dict[str, tuple[Any, np.ndarray, float, int]] = {}
        now, seq, total_steps, done, completed = 0.0, 0, 0, 0, 0
        best, pruned = math.inf, 0
        prunes = pruner.split(":")[0] != "none"
        while budget is None or total_steps < budget:
            for wid, trial in sim.start(timed, exp.id):
                step_time = rng.lognormal(0.0, 0.3)
                state[wid] = (trial, curve(trial.params, seed, trial.number), step_time, 0)
                seq += 1
                heapq.heappush(events, (now + step_time, seq, wid))
            if not events:
                break
            now, _, wid = heapq.heappop(events)
            trial, losses, step_time, step = state[wid]
            step += 1
            total_steps += 1
            loss = float(losses[step - 1])
            store.add_progress(trial.id, wid, [(step, loss)])
            if prunes:
                timed.step()
            stop = trial.id in store.heartbeat(wid, [trial.id])
            if stop or step == ES_STEPS:
                final = TrialState.PRUNED if stop else TrialState.COMPLETED
                if not store.finish(trial.id, wid, state=final, loss=loss):
                    raise RuntimeError(f"trial {trial.id} lost its lease")
                done += 1
                pruned += stop
                if not stop:
                    completed += 1
                    best = min(best, loss)
                sim.free(wid)
            else:
                state[wid] = (trial, losses, step_time, step)
                seq += 1
                heapq.heappush(events, (now + step_time, seq, wid))
            sim.keep_alive()
        if budget is None and (not timed.step() or done != trials):
            raise RuntimeError(f"{done} of {trials} trials ran; experiment not done")
        store.close()
    return {
        "best": best,
        "steps": total_steps,
        "pruned": pruned,
        "completed": completed,
        "trials": done + len(sim.running),
        "seconds": time.perf_counter() - start,
        "supervisor_s": timed.seconds,
    }


# -- orchestration ----------------------------------------------------------------------
def split_pruners(text: str) -> list[str]:
    """``--pruners`` into specs: a comma starts a new spec only before a pruner name
    (``asha:min_resource=5,reduction_factor=2,median`` is two specs)."""
    names = "|".join(PRUNERS)
    return [p for p in re.split(rf",(?=\s*(?:{names})\b(?!\s*=))", text) if p.strip()]


def _task(task: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    logging.getLogger("hyperdock").setLevel(logging.ERROR)
    kind, *rest = task
    if kind == "regret":
        name, fn, seed, trials, workers = rest
        return task, run_method(name, fn, seed, trials, workers)
    pruner, seed, trials, workers, budget = rest
    return task, run_pruning(pruner, seed, trials, workers, budget)


#: Rough relative cost, to start the slow runs first.
_COST = {"hyperdock-gp": 50.0, "hyperdock-tpe": 3.0, "hyperdock-tpe-seq": 3.0}


def _cost(task: tuple[Any, ...]) -> float:
    if task[0] == "pruning":
        return 20.0
    return _COST.get(task[1], 1.0) * (2.0 if task[2] == "rosenbrock10" else 1.0)


def run_all(tasks: list[tuple[Any, ...]], jobs: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    tasks = sorted(tasks, key=_cost, reverse=True)
    results: dict[tuple[Any, ...], dict[str, Any]] = {}
    # Spawned children read these before numpy loads: one BLAS thread per process.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    start = time.perf_counter()
    if jobs <= 1:
        pairs: Any = map(_task, tasks)
    else:
        pool = multiprocessing.get_context("spawn").Pool(jobs)
        pairs = pool.imap_unordered(_task, tasks)
    for i, (task, out) in enumerate(pairs, 1):
        results[task] = out
        took = time.perf_counter() - start
        if task[0] == "regret":
            label = f"{task[1]} {task[2]} seed {task[3]}"
        else:
            label = f"{task[1]} seed {task[2]}" + (f" budget {task[5]}" if task[5] else "")
        print(
            f"  [{i}/{len(tasks)} {took:6.0f} s] {task[0]} {label}: {out['seconds']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    if jobs > 1:
        pool.close()
        pool.join()
    return results


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(q2), float(q3)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def _ratio_ci(a: list[float], b: list[float]) -> tuple[float, float]:
    """90% bootstrap interval of median(a) / median(b), seeds resampled independently."""
    rng = np.random.default_rng(0)
    xa, xb = np.array(a), np.array(b)
    ma = np.median(rng.choice(xa, (2000, len(xa))), axis=1)
    mb = np.median(rng.choice(xb, (2000, len(xb))), axis=1)
    lo, hi = np.percentile(ma / np.maximum(mb, 1e-300), [5, 95])
    return float(lo), float(hi)


def summarise_regret(
    results: dict[tuple[Any, ...], dict[str, Any]],
    functions: list[str],
    methods: list[str],
    seeds: list[int],
    trials: int,
    workers: int,
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for fn in functions:
        per: dict[str, Any] = {}
        for name in methods:
            runs = [results[("regret", name, fn, s, trials, workers)] for s in seeds]
            curves = np.array([r["regret"] for r in runs])
            final = curves[:, -1].tolist()
            q1, med, q3 = _quartiles(final)
            per[name] = {
                "final_regret": final,
                "median": med,
                "q1": q1,
                "q3": q3,
                "median_curve": np.median(curves, axis=0).tolist(),
                "seconds_per_run": float(np.mean([r["seconds"] for r in runs])),
            }
            sup = [r["supervisor_s"] for r in runs if "supervisor_s" in r]
            if sup:
                per[name]["supervisor_ms_per_trial"] = 1000 * float(np.mean(sup)) / trials
        entry: dict[str, Any] = {"methods": per}
        hd = per.get("hyperdock-tpe")
        if hd is not None:
            if "optuna-tpe-seq" in per:
                ref = per["optuna-tpe-seq"]
                r = _ratio(hd["median"], ref["median"])
                entry["tpe_vs_optuna_seq"] = r
                entry["tpe_vs_optuna_seq_ci90"] = _ratio_ci(hd["final_regret"], ref["final_regret"])
                entry["goal_vs_optuna_met"] = r <= GOAL_VS_OPTUNA
                reached = np.nonzero(np.array(hd["median_curve"]) <= ref["median"])[0]
                entry["tpe_trials_to_optuna_seq_final"] = (
                    int(reached[0]) + 1 if len(reached) else None
                )
            if "hyperdock-random" in per:
                ref = per["hyperdock-random"]
                r = _ratio(hd["median"], ref["median"])
                entry["tpe_vs_random"] = r
                entry["tpe_vs_random_ci90"] = _ratio_ci(hd["final_regret"], ref["final_regret"])
                entry["goal_vs_random_met"] = r <= GOAL_VS_RANDOM
        summary[fn] = entry
    return summary


def pruning_tasks(
    pruners: list[str], seeds: list[int], trials: int, workers: int
) -> list[tuple[Any, ...]]:
    """Same-trials runs: ``trials`` trials per pruner and seed."""
    return [("pruning", p, s, trials, workers, None) for p in pruners for s in seeds]


def budget_tasks(
    results: dict[tuple[Any, ...], dict[str, Any]],
    pruners: list[str],
    seeds: list[int],
    trials: int,
    workers: int,
) -> list[tuple[Any, ...]]:
    """Budget-matched runs: per pruner and seed, as many trials as fit in ES_STEP_GOAL of
    that seed's no-pruning steps ("none" too: no pruning on the same budget, the
    baseline pruning has to beat)."""
    out = []
    for s in seeds:
        none = results[("pruning", "none", s, trials, workers, None)]
        budget = math.floor(ES_STEP_GOAL * none["steps"])
        out += [("pruning", p, s, trials, workers, budget) for p in pruners]
    return out


def summarise_pruning(
    results: dict[tuple[Any, ...], dict[str, Any]],
    pruners: list[str],
    seeds: list[int],
    trials: int,
    workers: int,
) -> dict[str, Any]:
    """Both criteria per pruner: ``same_trials`` (``trials`` trials; steps used and best
    loss against no pruning's) and ``budget`` (best loss with ES_STEP_GOAL of no
    pruning's steps, against no pruning's best with all of them; the goal line)."""
    out: dict[str, Any] = {}
    if not pruners:  # --pruners '': no part 2
        return out
    none_best = [results[("pruning", "none", s, trials, workers, None)]["best"] for s in seeds]
    for pruner in pruners:
        entry: dict[str, Any] = {}
        out[pruner] = entry
        if ("pruning", pruner, seeds[0], trials, workers, None) in results:
            entry["same_trials"] = _same_trials(results, pruner, seeds, trials, workers)
        keys = [k for k in results if k[:2] == ("pruning", pruner) and k[5] is not None]
        if keys:
            by_seed = {k[2]: results[k] for k in keys}
            runs = [by_seed[s] for s in seeds]
            best = [r["best"] for r in runs]
            rel = [b / nb - 1 for b, nb in zip(best, none_best, strict=True)]
            entry["budget"] = {
                "budget": [k[5] for k in sorted(keys, key=lambda k: seeds.index(k[2]))],
                "best": best,
                "trials": [r["trials"] for r in runs],
                "completed": [r["completed"] for r in runs],
                "median_best": float(np.median(best)),
                "median_trials": float(np.median([r["trials"] for r in runs])),
                "median_completed": float(np.median([r["completed"] for r in runs])),
                "best_vs_none": float(np.median(rel)),
                "seeds_within_tolerance": int(sum(r <= ES_TOLERANCE for r in rel)),
                "goal_met": float(np.median(rel)) <= ES_TOLERANCE,
                "seconds_per_run": float(np.mean([r["seconds"] for r in runs])),
            }
    return out


def _same_trials(
    results: dict[tuple[Any, ...], dict[str, Any]],
    pruner: str,
    seeds: list[int],
    trials: int,
    workers: int,
) -> dict[str, Any]:
    none_best = [results[("pruning", "none", s, trials, workers, None)]["best"] for s in seeds]
    none_steps = [results[("pruning", "none", s, trials, workers, None)]["steps"] for s in seeds]
    runs = [results[("pruning", pruner, s, trials, workers, None)] for s in seeds]
    best = [r["best"] for r in runs]
    steps = [r["steps"] for r in runs]
    same = {
        "best": best,
        "steps": steps,
        "pruned": [r["pruned"] for r in runs],
        "median_best": float(np.median(best)),
        "median_steps": float(np.median(steps)),
        "seconds_per_run": float(np.mean([r["seconds"] for r in runs])),
    }
    if pruner != "none":
        same["best_vs_none"] = same["median_best"] / float(np.median(none_best)) - 1
        same["steps_vs_none"] = same["median_steps"] / float(np.median(none_steps))
        same["seeds_within_tolerance"] = int(
            sum(b <= nb * (1 + ES_TOLERANCE) for b, nb in zip(best, none_best, strict=True))
        )
        same["goal_met"] = (
            same["best_vs_none"] <= ES_TOLERANCE and same["steps_vs_none"] <= ES_STEP_GOAL
        )
    return same


def print_tables(
    summary: dict[str, Any], pruning: dict[str, Any], args: argparse.Namespace
) -> None:
    if summary:
        print(
            f"Median final regret after {args.trials} trials over {args.seeds} seeds "
            f"[quartiles]; hyperdock-* with {args.workers} async workers:"
        )
    for fn, entry in summary.items():
        print(f"  {fn}")
        for name, m in entry["methods"].items():
            extra = ""
            if "supervisor_ms_per_trial" in m:
                extra = f"  (supervisor {m['supervisor_ms_per_trial']:.0f} ms/trial)"
            print(
                f"    {name:<18} {m['median']:10.4g}  [{m['q1']:9.3g}, {m['q3']:9.3g}]"
                f"  {m['seconds_per_run']:6.1f} s/run{extra}"
            )
        if "tpe_vs_optuna_seq" in entry:
            ok = "yes" if entry["goal_vs_optuna_met"] else "NO"
            lo, hi = entry["tpe_vs_optuna_seq_ci90"]
            n = entry["tpe_trials_to_optuna_seq_final"]
            print(
                f"    hyperdock-tpe / optuna-tpe-seq   = {entry['tpe_vs_optuna_seq']:6.3f} "
                f"[90% CI {lo:.2f}-{hi:.2f}] (goal <= {GOAL_VS_OPTUNA}): {ok}; reaches "
                f"optuna-tpe-seq's final median {'after ' + str(n) if n else 'in no'} trials"
            )
        if "tpe_vs_random" in entry:
            ok = "yes" if entry["goal_vs_random_met"] else "NO"
            lo, hi = entry["tpe_vs_random_ci90"]
            print(
                f"    hyperdock-tpe / hyperdock-random = {entry['tpe_vs_random']:6.3f} "
                f"[90% CI {lo:.2f}-{hi:.2f}] (goal <= {GOAL_VS_RANDOM}): {ok}"
            )
    if not pruning:
        return
    w = max(10, *(len(p) for p in pruning))
    n = len(args.seed_list)
    print(
        f"Early stopping, learning-curve target ({ES_STEPS} steps), tpe, {args.workers} async "
        f"workers, seeds {args.seed_list[0]}..{args.seed_list[-1]} (medians over {n} seeds)."
    )
    print(
        f"Same trials: {args.es_trials} trials each; steps run and best completed loss "
        "against no pruning's (pruning saves steps, but runs fewer full-length trials):"
    )
    for pruner, entry in pruning.items():
        if "same_trials" not in entry:
            continue
        e = entry["same_trials"]
        text = (
            f"  {pruner:<{w}} best {e['median_best']:.5f}  steps {e['median_steps']:7.0f}  "
            f"pruned {np.median(e['pruned']):5.0f}  {e['seconds_per_run']:6.1f} s/run"
        )
        if "best_vs_none" in e:
            text += (
                f"   best {e['best_vs_none']:+.2%} vs none, steps {e['steps_vs_none']:.2f}x, "
                f"{e['seeds_within_tolerance']}/{n} seeds within 1%"
            )
        print(text)
    if not any("budget" in e for e in pruning.values()):
        return
    print(
        f"Same compute (the goal line): each run starts trials until {ES_STEP_GOAL:.0%} of "
        "its seed's no-pruning steps have run, then stops (unfinished trials do not count); "
        "its best completed loss against no pruning's with all the steps (median of the "
        f"per-seed differences). 'none' here is no pruning on the same budget: the baseline."
    )
    for pruner, entry in pruning.items():
        if "budget" not in entry:
            continue
        e = entry["budget"]
        ok = "goal met" if e["goal_met"] else "goal NOT met"
        print(
            f"  {pruner:<{w}} best {e['median_best']:.5f}  trials {e['median_trials']:5.0f} "
            f"(completed {e['median_completed']:4.0f})  best {e['best_vs_none']:+.2%} vs none "
            f"with all steps, {e['seeds_within_tolerance']}/{n} seeds within 1%"
            + ("" if pruner == "none" else f": {ok}")
        )
    print(
        f"Goal: best within {ES_TOLERANCE:.0%} of no pruning's with <= {ES_STEP_GOAL:.0%} of "
        "its steps, judged on the same-compute table: pruning exists to spend the steps it "
        "saves on more trials; the same-trials table does not let it."
    )


def plot(summary: dict[str, Any], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summary)
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for ax, (fn, entry) in zip(axes.flat, summary.items(), strict=False):
        for name, m in entry["methods"].items():
            parallel = name.startswith("hyperdock-") or name.endswith("-async")
            label = f"{name} ({args.workers} workers)" if parallel else name
            if name.endswith("-seq"):
                label = name
            curve_ = np.maximum(np.array(m["median_curve"]), 1e-9)
            ax.plot(np.arange(1, len(curve_) + 1), curve_, label=label)
        ax.set_yscale("log")
        ax.set_title(fn)
        ax.set_xlabel("trials finished")
        ax.set_ylabel(f"median regret ({args.seeds} seeds)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--functions", default=",".join(PROBLEMS))
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"of {', '.join(METHODS + OPTIONAL_METHODS)}",
    )
    parser.add_argument(
        "--pruners",
        default=",".join(PRUNERS),
        help="--pruner specs, comma-separated (e.g. none,median:warmup=20%%,asha:"
        "min_resource=5,reduction_factor=2); '' to skip part 2",
    )
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        help="seeds are OFFSET..OFFSET+SEEDS-1 (tuning runs use other seeds than the "
        "reported ones)",
    )
    parser.add_argument(
        "--no-budget", action="store_true", help="part 2: the same-trials runs only"
    )
    parser.add_argument(
        "--budget-only",
        action="store_true",
        help="part 2: the same-compute runs only (and no pruning's full runs they need)",
    )
    parser.add_argument("--es-trials", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="3 seeds, 40 trials, no gp")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.trials, args.es_trials = 3, 40, 40
        if args.methods == ",".join(METHODS):
            args.methods = ",".join(m for m in METHODS if m != "hyperdock-gp")
    functions = [f for f in args.functions.split(",") if f]
    methods = [m for m in args.methods.split(",") if m]
    pruners = split_pruners(args.pruners)
    args.seed_list = list(range(args.seed_offset, args.seed_offset + args.seeds))
    for f in functions:
        if f not in PROBLEMS:
            parser.error(f"unknown function {f!r}; choose from {', '.join(PROBLEMS)}")
    for m in methods:
        if m not in METHODS + OPTIONAL_METHODS:
            parser.error(f"unknown method {m!r}")
    if pruners and "none" not in pruners:
        pruners.insert(0, "none")
    seeds = args.seed_list
    tasks: list[tuple[Any, ...]] = [
        ("regret", m, f, s, args.trials, args.workers)
        for f in functions
        for m in methods
        for s in seeds
    ]
    same = ["none"] if args.budget_only and pruners else pruners
    tasks += pruning_tasks(same, seeds, args.es_trials, args.workers)
    start = time.perf_counter()
    results = run_all(tasks, args.jobs)
    if pruners and not args.no_budget:
        # Budgets come from the no-pruning runs, so these run second.
        more = budget_tasks(results, pruners, seeds, args.es_trials, args.workers)
        results.update(run_all(more, args.jobs))
    wall = time.perf_counter() - start
    summary = summarise_regret(results, functions, methods, seeds, args.trials, args.workers)
    pruning = summarise_pruning(results, pruners, seeds, args.es_trials, args.workers)
    print_tables(summary, pruning, args)
    print(f"Wall time {wall:.0f} s on {os.cpu_count()} cores ({args.jobs} processes).")
    import hyperopt
    import optuna

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "seeds": args.seed_list,
        "trials": args.trials,
        "workers": args.workers,
        "es_trials": args.es_trials,
        "durations": "lognormal(0, 0.5) per trial (regret); lognormal(0, 0.3) per step (pruning)",
        "random_baseline": "hyperdock-random (Hyperdock's random sampler, same simulated loop)",
        "versions": {"optuna": optuna.__version__, "hyperopt": hyperopt.__version__},
        "cores": os.cpu_count(),
        "jobs": args.jobs,
        "wall_seconds": round(wall, 1),
        "regret": summary,
        "early_stopping": pruning,
    }
    (args.out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    if summary:
        plot(summary, args.out / "quality.png", args)
    print(
        f"Wrote {args.out / 'quality.json'}"
        + (f" and {args.out / 'quality.png'}." if summary else ".")
    )


if __name__ == "__main__":
    main()
