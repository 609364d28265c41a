"""Faults of the store's host: a full disk under the SQLite file, a jump of the clocks."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, spawn, stop_all, wait_for, write

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
