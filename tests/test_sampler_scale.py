"""Adaptive samplers at scale: the bounded window a suggestion sees, and a supervisor
whose mirror of a 100,000-trial experiment stays compact."""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hyperdock import hp
from hyperdock.history import CMAES_BEST, GP_BEST, GP_WINDOW, TPE_BEST, TPE_WINDOW
from hyperdock.jsonutil import dumps
from hyperdock.objectives import Objectives
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.study import StudyMirror
from hyperdock.supervisor import Supervisor
from hyperdock.targets import Command
from hyperdock.trial import Experiment, Trial, TrialState

SPACE = Space.from_obj(
    {
        "x": hp.uniform("x", -5.0, 5.0),
        "y": hp.uniform("y", -5.0, 5.0),
        "act": hp.choice("act", ["relu", "tanh"]),
    }
)


def _loss(p: dict[str, Any]) -> float:
    return float(p["x"] ** 2 + p["y"] ** 2 + (p["act"] == "tanh"))


def _draw(rng: random.Random) -> dict[str, Any]:
    return {"x": rng.uniform(-5, 5), "y": rng.uniform(-5, 5), "act": rng.choice(["relu", "tanh"])}


def _mirror(n: int, pending: int = 0, seed: int = 0) -> tuple[StudyMirror, list[Trial]]:
    """A mirror of ``n`` completed random trials (every 10th pruned) and ``pending``
    running ones."""
    rng = random.Random(seed)
    trials = []
    for i in range(n + pending):
        p = _draw(rng)
        if i >= n:
            trials.append(Trial(i + 1, 1, i, p, TrialState.RUNNING))
        elif i % 10 == 9:
            trials.append(Trial(i + 1, 1, i, p, TrialState.PRUNED))
        else:
            trials.append(Trial(i + 1, 1, i, p, TrialState.COMPLETED, loss=_loss(p)))
    mirror = StudyMirror(SPACE, Objectives())
    mirror.sync(trials)
    return mirror, trials


def _best_numbers(trials: list[Trial], k: int) -> set[int]:
    done = [t for t in trials if t.state is TrialState.COMPLETED]
    done.sort(key=lambda t: (t.loss, t.number))
    return {t.number for t in done[:k]}


def _numbers(mirror: StudyMirror, rows: np.ndarray) -> list[int]:
    return [int(n) for n in mirror.history.number[rows]]


def test_the_window_is_bounded_deterministic_for_a_seed_and_holds_the_best() -> None:
    mirror, trials = _mirror(20_000, pending=7)
    h = mirror.history
    tpe = _numbers(mirror, h.window("tpe", 3))
    assert tpe == _numbers(mirror, h.window("tpe", 3))  # same seed, same window
    assert tpe != _numbers(mirror, h.window("tpe", 4))  # another seed, another sample
    assert len(tpe) == TPE_WINDOW + 7 and tpe == sorted(tpe)
    assert _best_numbers(trials, TPE_BEST) <= set(tpe)
    assert set(range(20_000, 20_007)) <= set(tpe)  # every pending trial (constant liar)
    # The sample spreads over the whole history, early and recent trials alike.
    rest = [n for n in tpe if n not in _best_numbers(trials, TPE_BEST) and n < 20_000]
    assert min(rest) < 200 and max(rest) > 19_800
    assert any(trials[n].state is TrialState.PRUNED for n in rest)
    gp = _numbers(mirror, h.window("gp", 3))
    assert len(gp) == GP_WINDOW + 7
    assert _best_numbers(trials, GP_BEST) <= set(gp)


def test_below_the_window_size_a_suggestion_sees_every_trial() -> None:
    mirror, trials = _mirror(TPE_WINDOW - 10, pending=3)
    assert _numbers(mirror, mirror.history.window("tpe", 1)) == [t.number for t in trials]


def test_maximised_objectives_keep_the_highest_losses() -> None:
    rng = random.Random(1)
    trials = [Trial(i + 1, 1, i, p, TrialState.COMPLETED, loss=_loss(p)) for i in range(3000)
              for p in [_draw(rng)]]  # fmt: skip
    mirror = StudyMirror(SPACE, Objectives.build(["maximize"]))
    mirror.sync(trials)
    top = sorted(trials, key=lambda t: (-(t.loss or 0.0), t.number))[:TPE_BEST]
    assert {t.number for t in top} <= set(_numbers(mirror, mirror.history.window("tpe", 0)))


