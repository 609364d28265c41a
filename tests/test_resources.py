"""Resources per trial: stored with the experiment, honoured by local Docker (CPU and
memory limits inside the container, /dev/shm) and by the worker's GPU sharing."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from clihelp import hd

import hyperdock
from hyperdock import hp
from hyperdock.errors import ConfigError
from hyperdock.resources import GpuPool, Resources, parse_bytes
from hyperdock.runtimes.docker import DockerRuntime
from hyperdock.storage import open_store
from hyperdock.worker import Worker

#: Reads its own cgroup limits (v2, else v1) and /dev/shm size into its out/ folder.
LIMITS = (
    "sh -c 'cd /sys/fs/cgroup; O=/hyperdock/out; "
    "cat cpu.max > $O/cpu 2>/dev/null || echo $(cat cpu/cpu.cfs_quota_us) "
    "$(cat cpu/cpu.cfs_period_us) > $O/cpu; "
    "cat memory.max > $O/mem 2>/dev/null || cat memory/memory.limit_in_bytes > $O/mem; "
    "df -k /dev/shm | tail -n 1 > $O/shm; echo 1 > /hyperdock/loss.json'"
)


@pytest.mark.docker
def test_cpu_memory_and_shm_limits_are_seen_inside_the_container(
    tmp_path: Path, busybox_image: str
) -> None:
    (tmp_path / "space.json").write_text(json.dumps({"x": [1]}))
    out = hd(
        "run", "space.json", "--image", busybox_image, "--command", LIMITS, "--name", "lim",
        "--cpus-per-trial", "0.5", "--memory-per-trial", "64m", "--shm-size", "32m",
        "--pull", "never", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (trial,) = json.loads(hd("trials", "lim", "--json", cwd=tmp_path).stdout)
    folder = Path(trial["result"]["folder"]) / "out"
    assert (folder / "cpu").read_text().split() == ["50000", "100000"]
    assert int((folder / "mem").read_text()) == 64 * 2**20
    assert (folder / "shm").read_text().split()[1] == str(32 * 1024)
    # Stored with the experiment: a resume with other resources is refused.
    again = hd("run", "--name", "lim", "--cpus-per-trial", "2", cwd=tmp_path)
    assert again.returncode == 2 and "resources 2 CPUs" in again.stderr


class _Recording(DockerRuntime):
    """The Docker runtime, recording the GPUs of the containers it creates."""

    created: list[list[str]]
    lock: threading.Lock

    def _container_config(self, ctx: Any, image: str) -> dict[str, Any]:
        config = super()._container_config(ctx, image)
        requests = config["host_config"].get("DeviceRequests") or []
        with self.lock:
            self.created.append([d for r in requests for d in r["DeviceIDs"]])
        return config


@pytest.mark.docker
def test_two_trials_on_four_gpus_get_disjoint_devices(tmp_path: Path, busybox_image: str) -> None:
    """No GPU needed: what Docker is asked for is checked (the containers cannot start
    here, so each attempt fails at once)."""
    store = open_store(f"sqlite:///{tmp_path / 'hd.db'}")
    exp = hyperdock.Experiment.open(
        "gpus", store=store, space={"x": hp.choice("x", [1, 2, 3, 4])}, sampler="grid",
        target=hyperdock.Image(busybox_image), retries=0, max_failures=0,
        resources=Resources(gpus=2),
    )  # fmt: skip
    for _ in range(4):
        exp._supervisor()._queue(len(exp.trials()), 1)
    runtime = _Recording(pull="never")
    runtime.created, runtime.lock = [], threading.Lock()
    worker = Worker(
        store, results_dir=tmp_path / "results", parallelism=2, gpus="0,1,2,3",
        runtime_factory=lambda kind: runtime, burst=True, sweep_orphans=False,
        heartbeat_interval=0.5, poll_interval=0.1,
    )  # fmt: skip
    worker.run()
    assert len(runtime.created) == 4
    assert all(len(ids) == 2 for ids in runtime.created)
    assert {frozenset(ids) for ids in runtime.created} <= {
        frozenset({"0", "1"}),
        frozenset({"2", "3"}),
    }
    store.close()


def test_gpu_pool_hands_out_disjoint_gpus_and_waits_when_none_are_free() -> None:
    pool = GpuPool.parse("0,1,2,3")
    assert pool is not None
    stop = threading.Event()
    two = Resources(gpus=2)
    a, b = pool.acquire(two, stop), pool.acquire(two, stop)
    assert a is not None and b is not None and not set(a) & set(b)
    assert pool.capacity(two) == 2
    got: list[list[str] | None] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(two, stop)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # waits for a free pair
    pool.release(a)
    waiter.join(5)
    assert got == [a]
    shared = Resources(gpus=1, trials_per_gpu=2)
    pool2 = GpuPool(["0"])
    assert pool2.acquire(shared, stop) == ["0"] and pool2.acquire(shared, stop) == ["0"]
    with pytest.raises(ConfigError, match=r"needs 2 GPUs .* this worker has 1"):
        pool2.acquire(two, stop)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpus": -1}, "--cpus-per-trial must be"),
        ({"memory": "lots"}, "--memory-per-trial must be a size"),
        ({"gpus": -2}, "--gpus-per-trial must be"),
        ({"gpus": 2, "trials_per_gpu": 2}, "use it with --gpus-per-trial 1"),
    ],
)
def test_bad_resources_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Resources.build(**kwargs)


def test_sizes() -> None:
    assert parse_bytes("8g", "x") == 8 * 2**30
    assert parse_bytes("512MiB", "x") == 512 * 2**20
    assert parse_bytes("1.5k", "x") == 1536
    assert Resources.from_meta({"resources": Resources(cpus=2, gpus=1).to_meta()}) == Resources(
        cpus=2, gpus=1
    )
