"""Faults of the store's host: a full disk under the SQLite file, a jump of the clocks."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, stop_all, wait_for, write

from hyperdock.errors import StoreConnectionError
from hyperdock.storage import Store, open_store
from hyperdock.trial import Target, TrialState
from hyperdock.worker import Worker

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (a real file system that can fill up)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; return it (delete it to free the disk)."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    # Take the last scraps too: a page SQLite could still grow into.
    with contextlib.suppress(OSError), open(disk / "filler2", "wb") as fh:
        while True:
            fh.write(b"\0" * 512)
            fh.flush()
    return filler


def test_a_full_disk_is_an_outage_of_the_sqlite_store(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", size="2m") as disk:
        store = open_store(f"sqlite:///{disk}/hd.db")
        exp = store.create_experiment(
            "full", space={}, target=Target(command=("true",)), sampler="random", seed=1,
            max_trials=None,
        )  # fmt: skip
        big = [{"blob": "x" * 4000, "n": i} for i in range(50)]
        filler = fill(disk)
        for _ in range(3):  # every try fails the same way: retryable, the store usable
            with pytest.raises(StoreConnectionError, match=r"disk is full.*free space"):
                store.add_trials(exp.id, big)
            assert store.count_trials(exp.id)[TrialState.QUEUED] == 0  # reads still work
        filler.unlink()
        (disk / "filler2").unlink(missing_ok=True)
        assert len(store.add_trials(exp.id, big)) == 50
        assert store.count_trials(exp.id)[TrialState.QUEUED] == 50
        store.close()


def test_run_survives_a_full_disk_under_the_sqlite_store(tmp_path: Path) -> None:
    write(tmp_path / "space.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}")
    ran = tmp_path / "ran.txt"
    write(
        tmp_path / "t.py",
        f"""
        import json, os, time
        with open({str(ran)!r}, "a") as fh:
            fh.write(os.environ["HYPERDOCK_TRIAL_ID"] + "\\n")
        time.sleep(0.3)
        p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
        open(os.environ["HYPERDOCK_LOSS"], "w").write(json.dumps({{"loss": p["x"]}}))
    """,
    )
    trials = 16
    with small_disk(tmp_path / "disk") as disk:
        store = f"sqlite:///{disk}/hd.db"
        proc = spawn(
            "run",
            "space.py",
            "--command",
            f"{PY} t.py",
            "--name",
            "full",
            "--max-trials",
            str(trials),
            "--workers",
            "3",
            "--store",
            store,
            "--results",
            str(tmp_path / "results"),
            "--heartbeat",
            "0.3",
            "--quiet",
            cwd=tmp_path,
            log=tmp_path / "run.log",
        )
        try:

            def started() -> bool:
                return ran.exists() and len(ran.read_text().split()) >= 3

            wait_for(started, timeout=60, what="the first trials to run")
            filler = fill(disk)
            time.sleep(15)  # the fault lasts: slots, reporter and heartbeats all hit it
            filler.unlink()
            (disk / "filler2").unlink(missing_ok=True)
            assert proc.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()
        finally:
            stop_all([proc])
        with open_store(store) as st:
            exp = st.get_experiment("full")
            rows = st.list_trials(exp.id)
            assert len(rows) == trials
            assert all(t.state is TrialState.COMPLETED for t in rows)
            assert all(t.attempt == 0 for t in rows)
    runs = Counter(ran.read_text().split())
    assert sorted(runs) == sorted(str(t.id) for t in rows)
    assert set(runs.values()) == {1}, runs  # no trial ran twice


WRITE_LOSS = "import os; open(os.environ['HYPERDOCK_LOSS'], 'w').write('0.5')"


class CrashingClaims:
    """Wraps a store; its first ``crashes`` claims raise an unexpected exception (a
    driver error Hyperdock did not translate, a bug)."""

    def __init__(self, inner: Store, crashes: int) -> None:
        self.inner = inner
        self.crashes = crashes
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            crash = self.crashes > 0
            self.crashes -= 1
        if crash:
            raise RuntimeError("unexpected driver error (test)")
        return self.inner.claim(*args, **kwargs)


def test_a_crashed_worker_slot_is_started_again(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/hd.db")
    exp = store.create_experiment(
        "crash", space={}, target=Target(command=(PY, "-c", WRITE_LOSS)),
        sampler="random", seed=1, max_trials=None,
    )  # fmt: skip
    store.add_trials(exp.id, [{"n": i} for i in range(4)])
    wrapped: Any = CrashingClaims(store, crashes=2)  # both slots crash once
    worker = Worker(
        wrapped, results_dir=tmp_path / "results", parallelism=2, heartbeat_interval=0.2,
        poll_interval=0.1, burst=True, sweep_orphans=False,
    )  # fmt: skip
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(lambda: not thread.is_alive(), timeout=60, what="the worker to finish")
    finally:
        worker.stop()
        thread.join(timeout=60)
    counts = store.count_trials(exp.id)
    assert counts[TrialState.COMPLETED] == 4, counts
    store.close()


class CrashingProgressBeat:
    """Wraps a store; the first heartbeat the progress reader thread sends (after it saved
    a trial's progress) raises an unexpected exception, which ends that thread."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.crashed = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "hd-progress" and not self.crashed.is_set():
            self.crashed.set()
            raise RuntimeError("unexpected driver error (test)")
        return self.inner.heartbeat(*args, **kwargs)


#: Reports steps 1..30 over about 3 s, then its loss.
STEPS = """
import os, time
import hyperdock
for step in range(1, 31):
    hyperdock.report(step, 1.0 / step)
    time.sleep(0.1)
open(os.environ["HYPERDOCK_LOSS"], "w").write("0.5")
"""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_progress_reader_that_died_is_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pruning reads progress: a reader thread killed by a surprise is started again, and
    every later step still reaches the store."""
    store = open_store(f"sqlite:///{tmp_path}/hd.db")
    script = write(tmp_path / "steps.py", STEPS)
    exp = store.create_experiment(
        "steps", space={}, target=Target(command=(PY, str(script))),
        sampler="random", seed=1, max_trials=None,
    )  # fmt: skip
    (trial,) = store.add_trials(exp.id, [{}])
    wrapped: Any = CrashingProgressBeat(store)
    worker = Worker(
        wrapped, results_dir=tmp_path / "results", parallelism=1, heartbeat_interval=0.2,
        poll_interval=0.1, burst=True, sweep_orphans=False,
    )  # fmt: skip
    thread = threading.Thread(target=worker.run)
    with caplog.at_level("ERROR", logger="hyperdock"):
        thread.start()
        try:
            wait_for(lambda: not thread.is_alive(), timeout=120, what="the worker to finish")
        finally:
            worker.stop()
            thread.join(timeout=60)
    assert wrapped.crashed.is_set()
    assert "the progress reader thread had stopped; restarted it" in caplog.text
    assert store.get_trial(trial.id).state is TrialState.COMPLETED
    steps = [s for s, _ in store.list_progress(exp.id, trial_ids=[trial.id])[trial.id]]
    assert steps == list(range(1, 31))
    store.close()


def test_run_does_not_wait_for_a_worker_that_died(tmp_path: Path) -> None:
    # The worker cannot start (its results folder is a file): run says so and exits
    # instead of supervising, for ever, trials that nobody will run.
    write(tmp_path / "space.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}")
    (tmp_path / "afile").write_text("x")
    args = ("run", "space.py", "--command", "true", "--max-trials", "2", "--results", "afile")
    out = hd(*args, "--store", f"sqlite:///{tmp_path}/hd.db", "-q", cwd=tmp_path, timeout=60)
    assert out.returncode != 0
    assert "afile" in out.stderr and "Traceback" not in out.stderr, out.stderr


#: An LD_PRELOAD library that moves this process's wall clock (clock_gettime for the
#: realtime clocks, gettimeofday, time; what Python and SQLite read) by the number of
#: seconds in the file $FAKE_CLOCK_OFFSET_FILE, read at every call: writing the file
#: jumps the clocks of every process started with it. The monotonic clock is untouched.
CLOCK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static double offset(void) {
    const char *path = getenv("FAKE_CLOCK_OFFSET_FILE");
    double value = 0;
    FILE *fh = path ? fopen(path, "r") : NULL;
    if (fh) {
        if (fscanf(fh, "%lf", &value) != 1) value = 0;
        fclose(fh);
    }
    return value;
}

static void shift(struct timespec *ts) {
    double off = offset();
    long long ns = (long long)ts->tv_nsec + (long long)((off - (long long)off) * 1e9);
    ts->tv_sec += (time_t)off + (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
    if (ts->tv_nsec < 0) { ts->tv_nsec += 1000000000L; ts->tv_sec -= 1; }
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shift(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0 && tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
    (void)tz;
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
"""

NOW_IN_PYTHON_AND_SQLITE = (
    "import sqlite3, time; "
    "c = sqlite3.connect(':memory:'); "
    "print(time.time(), (c.execute(\"SELECT julianday('now')\").fetchone()[0] - 2440587.5) * 86400)"
)


def set_offset(offset: Path, seconds: float) -> None:
    """Jump the shimmed clocks (atomically: no process reads a half-written file)."""
    tmp = offset.with_suffix(".tmp")
    tmp.write_text(str(seconds))
    os.replace(tmp, offset)


@pytest.fixture
def clock_jump(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """(environment, offset file): processes started with the environment have their
    wall clocks moved by the seconds written to the file."""
    source = tmp_path / "clockshim.c"
    source.write_text(CLOCK_SHIM)
    shim = tmp_path / "clockshim.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-o", str(shim), str(source), "-ldl"], check=True
    )
    offset = tmp_path / "clock-offset"
    set_offset(offset, 0)
    env = {"LD_PRELOAD": str(shim), "FAKE_CLOCK_OFFSET_FILE": str(offset)}
    yield env, offset