def test_cmaes_tells_each_generation_once_and_keeps_only_recent_ones() -> None:
    """CMA-ES carries on from its last generation (it does not start over from the
    history on each suggestion) and the attributes it keeps stay bounded."""
    from hyperdock.samplers import make_sampler

    space = Space.from_obj({"x": hp.uniform("x", -5.0, 5.0), "y": hp.uniform("y", -5.0, 5.0)})
    sampler = make_sampler("cmaes", space, 0)
    mirror = sampler.mirror  # type: ignore[attr-defined]
    for n in range(240):
        params = sampler.suggest(n, [])
        assert params is not None
        loss = (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2
        mirror.sync([Trial(n + 1, 1, n, params, TrialState.COMPLETED, loss=loss)])
    gens = [a["cma:generation"] for a in mirror.history.attrs.values()]
    assert max(gens) >= 20  # 240 trials at a population of 6: generations moved on
    assert len(mirror.history.attrs) <= 6 * 5  # a few generations, not 240 trials
    assert len(mirror.history.window("cmaes", 0)) <= CMAES_BEST + 6 * 5
    best = mirror.history.best(1)[0]
    assert mirror.history.values[best, 0] < 0.05  # and it converged


# -- through a store ------------------------------------------------------------------------
def _experiment(store: Store, sampler: str) -> Experiment:
    return store.create_experiment(
        "scale", space=SPACE.to_json(), target=Command(["true"]), sampler=sampler, seed=5,
        max_trials=None,
    )  # fmt: skip


def _run_trials(store: Store, exp: Experiment, n: int) -> None:
    """``n`` random trials queued, claimed and completed through the store API."""
    rng = random.Random(0)
    store.register_worker("w", host="h", pid=1, parallelism=1)
    store.add_trials(exp.id, [_draw(rng) for _ in range(n)], first_number=0)
    for _ in range(n):
        trial = store.claim("w", experiment_id=exp.id)
        assert trial is not None
        store.finish(trial.id, "w", state=TrialState.COMPLETED, loss=_loss(trial.params))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: Any, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    factory: Callable[[], str] = request.getfixturevalue("postgres_url")
    return factory()


def test_same_store_and_seed_give_the_same_suggestion(store_url: str) -> None:
    """Past the window size, two fresh supervisors (a restart) on the same store suggest
    the same parameters for the same trial number."""
    n = TPE_WINDOW + 300
    with open_store(store_url) as store:
        exp = _experiment(store, "tpe")
        _run_trials(store, exp, n)
        first = Supervisor(store, exp)
        first.sync_mirror()
        second = Supervisor(store, exp)
        second.sync_mirror()
        a, b = first.sampler.suggest(n, []), second.sampler.suggest(n, [])
        assert a == b and a is not None
        assert first.sampler.suggest(n + 1, []) != a  # the next number: another point


def test_gp_suggestions_with_warm_started_fits_repeat_after_a_restart(store_url: str) -> None:
    """The GP carries its fitted hyperparameters from one suggestion to the next: two
    fresh supervisors (a restart) asking for the same trial numbers in the same order
    suggest the same parameters."""
    n = GP_WINDOW + 40
    with open_store(store_url) as store:
        exp = _experiment(store, "gp")
        _run_trials(store, exp, n)
        runs = []
        for _ in range(2):
            sup = Supervisor(store, exp)
            sup.sync_mirror()
            runs.append([sup.sampler.suggest(n + i, []) for i in range(4)])
        assert runs[0] == runs[1]
        assert all(p is not None for p in runs[0]) and len({dumps(p) for p in runs[0]}) == 4


def _bulk_completed(store: Store, exp: Experiment, n: int) -> None:
    """``n`` completed trials written fast: queued through ``add_trials``, then set
    completed by one UPDATE per batch (100,000 claims would take minutes)."""
    rng = random.Random(0)
    now = time.time()
    for first in range(0, n, 10_000):
        added = store.add_trials(
            exp.id, [_draw(rng) for _ in range(min(10_000, n - first))], first_number=first
        )
        rows = [
            ("completed", _loss(t.params), dumps({"loss": _loss(t.params)}), now, now, t.id)
            for t in added
        ]
        with store._tx() as cur:  # type: ignore[attr-defined]
            cur.executemany(
                "UPDATE hd_trials SET state = ?, loss = ?, result = ?, started_at = ?, "
                "finished_at = ? WHERE id = ?",
                rows,
            )


def test_a_100k_trial_experiment_resumes_with_a_compact_mirror(tmp_path: Any) -> None:
    """A supervisor resuming a 100,000-trial experiment streams its history into arrays
    (no trial objects kept; peak memory far below the trials' size), and TPE, GP and
    CMA-ES suggest from it."""
    n = 100_000
    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        exp = _experiment(store, "tpe")
        _bulk_completed(store, exp, n)
        tracemalloc.start()
        try:
            sup = Supervisor(store, exp)
            sup.sync_mirror()
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        mirror = sup.mirror
        assert mirror is not None and mirror.curves is None
        h = mirror.history
        assert h.n == n and h.completed() == n
        assert h.nbytes() < 16 * 2**20  # arrays: ~60 bytes a trial, room to grow
        assert held < 40 * 2**20 and peak < 80 * 2**20  # 100,000 Trial objects: ~400 MB
        for i, kind in enumerate(["tpe", "gp", "cmaes"]):
            sup.sampler.kind = kind  # type: ignore[attr-defined]
            params = sup.sampler.suggest(n + i, [])
            assert params is not None and set(params) == {"x", "y", "act"}
            assert h.n == n + i + 1  # the suggestion is pending in the mirror
        assert len(h.window("tpe", 0)) == TPE_WINDOW + 3
        assert len(h.window("gp", 0)) == GP_WINDOW + 3
