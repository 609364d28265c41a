"""The storage conformance suite: every promise of :class:`hyperdock.storage.base.Store`.

Every backend runs this same suite. To run it against a backend, subclass
:class:`StoreConformance` in a pytest module and provide two fixtures::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_url(self, tmp_path):      # a fresh, empty store's URL, or None
            return f"sqlite:///{tmp_path}/t.db"

        @pytest.fixture
        def store(self, store_url):
            s = open_store(store_url)
            yield s
            s.close()

``store_url`` may be None for a backend that lives in one process only (mongomock); the
multi-process tests then skip, as nothing can be shared across processes.
"""

from __future__ import annotations

import importlib
import multiprocessing
import threading
import time
from collections import Counter
from typing import Any

import pytest

from hyperdock.errors import ConfigError, ExperimentExists, ExperimentNotFound
from hyperdock.storage import (
    SCHEMA_VERSION,
    Store,
    open_store,
    resolve_experiment,
    resolve_trial,
)
from hyperdock.trial import Experiment, ExperimentState, Target, TrialState

TARGET = Target(command=("true",))


def make_experiment(store: Store, name: str = "exp", **kw: Any) -> Experiment:
    """Create an experiment with test defaults."""
    args: dict[str, Any] = {
        "space": {"x": 1},
        "target": TARGET,
        "sampler": "random",
        "seed": 1,
        "max_trials": 100,
        "max_retries": 2,
        "lease_timeout": 60.0,
    }
    args.update(kw)
    return store.create_experiment(name, **args)


def _claim_all(url: str, worker: str, queue: Any) -> None:
    store = open_store(url)
    got = []
    while True:
        trial = store.claim(worker)
        if trial is None:
            break
        got.append(trial.id)
        store.finish(trial.id, worker, state=TrialState.COMPLETED, loss=0.0)
    store.close()
    queue.put(got)


