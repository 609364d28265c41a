"""Supervisor and workers as separate processes: the worker registry, cancel, restarts,
store outages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, wait_for, write

from hyperdock.config import space_from_v04
from hyperdock.errors import HyperdockError, StoreConnectionError
from hyperdock.storage import Store, open_store
from hyperdock.supervisor import Supervisor, open_experiment
from hyperdock.trial import ExperimentState, Target, TrialState
from hyperdock.worker import Worker

pytestmark = pytest.mark.slow


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/hd.db"


def _project(tmp_path: Path, sleep: float = 0.0) -> Path:
    write(tmp_path / "space.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}")
    write(
        tmp_path / "t.py",
        f"""
        import json, os, time
        with open({str(tmp_path / "ran.txt")!r}, "a") as fh:
            fh.write(os.environ["HYPERDOCK_TRIAL_ID"] + "\\n")
        time.sleep(json.load(open(os.environ["HYPERDOCK_PARAMS"])).get("sleep", {sleep}))
        open(os.environ["HYPERDOCK_LOSS"], "w").write("0.5")
        """,
    )
    return tmp_path


def _supervisor(cwd: Path, url: str, name: str, *args: str) -> subprocess.Popen[bytes]:
    return spawn(
        "supervisor", "space.py", "--command", f"{PY} t.py", "--name", name, "--store", url,
        "--poll", "0.2", *args, cwd=cwd, log=cwd / f"sup-{name}.log",
    )  # fmt: skip


def _worker(cwd: Path, url: str, *args: str) -> subprocess.Popen[bytes]:
    return spawn(
        "worker", "--store", url, "--heartbeat", "0.3", "--poll", "0.1", *args,
        cwd=cwd, log=cwd / "workers.log",
    )  # fmt: skip


def _running(url: str) -> list[int]:
    try:
        with open_store(url) as st:
            return [t for w in st.list_workers() for t in w.running]
    except HyperdockError:
        return []


def test_workers_command_lists_live_workers(tmp_path: Path, sqlite_url: str) -> None:
    _project(tmp_path, sleep=30)
    sup = _supervisor(tmp_path, sqlite_url, "reg", "--max-trials", "2")
    worker = _worker(tmp_path, sqlite_url, "--parallelism", "2")
    wait_for(lambda: len(_running(sqlite_url)) == 2, timeout=60, what="two running trials")
    out = hd("workers", "--store", sqlite_url, "--json", cwd=tmp_path)
    (entry,) = json.loads(out.stdout)
    assert entry["pid"] == worker.pid and entry["parallelism"] == 2
    assert len(entry["running"]) == 2
    table = hd("workers", "--store", sqlite_url, cwd=tmp_path).stdout
    assert "SLOTS" in table and str(worker.pid) in table
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert json.loads(hd("workers", "--store", sqlite_url, "--json", cwd=tmp_path).stdout) == []
    sup.kill()


def test_cancel_experiment_stops_running_targets(tmp_path: Path, sqlite_url: str) -> None:
    _project(tmp_path, sleep=600)
    sup = _supervisor(tmp_path, sqlite_url, "long", "--max-trials", "4")
    worker = _worker(tmp_path, sqlite_url, "--parallelism", "2")
    wait_for(lambda: len(_running(sqlite_url)) == 2, timeout=60, what="two running trials")
    started = time.monotonic()
    out = hd("cancel", "long", "--store", sqlite_url, cwd=tmp_path)
    assert out.returncode == 0 and "Cancelled experiment long" in out.stdout
    wait_for(lambda: not _running(sqlite_url), timeout=30, what="the targets to stop")
    assert time.monotonic() - started < 15  # within a heartbeat or two, not 600 s
    sup.wait(timeout=30)
    with open_store(sqlite_url) as st:
        exp = st.get_experiment("long")
        assert exp.state is ExperimentState.CANCELLED
        assert {t.state for t in st.list_trials(exp.id)} == {TrialState.CANCELLED}
    assert worker.poll() is None  # the worker itself goes on serving other experiments
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)


def test_cancel_one_trial_the_experiment_goes_on(tmp_path: Path, sqlite_url: str) -> None:
    _project(tmp_path, sleep=0.2)
    (tmp_path / "space.py").write_text(
        "from hyperdock import hp\nSPACE = {'sleep': hp.choice('sleep', [600, 0.1, 0.2])}"
    )
    sup = _supervisor(tmp_path, sqlite_url, "one", "--sampler", "grid")
    worker = _worker(tmp_path, sqlite_url)
    with open_store(sqlite_url) as st:
        wait_for(lambda: bool(_running(sqlite_url)), timeout=60, what="the first trial")
        first = st.list_trials(st.get_experiment("one").id)[0]
        assert first.params == {"sleep": 600}
        out = hd("cancel", "--trial", str(first.id), "--store", sqlite_url, cwd=tmp_path)
        assert out.returncode == 0 and "is being stopped" in out.stdout
        assert sup.wait(timeout=60) == 0
        states = [t.state for t in st.list_trials(st.get_experiment("one").id)]
    assert states == [TrialState.CANCELLED, TrialState.COMPLETED, TrialState.COMPLETED]
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)


def test_supervisor_kill_9_and_restart_keeps_the_budget(tmp_path: Path, sqlite_url: str) -> None:
    _project(tmp_path, sleep=0.05)
    sup = _supervisor(tmp_path, sqlite_url, "phoenix", "--max-trials", "150", "--seed", "7")
    worker = _worker(tmp_path, sqlite_url, "--parallelism", "2")
    with open_store(sqlite_url) as st:

        def done() -> int:
            try:
                exp = st.get_experiment("phoenix")
            except HyperdockError:
                return 0
            return st.count_trials(exp.id)[TrialState.COMPLETED]

        wait_for(lambda: done() >= 20, timeout=120, what="20 trials")
        os.kill(sup.pid, signal.SIGKILL)
        sup.wait()
        # Resume by name alone: the space, target and seed come from the store.
        again = spawn(
            "supervisor", "--name", "phoenix", "--store", sqlite_url, "--poll", "0.2",
            "--json", cwd=tmp_path, log=tmp_path / "sup2.log",
        )  # fmt: skip
        assert again.wait(timeout=300) == 0, (tmp_path / "sup2.log").read_text()
        exp = st.get_experiment("phoenix")
        trials = st.list_trials(exp.id)
    assert [t.number for t in trials] == list(range(150))
    assert all(t.state is TrialState.COMPLETED for t in trials)
    assert len({json.dumps(t.params) for t in trials}) == 150
    runs = Counter((tmp_path / "ran.txt").read_text().split())
    assert len(runs) == 150 and set(runs.values()) == {1}
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)


class FlakyStore:
    """Wraps a store; while ``down`` is set every call raises StoreConnectionError."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.failed_calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down.is_set() and name not in ("describe", "close"):
                self.failed_calls[name] += 1
                raise StoreConnectionError("connection refused (test outage)")
            return attr(*args, **kwargs)

        return call


