"""The runtime (launcher) contract: how a worker starts one target run and waits for it.

A runtime is where an attempt runs: a local process or Docker container (the ``local``
launcher), a Slurm job, a Kubernetes Job. The worker is the same for all of them.

A :class:`Runtime` turns a prepared trial folder into a running target and returns an
:class:`Execution` handle. The folder already holds ``params.json`` and an empty
``out/``; the target must write ``loss.json`` into it (see COMPAT.md). The worker reads
``loss.json`` itself once :meth:`Execution.wait` has returned: runtimes only run things.

Rules:
    * :meth:`Runtime.start` raises :class:`~hyperdock.errors.TargetError` when the target
      cannot be started at all (``retryable=False`` when retrying cannot help, e.g. a
      missing image or command).
    * :meth:`Execution.wait` blocks until the target has ended, enforces
      ``RunContext.timeout`` itself (the target is killed, ``timed_out`` is set), and
      returns as soon as the target ends (no polling delay).
    * :meth:`Execution.stop` may be called from any thread, any number of times, before,
      during or after :meth:`Execution.wait`. It asks the target to end (SIGTERM or
      ``docker stop``), kills it after ``grace`` seconds, and makes ``wait`` report
      ``stopped=True`` -- unless the target had already exited by itself: a late stop
      changes nothing, so a target that finished is reported as having finished.
    * Whatever happens, nothing of the target is left running once ``wait`` returns
      (containers are removed, process groups are killed), and the target's full log
      is in ``RunOutcome.log_file``.
    * Runtimes are thread-safe: one runtime serves all of a worker's slots.
    * A runtime whose runs outlive the worker (a cluster engine's jobs) records what
      identifies the run in :attr:`Execution.job` (stored with the attempt's result)
      and finds it again with :meth:`Runtime.adopt`: a worker that takes over the trial
      of a lost worker waits for that run instead of starting the trial again.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
from collections.abc import Callable, Collection
from pathlib import Path

from hyperdock.checkpoint import CHECKPOINT_ENV, CONTAINER_CHECKPOINT
from hyperdock.resources import Resources

#: Name of the checkpoint folder: in the trial's folder (beside its attempts' folders)
#: on the host, and in the attempt's folder where a container mounts it.
CHECKPOINT_NAME = "checkpoint"

#: Processes a target container may run at once unless told otherwise: enough for any
#: data loader, few enough that a fork bomb in a target cannot exhaust the host's pids.
DEFAULT_PIDS_LIMIT = 4096


def trial_env(folder: str, trial_id: int, checkpoint: str | None = None) -> dict[str, str]:
    """The variables that tell a target where its files are: the trial folder as the
    target sees it (``/hyperdock`` in a container), the files in it and, when there is
    one, the checkpoint folder all attempts of the trial share."""
    env = {
        "HYPERDOCK_DIR": folder,
        "HYPERDOCK_PARAMS": f"{folder}/params.json",
        "HYPERDOCK_LOSS": f"{folder}/loss.json",
        "HYPERDOCK_PROGRESS": f"{folder}/progress.jsonl",
        "HYPERDOCK_TRIAL_ID": str(trial_id),
    }
    if checkpoint is not None:
        env[CHECKPOINT_ENV] = checkpoint
    return env


def container_checkpoint(ctx: RunContext) -> str | None:
    """Where a container sees the checkpoint folder of ``ctx`` (None: it has none).

    The attempt's folder is mounted at ``/hyperdock`` and the checkpoint folder over
    ``/hyperdock/checkpoint``: the mount point is made here, by the worker, so that the
    engine does not create it (as root) in the attempt's folder.
    """
    if ctx.checkpoint is None:
        return None
    with contextlib.suppress(FileExistsError):
        os.mkdir(ctx.folder / CHECKPOINT_NAME)
    return CONTAINER_CHECKPOINT


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Everything a runtime needs to run one attempt of one trial.

    Attributes:
        trial_id: The trial's id in the store (also the container's hostname).
        experiment: Name of the experiment the trial belongs to.
        folder: Host path of this attempt's trial folder (``params.json`` inside).
        image: Docker image to run (Docker runtime; required there).
        command: argv of the target. Required for the process runtime; for Docker it
            overrides the image's command when given.
        timeout: Seconds the target may run; ``None`` for no limit.
        env: Extra environment variables for the target.
        labels: Key/value tags for the run (container labels for Docker).
        gpus: GPUs for this run: ``"all"``, or a comma-separated list of device ids;
            ``None`` for none.
        attempt: The attempt's number (0 for the first), for the engine's records.
        resources: What the run may use (the experiment's per-trial resources).
        checkpoint: Host path of the trial's checkpoint folder, shared by all its
            attempts (``/hyperdock/checkpoint`` in a container,
            ``HYPERDOCK_CHECKPOINT_DIR`` for a command); None for none.
    """

    trial_id: int
    experiment: str
    folder: Path
    image: str | None = None
    command: list[str] | None = None
    timeout: float | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    gpus: str | None = None
    attempt: int = 0
    resources: Resources = dataclasses.field(default_factory=Resources)
    checkpoint: Path | None = None


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """How a target run ended.

    Attributes:
        exit_code: The target's exit code; ``None`` if it never ran to an exit status.
        timed_out: The run hit ``RunContext.timeout`` and was killed.
        stopped: The run was ended by :meth:`Execution.stop`.
        log_file: Host path of the target's full output (stdout and stderr).
        duration: Wall-clock seconds from start to end.
    """

    exit_code: int | None
    log_file: Path
    timed_out: bool = False
    stopped: bool = False
    duration: float = 0.0


