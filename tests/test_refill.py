"""The supervisor keeps up: its queue margin follows the claims, its polling backs off
when nothing happens, and a run with many workers loses, repeats and over-queues
nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from hyperdock import hp
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.supervisor import (
    ACTIVE_POLL,
    MAX_QUEUE_AHEAD,
    QUEUE_AHEAD,
    Supervisor,
    open_experiment,
)
from hyperdock.trial import ExperimentState, Target, TrialState

SPACE = Space.from_obj({"x": hp.uniform("x", 0, 1)})


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/refill.db"
    make: Callable[[], str] = request.getfixturevalue("postgres_url")
    return make()


def _supervisor(store: Store, budget: int, poll: float = 1.0) -> Supervisor:
    exp, _ = open_experiment(
        store,
        "refill",
        space=SPACE,
        target=Target(command=("true",)),
        sampler="random",
        seed=3,
        max_trials=budget,
    )
    return Supervisor(store, exp, poll_interval=poll)


def _queued(store: Store, sup: Supervisor) -> int:
    return store.count_trials(sup.experiment.id)[TrialState.QUEUED]


def test_a_queue_found_empty_grows_the_margin_and_idle_polling_backs_off(
    store_url: str,
) -> None:
    with open_store(store_url) as store:
        sup = _supervisor(store, budget=100_000)
        sup.step()
        assert _queued(store, sup) == QUEUE_AHEAD
        while store.claim("w") is not None:  # the workers take everything
            pass
        sup.step()
        # More than before, as many as the margin says, never more than the cap.
        assert QUEUE_AHEAD * 2 <= sup.queue_ahead <= MAX_QUEUE_AHEAD
        assert _queued(store, sup) == sup.queue_ahead
        assert sup.next_wait() <= ACTIVE_POLL  # trials are moving: look again soon
        waits, most = [], sup.queue_ahead
        for _ in range(12):  # nothing claimed any more
            sup.step()
            waits.append(sup.next_wait())
            # The margin shrinks back with the rate; nothing is queued beyond it.
            assert _queued(store, sup) == most and sup.queue_ahead <= most
        assert waits == sorted(waits) and waits[-1] == sup.poll_interval
        store.claim("w")
        sup.step()
        assert sup.next_wait() <= ACTIVE_POLL


def _work(url: str, exp_id: int, name: str, taken: list[int], errors: list[str]) -> None:
    """A simulated worker: claim and finish until the experiment is over."""
    try:
        with open_store(url) as store:
            while True:
                trial = store.claim(name, experiment_id=exp_id)
                if trial is None:
                    if store.get_experiment(exp_id).state is not ExperimentState.RUNNING:
                        return
                    threading.Event().wait(0.01)
                    continue
                taken.append(trial.id)
                if not store.finish(trial.id, name, state=TrialState.COMPLETED, loss=0.0):
                    errors.append(f"{name} lost trial {trial.id}")
    except Exception as exc:  # reported by the test
        errors.append(f"{name}: {exc!r}")


def test_workers_drain_a_refilled_queue_exactly_to_the_budget(store_url: str) -> None:
    budget = 1500
    with open_store(store_url) as store:
        sup = _supervisor(store, budget=budget, poll=0.5)
        over: list[tuple[int, int]] = []
        most = 0
        step = sup.step

        def checked_step() -> bool:
            nonlocal most
            done = step()
            most = max(most, sup.queue_ahead)
            queued = _queued(store, sup)
            if queued > most:
                over.append((queued, most))
            return done

        sup.step = checked_step  # type: ignore[method-assign]
        taken: list[int] = []
        errors: list[str] = []
        workers = [
            threading.Thread(
                target=_work, args=(store_url, sup.experiment.id, f"w{i}", taken, errors)
            )
            for i in range(4)
        ]
        for w in workers:
            w.start()
        exp = sup.run()
        for w in workers:
            w.join(timeout=120)
        assert not errors
        assert exp.state is ExperimentState.DONE
        counts = store.count_trials(exp.id)
        assert counts[TrialState.COMPLETED] == budget == sum(counts.values())
        assert len(taken) == budget and not [t for t, n in Counter(taken).items() if n > 1]
        numbers = sorted(t.number for t in store.list_trials(exp.id))
        assert numbers == list(range(budget))
        assert not over  # never more queued than the margin (at its largest)
