"""Many processes on a real PostgreSQL server: crashes, a database restart, load."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, stop_all, wait_for, write

from hyperdock.errors import HyperdockError
from hyperdock.storage import open_store
from hyperdock.trial import TrialState

pytestmark = pytest.mark.slow


def _project(tmp_path: Path, target: str) -> Path:
    write(tmp_path / "space.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}")
    write(tmp_path / "t.py", target.replace("RAN", repr(str(tmp_path / "ran.txt"))))
    return tmp_path / "ran.txt"


SLEEPY = """
import os, time
with open(RAN, "a") as fh:
    fh.write(os.environ["HYPERDOCK_TRIAL_ID"] + "\\n")
time.sleep(SLEEP)
open(os.environ["HYPERDOCK_LOSS"], "w").write("0.25")
"""


def _supervisor(cwd: Path, url: str, name: str, trials: int, *args: str) -> subprocess.Popen[Any]:
    return spawn(
        "supervisor", "space.py", "--command", f"{PY} t.py", "--name", name, "--store", url,
        "--max-trials", str(trials), "--poll", "0.2", *args, cwd=cwd,
        log=cwd / "supervisor.log",
    )  # fmt: skip


def _worker(cwd: Path, url: str, *args: str) -> subprocess.Popen[Any]:
    return spawn(
        "worker", "--store", url, "--heartbeat", "0.5", "--poll", "0.2", *args, cwd=cwd,
        log=cwd / "workers.log",
    )  # fmt: skip


def _completed(url: str, name: str) -> Callable[[], int]:
    def count() -> int:
        try:
            with open_store(url) as st:
                return st.count_trials(st.get_experiment(name).id)[TrialState.COMPLETED]
        except HyperdockError:
            return 0

    return count


def test_three_workers_100_trials_one_killed_with_kill_9(tmp_path: Path, postgres_url: Any) -> None:
    url = postgres_url()
    ran = _project(tmp_path, SLEEPY.replace("SLEEP", "0.3"))
    sup = _supervisor(tmp_path, url, "pg100", 100, "--lease-timeout", "3")
    workers = [_worker(tmp_path, url) for _ in range(3)]
    try:
        with open_store(url) as st:
            wait_for(lambda: _completed(url, "pg100")() >= 20, timeout=120, what="20 trials")
            victim = workers[0]
            wait_for(lambda: any(w.running for w in st.list_workers() if w.pid == victim.pid),
                     timeout=30, what="the victim to run a trial")  # fmt: skip
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            # What the dead worker held, read once it can no longer change it (well within
            # the 3 s lease). A slot claims its next trial while the last one's result is
            # still being saved, so that may be two trials.
            killed = set(next(w.running for w in st.list_workers() if w.pid == victim.pid))
            assert killed
            assert sup.wait(timeout=300) == 0, (tmp_path / "supervisor.log").read_text()
            exp = st.get_experiment("pg100")
            trials = st.list_trials(exp.id)
    finally:
        stop_all([sup, *workers])
    assert [t.number for t in trials] == list(range(100))
    assert all(t.state is TrialState.COMPLETED for t in trials)
    runs = Counter(int(i) for i in ran.read_text().split())
    assert set(runs) == {t.id for t in trials}
    # Only trials the killed worker held ran twice; each was reaped and retried elsewhere.
    assert {tid for tid, n in runs.items() if n > 1} <= killed
    for again in (t for t in trials if t.id in killed):
        assert again.attempt == 1 and "Timed out" in (again.history[0]["message"] or "")


def test_supervisor_kill_9_and_restart_on_postgres(tmp_path: Path, postgres_url: Any) -> None:
    url = postgres_url()
    ran = _project(tmp_path, SLEEPY.replace("SLEEP", "0.02"))
    sup = _supervisor(tmp_path, url, "phoenix", 120, "--seed", "3")
    worker = _worker(tmp_path, url, "--parallelism", "2")
    try:
        wait_for(lambda: _completed(url, "phoenix")() >= 15, timeout=120, what="15 trials")
        os.kill(sup.pid, signal.SIGKILL)
        sup.wait()
        again = spawn("supervisor", "--name", "phoenix", "--store", url, "--poll", "0.2",
                      cwd=tmp_path, log=tmp_path / "supervisor2.log")  # fmt: skip
        assert again.wait(timeout=300) == 0, (tmp_path / "supervisor2.log").read_text()
        with open_store(url) as st:
            trials = st.list_trials(st.get_experiment("phoenix").id)
    finally:
        stop_all([sup, worker])
    assert [t.number for t in trials] == list(range(120))
    assert all(t.state is TrialState.COMPLETED for t in trials)
    runs = Counter(ran.read_text().split())
    assert len(runs) == 120 and set(runs.values()) == {1}


def test_postgres_down_for_5_s_mid_run(tmp_path: Path, postgres_url: Any,
                                       postgres_cluster: Any) -> None:  # fmt: skip
    """The database stops and comes back: supervisor and workers retry with backoff and
    carry on; results of targets that ended meanwhile are saved once it is back."""
    url = postgres_url()
    ran = _project(tmp_path, SLEEPY.replace("SLEEP", "0.5"))
    sup = _supervisor(tmp_path, url, "outage", 40)
    workers = [_worker(tmp_path, url, "--parallelism", "2") for _ in range(2)]
    try:
        wait_for(lambda: _completed(url, "outage")() >= 8, timeout=120, what="8 trials")
        postgres_cluster.ctl("stop")
        time.sleep(5)
        assert all(p.poll() is None for p in [sup, *workers])  # nobody gave up
        postgres_cluster.ctl("start")
        assert sup.wait(timeout=300) == 0, (tmp_path / "supervisor.log").read_text()
        with open_store(url) as st:
            trials = st.list_trials(st.get_experiment("outage").id)
    finally:
        if not postgres_cluster.online():
            postgres_cluster.ctl("start")
        stop_all([sup, *workers])
    assert [t.number for t in trials] == list(range(40))
    assert all(t.state is TrialState.COMPLETED for t in trials)
    runs = Counter(ran.read_text().split())
    assert len(runs) == 40 and set(runs.values()) == {1}  # none lost, none doubled
    said = (tmp_path / "workers.log").read_text()  # the workers said why they waited
    assert "cannot connect to PostgreSQL" in said or "lost the connection to PostgreSQL" in said


def test_eight_workers_1000_noop_trials_exactly_once(tmp_path: Path, postgres_url: Any) -> None:
    url = postgres_url()
    ran = tmp_path / "ran.txt"
    write(tmp_path / "space.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}")
    noop = f"sh -c 'echo $HYPERDOCK_TRIAL_ID >> {ran}; echo 1 > $HYPERDOCK_LOSS'"
    sup = spawn("supervisor", "space.py", "--command", noop, "--name", "load", "--store", url,
                "--max-trials", "1000", "--poll", "0.2", cwd=tmp_path,
                log=tmp_path / "supervisor.log")  # fmt: skip
    workers = [_worker(tmp_path, url) for _ in range(8)]
    try:
        assert sup.wait(timeout=900) == 0, (tmp_path / "supervisor.log").read_text()
        with open_store(url) as st:
            exp = st.get_experiment("load")
            counts = st.count_trials(exp.id)
            by_worker = Counter(t.worker_id for t in st.list_trials(exp.id))
    finally:
        stop_all(workers)
    assert counts[TrialState.COMPLETED] == 1000
    runs = Counter(ran.read_text().split())
    assert len(runs) == 1000 and set(runs.values()) == {1}
    assert len(by_worker) == 8  # all eight took part


@pytest.mark.parametrize(
    ("make_url", "says"),
    [
        (lambda admin: admin.replace(":postgres@", ":wrong-password@"), "password"),
        (lambda admin: "postgresql://postgres:secret@127.0.0.1:1/postgres", "127.0.0.1:1"),
        (lambda admin: admin.rsplit("/", 1)[0] + "/no_such_database", "no_such_database"),
    ],
)
def test_bad_postgres_urls_get_one_clear_line(
    tmp_path: Path, postgres_admin_url: str, make_url: Callable[[str], str], says: str
) -> None:
    url = make_url(postgres_admin_url)
    for args in (["status"], ["worker", "--burst"], ["trials", "x"]):
        out = hd(*args, "--store", url, cwd=tmp_path, timeout=60)
        assert out.returncode != 0
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, out.stderr
        assert says in lines[0] and "Traceback" not in out.stderr
        assert "wrong-password" not in out.stderr and "secret" not in out.stderr
