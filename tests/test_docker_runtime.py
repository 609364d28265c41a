"""Tests of the Docker runtime.

Tests marked ``docker`` run real containers (network ``none``) of the local busybox test
image; nothing is ever pulled. The unit tests at the end drive the runtime against a
fake API client to cover what a registry-less engine cannot show (pulling, GPUs, API
failures).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.api.client
import docker.errors
import pytest
import requests
from clihelp import wait_for

from hyperdock.errors import ConfigError, TargetError
from hyperdock.runtimes.base import RunContext
from hyperdock.runtimes.docker import LABEL_TRIAL, LABEL_WORKER, DockerRuntime

_trial_ids = itertools.count(random.randrange(10**6, 10**9, 1000))

MakeCtx = Callable[..., RunContext]


@pytest.fixture
def runtime() -> Iterator[DockerRuntime]:
    rt = DockerRuntime(network="none", pull="never", stop_grace=1)
    yield rt
    rt.close()


@pytest.fixture
def make_ctx(tmp_path: Path, busybox_image: str, docker_labels: dict[str, str]) -> MakeCtx:
    """Return a factory of RunContexts with a fresh trial folder (params.json, out/)."""

    def make(
        command: list[str] | None = None,
        *,
        params: dict[str, Any] | None = None,
        image: str | None = None,
        **kwargs: Any,
    ) -> RunContext:
        trial_id = next(_trial_ids)
        folder = tmp_path / f"trial-{trial_id}"
        (folder / "out").mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(params or {"x": 1.5, "name": "a"}))
        labels = {**docker_labels, **kwargs.pop("labels", {})}
        return RunContext(
            trial_id=trial_id,
            experiment="docker-runtime-test",
            folder=folder,
            image=image or busybox_image,
            command=command,
            labels=labels,
            **kwargs,
        )

    return make


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def containers_of(client: Any, ctx: RunContext) -> list[Any]:
    """Containers (running or not) of ``ctx``'s trial."""
    filters = {"label": f"{LABEL_TRIAL}={ctx.trial_id}"}
    return list(client.containers.list(all=True, filters=filters))


# -- real Docker ----------------------------------------------------------------------


@pytest.mark.docker
def test_default_command_reads_params_and_writes_loss(
    runtime: DockerRuntime, make_ctx: MakeCtx, docker_client: Any
) -> None:
    ctx = make_ctx(params={"lr": 0.01, "layers": [1, 2]})
    outcome = runtime.start(ctx).wait()
    assert outcome.exit_code == 0
    assert not outcome.timed_out and not outcome.stopped
    assert outcome.duration > 0
    assert json.loads((ctx.folder / "loss.json").read_text()) == {"loss": 0.5, "state": "ok"}
    assert outcome.log_file == ctx.folder / "docker_log.txt"
    assert json.loads(outcome.log_file.read_text()) == {"lr": 0.01, "layers": [1, 2]}
    assert containers_of(docker_client, ctx) == []


