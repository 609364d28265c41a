"""Faults of the worker's own host are not the trial's fault.

Real faults, injected for one worker only: its Docker engine goes away (the worker talks
to the engine through a unix socket that the test switches off and on, in front of the
real engine's socket, which other tests keep using), and its results folder becomes
read-only (a read-only bind mount: file modes do not stop root). While the fault
lasts, trials stay queued with no retry used, the worker says why in ``hyperdock
workers``; once the fault clears, it runs them. A results folder that cannot be used at
all is refused at start.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, stop_all, wait_for, write

from hyperdock.runtimes.base import RunContext
from hyperdock.runtimes.docker import DockerRuntime
from hyperdock.storage import Store, open_store
from hyperdock.trial import Target, TrialState

pytestmark = pytest.mark.slow

ENGINE_SOCKET = "/var/run/docker.sock"


class SocketSwitch:
    """A unix socket that forwards to the Docker engine's while on; absent while off."""

    def __init__(self, path: Path, target: str = ENGINE_SOCKET) -> None:
        self.path, self.target = path, target
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def on(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def off(self) -> None:
        """Refuse new connections and cut the open ones (as a dead engine would)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # switched off
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.target)
            with self._lock:
                if self._server is not server:  # accepted just as it was switched off
                    client.close()
                    engine.close()
                    return
                self._conns += [client, engine]
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def switchable_folder(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """A folder that ``set_ro(True)`` makes read-only and ``set_ro(False)`` writable again.

    Read-only is a read-only bind mount stacked on the folder: remounting a mount
    read-only fails while files are open for writing on it (the target's log is), but
    a new mount on top has no writers, and every path opened from then on goes through it.
    """
    folder = tmp_path / "results"
    folder.mkdir()
    stacked = 0

    def set_ro(ro: bool) -> None:
        nonlocal stacked
        if ro:
            subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
            stacked += 1
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        else:
            subprocess.run(["umount", "-l", str(folder)], check=True)
            stacked -= 1

    try:
        yield folder, set_ro
    finally:
        for _ in range(stacked):
            subprocess.run(["umount", "-l", str(folder)], check=False)


def _status(store: Store) -> str | None:
    workers = store.list_workers()
    return workers[0].status if workers else None


def _states(store: Store, exp_id: int) -> list[tuple[TrialState, int]]:
    return [(t.state, t.attempt) for t in store.list_trials(exp_id)]


@pytest.mark.docker
def test_an_unreachable_docker_engine_uses_no_retries(
    tmp_path: Path, busybox_image: str, docker_client: Any
) -> None:
    url = f"sqlite:///{tmp_path}/hd.db"
    store = open_store(url)
    target = Target(image=busybox_image)
    exp = store.create_experiment(
        "engine-down", space={"x": 1}, target=target, sampler="random", seed=1,
        max_trials=4, max_retries=0,
    )  # fmt: skip
    store.add_trials(exp.id, [{"x": i} for i in range(4)])
    engine = SocketSwitch(tmp_path / "docker.sock")  # off: the engine is unreachable
    worker = spawn(
        "worker", "--store", url, "--results", str(tmp_path / "results"), "--parallelism",
        "2", "--network", "none", "--pull", "never", "--poll", "0.2",
        cwd=tmp_path, env={"DOCKER_HOST": f"unix://{engine.path}"}, log=tmp_path / "w.log",
    )  # fmt: skip
    try:
        wait_for(
            lambda: "Docker is not reachable" in (_status(store) or ""),
            timeout=60,
            what="the worker to say the engine is unreachable",
        )
        shown = hd("workers", "--store", url, cwd=tmp_path)
        assert f"paused: Docker is not reachable at unix://{engine.path}" in shown.stdout
        # While the engine is away, nothing is charged to the trials (the old worker
        # failed all of them within seconds, their retries spent).
        wait_for(lambda: "paused" in (tmp_path / "w.log").read_text(), 30, "the log line")
        time.sleep(3)  # the outage lasts: the worker keeps checking, claims nothing
        assert _states(store, exp.id) == [(TrialState.QUEUED, 0)] * 4
        assert "Docker is not reachable" in (_status(store) or "")
        engine.on()
        wait_for(
            lambda: store.count_trials(exp.id)[TrialState.COMPLETED] == 4,
            timeout=120,
            what="the trials to run once the engine is back",
        )
        assert _states(store, exp.id) == [(TrialState.COMPLETED, 0)] * 4
        wait_for(lambda: _status(store) is None, timeout=30, what="the status to clear")
        assert "resumed" in (tmp_path / "w.log").read_text()
    finally:
        stop_all([worker])
        engine.off()
        store.close()


#: Waits for ``go`` next to this script, then writes its loss (fails if it cannot).
WAITS_FOR_GO = """
import json, os, sys, time
go = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go")
while not os.path.exists(go):
    time.sleep(0.05)
json.dump({"loss": 0.5}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


def test_a_read_only_results_folder_uses_no_retries(tmp_path: Path) -> None:
    write(tmp_path / "t.py", WAITS_FOR_GO)
    url = f"sqlite:///{tmp_path}/hd.db"
    store = open_store(url)
    exp = store.create_experiment(
        "folder-ro", space={"x": 1}, target=Target(command=(PY, str(tmp_path / "t.py"))),
        sampler="random", seed=1, max_trials=3, max_retries=0,
    )  # fmt: skip
    with switchable_folder(tmp_path) as (results, set_ro):
        worker = spawn(
            "worker", "--store", url, "--results", str(results), "--parallelism", "2",
            "--poll", "0.2", cwd=tmp_path, log=tmp_path / "w.log",
        )  # fmt: skip
        try:
            (first,) = store.add_trials(exp.id, [{"x": 0}])
            wait_for(
                lambda: store.get_trial(first.id).state is TrialState.RUNNING,
                timeout=60,
                what="the first trial to start",
            )
            # The folder goes read-only while the target runs: it cannot write its loss.
            set_ro(True)
            (tmp_path / "go").touch()
            wait_for(
                lambda: "not writable" in (_status(store) or ""),
                timeout=60,
                what="the worker to say the folder is not writable",
            )
            store.add_trials(exp.id, [{"x": 1}, {"x": 2}])
            shown = hd("workers", "--store", url, cwd=tmp_path)
            assert f"paused: results folder {results} not writable" in shown.stdout
            time.sleep(3)  # the fault lasts: the worker keeps checking, claims nothing
            assert _states(store, exp.id) == [(TrialState.QUEUED, 0)] * 3
            assert "not writable" in (_status(store) or "")
            set_ro(False)
            wait_for(
                lambda: store.count_trials(exp.id)[TrialState.COMPLETED] == 3,
                timeout=120,
                what="the trials to run once the folder is writable",
            )
            assert _states(store, exp.id) == [(TrialState.COMPLETED, 0)] * 3
            wait_for(lambda: _status(store) is None, timeout=30, what="the status to clear")
        finally:
            stop_all([worker])
            store.close()


def test_an_unusable_results_folder_is_refused_at_start(tmp_path: Path) -> None:
    write(tmp_path / "space.json", '{"x": [1, 2]}')
    (tmp_path / "a-file").write_text("")
    url = f"sqlite:///{tmp_path}/hd.db"
    run = ("run", "space.json", "--command", f"{PY} -c pass", "--store", url, "-q")
    for command in (run, ("worker", "--store", url)):
        done = hd(*command, "--results", "a-file", cwd=tmp_path, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"the results folder {tmp_path / 'a-file'} is a file, not a folder" in done.stderr
        assert "Traceback" not in done.stderr
    with switchable_folder(tmp_path) as (results, set_ro):
        set_ro(True)
        for command in (run, ("worker", "--store", url)):
            done = hd(*command, "--results", str(results), cwd=tmp_path, timeout=60)
            assert done.returncode == 2, done.stderr
            assert f"the results folder {results} cannot be written" in done.stderr
            assert "Read-only file system" in done.stderr


def test_a_full_disk_uses_no_retries(tmp_path: Path) -> None:
    write(tmp_path / "t.py", WAITS_FOR_GO)
    (tmp_path / "go").touch()
    url = f"sqlite:///{tmp_path}/hd.db"
    store = open_store(url)
    exp = store.create_experiment(
        "disk-full", space={"x": 1}, target=Target(command=(PY, str(tmp_path / "t.py"))),
        sampler="random", seed=1, max_trials=2, max_retries=0,
    )  # fmt: skip
    results = tmp_path / "results"
    results.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(results)], check=True)
    worker = None
    try:
        worker = spawn(
            "worker", "--store", url, "--results", str(results), "--poll", "0.2",
            cwd=tmp_path, log=tmp_path / "w.log",
        )  # fmt: skip
        wait_for(lambda: bool(store.list_workers()), timeout=60, what="the worker to start")
        filler = results / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        store.add_trials(exp.id, [{"x": 0}, {"x": 1}])
        wait_for(
            lambda: "No space left on device" in (_status(store) or ""),
            timeout=60,
            what="the worker to say the disk is full",
        )
        time.sleep(3)  # the disk stays full: the worker keeps checking, claims nothing
        assert _states(store, exp.id) == [(TrialState.QUEUED, 0)] * 2
        filler.unlink()
        wait_for(
            lambda: store.count_trials(exp.id)[TrialState.COMPLETED] == 2,
            timeout=120,
            what="the trials to run once there is space",
        )
        assert _states(store, exp.id) == [(TrialState.COMPLETED, 0)] * 2
    finally:
        if worker is not None:
            stop_all([worker])
        store.close()
        subprocess.run(["umount", "-l", str(results)], check=False)


@pytest.mark.docker
def test_a_running_container_rides_out_a_short_engine_outage(
    tmp_path: Path, busybox_image: str, docker_client: Any
) -> None:
    engine = SocketSwitch(tmp_path / "docker.sock")
    engine.on()
    runtime = DockerRuntime(base_url=f"unix://{engine.path}", network="none", pull="never")
    folder = tmp_path / "attempt"
    (folder / "out").mkdir(parents=True)
    (folder / "params.json").write_text("{}")
    script = (
        "echo started; while [ ! -e /hyperdock/go ]; do sleep 0.1; done; "
        "echo 0.5 > /hyperdock/loss.json"
    )
    ctx = RunContext(
        trial_id=424242, experiment="outage", folder=folder, image=busybox_image,
        command=["sh", "-c", script],
    )  # fmt: skip
    try:
        execution = runtime.start(ctx)
        outcomes: list[Any] = []
        waiter = threading.Thread(target=lambda: outcomes.append(execution.wait()))
        waiter.start()  # as a worker does: it waits at once
        wait_for(lambda: "started" in (folder / "docker_log.txt").read_text(), 30, "the start")
        engine.off()  # the engine is away while the target runs
        (folder / "go").touch()
        time.sleep(2)
        engine.on()
        waiter.join(60)
        assert outcomes, "wait() raised: the outage was charged to the attempt"
        outcome = outcomes[0]
        assert outcome.exit_code == 0 and not outcome.stopped
        assert (folder / "loss.json").read_text() == "0.5\n"
        assert not docker_client.containers.list(all=True, filters={"id": execution.container_id})
    finally:
        runtime.close()
        engine.off()


def test_a_folder_that_turns_read_only_as_the_target_starts_uses_no_retry(
    tmp_path: Path,
) -> None:
    """The trial folder exists, then the results folder goes read-only before the
    target's log is created (the full suite hit this window in the test above): the
    trial goes back to the queue without a retry, and runs once the folder is back."""
    from hyperdock.runtimes.process import ProcessRuntime
    from hyperdock.worker import Worker

    write(
        tmp_path / "t.py",
        "import json, os\njson.dump(1, open(os.environ['HYPERDOCK_LOSS'], 'w'))\n",
    )
    store = open_store(f"sqlite:///{tmp_path}/hd.db")
    exp = store.create_experiment(
        "start-ro", space={"x": 1}, target=Target(command=(PY, str(tmp_path / "t.py"))),
        sampler="random", seed=1, max_trials=1, max_retries=0,
    )  # fmt: skip
    with switchable_folder(tmp_path) as (results, set_ro):

        class TurnsReadOnly(ProcessRuntime):
            starts = 0

            def start(self, ctx: RunContext) -> Any:
                TurnsReadOnly.starts += 1
                if TurnsReadOnly.starts == 1:  # the fault, exactly in the window
                    set_ro(True)
                    threading.Timer(1.0, set_ro, args=(False,)).start()
                return super().start(ctx)

        worker = Worker(
            store, results_dir=results, parallelism=1, poll_interval=0.1,
            heartbeat_interval=0.2, burst=False, runtime_factory=lambda kind: TurnsReadOnly(),
        )  # fmt: skip
        thread = threading.Thread(target=worker.run)
        try:
            (trial,) = store.add_trials(exp.id, [{"x": 1}])
            thread.start()
            wait_for(lambda: store.get_trial(trial.id).state.finished, 60, "the trial to end")
        finally:
            worker.stop()
            thread.join(30)
        done = store.get_trial(trial.id)
        assert (done.state, done.attempt) == (TrialState.COMPLETED, 0), done.error
        assert TurnsReadOnly.starts == 2
    store.close()