def test_the_shim_jumps_python_and_sqlite_clocks(
    tmp_path: Path, clock_jump: tuple[dict[str, str], Path]
) -> None:
    # The fault injection below is real: both clocks a Hyperdock process reads move.
    env, offset = clock_jump
    set_offset(offset, 3600)
    out = subprocess.run(
        [PY, "-c", NOW_IN_PYTHON_AND_SQLITE], env={**os.environ, **env},
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    now = time.time()
    assert all(3590 < float(value) - now < 3610 for value in out), out


def test_a_clock_jump_of_every_process_does_not_reap_live_trials(
    tmp_path: Path, clock_jump: tuple[dict[str, str], Path]
) -> None:
    env, offset = clock_jump
    write(tmp_path / "space.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}")
    ran = tmp_path / "ran.txt"
    write(
        tmp_path / "t.py",
        f"""
        import json, os, time
        with open({str(ran)!r}, "a") as fh:
            fh.write(os.environ["HYPERDOCK_TRIAL_ID"] + "\\n")
        time.sleep(4)
        p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
        open(os.environ["HYPERDOCK_LOSS"], "w").write(json.dumps({{"loss": p["x"]}}))
    """,
    )
    store = f"sqlite:///{tmp_path}/hd.db"
    sup = spawn(
        "supervisor", "space.py", "--command", f"{PY} t.py", "--name", "jump",
        "--max-trials", "6", "--lease-timeout", "20", "--store", store, "--poll", "0.2",
        cwd=tmp_path, env=env, log=tmp_path / "supervisor.log",
    )  # fmt: skip
    workers = [
        spawn(
            "worker",
            "--store",
            store,
            "--heartbeat",
            "1",
            "--poll",
            "0.1",
            cwd=tmp_path,
            env=env,
            log=tmp_path / f"worker{i}.log",
        )
        for i in range(2)
    ]
    try:
        with open_store(store) as st:

            def both_running() -> bool:
                return sum(bool(w.running) for w in st.list_workers()) == 2

            wait_for(both_running, timeout=60, what="both workers to run a trial")
            set_offset(offset, 3600)  # every process's wall clock jumps an hour ahead
            assert sup.wait(timeout=180) == 0, (tmp_path / "supervisor.log").read_text()
            rows = st.list_trials(st.get_experiment("jump").id)
    finally:
        stop_all([sup, *workers])
    assert [t.state for t in rows] == [TrialState.COMPLETED] * 6
    assert [t.attempt for t in rows] == [0] * 6, [t.history for t in rows]
    runs = Counter(ran.read_text().split())
    assert len(runs) == 6 and set(runs.values()) == {1}, runs  # no trial ran twice
    # The times shown are the jumped wall clock's: the last trials ended an hour ahead.
    assert max(t.finished_at or 0 for t in rows) > time.time() + 3000
