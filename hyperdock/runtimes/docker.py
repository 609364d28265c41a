"""The Docker runtime: runs each trial's target in a fresh container of its image.

One :class:`DockerRuntime` serves every slot of a worker. For each run it creates a
container from ``RunContext.image`` with the trial folder mounted read-write at
``/hyperdock`` (and the data folder, if any, read-only at ``/data``), starts it, and hands
back a :class:`DockerExecution`. The container's output is copied into
``docker_log.txt`` in the trial folder while it runs (``hyperdock logs -f`` shows it
live). :meth:`DockerExecution.wait` blocks on Docker's wait endpoint (no polling), kills
the container when the trial's timeout is reached, makes sure ``docker_log.txt`` holds
the whole log and removes the container, whatever happened.

Containers carry the labels ``hyperdock.trial`` (trial id) and ``hyperdock.experiment``
plus ``RunContext.labels``; a worker that wants :meth:`DockerRuntime.kill_orphans` to
find only its own containers puts ``hyperdock.worker=<worker id>`` into
``RunContext.labels``.

Per run the runtime makes six API calls in the normal case (create, start, logs, wait,
logs, remove; the SDK's ``logs`` adds an inspect): the first ``logs`` follows the output
while the container runs, the second reads what the first may have missed at the end.
The image is not inspected beforehand: Docker's "no such image" answer to *create* is
what triggers a pull.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

import docker.client
import docker.errors
import docker.types
import requests

from hyperdock import trialfs
from hyperdock.errors import ConfigError, HostError, TargetError
from hyperdock.runtimes.base import (
    DEFAULT_PIDS_LIMIT,
    Execution,
    RunContext,
    RunOutcome,
    Runtime,
    container_checkpoint,
    trial_env,
)

__all__ = [
    "CONTAINER_DIR",
    "DATA_MOUNT",
    "LABEL_EXPERIMENT",
    "LABEL_TRIAL",
    "LABEL_WORKER",
    "LOG_FILE_NAME",
    "DockerExecution",
    "DockerRuntime",
]

log = logging.getLogger(__name__)

#: Where the trial folder is mounted inside the container.
CONTAINER_DIR = "/hyperdock"
#: Where the data folder is mounted (read-only) inside the container.
DATA_MOUNT = "/data"
#: Name of the file in the trial folder that receives the container's output.
LOG_FILE_NAME = "docker_log.txt"
#: Container label holding the trial id.
LABEL_TRIAL = "hyperdock.trial"
#: Container label holding the experiment name.
LABEL_EXPERIMENT = "hyperdock.experiment"
#: Container label a worker sets (through ``RunContext.labels``) to mark its containers.
LABEL_WORKER = "hyperdock.worker"

_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: HTTP connections kept per client; every running trial holds one in ``wait``.
_MAX_POOL_SIZE = 64
#: Seconds to wait for a killed container to report its exit status.
_KILL_WAIT = 30.0
#: Seconds the log copy may take to drain after the container exited.
_LOG_DRAIN = 10.0
#: Fragments of Docker's start errors that retrying cannot fix.
_PERMANENT_START_ERRORS = (
    "executable file not found",
    "no such file or directory",
    "permission denied",
    "could not select device driver",
    "unknown or invalid runtime",
    "unknown runtime",
    "invalid mount config",
)

PullPolicy = Literal["missing", "never", "always"]


class DockerRuntime(Runtime):
    """Runs targets as Docker containers.

    The Docker client is created on the first :meth:`start` and shared by all threads
    (the SDK's HTTP transport is thread-safe; the connection pool is sized for many
    concurrent ``wait`` calls).

    Args:
        data_dir: Host folder mounted read-only at ``/data`` (legacy
            ``HYPERDOCK_DATA_DIR``); ``None`` for none. Docker rejects the run if it
            does not exist on the Docker host.
        docker_runtime: Docker runtime for the containers, e.g. ``"nvidia"`` (legacy
            ``HYPERDOCK_RUNTIME``); ``None`` for the engine's default.
        env: Environment variables for every target (legacy ``HYPERDOCK_ENV``);
            ``RunContext.env`` overrides them.
        network: Network mode of the containers (``"none"``, ``"host"``, a network
            name); ``None`` for Docker's default bridge.
        privileged: Run containers privileged. Without it, containers run with the
            ``no-new-privileges`` security option (setuid binaries gain nothing).
        pids_limit: Most processes a container may run at once (Docker's
            ``--pids-limit``); ``0`` or ``None`` for no limit.
        outage_grace: Seconds the wait for a running container rides out an engine
            that does not answer (a restart, a cut socket) before the attempt is given
            up as a fault of the host (:class:`~hyperdock.errors.HostError`).
        pull: When to pull the image: ``"missing"`` (once, when Docker reports it
            missing), ``"never"``, or ``"always"`` (before every run, like
            ``docker run --pull always``).
        base_url: Docker engine URL (``unix:///var/run/docker.sock``,
            ``tcp://host:2376``); ``None`` to use ``DOCKER_HOST`` and friends.
        stop_grace: Default seconds :meth:`DockerExecution.stop` waits after SIGTERM
            before Docker kills the container.
        volume_map: Maps a path as the worker sees it to the same path on the Docker
            host, for bind mounts. The default (identity) fits a worker on the host
            or in a container that mounts its folders at the host's paths (COMPAT).

    Raises:
        ConfigError: ``pull``, ``stop_grace`` or ``pids_limit`` is invalid.
    """

    kind = "docker"

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        docker_runtime: str | None = None,
        env: Mapping[str, str] | None = None,
        network: str | None = None,
        privileged: bool = False,
        pull: PullPolicy = "missing",
        base_url: str | None = None,
        stop_grace: float = 10.0,
        volume_map: Callable[[Path], Path] | None = None,
        pids_limit: int | None = DEFAULT_PIDS_LIMIT,
        outage_grace: float = 60.0,
    ) -> None:
        if pids_limit is not None and (isinstance(pids_limit, bool) or pids_limit < 0):
            raise ConfigError(
                f"the pids limit must be a number of processes >= 0 (0: none), not {pids_limit!r}"
            )
        if pull not in ("missing", "never", "always"):
            raise ConfigError(f"pull must be 'missing', 'never' or 'always', not {pull!r}")
        if not stop_grace >= 0:
            raise ConfigError(f"stop_grace must be a number of seconds >= 0, not {stop_grace!r}")
        self.data_dir = Path(data_dir).absolute() if data_dir is not None else None
        self.docker_runtime = docker_runtime or None
        self.env: dict[str, str] = dict(env or {})
        self.network = network or None
        self.privileged = privileged
        self.pids_limit = pids_limit or None
        self.outage_grace = float(outage_grace)
        self.pull: PullPolicy = pull
        self.base_url = base_url or None
        self.stop_grace = float(stop_grace)
        self.volume_map: Callable[[Path], Path] = volume_map or _identity
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- client ---------------------------------------------------------------------

    @property
    def docker_url(self) -> str:
        """The Docker engine URL this runtime talks to (for messages)."""
        return self.base_url or os.environ.get("DOCKER_HOST") or _DEFAULT_DOCKER_HOST

    @property
    def client(self) -> Any:
        """The shared ``docker.DockerClient``, created (and connected) on first use.

        Raises:
            TargetError: Docker is not reachable (retryable).
        """
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                try:
                    if self.base_url is None:
                        self._client = docker.client.DockerClient.from_env(
                            max_pool_size=_MAX_POOL_SIZE
                        )
                    else:
                        self._client = docker.client.DockerClient(
                            base_url=self.base_url, max_pool_size=_MAX_POOL_SIZE
                        )
                except docker.errors.DockerException as exc:
                    raise self._unreachable(exc) from exc
            return self._client

    def _unreachable(self, exc: BaseException) -> HostError:
        # The host's fault, not the trial's: the worker requeues without using a retry.
        return HostError(
            f"Docker is not reachable at {self.docker_url} ({exc}). Start the Docker "
            "daemon (e.g. 'sudo systemctl start docker'), mount /var/run/docker.sock "
            "into the worker's container, or set DOCKER_HOST to the engine's URL.",
            summary=f"Docker is not reachable at {self.docker_url}",
        )

    def check(self) -> None:
        """Ping the Docker engine.

        Raises:
            HostError: it does not answer.
        """
        try:
            self.client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._unreachable(exc) from exc

    def describe(self) -> str:
        """One line for logs: engine URL and container options."""
        parts = [self.docker_url]
        if self.docker_runtime:
            parts.append(f"runtime={self.docker_runtime}")
        if self.network:
            parts.append(f"network={self.network}")
        if self.privileged:
            parts.append("privileged")
        parts.append(f"pids-limit={self.pids_limit or 'none'}")
        if self.data_dir is not None:
            parts.append(f"data={self.data_dir}")
        parts.append(f"pull={self.pull}")
        return f"docker ({', '.join(parts)})"

    def close(self) -> None:
        """Close the Docker client (a later :meth:`start` opens a new one)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- running ----------------------------------------------------------------------

    def start(self, ctx: RunContext) -> DockerExecution:
        """Create and start the container for ``ctx``.

        Raises:
            TargetError: no image was given, the image is missing and could not be
                pulled, Docker refused the container, or Docker is not reachable.
        """
        if not ctx.image:
            raise TargetError(
                f"trial {ctx.trial_id}: the Docker runtime needs an image to run; "
                "give the experiment an image",
                retryable=False,
            )
        if not ctx.folder.is_dir():
            raise TargetError(
                f"trial {ctx.trial_id}: trial folder {ctx.folder} does not exist",
                retryable=True,
            )
        # There from the start (also while the image is pulled): ``hyperdock logs`` finds
        # a running trial's log on this host, empty until the target prints. The
        # container can replace the file by a symlink to a host file: the log is only
        # ever written through this descriptor, opened before the container exists.
        log_fh: BinaryIO | None = None
        try:
            fd = trialfs.create(ctx.folder, LOG_FILE_NAME, replace=True, append=True)
            log_fh = open(fd, "wb", buffering=0)  # noqa: SIM115 - the execution closes it
        except (OSError, TargetError) as exc:
            log.error("trial %s: could not create %s: %s", ctx.trial_id, LOG_FILE_NAME, exc)
        try:
            image = ctx.image
            config = self._container_config(ctx, image)
            started = time.monotonic()
            api = self.client.api
            if self.pull == "always":
                self._pull(api, image, always=True)
            container_id = self._create(api, image, config)
            try:
                api.start(container_id)
            except BaseException as exc:
                _remove_container(api, container_id, config["name"])
                if isinstance(exc, docker.errors.APIError):
                    raise _start_error(exc, image, config["name"]) from exc
                if isinstance(exc, requests.exceptions.RequestException):
                    raise self._unreachable(exc) from exc
                raise
        except BaseException:
            if log_fh is not None:
                log_fh.close()
            raise
        log.debug("trial %s: started container %s (%s)", ctx.trial_id, config["name"], image)
        execution = DockerExecution(
            self, api, container_id, config["name"], ctx, started, log_fh=log_fh
        )
        execution._follow_log()
        return execution

    def _container_config(self, ctx: RunContext, image: str) -> dict[str, Any]:
        """Keyword arguments of ``APIClient.create_container`` for ``ctx``."""
        trial = str(ctx.trial_id)
        environment = dict(self.env)
        environment.update(ctx.env)
        checkpoint = container_checkpoint(ctx)
        environment.update(trial_env(CONTAINER_DIR, ctx.trial_id, checkpoint))
        mounts = [
            docker.types.Mount(
                CONTAINER_DIR, str(self.volume_map(ctx.folder.absolute())), type="bind"
            )
        ]
        if checkpoint is not None and ctx.checkpoint is not None:
            # Over the attempt's folder: the same folder for every attempt of the trial.
            mounts.append(
                docker.types.Mount(
                    checkpoint, str(self.volume_map(ctx.checkpoint.absolute())), type="bind"
                )
            )
        if self.data_dir is not None:
            mounts.append(
                docker.types.Mount(
                    DATA_MOUNT, str(self.volume_map(self.data_dir)), type="bind", read_only=True
                )
            )
        device_requests = None
        gpus = (ctx.gpus or "").strip()
        if gpus:
            if gpus == "all":
                device_requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
            else:
                ids = [part.strip() for part in gpus.split(",") if part.strip()]
                gpus = ",".join(ids)
                device_requests = [
                    docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])
                ]
            if self.docker_runtime == "nvidia":
                environment["NVIDIA_VISIBLE_DEVICES"] = gpus
        labels = dict(ctx.labels)
        labels[LABEL_TRIAL] = trial
        labels[LABEL_EXPERIMENT] = ctx.experiment
        host_config = self.client.api.create_host_config(
            mounts=mounts,
            network_mode=self.network,
            privileged=self.privileged,
            runtime=self.docker_runtime,
            device_requests=device_requests,
            pids_limit=self.pids_limit,
            # The experiment's per-trial resources (--cpus-per-trial …).
            nano_cpus=int(ctx.resources.cpus * 1e9) if ctx.resources.cpus else None,
            mem_limit=ctx.resources.memory,
            shm_size=ctx.resources.shm_size,
            # A privileged container may gain anything anyway; otherwise setuid
            # binaries in the image do not lift the target's privileges.
            security_opt=None if self.privileged else ["no-new-privileges"],
        )
        return {
            "image": image,
            "command": list(ctx.command) if ctx.command else None,
            "hostname": trial,
            "environment": environment,
            "labels": labels,
            "name": f"hyperdock-{trial}-{secrets.token_hex(4)}",
            "host_config": host_config,
            "detach": True,
        }

    def _create(self, api: Any, image: str, config: dict[str, Any]) -> str:
        """Create the container, pulling the image once if Docker reports it missing."""
        pulled = self.pull == "always"
        while True:
            try:
                return str(api.create_container(**config)["Id"])
            except docker.errors.ImageNotFound as exc:
                if pulled:
                    raise _missing_image(
                        image, f"pulled, but Docker still reports: {_explain(exc)}"
                    ) from exc
                if self.pull == "never":
                    raise _missing_image(image, "pulling is disabled (pull='never')") from exc
                self._pull(api, image, always=False)
                pulled = True
            except docker.errors.APIError as exc:
                raise TargetError(
                    f"Docker refused to create a container from image '{image}': {_explain(exc)}",
                    retryable=not exc.is_client_error(),
                ) from exc
            except requests.exceptions.RequestException as exc:
                raise self._unreachable(exc) from exc

    def _pull(self, api: Any, image: str, *, always: bool) -> None:
        """Pull ``image`` once.

        Raises:
            TargetError: the pull failed.
        """
        log.info("pulling image %s", image)
        reason: str | None = None
        retryable = False
        try:
            for event in api.pull(image, stream=True, decode=True):
                if isinstance(event, dict) and event.get("error"):
                    reason = str(event.get("error"))
        except docker.errors.NotFound as exc:
            reason = _explain(exc)
        except docker.errors.APIError as exc:
            reason = _explain(exc)
            retryable = always and not exc.is_client_error()
        except requests.exceptions.RequestException as exc:
            raise self._unreachable(exc) from exc
        if reason is None:
            return
        if always:
            raise TargetError(
                f"could not pull image '{image}' ({reason}) and pull='always': check the "
                "name and the registry, or use pull='missing' to run a local image",
                retryable=retryable,
            )
        raise _missing_image(image, reason)

    # -- crash recovery -----------------------------------------------------------------

    def kill_orphans(
        self,
        *,
        keep: Collection[int] = (),
        worker_id: str | None = None,
        leases: Collection[tuple[int, str]] | None = None,
        workers: Collection[str] | None = None,
    ) -> list[str]:
        """Kill and remove Hyperdock's containers whose trial is not in ``keep``.

        Without ``worker_id`` or ``workers`` this removes *every* container labelled
        ``hyperdock.trial`` on the engine (other workers' included) unless its trial
        is in ``keep``.

        Args:
            keep: Trial ids whose containers must stay.
            worker_id: Only consider containers labelled ``hyperdock.worker=worker_id``.
            leases: Live ``(trial id, worker id)`` leases; a container whose trial and
                ``hyperdock.worker`` label match one of them stays too.
            workers: Only consider containers whose ``hyperdock.worker`` label is one of
                these: the workers one store knows, so that a sweep never touches the
                containers of another store's workers on the same engine.

        Returns:
            Names of the removed containers.

        Raises:
            TargetError: Docker is not reachable or refused to list containers.
        """
        api = self.client.api
        labels = [LABEL_TRIAL]
        if worker_id is not None:
            labels.append(f"{LABEL_WORKER}={worker_id}")
        keep_ids = {int(trial) for trial in keep}
        live = {(int(trial), str(worker)) for trial, worker in (leases or ())}
        known = None if workers is None else {str(w) for w in workers}
        try:
            containers = api.containers(all=True, filters={"label": labels})
        except docker.errors.APIError as exc:
            raise TargetError(f"Docker could not list containers: {_explain(exc)}") from exc
        except requests.exceptions.RequestException as exc:
            raise self._unreachable(exc) from exc
        removed: list[str] = []
        for info in containers:
            labels_of = info.get("Labels") or {}
            trial_label = labels_of.get(LABEL_TRIAL)
            trial_id = _as_int(trial_label)
            if trial_id in keep_ids or (trial_id, labels_of.get(LABEL_WORKER)) in live:
                continue
            if known is not None and labels_of.get(LABEL_WORKER) not in known:
                continue  # another store's worker started it
            names = info.get("Names") or []
            name = names[0].lstrip("/") if names else str(info["Id"])[:12]
            if _remove_container(api, info["Id"], name):
                log.info("removed orphaned container %s (trial %s)", name, trial_label)
                removed.append(name)
        return removed


