"""The Slurm launcher: each attempt of a trial is one ``sbatch`` job.

A command target runs as the job's script; an image target runs ``docker run`` (or
``apptainer exec``) inside the job. The trial folder must be on a file system that the
worker and the compute nodes both see: the job writes ``loss.json`` there and its output
goes to ``log.txt`` there (``sbatch --output``). The job checks that it can see
``params.json`` first and otherwise ends with :data:`NOT_SHARED_EXIT` and a message that
says so.

Jobs are named ``hd-<trial id>`` and carry what a worker needs to find them again in
their comment (``{"hd": 1, "trial": …, "attempt": …, "folder": …, "worker": …}``): a
worker that takes over the trial of a lost worker adopts its job instead of starting the
trial again (:meth:`SlurmRuntime.adopt`).

One poller thread per runtime reads the state of every job it tracks with a single
``scontrol show job`` a second, however many jobs are in flight; waiting attempts block
on an event it sets. Stop, cancel and prune are ``scancel``: SIGTERM to every process of
the job, then SIGKILL after the grace period. A timeout is Slurm's ``--time`` (rounded up
to whole minutes, plus one) and Hyperdock's own kill at the exact deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperdock import trialfs
from hyperdock.errors import ConfigError, HostError, TargetError
from hyperdock.runtimes.base import (
    Execution,
    RunContext,
    RunOutcome,
    Runtime,
    container_checkpoint,
    trial_env,
)

__all__ = ["LOG_NAME", "NOT_SHARED_EXIT", "SlurmExecution", "SlurmJob", "SlurmRuntime"]

log = logging.getLogger(__name__)

#: The job's output, in the trial folder.
LOG_NAME = "log.txt"
#: The job script Hyperdock writes into the trial folder.
SCRIPT_NAME = "job.sh"
#: Exit code of a job that cannot see its trial folder.
NOT_SHARED_EXIT = 97
#: Job states after which a job does nothing more.
_TERMINAL = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
#: A job no longer listed this long after it was last seen has ended.
_GONE_AFTER = 5.0


@dataclass(frozen=True)
class SlurmJob:
    """A job as ``scontrol show job`` describes it.

    Attributes:
        job_id: Slurm's job id.
        state: ``JobState`` (``PENDING``, ``RUNNING``, ``COMPLETED`` …).
        exit_code: The script's exit code (128 + N for signal N); None while it runs.
        reason: Slurm's ``Reason`` (why it is pending, or failed).
        meta: The comment Hyperdock gave it (trial, attempt, folder, worker), or {}.
    """

    job_id: str
    state: str
    exit_code: int | None
    reason: str
    meta: dict[str, Any]

    @property
    def ended(self) -> bool:
        """Whether the job does nothing more."""
        return self.state in _TERMINAL


def _parse_job(line: str) -> SlurmJob | None:
    """One line of ``scontrol -o show job``: ``Key=Value`` pairs (values may hold
    spaces only in the last fields, which are not read here)."""
    fields: dict[str, str] = {}
    for item in line.split(" "):
        key, sep, value = item.partition("=")
        if sep and key not in fields:
            fields[key] = value
    if "JobId" not in fields:
        return None
    state = fields.get("JobState", "UNKNOWN")
    exit_code: int | None = None
    if state in _TERMINAL:
        code, _, signal = fields.get("ExitCode", "0:0").partition(":")
        exit_code = 128 + int(signal) if signal.isdigit() and int(signal) else int(code or 0)
    meta: dict[str, Any] = {}
    comment = fields.get("Comment", "")
    if comment.startswith("{"):
        with contextlib.suppress(ValueError):
            meta = json.loads(comment)
    return SlurmJob(fields["JobId"], state, exit_code, fields.get("Reason", ""), meta)


class _Poller:
    """Reads every tracked job's state with one command a second (thread-safe)."""

    def __init__(self, runtime: SlurmRuntime) -> None:
        self._runtime = runtime
        self._lock = threading.Lock()
        self._jobs: dict[str, SlurmJob] = {}
        self._seen: dict[str, float] = {}
        self._events: dict[str, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def track(self, job_id: str) -> threading.Event:
        with self._lock:
            event = self._events.setdefault(job_id, threading.Event())
            self._seen.setdefault(job_id, time.monotonic())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="hd-slurm-poll", daemon=True
                )
                self._thread.start()
        return event

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._events.pop(job_id, None)
            self._jobs.pop(job_id, None)
            self._seen.pop(job_id, None)

    def job(self, job_id: str) -> SlurmJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def close(self) -> None:
        self._closed.set()

    def _loop(self) -> None:
        while not self._closed.wait(self._runtime.poll_interval):
            with self._lock:
                if not self._events:
                    continue
            try:
                jobs = {j.job_id: j for j in self._runtime.list_jobs()}
            except HostError as exc:
                log.warning("cannot read the Slurm queue (jobs keep running): %s", exc)
                continue
            except Exception:  # never let the poller die: every wait depends on it
                log.exception("reading the Slurm queue failed")
                continue
            now = time.monotonic()
            with self._lock:
                for job_id, event in self._events.items():
                    job = jobs.get(job_id)
                    if job is not None:
                        self._jobs[job_id] = job
                        self._seen[job_id] = now
                        if job.ended:
                            event.set()
                    elif now - self._seen.get(job_id, now) > _GONE_AFTER:
                        event.set()  # purged from slurmctld's memory: it has ended


