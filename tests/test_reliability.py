"""Fault injection: killed workers lose nothing, many workers never run a trial twice."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from clihelp import PY, spawn, stop_all, wait_for, write

from hyperdock.storage import open_store
from hyperdock.trial import TrialState

pytestmark = pytest.mark.slow


def _setup(tmp_path: Path, sleep: float) -> tuple[str, Path]:
    write(tmp_path / "space.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}")
    write(
        tmp_path / "t.py",
        f"""
        import json, os, time
        with open({str(tmp_path / "ran.txt")!r}, "a") as fh:
            fh.write(os.environ["HYPERDOCK_TRIAL_ID"] + "\\n")
        time.sleep({sleep})
        p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
        open(os.environ["HYPERDOCK_LOSS"], "w").write(json.dumps({{"loss": p["x"]}}))
    """,
    )
    return f"sqlite:///{tmp_path}/hd.db", tmp_path / "ran.txt"


def _supervisor(
    tmp_path: Path, store: str, name: str, trials: int, *extra: str
) -> subprocess.Popen[bytes]:
    return spawn(
        "supervisor",
        "space.py",
        "--command",
        f"{PY} t.py",
        "--name",
        name,
        "--max-trials",
        str(trials),
        "--store",
        store,
        "--poll",
        "0.2",
        *extra,
        cwd=tmp_path,
        log=tmp_path / "supervisor.log",
    )


def _worker(tmp_path: Path, store: str, i: int, *extra: str) -> subprocess.Popen[bytes]:
    return spawn(
        "worker",
        "--store",
        store,
        "--heartbeat",
        "0.3",
        "--poll",
        "0.1",
        *extra,
        cwd=tmp_path,
        log=tmp_path / f"worker{i}.log",
    )


def test_kill_9_of_a_worker_mid_trial_loses_nothing(tmp_path: Path) -> None:
    store, _ = _setup(tmp_path, sleep=1.0)
    sup = _supervisor(tmp_path, store, "k9", 8, "--lease-timeout", "2", "--retries", "3")
    victim = _worker(tmp_path, store, 0)
    survivor = _worker(tmp_path, store, 1)
    try:
        with open_store(store) as st:

            def victim_running() -> bool:
                return any(w.pid == victim.pid and w.running for w in st.list_workers())

            wait_for(victim_running, timeout=60, what="the victim worker to run a trial")
            (killed_trial,) = next(w.running for w in st.list_workers() if w.pid == victim.pid)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            assert sup.wait(timeout=120) == 0, (tmp_path / "supervisor.log").read_text()
            exp = st.get_experiment("k9")
            rows = st.list_trials(exp.id)
            assert len(rows) == 8
            assert all(t.state is TrialState.COMPLETED for t in rows)
            again = st.get_trial(killed_trial)
            assert again.attempt == 1 and "Timed out" in again.history[0]["message"]
            assert again.worker_id != again.history[0]["worker"]
    finally:
        stop_all([sup, victim, survivor])


def test_four_worker_processes_run_200_trials_exactly_once(tmp_path: Path) -> None:
    store, ran = _setup(tmp_path, sleep=0)
    write(
        tmp_path / "t.py",
        f"""
        import os
        with open({str(ran)!r}, "a") as fh:
            fh.write(os.environ["HYPERDOCK_TRIAL_ID"] + "\\n")
        open(os.environ["HYPERDOCK_LOSS"], "w").write("0.5")
    """,
    )
    sup = _supervisor(tmp_path, store, "many", 200)
    workers = [_worker(tmp_path, store, i) for i in range(4)]
    try:
        assert sup.wait(timeout=300) == 0, (tmp_path / "supervisor.log").read_text()
    finally:
        stop_all([sup, *workers])
    runs = Counter(ran.read_text().split())
    assert len(runs) == 200 and set(runs.values()) == {1}
    with open_store(store) as st:
        exp = st.get_experiment("many")
        assert st.count_trials(exp.id)[TrialState.COMPLETED] == 200
        by_worker = Counter(t.worker_id for t in st.list_trials(exp.id))
    assert len(by_worker) >= 2  # the work really was shared


def test_sigterm_requeues_running_trials_without_using_a_retry(tmp_path: Path) -> None:
    store, _ = _setup(tmp_path, sleep=60)
    sup = _supervisor(tmp_path, store, "term", 2, "--retries", "0")
    worker = _worker(tmp_path, store, 0, "--parallelism", "2")
    try:
        with open_store(store) as st:
            wait_for(lambda: sum(len(w.running) for w in st.list_workers()) == 2, timeout=60)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
            exp = st.get_experiment("term")
            rows = st.list_trials(exp.id)
            assert [t.state for t in rows] == [TrialState.QUEUED] * 2
            assert [t.attempt for t in rows] == [0, 0]
            assert st.list_workers() == []
    finally:
        stop_all([sup, worker])