class StoreConformance:
    """Behaviour every store backend must show. Subclass it; see the module docstring."""

    # -- experiments ------------------------------------------------------------------
    def test_create_and_get_experiment(self, store: Store) -> None:
        exp = make_experiment(
            store,
            space={"lr": {"$hp": "uniform"}},
            meta={"direction": "minimize"},
            target=Target(image="img:1", command=("python", "t.py"), timeout=5.0, env=("A=1",)),
        )
        assert exp.state is ExperimentState.RUNNING
        for key in (exp.name, exp.id):
            got = store.get_experiment(key)
            assert got == exp
        assert got.target.image == "img:1" and got.target.command == ("python", "t.py")
        assert got.meta == {"direction": "minimize"}
        assert [e.name for e in store.list_experiments()] == ["exp"]

    def test_duplicate_name_is_refused(self, store: Store) -> None:
        make_experiment(store)
        with pytest.raises(ExperimentExists, match="exists already"):
            make_experiment(store)

    def test_concurrent_creates_of_one_name_leave_one(self, store: Store) -> None:
        # Default names are made unique by retrying on ExperimentExists: the store must
        # say so for every loser of a race, never create two, never raise anything else.
        results: list[object] = []

        def create() -> None:
            try:
                results.append(make_experiment(store, name="race"))
            except ExperimentExists as exc:
                results.append(exc)

        threads = [threading.Thread(target=create) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(isinstance(r, Experiment) for r in results) == 1
        assert sum(isinstance(r, ExperimentExists) for r in results) == 5
        assert [e.name for e in store.list_experiments()] == ["race"]

    def test_missing_experiment_and_trial(self, store: Store) -> None:
        with pytest.raises(ExperimentNotFound):
            store.get_experiment("nope")
        with pytest.raises(ExperimentNotFound):
            store.get_experiment(12345)
        with pytest.raises(ExperimentNotFound):
            store.get_trial(12345)

    def test_experiments_are_found_by_name_id_latest_or_unique_prefix(self, store: Store) -> None:
        with pytest.raises(ExperimentNotFound, match="no experiments"):
            resolve_experiment(store, None)
        alpha = make_experiment(store, "alpha")
        assert resolve_experiment(store, None).id == alpha.id  # the only one
        alpine = make_experiment(store, "alpine")
        beta = make_experiment(store, "beta")
        assert resolve_experiment(store, "alpha").id == alpha.id  # exact beats prefix
        assert resolve_experiment(store, "alpi").id == alpine.id
        assert resolve_experiment(store, "b").id == beta.id
        assert resolve_experiment(store, str(alpine.id)).id == alpine.id
        assert resolve_experiment(store, "latest").id == beta.id  # the newest created
        with pytest.raises(ConfigError, match="'al' is the start of 2") as ambiguous:
            resolve_experiment(store, "al")
        assert "alpha" in str(ambiguous.value) and "alpine" in str(ambiguous.value)
        with pytest.raises(ConfigError, match="holds 3 experiments"):
            resolve_experiment(store, None)
        with pytest.raises(ExperimentNotFound, match="'gamma'") as missing:
            resolve_experiment(store, "gamma")
        assert all(n in str(missing.value) for n in ("alpha", "alpine", "beta"))

    def test_trials_are_found_by_id_or_experiment_and_number(self, store: Store) -> None:
        exp = make_experiment(store)
        first, second = store.add_trials(exp.id, [{"x": 1}, {"x": 2}])
        with pytest.raises(ConfigError, match="has started yet"):
            resolve_trial(store, "exp")
        claimed = store.claim("w1")
        assert claimed is not None and claimed.id == first.id
        assert resolve_trial(store, str(second.id)).id == second.id  # an id
        assert resolve_trial(store, "exp").id == first.id  # the last started
        assert resolve_trial(store, "latest", 1).id == second.id  # by number
        with pytest.raises(ConfigError, match="no trial number 7"):
            resolve_trial(store, "exp", 7)
        with pytest.raises(ConfigError, match="no trial with id 12345"):
            resolve_trial(store, "12345")

    def test_schema_version_is_recorded(self, store: Store) -> None:
        assert store.schema_version() == SCHEMA_VERSION

    def test_delete_experiment_removes_trials(self, store: Store) -> None:
        exp = make_experiment(store)
        other = make_experiment(store, "other")
        store.add_trials(exp.id, [{"a": 1}])
        kept = store.add_trials(other.id, [{"a": 2}])
        store.delete_experiment(exp.id)
        with pytest.raises(ExperimentNotFound):
            store.get_experiment("exp")
        claimed = store.claim("w")
        assert claimed is not None and claimed.id == kept[0].id
        assert store.claim("w") is None

    # -- trials -----------------------------------------------------------------------
    def test_add_trials_numbers_and_round_trips_params(self, store: Store) -> None:
        exp = make_experiment(store)
        params: list[dict[str, Any]] = [
            {"a": 1, "b": [1.5, "x"], "c": {"d": None, "e": True}},
            {"ü": "ß"},
        ]
        first = store.add_trials(exp.id, params)
        second = store.add_trials(exp.id, [{"a": 3}])
        assert [t.number for t in first + second] == [0, 1, 2]
        assert [t.params for t in first] == params
        assert all(t.state is TrialState.QUEUED and t.attempt == 0 for t in first)
        assert store.get_trial(first[0].id) == first[0]
        assert len({t.id for t in first + second}) == 3

    def test_add_trials_with_first_number_is_idempotent(self, store: Store) -> None:
        exp = make_experiment(store)
        made = store.add_trials(exp.id, [{"n": 0}, {"n": 1}], first_number=0)
        assert [t.number for t in made] == [0, 1]
        assert store.add_trials(exp.id, [{"n": 0}, {"n": 1}], first_number=0) == []
        again = store.add_trials(exp.id, [{"n": 1}, {"n": 2}], first_number=1)
        assert [(t.number, t.params) for t in again] == [(2, {"n": 2})]
        assert sum(store.count_trials(exp.id).values()) == 3

    def test_numpy_values_are_stored_as_json(self, store: Store) -> None:
        np = importlib.import_module("numpy")
        exp = make_experiment(store)
        (trial,) = store.add_trials(
            exp.id, [{"i": np.int64(3), "f": np.float32(0.5), "v": np.arange(2)}]
        )
        assert store.get_trial(trial.id).params == {"i": 3, "f": 0.5, "v": [0, 1]}

    def test_claim_marks_running_and_returns_none_when_empty(self, store: Store) -> None:
        exp = make_experiment(store)
        assert store.claim("w1") is None
        (queued,) = store.add_trials(exp.id, [{"a": 1}])
        trial = store.claim("w1")
        assert trial is not None and trial.id == queued.id
        assert trial.state is TrialState.RUNNING and trial.worker_id == "w1"
        assert trial.started_at is not None and trial.heartbeat_at is not None
        assert store.claim("w2") is None

    def test_claim_order_priority_then_age(self, store: Store) -> None:
        low = make_experiment(store, "low", priority=0)
        high = make_experiment(store, "high", priority=5)
        a = store.add_trials(low.id, [{"n": 0}, {"n": 1}])
        b = store.add_trials(high.id, [{"n": 2}])
        c = store.add_trials(low.id, [{"n": 3}])
        order = [store.claim("w") for _ in range(4)]
        assert [t.id for t in order if t] == [b[0].id, a[0].id, a[1].id, c[0].id]

    def test_front_batches_are_claimed_before_the_queue(self, store: Store) -> None:
        exp = make_experiment(store, "queue")
        other = make_experiment(store, "other")
        older = store.add_trials(exp.id, [{"n": 0}, {"n": 1}])
        first_front = store.add_trials(exp.id, [{"n": 2}, {"n": 3}], front=True)
        (elsewhere,) = store.add_trials(other.id, [{"n": 4}])
        (last_front,) = store.add_trials(exp.id, [{"n": 5}], front=True)
        (after,) = store.add_trials(exp.id, [{"n": 6}])
        assert [t.number for t in [*first_front, last_front]] == [2, 3, 4]  # numbered as usual
        order = [store.claim("w", experiment_id=exp.id) for _ in range(6)]
        assert [t.id for t in order if t] == [
            last_front.id, *(t.id for t in first_front), *(t.id for t in older), after.id
        ]  # fmt: skip
        claimed = store.claim("w")
        assert claimed is not None and claimed.id == elsewhere.id
        # A front trial of a low-priority experiment still waits for a higher one's.
        high = make_experiment(store, "high", priority=5)
        (urgent,) = store.add_trials(high.id, [{"n": 0}])
        store.add_trials(exp.id, [{"n": 7}], front=True)
        claimed = store.claim("w")
        assert claimed is not None and claimed.id == urgent.id
        # A retried front trial keeps its place.
        (again,) = store.add_trials(exp.id, [{"n": 8}], front=True)
        nxt = store.claim("w", experiment_id=exp.id)
        assert nxt is not None and nxt.id == again.id
        assert store.release(again.id, "w", error="boom") is TrialState.QUEUED
        retried = store.claim("w", experiment_id=exp.id)
        assert retried is not None and retried.id == again.id

    def test_priority_change_reorders_claims(self, store: Store) -> None:
        first = make_experiment(store, "first")
        second = make_experiment(store, "second")
        store.add_trials(first.id, [{"n": 0}])
        (wanted,) = store.add_trials(second.id, [{"n": 1}])
        assert store.update_experiment(second.id, priority=3).priority == 3
        claimed = store.claim("w")
        assert claimed is not None and claimed.id == wanted.id

    def test_claim_restricted_to_one_experiment(self, store: Store) -> None:
        a = make_experiment(store, "a")
        b = make_experiment(store, "b")
        store.add_trials(a.id, [{"n": 0}])
        (tb,) = store.add_trials(b.id, [{"n": 1}])
        claimed = store.claim("w", experiment_id=b.id)
        assert claimed is not None and claimed.id == tb.id

    def test_claim_skips_experiments_not_running(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}])
        store.set_experiment_state(exp.id, ExperimentState.DONE)
        assert store.claim("w") is None
        store.set_experiment_state(exp.id, ExperimentState.RUNNING)
        assert store.claim("w") is not None

    def test_threads_never_double_claim(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": i} for i in range(200)])
        seen: list[int] = []
        lock = threading.Lock()

        def work(name: str) -> None:
            while (trial := store.claim(name)) is not None:
                with lock:
                    seen.append(trial.id)
                assert store.finish(trial.id, name, state=TrialState.COMPLETED, loss=1.0)

        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 200 and len(set(seen)) == 200
        assert store.count_trials(exp.id)[TrialState.COMPLETED] == 200

    def test_processes_never_double_claim(self, store: Store, store_url: str | None) -> None:
        if store_url is None:
            pytest.skip("this backend lives in one process; nothing to share")
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": i} for i in range(400)])
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_claim_all, args=(store_url, f"p{i}", queue)) for i in range(8)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        claimed = [tid for r in results for tid in r]
        assert len(claimed) == 400
        assert len(set(claimed)) == 400, Counter(claimed).most_common(3)

    # -- leases -----------------------------------------------------------------------
    def test_only_the_lease_holder_finishes(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}])
        trial = store.claim("w1")
        assert trial is not None
        assert store.finish(trial.id, "w2", state=TrialState.COMPLETED, loss=1) is False
        assert store.release(trial.id, "w2", error="x") is None
        assert (
            store.finish(trial.id, "w1", state=TrialState.COMPLETED, loss=0.5, result={"acc": 0.9})
            is True
        )
        done = store.get_trial(trial.id)
        assert done.state is TrialState.COMPLETED and done.loss == 0.5
        assert done.result == {"acc": 0.9} and done.finished_at is not None
        assert [h["state"] for h in done.history] == ["completed"]
        # A finished trial never changes again.
        assert store.finish(trial.id, "w1", state=TrialState.FAILED) is False
        assert store.release(trial.id, "w1", error="late") is None
        assert store.get_trial(trial.id).state is TrialState.COMPLETED

    def test_heartbeat_renews_and_reports_stops(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}, {"n": 1}])
        store.register_worker("w1", host="h", pid=1, parallelism=2)
        t1, t2 = store.claim("w1"), store.claim("w1")
        assert t1 and t2
        time.sleep(0.05)
        assert store.heartbeat("w1", [t1.id, t2.id]) == set()
        renewed = store.get_trial(t1.id).heartbeat_at
        assert renewed is not None and t1.heartbeat_at is not None
        assert renewed > t1.heartbeat_at
        assert store.cancel_trial(t2.id) is TrialState.RUNNING
        assert store.get_trial(t2.id).stop_requested
        assert store.heartbeat("w1", [t1.id, t2.id]) == {t2.id}
        assert store.heartbeat("intruder", [t1.id]) == {t1.id}
        assert store.release(t2.id, "w1", error="stopped") is TrialState.CANCELLED

    def test_one_heartbeat_renews_every_lease_of_a_worker(self, store: Store) -> None:
        exp = make_experiment(store, lease_timeout=1.0, max_trials=None)
        store.add_trials(exp.id, [{"n": i} for i in range(45)])
        store.register_worker("many", host="h", pid=1, parallelism=40)
        mine = [store.claim("many") for _ in range(40)]
        theirs = [store.claim("other") for _ in range(3)]
        assert all(mine) and all(theirs)
        ids = [t.id for t in mine if t]
        cancelled, pruned, done = ids[3], ids[17], ids[39]
        assert store.cancel_trial(cancelled) is TrialState.RUNNING
        assert store.prune_trial(pruned)
        assert store.finish(done, "many", state=TrialState.COMPLETED, loss=0.5)
        other = theirs[0].id if theirs[0] else -1
        time.sleep(0.6)
        # One call for every lease held, plus one that is another worker's, one that
        # ended and one that does not exist.
        stop = store.heartbeat("many", [*ids, other, 10**9])
        assert stop == {cancelled, pruned, done, other, 10**9}
        time.sleep(0.6)  # past the lease of the trials not renewed, within the renewed
        reaped = store.reap()
        assert sorted(t.id for t in reaped) == sorted(t.id for t in theirs if t)
        alive = store.list_trials(exp.id, states=[TrialState.RUNNING])
        assert sorted(t.id for t in alive) == sorted(set(ids) - {done})
        assert {t.worker_id for t in alive} == {"many"}
        (worker,) = store.list_workers(max_age=1.0)
        assert worker.id == "many" and len(worker.running) == 39

    def test_release_retries_then_fails(self, store: Store) -> None:
        exp = make_experiment(store, max_retries=2)
        (trial,) = store.add_trials(exp.id, [{"n": 0}])
        states = []
        for _ in range(3):
            claimed = store.claim("w")
            assert claimed is not None and claimed.id == trial.id
            states.append(store.release(trial.id, "w", error="boom"))
        assert states == [TrialState.QUEUED, TrialState.QUEUED, TrialState.FAILED]
        failed = store.get_trial(trial.id)
        assert failed.state is TrialState.FAILED and failed.error == "boom"
        assert failed.attempt == 2 and len(failed.history) == 3
        assert store.claim("w") is None

    def test_finish_appends_to_the_history(self, store: Store) -> None:
        exp = make_experiment(store, max_retries=2)
        (trial,) = store.add_trials(exp.id, [{"n": 0}])
        assert store.claim("w1") is not None
        assert store.release(trial.id, "w1", error="lost") is TrialState.QUEUED
        assert store.claim('w "2"') is not None
        message = 'bad "quote" \\ back\nslash ✓ </script>'
        assert store.finish(trial.id, 'w "2"', state=TrialState.FAILED, error=message)
        history = store.get_trial(trial.id).history
        assert len(history) == 2
        assert history[0]["worker"] == "w1" and history[0]["message"] == "lost"
        last = history[1]
        assert (last["attempt"], last["worker"], last["state"]) == (1, 'w "2"', "failed")
        assert last["message"] == message
        assert last["ended_at"] >= last["started_at"]

    def test_release_without_retry_or_without_counting(self, store: Store) -> None:
        exp = make_experiment(store, max_retries=1)
        a, b = store.add_trials(exp.id, [{"n": 0}, {"n": 1}])
        assert store.claim("w") and store.claim("w")
        assert store.release(a.id, "w", error="image missing", retry=False) is TrialState.FAILED
        for _ in range(3):  # a graceful shutdown does not use up retries
            assert (
                store.release(b.id, "w", error="shutdown", count_attempt=False) is TrialState.QUEUED
            )
            assert store.claim("w") is not None
        assert store.get_trial(b.id).attempt == 0

    def test_lease_expiry_requeues_then_fails(self, store: Store) -> None:
        exp = make_experiment(store, lease_timeout=0.3, max_retries=1)
        (trial,) = store.add_trials(exp.id, [{"n": 0}])
        assert store.claim("dead")
        assert store.reap() == []  # still fresh
        time.sleep(0.5)
        (reaped,) = store.reap()
        assert reaped.id == trial.id and reaped.state is TrialState.QUEUED
        assert reaped.attempt == 1 and "Timed out" in (reaped.error or "")
        assert store.heartbeat("dead", [trial.id]) == {trial.id}
        again = store.claim("alive")
        assert again is not None and again.id == trial.id and again.worker_id == "alive"
        assert store.finish(trial.id, "dead", state=TrialState.COMPLETED, loss=1) is False
        time.sleep(0.5)
        (lost,) = store.reap()
        assert lost.state is TrialState.FAILED and "Timed out" in (lost.error or "")

    def test_heartbeat_keeps_lease_alive(self, store: Store) -> None:
        exp = make_experiment(store, lease_timeout=0.4)
        store.add_trials(exp.id, [{"n": 0}])
        trial = store.claim("w")
        assert trial is not None
        for _ in range(4):
            time.sleep(0.15)
            store.heartbeat("w", [trial.id])
            assert store.reap() == []
        assert store.get_trial(trial.id).state is TrialState.RUNNING

    @pytest.mark.parametrize("jump", [3600.0, -3600.0])
    def test_a_wall_clock_jump_neither_reaps_live_leases_nor_keeps_lost_ones(
        self, store: Store, monkeypatch: pytest.MonkeyPatch, jump: float
    ) -> None:
        # Every process's wall clock jumps by an hour (here: this process's, which runs
        # the workers and the reaper). Leases are measured on one clock that the jump
        # does not move: the live trial stays, the lost one is reaped after its timeout.
        exp = make_experiment(store, lease_timeout=3.0)
        store.add_trials(exp.id, [{"n": 0}, {"n": 1}])
        for worker in ("alive", "dead"):
            store.register_worker(worker, host="h", pid=1, parallelism=1)
        live, lost = store.claim("alive"), store.claim("dead")
        assert live is not None and lost is not None
        real, real_ns = time.time, time.time_ns
        monkeypatch.setattr(time, "time", lambda: real() + jump)
        monkeypatch.setattr(time, "time_ns", lambda: real_ns() + int(jump * 1e9))
        assert store.reap() == []  # no lease is 3 s old yet, whatever the wall clock says
        assert {w.id for w in store.list_workers(max_age=2.0)} == {"alive", "dead"}
        deadline = time.monotonic() + 60
        reaped: list[Any] = []
        while not reaped:
            assert time.monotonic() < deadline, "the lost trial was never reaped"
            assert store.heartbeat("alive", [live.id]) == set()
            reaped = store.reap()
            time.sleep(0.1)
        assert [t.id for t in reaped] == [lost.id]
        assert reaped[0].state is TrialState.QUEUED and "Timed out" in (reaped[0].error or "")
        still = store.get_trial(live.id)
        assert still.state is TrialState.RUNNING and still.worker_id == "alive"
        assert [w.id for w in store.list_workers(max_age=2.0)] == ["alive"]

    # -- cancel -----------------------------------------------------------------------
    def test_cancel_experiment(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}, {"n": 1}])
        running = store.claim("w")
        assert running is not None
        store.set_experiment_state(exp.id, ExperimentState.CANCELLED)
        counts = store.count_trials(exp.id)
        assert counts[TrialState.CANCELLED] == 1 and counts[TrialState.RUNNING] == 1
        assert store.heartbeat("w", [running.id]) == {running.id}
        assert store.finish(running.id, "w", state=TrialState.CANCELLED, error="Cancelled")
        assert store.get_experiment(exp.id).state is ExperimentState.CANCELLED
        assert store.claim("w") is None

    def test_failed_experiment_stops_its_trials(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}, {"n": 1}])
        running = store.claim("w")
        assert running is not None
        store.set_experiment_state(exp.id, ExperimentState.FAILED)
        assert store.get_experiment(exp.id).state is ExperimentState.FAILED
        assert [e.state for e in store.list_experiments()] == [ExperimentState.FAILED]
        (queued,) = store.list_trials(exp.id, states=[TrialState.CANCELLED])
        assert queued.error == "Cancelled: the experiment failed"
        # The running trial's worker is told to stop; its release ends it cancelled.
        assert store.heartbeat("w", [running.id]) == {running.id}
        assert store.release(running.id, "w", error="Cancelled") is TrialState.CANCELLED
        assert store.claim("w") is None
        store.add_trials(exp.id, [{"n": 2}])  # a late add of a failed experiment's trial
        assert store.claim("w") is None

    def test_update_experiment_meta_keeps_other_keys(self, store: Store) -> None:
        exp = make_experiment(store, meta={"max_time": 5.0, "pruner": "none"})
        got = store.update_experiment(exp.id, meta={"stop_reason": "why", "max_time": 7.0})
        assert got.meta == {"max_time": 7.0, "pruner": "none", "stop_reason": "why"}
        assert store.get_experiment(exp.id).meta == got.meta
        assert store.update_experiment(exp.id, max_trials=3).meta == got.meta

    def test_cancel_queued_trial(self, store: Store) -> None:
        exp = make_experiment(store)
        (trial,) = store.add_trials(exp.id, [{"n": 0}])
        assert store.cancel_trial(trial.id) is TrialState.CANCELLED
        assert store.claim("w") is None

    # -- pruning and progress ---------------------------------------------------------
    def test_progress_is_kept_per_step_for_the_lease_holder(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}, {"n": 1}])
        first, second = store.claim("w"), store.claim("w")
        assert first is not None and second is not None
        assert store.add_progress(first.id, "w", [(1, 0.9), (2, 0.8)])
        assert store.add_progress(first.id, "w", [(2, 0.7), (3, 0.6)])  # step 2 rewritten
        assert store.add_progress(second.id, "w", [(1, 0.5)])
        assert not store.add_progress(first.id, "intruder", [(4, 0.0)])
        assert store.list_progress(exp.id) == {
            first.id: [(1, 0.9), (2, 0.7), (3, 0.6)],
            second.id: [(1, 0.5)],
        }
        assert store.list_progress(exp.id, trial_ids=[second.id]) == {second.id: [(1, 0.5)]}
        assert store.list_progress(make_experiment(store, "other").id) == {}
        store.finish(first.id, "w", state=TrialState.COMPLETED, loss=0.6)
        assert not store.add_progress(first.id, "w", [(5, 0.1)])  # finished: no lease

    def test_prune_stops_a_running_trial_which_ends_pruned(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}, {"n": 1}, {"n": 2}])
        a, b = store.claim("w"), store.claim("w")
        assert a is not None and b is not None
        assert store.prune_trial(a.id)
        assert not store.prune_trial(a.id)  # asked already
        assert store.heartbeat("w", [a.id, b.id]) == {a.id}
        got = store.get_trial(a.id)
        assert got.stop_requested and got.prune_requested
        assert store.finish(a.id, "w", state=TrialState.PRUNED, loss=0.7, result={"step": 3})
        pruned = store.get_trial(a.id)
        assert pruned.state is TrialState.PRUNED and pruned.loss == 0.7
        # A stopped trial released (target died while stopping) also ends pruned.
        assert store.prune_trial(b.id)
        assert store.release(b.id, "w", error="stopped") is TrialState.PRUNED
        # Queued trials cannot be pruned; a cancel overrides a prune request.
        (queued,) = store.list_trials(exp.id, states=[TrialState.QUEUED])
        assert not store.prune_trial(queued.id)
        c = store.claim("w")
        assert c is not None
        assert store.cancel_trial(c.id) is TrialState.RUNNING
        assert not store.prune_trial(c.id)
        assert not store.get_trial(c.id).prune_requested
        assert store.count_trials(exp.id)[TrialState.PRUNED] == 2
        assert store.best_trial(exp.id) is None  # pruned trials are never the best

    def test_a_lost_pruned_trial_is_reaped_as_pruned(self, store: Store) -> None:
        exp = make_experiment(store, lease_timeout=0.2)
        store.add_trials(exp.id, [{"n": 0}])
        trial = store.claim("w")
        assert trial is not None
        assert store.prune_trial(trial.id)
        time.sleep(0.5)
        assert [t.state for t in store.reap()] == [TrialState.PRUNED]

    # -- queries ----------------------------------------------------------------------
    def test_counts_best_and_filters(self, store: Store) -> None:
        exp = make_experiment(store, max_retries=0)
        store.add_trials(exp.id, [{"n": i} for i in range(5)])
        losses = [0.5, 0.2, 0.2, None]
        for loss in losses:
            trial = store.claim("w")
            assert trial is not None
            if loss is None:
                store.release(trial.id, "w", error="x")
            else:
                store.finish(trial.id, "w", state=TrialState.COMPLETED, loss=loss)
        counts = store.count_trials(exp.id)
        assert counts == {
            **dict.fromkeys(TrialState, 0),
            TrialState.COMPLETED: 3,
            TrialState.FAILED: 1,
            TrialState.QUEUED: 1,
        }
        best = store.best_trial(exp.id)
        assert best is not None and best.loss == 0.2 and best.number == 1
        done = store.list_trials(exp.id, states=[TrialState.COMPLETED])
        assert [t.number for t in done] == [0, 1, 2]
        assert [t.number for t in store.list_trials(exp.id, since_id=done[1].id, limit=2)] == [2, 3]
        assert store.best_trial(make_experiment(store, "empty").id) is None
        top = store.best_trial(exp.id, maximize=True)
        assert top is not None and top.loss == 0.5 and top.number == 0

    def test_trial_summaries_match_the_trials(self, store: Store) -> None:
        exp = make_experiment(store, max_retries=0)
        store.add_trials(exp.id, [{"n": i, "c": {"k": [i, "a"]}} for i in range(7)])
        for i in range(4):
            trial = store.claim("w")
            assert trial is not None
            state = TrialState.PRUNED if i == 2 else TrialState.COMPLETED
            store.finish(trial.id, "w", state=state, loss=i / 4, result={"values": [i, -i]})
        make_experiment(store, "other")  # another experiment's trials are not listed
        full = store.list_trials(exp.id)

        def expected(result: bool) -> list[tuple[object, ...]]:
            return [
                (t.id, t.number, t.state, t.params, t.loss, t.result if result else {})
                for t in full
            ]

        got = [tuple(s) for s in store.iter_trial_summaries(exp.id, batch=3)]
        assert got == expected(False)
        with_result = store.iter_trial_summaries(exp.id, with_result=True, batch=2)
        assert [tuple(s) for s in with_result] == expected(True)
        after = [s.number for s in store.iter_trial_summaries(exp.id, since_id=full[4].id)]
        assert after == [5, 6]
        assert list(store.iter_trial_summaries(exp.id, since_id=full[-1].id)) == []

    # -- workers ----------------------------------------------------------------------
    def test_worker_registry(self, store: Store) -> None:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}])
        store.register_worker("w1", host="gpu1", pid=42, parallelism=2, meta={"v": 1})
        store.register_worker("w2", host="gpu2", pid=43, parallelism=1)
        trial = store.claim("w1")
        assert trial is not None
        workers = {w.id: w for w in store.list_workers()}
        assert workers["w1"].host == "gpu1" and workers["w1"].parallelism == 2
        assert workers["w1"].running == (trial.id,) and workers["w2"].running == ()
        time.sleep(0.3)
        store.heartbeat("w2", [])
        assert [w.id for w in store.list_workers(max_age=0.2)] == ["w2"]
        store.unregister_worker("w2")
        assert [w.id for w in store.list_workers()] == ["w1"]

    def test_worker_status(self, store: Store) -> None:
        store.register_worker("w1", host="h", pid=1, parallelism=1, meta={"v": 1})
        store.register_worker("w2", host="h", pid=2, parallelism=1)
        assert {w.id: w.status for w in store.list_workers()} == {"w1": None, "w2": None}
        store.set_worker_status("w1", "paused: Docker is not reachable")
        store.heartbeat("w1", [])  # a heartbeat keeps the status
        workers = {w.id: w for w in store.list_workers()}
        assert workers["w1"].status == "paused: Docker is not reachable"
        assert workers["w1"].meta == {"v": 1} and workers["w2"].status is None
        store.set_worker_status("w1", None)
        assert [w.status for w in store.list_workers()] == [None, None]
        store.set_worker_status("w1", "paused again")
        store.register_worker("w1", host="h", pid=1, parallelism=1)  # a restart clears it
        assert [w.status for w in store.list_workers()] == [None, None]
        store.set_worker_status("nobody", "x")  # unknown workers: nothing happens
        assert {w.id for w in store.list_workers()} == {"w1", "w2"}

    # -- logs -------------------------------------------------------------------------
    def test_logs_are_kept_per_attempt_in_order(self, store: Store) -> None:
        exp = make_experiment(store)
        (trial,) = store.add_trials(exp.id, [{"n": 0}])
        assert store.log_attempts(trial.id) == []
        assert store.read_log(trial.id).chunks == () and store.read_log(trial.id).size == 0
        store.add_log(trial.id, 0, 0, b"", head=100, tail=100)  # a log, empty so far
        assert store.log_attempts(trial.id) == [0]
        store.add_log(trial.id, 0, 0, b"hello ", head=100, tail=100)  # retried: ignored
        store.add_log(trial.id, 0, 0, b"hello ", head=100, tail=100)
        store.add_log(trial.id, 0, 6, b"world\n", head=100, tail=100)
        store.add_log(trial.id, 1, 0, b"again\n", head=100, tail=100)
        got = store.read_log(trial.id, 0)
        assert (got.attempt, got.size, got.text()) == (0, 12, "hello world\n")
        latest = store.read_log(trial.id)
        assert (latest.attempt, latest.text()) == (1, "again\n")
        assert store.log_attempts(trial.id) == [0, 1]
        assert [c.offset for c in store.read_log(trial.id, 0, start=6).chunks] == [6]
        assert [c.offset for c in store.read_log(trial.id, 0, start=-3).chunks] == [6]
        assert store.read_log(trial.id, 5).chunks == ()

    def test_logs_keep_the_head_and_the_tail(self, store: Store) -> None:
        exp = make_experiment(store)
        (trial,) = store.add_trials(exp.id, [{"n": 0}])
        head, tail, chunk = 30, 40, 10
        for offset in range(0, 200, chunk):
            data = bytes([65 + offset // chunk]) * chunk
            store.add_log(trial.id, 0, offset, data, head=head, tail=tail)
            assert store.read_log(trial.id, 0).stored <= head + tail + chunk
        log = store.read_log(trial.id, 0)
        assert log.size == 200
        assert [c.offset for c in log.chunks] == [0, 10, 20, 160, 170, 180, 190]
        text = log.text()
        assert text.startswith("A" * 10 + "B" * 10 + "C" * 10 + "\n[... 130 bytes cut")
        assert text.endswith("]\n" + "Q" * 10 + "R" * 10 + "S" * 10 + "T" * 10)
        # A chunk retried after it was dropped is dropped again.
        store.add_log(trial.id, 0, 100, b"x" * chunk, head=head, tail=tail)
        assert store.read_log(trial.id, 0).chunks == log.chunks

    def test_logs_go_with_their_experiment(self, store: Store) -> None:
        exp, other = make_experiment(store), make_experiment(store, "other")
        (trial,) = store.add_trials(exp.id, [{"n": 0}])
        (kept,) = store.add_trials(other.id, [{"n": 0}])
        store.add_log(trial.id, 0, 0, b"gone", head=10, tail=10)
        store.add_log(kept.id, 0, 0, b"kept", head=10, tail=10)
        store.delete_experiment(exp.id)
        assert store.log_attempts(trial.id) == [] and store.read_log(trial.id).size == 0
        store.add_log(trial.id, 0, 4, b"late", head=10, tail=10)  # no trial: nothing
        assert store.log_attempts(trial.id) == []
        assert store.read_log(kept.id).text() == "kept"