class SlurmExecution(Execution):
    """One job, submitted or adopted."""

    def __init__(
        self, runtime: SlurmRuntime, job_id: str, folder: Path, timeout: float | None
    ) -> None:
        self.runtime = runtime
        self.job_id = job_id
        self.folder: Path = folder
        self.job = {"kind": "slurm", "job_id": job_id}
        self._timeout = timeout
        self._started = time.monotonic()
        self._ended = runtime.poller.track(job_id)
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()
        self._timed_out = False

    def wait(self) -> RunOutcome:
        deadline = None if self._timeout is None else self._started + self._timeout
        while not self._ended.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self._timed_out = True
                self.runtime.cancel(self.job_id, "KILL")
                self._ended.wait(self.runtime.kill_wait)
                break
            self._ended.wait(left if left is not None else None)
        job = self.runtime.poller.job(self.job_id)
        self.runtime.poller.forget(self.job_id)
        if job is None or not job.ended:
            job = self.runtime.find_ended(self.job_id) or job
        stopped = self._stop_requested.is_set() and (job is None or job.state == "CANCELLED")
        timed_out = self._timed_out or (job is not None and job.state == "TIMEOUT")
        exit_code = job.exit_code if job is not None else None
        return RunOutcome(
            exit_code=exit_code,
            log_file=self.folder / LOG_NAME,
            timed_out=timed_out and not stopped,
            stopped=stopped,
            duration=time.monotonic() - self._started,
        )

    def stop(self, grace: float = 10.0) -> None:
        with self._lock:
            if self._stop_requested.is_set() or self._ended.is_set():
                return
            job = self.runtime.poller.job(self.job_id)
            if job is not None and job.ended:
                return  # it finished by itself: a late stop changes nothing
            self._stop_requested.set()
        self.runtime.cancel(self.job_id, "TERM")
        timer = threading.Timer(grace, self._kill)
        timer.daemon = True
        timer.start()

    def _kill(self) -> None:
        if not self._ended.is_set():
            self.runtime.cancel(self.job_id, "KILL")