@pytest.mark.docker
def test_command_override(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    ctx = make_ctx(sh("echo '{\"loss\": 0.25}' > /hyperdock/loss.json"))
    outcome = runtime.start(ctx).wait()
    assert outcome.exit_code == 0
    assert json.loads((ctx.folder / "loss.json").read_text()) == {"loss": 0.25}


@pytest.mark.docker
def test_params_visible_at_hyperdock_params(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    ctx = make_ctx(
        sh(
            'test "$HYPERDOCK_PARAMS" = /hyperdock/params.json && '
            "cat /hyperdock/params.json > /hyperdock/out/seen.json"
        ),
        params={"a": [1, 2], "b": "text"},
    )
    assert runtime.start(ctx).wait().exit_code == 0
    assert json.loads((ctx.folder / "out" / "seen.json").read_text()) == {"a": [1, 2], "b": "text"}


@pytest.mark.docker
def test_out_files_are_kept(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    ctx = make_ctx(sh("mkdir -p /hyperdock/out/sub && echo model > /hyperdock/out/sub/m.txt"))
    assert runtime.start(ctx).wait().exit_code == 0
    assert (ctx.folder / "out" / "sub" / "m.txt").read_text() == "model\n"


@pytest.mark.docker
def test_data_dir_is_mounted_read_only(make_ctx: MakeCtx, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("training data\n")
    rt = DockerRuntime(network="none", pull="never", data_dir=data)
    try:
        ctx = make_ctx(
            sh(
                "cat /data/input.txt; "
                "if touch /data/new 2>/dev/null; then echo WRITABLE; exit 1; fi; "
                "echo read-only"
            )
        )
        outcome = rt.start(ctx).wait()
    finally:
        rt.close()
    assert outcome.exit_code == 0, outcome.log_file.read_text()
    assert outcome.log_file.read_text() == "training data\nread-only\n"
    assert sorted(p.name for p in data.iterdir()) == ["input.txt"]


@pytest.mark.docker
def test_missing_data_dir_is_not_retryable(
    make_ctx: MakeCtx, tmp_path: Path, docker_client: Any
) -> None:
    rt = DockerRuntime(network="none", pull="never", data_dir=tmp_path / "no-such-dir")
    ctx = make_ctx(sh("true"))
    try:
        with pytest.raises(TargetError) as info:
            rt.start(ctx)
    finally:
        rt.close()
    assert info.value.retryable is False
    assert "no-such-dir" in str(info.value)
    assert containers_of(docker_client, ctx) == []


@pytest.mark.docker
def test_environment(make_ctx: MakeCtx) -> None:
    rt = DockerRuntime(network="none", pull="never", env={"A": "runtime", "B": "runtime"})
    ctx = make_ctx(sh("env > /hyperdock/out/env.txt"), env={"B": "trial", "C": "x=y"})
    try:
        assert rt.start(ctx).wait().exit_code == 0
    finally:
        rt.close()
    lines = (ctx.folder / "out" / "env.txt").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert env["A"] == "runtime"
    assert env["B"] == "trial"
    assert env["C"] == "x=y"
    assert env["HYPERDOCK_DIR"] == "/hyperdock"
    assert env["HYPERDOCK_PARAMS"] == "/hyperdock/params.json"
    assert env["HYPERDOCK_LOSS"] == "/hyperdock/loss.json"
    assert env["HYPERDOCK_TRIAL_ID"] == str(ctx.trial_id)


@pytest.mark.docker
def test_hostname_is_trial_id(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    ctx = make_ctx(sh("hostname > /hyperdock/out/host"))
    assert runtime.start(ctx).wait().exit_code == 0
    assert (ctx.folder / "out" / "host").read_text().strip() == str(ctx.trial_id)


@pytest.mark.docker
def test_labels(runtime: DockerRuntime, make_ctx: MakeCtx, docker_client: Any) -> None:
    ctx = make_ctx(["sleep", "30"], labels={"team": "ml"})
    execution = runtime.start(ctx)
    try:
        (container,) = containers_of(docker_client, ctx)
        assert container.labels[LABEL_TRIAL] == str(ctx.trial_id)
        assert container.labels["hyperdock.experiment"] == "docker-runtime-test"
        assert container.labels["team"] == "ml"
        assert container.name.startswith(f"hyperdock-{ctx.trial_id}-")
        assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    finally:
        execution.stop(0)
        outcome = execution.wait()
    assert outcome.stopped


@pytest.mark.docker
def test_nonzero_exit_code(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    outcome = runtime.start(make_ctx(sh("echo failing; exit 3"))).wait()
    assert outcome.exit_code == 3
    assert not outcome.timed_out and not outcome.stopped
    assert outcome.log_file.read_text() == "failing\n"


@pytest.mark.docker
def test_log_holds_stdout_and_stderr_in_order(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    ctx = make_ctx(sh("echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three"))
    outcome = runtime.start(ctx).wait()
    assert (ctx.folder / "docker_log.txt").read_text() == "one\ntwo\nthree\n"
    assert outcome.log_file == ctx.folder / "docker_log.txt"


@pytest.mark.docker
def test_output_reaches_the_log_while_the_container_runs(
    runtime: DockerRuntime, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx(
        sh("echo first line; while [ ! -e /hyperdock/release ]; do sleep 0.05; done; echo last")
    )
    log_file = ctx.folder / "docker_log.txt"
    execution = runtime.start(ctx)
    try:
        assert log_file.exists()  # from the start: `hyperdock logs` finds it
        wait_for(lambda: log_file.read_text() == "first line\n", 30, "the first line")
    finally:
        (ctx.folder / "release").write_text("")
        outcome = execution.wait()
    assert outcome.exit_code == 0
    assert log_file.read_text() == "first line\nlast\n"


@pytest.mark.docker
def test_timeout_kills_and_removes_container(
    runtime: DockerRuntime, make_ctx: MakeCtx, docker_client: Any
) -> None:
    ctx = make_ctx(sh("echo started; sleep 60"), timeout=1.0)
    begin = time.monotonic()
    execution = runtime.start(ctx)
    outcome = execution.wait()
    elapsed = time.monotonic() - begin
    assert outcome.timed_out
    assert not outcome.stopped
    assert outcome.exit_code == 137  # SIGKILL
    assert 1.0 <= outcome.duration < 10
    assert elapsed < 10
    assert outcome.log_file.read_text() == "started\n"
    assert containers_of(docker_client, ctx) == []


@pytest.mark.docker
def test_wait_returns_as_soon_as_target_exits(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    ctx = make_ctx(["sleep", "1"], timeout=60)
    execution = runtime.start(ctx)
    begin = time.monotonic()
    outcome = execution.wait()
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert time.monotonic() - begin < 3


@pytest.mark.docker
def test_missing_image_is_not_retryable(
    runtime: DockerRuntime, make_ctx: MakeCtx, docker_client: Any
) -> None:
    ctx = make_ctx(image="hyperdock-test-no-such-image:0")
    with pytest.raises(TargetError) as info:
        runtime.start(ctx)
    assert info.value.retryable is False
    message = str(info.value)
    assert "'hyperdock-test-no-such-image:0'" in message
    assert "docker build -t hyperdock-test-no-such-image:0" in message
    assert containers_of(docker_client, ctx) == []


@pytest.mark.docker
def test_command_not_found_is_not_retryable(
    runtime: DockerRuntime, make_ctx: MakeCtx, docker_client: Any
) -> None:
    ctx = make_ctx(["no-such-program"])
    with pytest.raises(TargetError) as info:
        runtime.start(ctx)
    assert info.value.retryable is False
    assert "no-such-program" in str(info.value)
    assert containers_of(docker_client, ctx) == []


@pytest.mark.docker
def test_stop_from_another_thread(
    runtime: DockerRuntime, make_ctx: MakeCtx, docker_client: Any
) -> None:
    # sh as PID 1 ignores SIGTERM: docker stop must kill it after the grace period.
    ctx = make_ctx(sh("echo running; sleep 60"))
    execution = runtime.start(ctx)
    timer = threading.Timer(0.5, execution.stop, kwargs={"grace": 1})
    begin = time.monotonic()
    timer.start()
    outcome = execution.wait()
    timer.join()
    assert outcome.stopped
    assert not outcome.timed_out
    assert time.monotonic() - begin < 8
    assert outcome.log_file.read_text() == "running\n"
    assert containers_of(docker_client, ctx) == []


def _host_config_while_running(
    rt: DockerRuntime, ctx: RunContext, docker_client: Any
) -> tuple[dict[str, Any], str]:
    """The HostConfig of ``ctx``'s running container, and what it printed first."""
    execution = rt.start(ctx)
    try:
        wait_for(
            lambda: bool(ctx.folder.joinpath("docker_log.txt").read_text().strip()), timeout=20
        )
        config = docker_client.containers.get(execution.container_id).attrs["HostConfig"]
    finally:
        execution.stop(grace=0)
        execution.wait()
    return config, ctx.folder.joinpath("docker_log.txt").read_text()


_SHOW_PRIVS = sh("grep NoNewPrivs /proc/self/status; sleep 60")


@pytest.mark.docker
def test_containers_get_a_pids_limit_and_no_new_privileges_by_default(
    runtime: DockerRuntime, make_ctx: MakeCtx, docker_client: Any
) -> None:
    config, printed = _host_config_while_running(runtime, make_ctx(_SHOW_PRIVS), docker_client)
    assert config["PidsLimit"] == 4096
    assert config["SecurityOpt"] == ["no-new-privileges"]
    assert printed.split() == ["NoNewPrivs:", "1"]  # the kernel enforces it in the target


@pytest.mark.docker
def test_pids_limit_is_configurable_and_zero_means_none(
    make_ctx: MakeCtx, docker_client: Any
) -> None:
    for limit, expected in ((64, 64), (0, None)):
        rt = DockerRuntime(network="none", pull="never", pids_limit=limit)
        try:
            config, _ = _host_config_while_running(rt, make_ctx(_SHOW_PRIVS), docker_client)
        finally:
            rt.close()
        assert config.get("PidsLimit") in ((expected,) if expected else (None, 0, -1))


def test_negative_pids_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match="pids limit"):
        DockerRuntime(pids_limit=-1)


@pytest.mark.docker
def test_stop_sends_sigterm_first(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    ctx = make_ctx(
        sh("trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done")
    )
    execution = runtime.start(ctx)
    deadline = time.monotonic() + 10
    # Wait until the trap is installed (the script printed "ready").
    while b"ready" not in docker_client_logs(runtime, execution.container_id):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    execution.stop(grace=10)
    outcome = execution.wait()
    assert outcome.stopped
    assert outcome.exit_code == 3
    assert outcome.duration < 8
    assert outcome.log_file.read_text() == "ready\ngot TERM\n"


def docker_client_logs(rt: DockerRuntime, container_id: str) -> bytes:
    return bytes(rt.client.api.logs(container_id))


@pytest.mark.docker
def test_stop_is_idempotent_before_and_after_wait(
    runtime: DockerRuntime, make_ctx: MakeCtx
) -> None:
    execution = runtime.start(make_ctx(["sleep", "60"]))
    execution.stop(0)
    execution.stop(0)
    outcome = execution.wait()
    assert outcome.stopped
    execution.stop()
    assert execution.wait() is outcome


@pytest.mark.docker
def test_a_stop_after_the_container_exited_by_itself_is_not_reported_as_a_stop(
    runtime: DockerRuntime, make_ctx: MakeCtx, docker_client: Any
) -> None:
    ctx = make_ctx(sh("echo 0.5 > /hyperdock/loss.json"))
    execution = runtime.start(ctx)
    container = docker_client.containers.get(execution.container_id)

    def exited() -> bool:
        container.reload()
        return bool(container.status == "exited")

    wait_for(exited, 60, "the container to exit")
    execution.stop(0)  # e.g. a prune that comes in just after the target finished
    outcome = execution.wait()
    assert outcome.exit_code == 0
    assert not outcome.stopped


@pytest.mark.docker
def test_concurrent_runs_share_one_runtime(runtime: DockerRuntime, make_ctx: MakeCtx) -> None:
    contexts = [
        make_ctx(sh(f"echo {i}; sleep 0.{i}; echo {i} > /hyperdock/loss.json")) for i in range(8)
    ]
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        results[i] = runtime.start(contexts[i]).wait()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i, ctx in enumerate(contexts):
        assert results[i].exit_code == 0
        assert (ctx.folder / "loss.json").read_text() == f"{i}\n"
        assert results[i].log_file.read_text() == f"{i}\n"


@pytest.mark.docker
def test_kill_orphans(
    runtime: DockerRuntime,
    busybox_image: str,
    docker_client: Any,
    docker_labels: dict[str, str],
) -> None:
    worker = f"worker-{docker_labels['hyperdock.test']}"
    other_worker = f"other-{docker_labels['hyperdock.test']}"

    def run(trial: int, worker_id: str) -> Any:
        return docker_client.containers.run(
            busybox_image,
            ["sleep", "60"],
            detach=True,
            network_mode="none",
            name=f"hyperdock-{trial}-{docker_labels['hyperdock.test'][:8]}",
            labels={**docker_labels, LABEL_TRIAL: str(trial), LABEL_WORKER: worker_id},
        )

    base = next(_trial_ids)
    orphan = run(base, worker)
    kept = run(base + 1, worker)
    foreign = run(base + 2, other_worker)
    try:
        removed = runtime.kill_orphans(keep=[base + 1], worker_id=worker)
        assert removed == [orphan.name]
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(orphan.id)
        kept.reload()
        foreign.reload()
        assert kept.status == "running"
        assert foreign.status == "running"
        assert runtime.kill_orphans(keep=[base + 1], worker_id=worker) == []
    finally:
        for container in (orphan, kept, foreign):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


# -- without an engine ----------------------------------------------------------------


def test_image_is_required(tmp_path: Path) -> None:
    ctx = RunContext(trial_id=1, experiment="e", folder=tmp_path)
    with pytest.raises(TargetError) as info:
        DockerRuntime().start(ctx)
    assert info.value.retryable is False
    assert "image" in str(info.value)


def test_unreachable_engine_is_retryable(tmp_path: Path) -> None:
    rt = DockerRuntime(base_url="unix:///nonexistent/docker.sock")
    ctx = RunContext(trial_id=1, experiment="e", folder=tmp_path, image="busybox")
    with pytest.raises(TargetError) as info:
        rt.start(ctx)
    assert info.value.retryable is True
    message = str(info.value)
    assert "not reachable at unix:///nonexistent/docker.sock" in message
    assert "DOCKER_HOST" in message and "/var/run/docker.sock" in message


def test_invalid_pull_policy() -> None:
    with pytest.raises(ConfigError, match="pull"):
        DockerRuntime(pull="sometimes")  # type: ignore[arg-type]


class FakeStream:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        pass


class FakeAPI:
    """Records calls; behaves like an engine that has only the images in ``images``."""

    def __init__(self, images: set[str] | None = None) -> None:
        self.images = set(images or ())
        self.calls: list[tuple[str, Any]] = []
        self.created: dict[str, Any] = {}
        self.pull_error: str | None = "pull access denied for x, repository does not exist"
        self.wait_error: Exception | None = None
        # An offline API client, only for create_host_config (no connection is made).
        self._real = docker.api.client.APIClient(
            base_url="unix:///nonexistent/docker.sock", version="1.41"
        )

    def create_host_config(self, **kwargs: Any) -> Any:
        return self._real.create_host_config(**kwargs)

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("create", kwargs["image"]))
        if kwargs["image"] not in self.images:
            raise docker.errors.ImageNotFound(f"No such image: {kwargs['image']}")
        self.created = kwargs
        return {"Id": "c0ffee"}

    def pull(self, image: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(("pull", image))
        if self.pull_error:
            yield {"error": self.pull_error}
        else:
            self.images.add(image)
            yield {"status": "Downloaded newer image"}

    def start(self, container: str) -> None:
        self.calls.append(("start", container))

    def wait(self, container: str, timeout: float | None = None) -> dict[str, Any]:
        self.calls.append(("wait", container))
        if self.wait_error is not None:
            raise self.wait_error
        return {"StatusCode": 0}

    def logs(self, container: str, **kwargs: Any) -> FakeStream:
        self.calls.append(("logs", container))
        return FakeStream([b"out\n"])

    def remove_container(self, container: str, **kwargs: Any) -> None:
        self.calls.append(("remove", container))

    def stop(self, container: str, timeout: int = 10) -> None:
        self.calls.append(("stop", timeout))

    def inspect_container(self, container: str) -> dict[str, Any]:
        return {"State": {"Running": True}}

    def kill(self, container: str) -> None:
        self.calls.append(("kill", container))


class FakeClient:
    def __init__(self, api: FakeAPI) -> None:
        self.api = api

    def close(self) -> None:
        pass


def fake_runtime(api: FakeAPI, **kwargs: Any) -> DockerRuntime:
    rt = DockerRuntime(**kwargs)
    rt._client = FakeClient(api)
    return rt


@pytest.fixture
def fake_ctx(tmp_path: Path) -> RunContext:
    (tmp_path / "out").mkdir()
    (tmp_path / "params.json").write_text("{}")
    return RunContext(trial_id=42, experiment="exp", folder=tmp_path, image="x:1")


def test_missing_image_is_pulled_once(fake_ctx: RunContext) -> None:
    api = FakeAPI()
    with pytest.raises(TargetError) as info:
        fake_runtime(api).start(fake_ctx)
    assert info.value.retryable is False
    assert str(info.value) == (
        "image 'x:1' was not found locally and could not be pulled (pull access denied for "
        "x, repository does not exist): build it (docker build -t x:1 .) or check the name"
    )
    assert api.calls == [("create", "x:1"), ("pull", "x:1")]


def test_missing_image_pulled_then_run(fake_ctx: RunContext) -> None:
    api = FakeAPI()
    api.pull_error = None
    outcome = fake_runtime(api).start(fake_ctx).wait()
    assert outcome.exit_code == 0
    assert [call[0] for call in api.calls] == [
        "create",
        "pull",
        "create",
        "start",
        "logs",
        "wait",
        "logs",
        "remove",
    ]
    assert (fake_ctx.folder / "docker_log.txt").read_text() == "out\n"


def test_pull_never_does_not_pull(fake_ctx: RunContext) -> None:
    api = FakeAPI()
    with pytest.raises(TargetError, match="pull='never'"):
        fake_runtime(api, pull="never").start(fake_ctx)
    assert api.calls == [("create", "x:1")]


def test_pull_always_pulls_before_every_run(fake_ctx: RunContext) -> None:
    api = FakeAPI(images={"x:1"})
    api.pull_error = None
    rt = fake_runtime(api, pull="always")
    rt.start(fake_ctx).wait()
    rt.start(fake_ctx).wait()
    assert [call[0] for call in api.calls].count("pull") == 2


def test_container_config(tmp_path: Path, fake_ctx: RunContext) -> None:
    api = FakeAPI(images={"x:1"})
    data = tmp_path / "data"
    rt = fake_runtime(
        api,
        data_dir=data,
        docker_runtime="nvidia",
        network="none",
        privileged=True,
        volume_map=lambda p: Path("/host") / p.relative_to("/"),
    )
    ctx = RunContext(
        trial_id=42,
        experiment="exp",
        folder=fake_ctx.folder,
        image="x:1",
        command=["python", "train.py"],
        labels={LABEL_WORKER: "w1"},
        gpus="0, 1",
    )
    rt.start(ctx).wait()
    config = api.created
    assert config["image"] == "x:1"
    assert config["command"] == ["python", "train.py"]
    assert config["hostname"] == "42"
    assert config["name"].startswith("hyperdock-42-")
    assert config["labels"] == {
        LABEL_WORKER: "w1",
        LABEL_TRIAL: "42",
        "hyperdock.experiment": "exp",
    }
    assert config["environment"]["NVIDIA_VISIBLE_DEVICES"] == "0,1"
    assert config["environment"]["HYPERDOCK_TRIAL_ID"] == "42"
    host = config["host_config"]
    assert host["NetworkMode"] == "none"
    assert host["Privileged"] is True
    assert host["Runtime"] == "nvidia"
    assert host["DeviceRequests"] == [
        {
            "Driver": "",
            "Count": 0,
            "DeviceIDs": ["0", "1"],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/hyperdock"]["Source"] == f"/host{fake_ctx.folder}"
    assert mounts["/hyperdock"]["ReadOnly"] is False
    assert mounts["/data"]["Source"] == f"/host{data}"
    assert mounts["/data"]["ReadOnly"] is True


def test_all_gpus(fake_ctx: RunContext) -> None:
    api = FakeAPI(images={"x:1"})
    fake_runtime(api).start(
        RunContext(trial_id=1, experiment="e", folder=fake_ctx.folder, image="x:1", gpus="all")
    ).wait()
    (request,) = api.created["host_config"]["DeviceRequests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert "NVIDIA_VISIBLE_DEVICES" not in api.created["environment"]


def test_no_gpus_by_default(fake_ctx: RunContext) -> None:
    api = FakeAPI(images={"x:1"})
    fake_runtime(api, docker_runtime="nvidia").start(fake_ctx).wait()
    assert "DeviceRequests" not in api.created["host_config"]
    assert "NVIDIA_VISIBLE_DEVICES" not in api.created["environment"]
    assert api.created["command"] is None  # the image's CMD


def test_api_error_during_wait_removes_container(fake_ctx: RunContext) -> None:
    api = FakeAPI(images={"x:1"})
    api.wait_error = requests.exceptions.ConnectionError("connection reset")
    execution = fake_runtime(api, outage_grace=0).start(fake_ctx)
    with pytest.raises(TargetError) as info:
        execution.wait()
    assert info.value.retryable is True
    assert ("remove", "c0ffee") in api.calls
    assert (fake_ctx.folder / "docker_log.txt").exists()


def test_stop_uses_runtime_grace(fake_ctx: RunContext) -> None:
    api = FakeAPI(images={"x:1"})
    execution = fake_runtime(api, stop_grace=2.5).start(fake_ctx)
    execution.stop()
    execution.stop(0.2)
    outcome = execution.wait()
    assert outcome.stopped
    execution.stop()  # after wait: no API call
    assert [call for call in api.calls if call[0] == "stop"] == [("stop", 3), ("stop", 1)]


def test_privileged_containers_do_not_get_no_new_privileges(fake_ctx: RunContext) -> None:
    # This test host's engine cannot start privileged containers: the fake records the
    # HostConfig the runtime asks for.
    api = FakeAPI(images={"x:1"})
    fake_runtime(api, privileged=True).start(fake_ctx).wait()
    host = api.created["host_config"]
    assert host["Privileged"] is True and host["PidsLimit"] == 4096
    assert "SecurityOpt" not in host