def test_store_outage_workers_and_supervisor_carry_on(tmp_path: Path, sqlite_url: str) -> None:
    """While the store is unreachable, running targets keep going; their results are
    saved once it is back; nothing is lost or doubled."""
    _project(tmp_path, sleep=0.3)
    inner = open_store(sqlite_url)
    store: Any = FlakyStore(inner)
    exp, _ = open_experiment(
        store, "outage", space=space_from_v04({"x": list(range(10))}),
        target=Target(command=(PY, str(tmp_path / "t.py"))), sampler="grid", seed=1,
        max_trials=None, max_retries=0, lease_timeout=2.0,
    )  # fmt: skip
    wake = threading.Condition()
    sup = Supervisor(store, exp, poll_interval=0.1, wake=wake)
    worker = Worker(
        store, results_dir=tmp_path / "results", parallelism=2, heartbeat_interval=0.2,
        poll_interval=0.1, wake=wake, sweep_orphans=False,
    )  # fmt: skip
    threads = [threading.Thread(target=sup.run), threading.Thread(target=worker.run)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: inner.count_trials(exp.id)[TrialState.COMPLETED] >= 2, timeout=60)
        store.down.set()  # the database "restarts": down for longer than the lease
        time.sleep(3.0)
        store.down.clear()
        threads[0].join(timeout=120)
        assert not threads[0].is_alive()
    finally:
        worker.stop()
        threads[1].join(timeout=60)
    assert store.failed_calls  # the outage really hit them
    trials = inner.list_trials(exp.id)
    assert [t.state for t in trials] == [TrialState.COMPLETED] * 10
    runs = Counter((tmp_path / "ran.txt").read_text().split())
    assert len(runs) == 10 and set(runs.values()) == {1}  # no trial ran twice
    assert inner.get_experiment(exp.id).state is ExperimentState.DONE
    inner.close()


def _label_filter(labels: Iterable[str]) -> dict[str, list[str]]:
    return {"label": list(labels)}


@pytest.mark.docker
def test_orphaned_container_is_killed_when_a_worker_comes_back(
    tmp_path: Path, sqlite_url: str, busybox_image: str, docker_client: Any
) -> None:
    (tmp_path / "space.json").write_text(json.dumps({"x": [1]}))
    sup = spawn(
        "supervisor", "space.json", "--image", busybox_image, "--command", "sleep 600",
        "--name", "orphan", "--sampler", "grid", "--store", sqlite_url, "--lease-timeout",
        "2", "--retries", "0", "--poll", "0.2", cwd=tmp_path, log=tmp_path / "sup.log",
    )  # fmt: skip
    victim = _worker(tmp_path, sqlite_url, "--network", "none", "--pull", "never")
    filters = _label_filter(["hyperdock.trial"])
    alive: Callable[[], list[Any]] = lambda: docker_client.containers.list(filters=filters)  # noqa: E731
    try:
        wait_for(lambda: len(alive()) == 1, timeout=60, what="the target container")
        (orphan,) = alive()
        # A target of another store's worker on the same engine, with the same trial
        # id: none of this store's business, never swept.
        foreign = docker_client.containers.run(
            busybox_image, ["sleep", "600"], detach=True, network_mode="none",
            labels={**orphan.labels, "hyperdock.worker": "a-worker-of-another-store"},
        )  # fmt: skip
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        time.sleep(1.0)
        assert {c.id for c in alive()} == {orphan.id, foreign.id}  # it outlived its worker
        back = _worker(tmp_path, sqlite_url, "--network", "none", "--pull", "never")
        wait_for(lambda: orphan.id not in [c.id for c in alive()], timeout=60,
                 what="the orphan to be killed",
                 logs=(tmp_path / "workers.log", tmp_path / "sup.log"))  # fmt: skip
        assert foreign.id in [c.id for c in alive()]
        assert sup.wait(timeout=60) == 1  # done; the lost trial failed (no retries)
        back.send_signal(signal.SIGTERM)
        back.wait(timeout=30)
    finally:
        for c in docker_client.containers.list(all=True, filters=filters):
            c.remove(force=True)
    with open_store(sqlite_url) as st:
        (trial,) = st.list_trials(st.get_experiment("orphan").id)
    assert "Timed out" in (trial.history[0]["message"] or "")