class DockerExecution(Execution):
    """A running container; returned by :meth:`DockerRuntime.start`.

    Attributes:
        container_id: Docker's id of the container.
        name: The container's name.
    """

    def __init__(
        self,
        runtime: DockerRuntime,
        api: Any,
        container_id: str,
        name: str,
        ctx: RunContext,
        started: float,
        log_fh: BinaryIO | None = None,
    ) -> None:
        self._runtime = runtime
        self._api = api
        self.container_id = container_id
        self.name = name
        self._ctx = ctx
        self._started = started
        self._state_lock = threading.Lock()
        self._wait_lock = threading.Lock()
        self._stop_requested = False
        self._exited = False
        self._finished = False
        self._outcome: RunOutcome | None = None
        self._log_file = ctx.folder / LOG_FILE_NAME
        # docker_log.txt as opened before the container started (never reopened).
        self._log_fh = log_fh
        self._log_stream: Any = None
        self._log_thread: threading.Thread | None = None
        self._log_written = 0  # bytes of the log copied live

    def stop(self, grace: float | None = None) -> None:
        """Ask the container to end (``docker stop``): SIGTERM, SIGKILL after ``grace``.

        Thread-safe and idempotent; a no-op once the container has exited (one inspect
        call tells), so a late stop does not turn a finished run into a stopped one. Blocks
        until Docker reports the container stopped (at most about ``grace`` seconds).

        Args:
            grace: Seconds between SIGTERM and SIGKILL (whole seconds, rounded up);
                ``None`` for the runtime's ``stop_grace``.
        """
        seconds = self._runtime.stop_grace if grace is None else grace
        with self._state_lock:
            if self._exited or self._finished:
                return  # it ended by itself: a late stop changes nothing
        if not self._running():
            return
        with self._state_lock:
            if self._exited or self._finished:
                return
            self._stop_requested = True
        try:
            self._api.stop(self.container_id, timeout=max(0, math.ceil(seconds)))
        except docker.errors.NotFound:
            pass  # already removed by wait()
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            log.warning("could not stop container %s: %s", self.name, exc)

    def _running(self) -> bool:
        """Whether the container still runs (True when Docker cannot tell)."""
        try:
            state = self._api.inspect_container(self.container_id).get("State") or {}
        except docker.errors.NotFound:
            return False
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return True
        return bool(state.get("Running", True))

    def wait(self) -> RunOutcome:
        """Wait for the container to exit, save its log, remove it; return the outcome.

        Calling it again returns the same outcome.

        Raises:
            TargetError: Docker failed while the container ran (retryable). The
                container is removed all the same (if Docker can be reached).
        """
        with self._wait_lock:
            if self._outcome is not None:
                return self._outcome
            log_file = self._log_file
            try:
                try:
                    exit_code, timed_out = self._wait_for_exit()
                    ended = time.monotonic()
                    with self._state_lock:
                        self._exited = True
                finally:
                    try:
                        self._end_log()
                    finally:
                        if self._log_fh is not None:
                            self._log_fh.close()
            finally:
                with self._state_lock:
                    self._finished = True
                _remove_container(self._api, self.container_id, self.name)
            self._outcome = RunOutcome(
                exit_code=exit_code,
                log_file=log_file,
                timed_out=timed_out,
                stopped=self._stop_requested,
                duration=ended - self._started,
            )
            return self._outcome

    def _wait_for_exit(self) -> tuple[int | None, bool]:
        """Block until the container exits or the timeout passes; (exit code, timed out)."""
        timeout = self._ctx.timeout
        deadline = None if timeout is None else self._started + timeout
        outage: float | None = None  # when the engine stopped answering
        pause = 0.2
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                log.info(
                    "trial %s: timed out after %ss, killing container %s",
                    self._ctx.trial_id,
                    timeout,
                    self.name,
                )
                return self._kill(), True
            try:
                result = self._api.wait(self.container_id, timeout=remaining)
            except docker.errors.APIError as exc:
                raise TargetError(
                    f"Docker failed while waiting for container {self.name}: {_explain(exc)}"
                ) from exc
            except requests.exceptions.RequestException as exc:
                # A read timeout surfaces as ReadTimeout or as ConnectionError.
                if deadline is not None and time.monotonic() >= deadline - 0.05:
                    continue
                # The container runs on while its engine is away for a moment: wait on.
                now = time.monotonic()
                if outage is None:
                    outage = now
                    log.warning(
                        "trial %s: Docker stopped answering (%s); waiting for it",
                        self._ctx.trial_id,
                        exc,
                    )
                if now - outage > self._runtime.outage_grace or self._stop_requested:
                    raise self._runtime._unreachable(exc) from exc
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            return _exit_code(result), False

    def _kill(self) -> int | None:
        """Kill the container and return its exit status (``None`` if unknown)."""
        try:
            self._api.kill(self.container_id)
        except docker.errors.APIError:
            pass  # not running any more
        except requests.exceptions.RequestException as exc:
            log.warning("could not kill container %s: %s", self.name, exc)
            return None
        try:
            return _exit_code(self._api.wait(self.container_id, timeout=_KILL_WAIT))
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            log.warning("killed container %s did not report its exit: %s", self.name, exc)
            return None

    # -- the log ------------------------------------------------------------------------

    def _follow_log(self) -> None:
        """Start copying the container's output into ``docker_log.txt`` as it comes.

        Docker sends everything the container printed since it started, then follows
        until it exits. :meth:`wait` appends whatever the live copy missed.
        """
        fh = self._log_fh
        if fh is None:
            return
        try:
            self._log_stream = self._api.logs(
                self.container_id, stdout=True, stderr=True, stream=True, follow=True
            )
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            log.warning("trial %s: no live log (%s); saved at the end", self._ctx.trial_id, exc)
            return
        self._log_thread = threading.Thread(
            target=self._copy_log, args=(fh,), name=f"hd-log-{self._ctx.trial_id}", daemon=True
        )
        self._log_thread.start()

    def _copy_log(self, fh: BinaryIO) -> None:
        try:
            for chunk in self._log_stream:
                fh.write(chunk)  # unbuffered: ``hyperdock logs -f`` sees each line at once
                self._log_written += len(chunk)
        except Exception as exc:  # a broken stream or disk: wait() fills in the rest
            log.debug("trial %s: live log ended early: %s", self._ctx.trial_id, exc)
        finally:
            with contextlib.suppress(Exception):
                self._log_stream.close()  # gives the connection back

    def _end_log(self) -> None:
        """Let the live copy drain (the container has exited), then complete the log."""
        thread = self._log_thread
        if thread is not None:
            thread.join(_LOG_DRAIN)
            if thread.is_alive():  # the stream hangs: cut it
                with contextlib.suppress(Exception):
                    self._log_stream.close()
                thread.join(_LOG_DRAIN)
        if self._log_fh is not None:
            self._save_log(self._log_fh, skip=self._log_written)

    def _save_log(self, fh: BinaryIO, skip: int = 0) -> None:
        """Append the container's stdout and stderr (interleaved, in order) after their
        first ``skip`` bytes to the log (``fh``, docker_log.txt as opened at the start).

        A following log stream can end before the last output of a container that has
        just exited is readable; once ``wait`` has seen the exit, this read has it all.
        The live copy is a prefix of it, so only the rest is appended: the file only
        grows, as readers that follow it expect.
        """
        try:
            try:
                stream = self._api.logs(
                    self.container_id, stdout=True, stderr=True, stream=True, follow=False
                )
                try:
                    for chunk in stream:
                        if skip >= len(chunk):
                            skip -= len(chunk)
                            continue
                        fh.write(chunk[skip:])
                        skip = 0
                finally:
                    stream.close()
            except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                fh.write(f"\n[hyperdock] could not read the container's log: {exc}\n".encode())
        except (OSError, ValueError) as exc:  # ValueError: closed by a hung live copy
            log.error("trial %s: could not write %s: %s", self._ctx.trial_id, LOG_FILE_NAME, exc)