class SlurmRuntime(Runtime):
    """Runs each attempt as a Slurm job (command and image targets).

    Args:
        env: Extra environment for every target.
        data_dir: Data folder, read-only at ``/data`` for image targets and in
            ``HYPERDOCK_DATA_DIR`` for commands (it must be shared with the nodes).
        sbatch_args: More ``sbatch`` options (``--partition=gpu``, ``--account=x``).
        template: A job script header (``#SBATCH`` lines, ``module load …``) put before
            Hyperdock's own lines.
        container_engine: ``docker`` or ``apptainer``, for image targets.
        cpus, memory, gpus: Per trial: ``--cpus-per-task``, ``--mem`` (bytes),
            ``--gres=gpu:N``.
        poll_interval: Seconds between reads of the job states.
        kill_wait: Seconds to wait for a killed job to be reported ended.

    Raises:
        ConfigError: an unknown container engine.
    """

    kind = "slurm"

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        sbatch_args: Sequence[str] = (),
        template: str | None = None,
        container_engine: str = "docker",
        docker_runtime: str | None = None,
        poll_interval: float = 1.0,
        kill_wait: float = 30.0,
    ) -> None:
        if container_engine not in ("docker", "apptainer"):
            raise ConfigError(
                f"--container-engine must be docker or apptainer, not {container_engine!r}"
            )
        self.env = dict(env or {})
        self.data_dir = str(data_dir) if data_dir else None
        self.sbatch_args = list(sbatch_args)
        self.template = template
        self.container_engine = container_engine
        self.docker_runtime = docker_runtime
        self.poll_interval = poll_interval
        self.kill_wait = kill_wait
        self.poller = _Poller(self)

    def describe(self) -> str:
        extra = f" {' '.join(self.sbatch_args)}" if self.sbatch_args else ""
        return f"slurm (sbatch{extra}; images with {self.container_engine})"

    # -- the engine -------------------------------------------------------------------
    def _run(self, argv: list[str], *, what: str) -> str:
        try:
            out = subprocess.run(
                argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            raise HostError(
                f"{argv[0]} is not installed here: the Slurm launcher needs Slurm's client "
                "commands (sbatch, scontrol, scancel) on the worker's host",
                summary="Slurm client missing",
            ) from None
        except subprocess.TimeoutExpired:
            raise HostError(
                f"{what}: {argv[0]} did not answer in 60 s", summary="Slurm slow"
            ) from None
        if out.returncode != 0:
            lines = (out.stderr or out.stdout).strip().splitlines()
            said = lines[-1] if lines else f"exit code {out.returncode}"
            raise HostError(
                f"{what}: {' '.join(argv[:2])} failed: {said}", summary="Slurm unreachable"
            )
        return out.stdout

    def check(self) -> None:
        self._run(["scontrol", "ping"], what="checking the Slurm controller")

    def list_jobs(self) -> list[SlurmJob]:
        """Every job slurmctld still knows (pending, running, and ended in the last
        ``MinJobAge`` seconds)."""
        out = self._run(["scontrol", "-o", "show", "job"], what="reading the Slurm queue")
        if out.strip().startswith("No jobs"):
            return []
        return [j for line in out.splitlines() if (j := _parse_job(line)) is not None]

    def find_ended(self, job_id: str) -> SlurmJob | None:
        """How an ended job ended, from ``scontrol`` or, once purged, ``sacct``."""
        with contextlib.suppress(HostError):
            out = self._run(["scontrol", "-o", "show", "job", job_id], what="reading a job")
            job = _parse_job(out.splitlines()[0]) if out.strip() else None
            if job is not None and job.ended:
                return job
        with contextlib.suppress(HostError, ValueError, IndexError):
            out = self._run(
                ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode"],
                what="reading the accounting",
            )
            jid, state, code = out.strip().splitlines()[0].split("|")
            state = state.split()[0]
            rc, _, sig = code.partition(":")
            exit_code = 128 + int(sig) if sig.isdigit() and int(sig) else int(rc)
            return SlurmJob(jid, state, exit_code, "", {})
        return None

    def cancel(self, job_id: str, signal: str) -> None:
        """``scancel``: TERM to every process of the job (``--full``), or KILL."""
        argv = ["scancel", "--full", f"--signal={signal}", job_id]
        if signal == "KILL":
            argv = ["scancel", job_id]
        try:
            self._run(argv, what=f"stopping job {job_id}")
        except HostError as exc:
            log.warning("%s", exc)

    # -- runs -------------------------------------------------------------------------
    def start(self, ctx: RunContext) -> Execution:
        if not ctx.image and not ctx.command:
            raise TargetError("the experiment has no command or image to run", retryable=False)
        folder = ctx.folder.absolute()
        meta = {
            "hd": 1,
            "trial": ctx.trial_id,
            "attempt": ctx.attempt,
            "folder": str(folder),
            "worker": ctx.labels.get("hyperdock.worker", ""),
            "experiment": ctx.experiment,
        }
        script = self._script(ctx, folder)
        fd = trialfs.create(folder, SCRIPT_NAME, replace=True)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(script)
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name=hd-{ctx.trial_id}",
            f"--comment={json.dumps(meta, separators=(',', ':'))}",
            f"--output={folder / LOG_NAME}",
            "--open-mode=append",
            f"--chdir={folder}",
            *self._resource_args(ctx),
            *self.sbatch_args,
            str(folder / SCRIPT_NAME),
        ]
        try:
            out = self._run(argv, what=f"submitting trial {ctx.trial_id}")
        except HostError as exc:
            try:
                self.check()
            except HostError:
                raise exc from None  # the controller is unreachable: this host's fault
            # The controller answers but refuses this job (a GPU count no node has, an
            # unknown partition): another attempt would be refused alike.
            raise TargetError(f"Slurm refused the job: {exc}", retryable=False) from None
        job_id = out.strip().split(";")[0]
        log.debug("trial %s: submitted Slurm job %s", ctx.trial_id, job_id)
        return SlurmExecution(self, job_id, folder, ctx.timeout)

    def adopt(
        self, trial_id: int, attempt: int, workers: Collection[str] = ()
    ) -> SlurmExecution | None:
        """The job of an earlier attempt of this trial, submitted by one of ``workers``
        that is gone, if slurmctld still knows it and no later attempt was submitted."""
        jobs = [
            j
            for j in self.list_jobs()
            if j.meta.get("hd") == 1
            and j.meta.get("trial") == trial_id
            and j.meta.get("worker") in workers
        ]
        if not jobs:
            return None
        latest = max(jobs, key=lambda j: (int(j.meta.get("attempt", -1)), int(j.job_id)))
        if int(latest.meta.get("attempt", -1)) >= attempt:
            return None
        log.info("trial %d: adopting Slurm job %s (%s)", trial_id, latest.job_id, latest.state)
        return SlurmExecution(self, latest.job_id, Path(latest.meta["folder"]), None)

    def stop_unwanted(self, wanted: Callable[[int, str], bool | None]) -> list[str]:
        stopped = []
        for job in self.list_jobs():
            trial = job.meta.get("trial")
            if job.ended or job.meta.get("hd") != 1 or not isinstance(trial, int):
                continue
            if wanted(trial, str(job.meta.get("worker", ""))) is False:
                self.cancel(job.job_id, "KILL")
                stopped.append(f"Slurm job {job.job_id} (trial {trial})")
        return stopped

    def _resource_args(self, ctx: RunContext) -> list[str]:
        args = []
        res = ctx.resources
        if res.gpus:
            args.append(f"--gres=gpu:{res.gpus}")
        if res.cpus:
            args.append(f"--cpus-per-task={max(1, math.ceil(res.cpus))}")
        if res.memory:
            args.append(f"--mem={max(1, math.ceil(res.memory / 2**20))}M")
        if ctx.timeout is not None:
            args.append(f"--time={math.ceil(ctx.timeout / 60) + 1}")
        return args

    def _script(self, ctx: RunContext, folder: Path) -> str:
        q = shlex.quote
        lines = ["#!/bin/sh"]
        if self.template:
            lines += [line for line in self.template.splitlines() if line and line != "#!/bin/sh"]
        lines += [
            "# Written by Hyperdock: one attempt of one trial.",
            f"cd {q(str(folder))} 2>/dev/null && [ -f params.json ] || {{",
            f"  echo hyperdock: the trial folder {q(str(folder))} is not visible on "
            '"$(hostname)" "(no params.json): put --results on a file system the worker '
            'and every compute node share" >&2',
            f"  exit {NOT_SHARED_EXIT}",
            "}",
        ]
        env = {**self.env, **ctx.env}
        if ctx.image:
            lines.append(self._container_line(ctx, folder, env))
        else:
            checkpoint = str(ctx.checkpoint.absolute()) if ctx.checkpoint is not None else None
            env.update(trial_env(str(folder), ctx.trial_id, checkpoint))
            if self.data_dir:
                env["HYPERDOCK_DATA_DIR"] = self.data_dir
            lines += [f"export {k}={q(v)}" for k, v in sorted(env.items())]
            lines.append("exec " + " ".join(q(a) for a in ctx.command or []))
        return "\n".join(lines) + "\n"

    def _container_line(self, ctx: RunContext, folder: Path, env: dict[str, str]) -> str:
        q = shlex.quote
        checkpoint = container_checkpoint(ctx)
        inner = {**env, **trial_env("/hyperdock", ctx.trial_id, checkpoint)}
        image = ctx.image or ""
        command = " ".join(q(a) for a in ctx.command or [])
        # The trial's checkpoint folder over the attempt's: shared by all its attempts.
        shared = (
            f"{q(str(ctx.checkpoint.absolute()))}:{checkpoint}"
            if checkpoint is not None and ctx.checkpoint is not None
            else None
        )
        if self.container_engine == "apptainer":
            binds = f"--bind {q(str(folder))}:/hyperdock"
            if shared:
                binds += f" --bind {shared}"
            if self.data_dir:
                binds += f" --bind {q(self.data_dir)}:/data:ro"
            envs = " ".join(f"--env {q(f'{k}={v}')}" for k, v in sorted(inner.items()))
            source = image if "://" in image else f"docker-daemon://{image}"
            run = "exec" if command else "run"
            return f"exec apptainer {run} --nv {binds} {envs} {q(source)} {command}".rstrip()
        parts = [
            "exec docker run --rm --init",
            f"--name hyperdock-{ctx.trial_id}-$SLURM_JOB_ID",
            f"--label hyperdock.trial={ctx.trial_id}",
            f"-v {q(str(folder))}:/hyperdock",
            *([f"-v {shared}"] if shared else []),
            "--security-opt no-new-privileges",
        ]
        if self.data_dir:
            parts.append(f"-v {q(self.data_dir)}:/data:ro")
        if ctx.resources.gpus:
            # The GPUs Slurm gave this job, by the ids it put in CUDA_VISIBLE_DEVICES.
            parts.append('-e CUDA_VISIBLE_DEVICES="$CUDA_VISIBLE_DEVICES"')
            parts.append('-e NVIDIA_VISIBLE_DEVICES="$CUDA_VISIBLE_DEVICES"')
            if self.docker_runtime:
                parts.append(f"--runtime {q(self.docker_runtime)}")
        if ctx.resources.shm_size:
            parts.append(f"--shm-size {ctx.resources.shm_size}")
        parts += [f"-e {q(f'{k}={v}')}" for k, v in sorted(inner.items())]
        parts.append(q(image))
        if command:
            parts.append(command)
        return " ".join(parts)

    def close(self) -> None:
        self.poller.close()