class Execution(abc.ABC):
    """A running target; returned by :meth:`Runtime.start`."""

    #: What identifies the run on its engine (``{"kind": "slurm", "job_id": "12"}``),
    #: stored as the attempt's ``result["launcher"]``; None for local runs.
    job: dict[str, str] | None = None
    #: The attempt's trial folder (an adopted run's is the one it was started in).
    folder: Path | None = None

    @abc.abstractmethod
    def wait(self) -> RunOutcome:
        """Block until the target has ended and been cleaned up; return the outcome."""

    @abc.abstractmethod
    def stop(self, grace: float = 10.0) -> None:
        """Ask the target to end; kill it after ``grace`` seconds. Thread-safe."""


class Runtime(abc.ABC):
    """Starts targets. One instance serves every slot of a worker (thread-safe)."""

    #: Short name shown in logs and stored with results ("process", "docker").
    kind: str = ""

    @abc.abstractmethod
    def start(self, ctx: RunContext) -> Execution:
        """Start the target for ``ctx``.

        Raises:
            TargetError: the target could not be started.
        """

    def describe(self) -> str:
        """One line for logs: what this runtime runs."""
        return self.kind

    def stop_unwanted(self, wanted: Callable[[int, str], bool | None]) -> list[str]:
        """Stop the runs on this engine whose trial nobody will collect any more (it
        ended, was cancelled or deleted while their worker was gone): those for which
        ``wanted(trial_id, worker_id)`` is False (None: the worker is not of this
        store, leave it alone); return what was stopped. Runtimes whose runs end with
        their worker have none."""
        return []

    def adopt(self, trial_id: int, attempt: int, workers: Collection[str] = ()) -> Execution | None:
        """The run of an earlier attempt of trial ``trial_id`` that the engine still
        holds (its worker is gone), when no later attempt was started; None otherwise
        (and always for runtimes whose runs end with their worker).

        Only runs started by one of ``workers`` (the store's workers) count: the same
        engine may hold runs of another store, whose trial ids are the same numbers.
        """
        return None

    def check(self) -> None:  # noqa: B027 - optional hook
        """Check that this host can run targets now (e.g. the Docker engine answers).

        Raises:
            HostError: it cannot; the message says why and what to do.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (API clients). Called once when the worker stops."""
