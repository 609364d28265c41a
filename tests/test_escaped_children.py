"""A command target's escaped children end with its attempt.

The target double-forks into a new session (fork, setsid, fork), so its grandchild is
in neither its process group nor its session; that grandchild must still be gone once
the attempt ends -- by itself, by timeout or by a stop (cancel, prune, shutdown). Each
test runs under both kinds of containment: ``auto`` (a cgroup on hosts that allow it,
as this one does) and the ``subreaper`` fallback.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
from pathlib import Path

import pytest
from clihelp import PY, wait_for, write

from hyperdock.runtimes.base import RunContext, RunOutcome
from hyperdock.runtimes.process import ProcessRuntime

#: Leaves a grandchild in a new session that sleeps for 10 minutes and writes its pid to
#: ``escaped.pid``; the target itself then sleeps ``argv[1]`` seconds.
DOUBLE_FORK = """
import os, sys, time
folder = os.environ["HYPERDOCK_DIR"]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        path = os.path.join(folder, "escaped.pid")
        open(path + ".tmp", "w").write(str(os.getpid()))
        os.rename(path + ".tmp", path)
        time.sleep(600)
    os._exit(0)
while not os.path.exists(os.path.join(folder, "escaped.pid")):
    time.sleep(0.01)
print("escaped", flush=True)
time.sleep(float(sys.argv[1]))
"""

_ids = itertools.count(1)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


@pytest.fixture(params=["auto", "subreaper"])
def runtime(request: pytest.FixtureRequest) -> ProcessRuntime:
    return ProcessRuntime(contain=request.param)


def _run(
    runtime: ProcessRuntime, tmp_path: Path, sleep: float, *, timeout: float | None = None
) -> tuple[RunContext, threading.Thread, list[RunOutcome], object]:
    write(tmp_path / "target.py", DOUBLE_FORK)
    folder = tmp_path / f"attempt-{next(_ids)}"
    folder.mkdir()
    ctx = RunContext(
        trial_id=7,
        experiment="escape",
        folder=folder,
        command=[PY, str(tmp_path / "target.py"), str(sleep)],
        timeout=timeout,
    )
    execution = runtime.start(ctx)
    outcomes: list[RunOutcome] = []
    waiter = threading.Thread(target=lambda: outcomes.append(execution.wait()))
    waiter.start()
    return ctx, waiter, outcomes, execution


def _escaped_pid(ctx: RunContext) -> int:
    path = ctx.folder / "escaped.pid"
    wait_for(path.exists, timeout=30, what="the grandchild's pid")
    pid = int(path.read_text())
    assert alive(pid)
    return pid


def _kill(pid: int) -> None:
    """Clean up after a failing test (the old code left the grandchild running)."""
    if alive(pid):
        os.kill(pid, 9)


def test_escaped_child_ends_when_the_target_completes(
    runtime: ProcessRuntime, tmp_path: Path
) -> None:
    ctx, waiter, outcomes, _ = _run(runtime, tmp_path, 0.2)
    pid = _escaped_pid(ctx)
    waiter.join(30)
    try:
        assert outcomes and outcomes[0].exit_code == 0 and not outcomes[0].timed_out
        assert not alive(pid)
        # and reaped: an orphan re-parented to the worker is no zombie of it either
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the orphan to be reaped")
    finally:
        _kill(pid)


def test_escaped_child_ends_on_timeout(runtime: ProcessRuntime, tmp_path: Path) -> None:
    ctx, waiter, outcomes, _ = _run(runtime, tmp_path, 600, timeout=1.0)
    pid = _escaped_pid(ctx)
    waiter.join(30)
    try:
        assert outcomes and outcomes[0].timed_out
        assert not alive(pid)
    finally:
        _kill(pid)


def test_escaped_child_ends_on_cancel(runtime: ProcessRuntime, tmp_path: Path) -> None:
    ctx, waiter, outcomes, execution = _run(runtime, tmp_path, 600)
    pid = _escaped_pid(ctx)
    execution.stop(grace=1.0)  # type: ignore[attr-defined]
    waiter.join(30)
    try:
        assert outcomes and outcomes[0].stopped
        assert not alive(pid)
    finally:
        _kill(pid)


def test_a_new_worker_kills_what_a_kill_9_worker_left_in_its_cgroups(tmp_path: Path) -> None:
    # Cgroups only (this host and CI allow them): a subreaper dies with its worker.
    write(tmp_path / "target.py", DOUBLE_FORK)
    folder = tmp_path / "attempt"
    folder.mkdir()
    write(
        tmp_path / "worker.py",
        f"""
        from pathlib import Path
        from hyperdock.runtimes.base import RunContext
        from hyperdock.runtimes.process import ProcessRuntime
        rt = ProcessRuntime(contain="cgroup")
        ctx = RunContext(trial_id=7, experiment="e", folder=Path({str(folder)!r}),
                         command=[{PY!r}, {str(tmp_path / "target.py")!r}, "600"])
        rt.start(ctx).wait()
        """,
    )
    worker = subprocess.Popen([PY, str(tmp_path / "worker.py")])
    ctx = RunContext(trial_id=7, experiment="e", folder=folder)
    try:
        pid = _escaped_pid(ctx)
        worker.kill()
        worker.wait()
        assert alive(pid)  # kill -9 of the worker alone leaves it
        assert ProcessRuntime(contain="cgroup").containment == "cgroup"
        assert not alive(pid)
    finally:
        worker.kill()
        worker.wait()
        if "pid" in locals():
            _kill(pid)