def _identity(path: Path) -> Path:
    return path


def _as_int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip()


def _exit_code(result: Any) -> int | None:
    code = result.get("StatusCode") if isinstance(result, dict) else None
    return int(code) if code is not None else None


def _missing_image(image: str, reason: str) -> TargetError:
    return TargetError(
        f"image '{image}' was not found locally and could not be pulled ({reason}): "
        f"build it (docker build -t {image} .) or check the name",
        retryable=False,
    )


def _start_error(exc: Any, image: str, name: str) -> TargetError:
    explanation = _explain(exc)
    lowered = explanation.lower()
    permanent = exc.is_client_error() or any(f in lowered for f in _PERMANENT_START_ERRORS)
    return TargetError(
        f"Docker could not start container {name} of image '{image}': {explanation}",
        retryable=not permanent,
    )


def _remove_container(api: Any, container_id: str, name: str) -> bool:
    """Force-remove a container (and its anonymous volumes); False if it could not be."""
    try:
        api.remove_container(container_id, force=True, v=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if "already in progress" in _explain(exc):
            return True
        log.error("could not remove container %s: %s", name, _explain(exc))
        return False
    except requests.exceptions.RequestException as exc:
        log.error("could not remove container %s (Docker unreachable?): %s", name, exc)
        return False
