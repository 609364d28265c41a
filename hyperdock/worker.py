"""The worker: claims trials from the store, runs their targets, reports the results.

One :class:`Worker` runs ``parallelism`` slots (threads), each looping claim → run →
report, plus one heartbeat thread that renews the leases of running trials, stops targets
the store wants stopped (cancel, lost lease) and returns other workers' lost trials to the
queue.

Promises:
    * A trial is never lost: whatever goes wrong while running it (bad ``loss.json``, a
      crash of the target, an exception in Hyperdock itself), its attempt ends in the
      store as completed, failed, cancelled or back in the queue.
    * Completion wins over a late prune: a target that has written a valid
      ``loss.json`` when its prune request arrives gets ``stop_grace`` seconds to exit
      by itself, and is then recorded completed with its loss.
    * :meth:`Worker.stop` (SIGTERM/SIGINT in the CLI) stops claiming, stops the running
      targets, and puts their trials back in the queue without using up a retry.
    * Faults of the worker's own host are not the trial's: when the Docker engine does
      not answer, or the results folder cannot be written (read-only, full disk), the
      trial goes back to the queue without using a retry, the worker says why in its
      log and in its store record (``hyperdock workers``), claims nothing until its
      host works again (checking with backoff), then carries on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hyperdock import trialfs
from hyperdock.artifacts.checkpoints import CheckpointSync
from hyperdock.artifacts.settings import DataSettings
from hyperdock.artifacts.uploader import Uploader
from hyperdock.errors import (
    ConfigError,
    ExperimentNotFound,
    HostError,
    HyperdockError,
    LossFileError,
    StoreConnectionError,
    TargetError,
)
from hyperdock.jsonutil import dumps
from hyperdock.layout import slugify
from hyperdock.logship import LogShipper
from hyperdock.objectives import Objectives
from hyperdock.progress import PROGRESS_FILE, ProgressReader
from hyperdock.resources import GpuPool, Resources
from hyperdock.runtimes.base import Execution, RunContext, RunOutcome, Runtime
from hyperdock.storage.base import Store
from hyperdock.storage.retry import (
    Backoff,
    call_with_retry,
    note_failure,
    reap_unless_recovering,
    recently_failed,
)
from hyperdock.trial import Experiment, LossReport, Trial, TrialState, parse_loss

log = logging.getLogger("hyperdock.worker")

#: Seconds without a heartbeat after which a worker's containers count as orphaned.
ORPHAN_WORKER_AGE = 60.0
#: Seconds between two sweeps for orphaned containers.
ORPHAN_SWEEP_INTERVAL = 10.0
#: Reads of a progress.jsonl per flush at most (each of ``Limits.progress_read_bytes``).
_MAX_PROGRESS_READS = 64

#: The target's result file in the trial folder.
LOSS_FILE = "loss.json"

#: Called after every trial a worker ends: (trial id, new state).
TrialListener = Callable[[int, TrialState], None]
#: Saves the outcome of one attempt in the store; returns the trial's new state.
Report = Callable[[], "TrialState | None"]


#: Most trials one worker runs at once: each slot is a thread and a running target.
MAX_PARALLELISM = 1024
#: Runtimes that run on this host, where the worker hands out its own GPUs.
LOCAL_KINDS = ("process", "docker")
#: ``--launcher`` values: where attempts run.
LAUNCHERS = ("local", "slurm", "kubernetes")
#: Longest --heartbeat / --poll: a worker that waits longer looks dead to everyone.
MAX_INTERVAL = 3600.0


def check_worker_settings(
    parallelism: int, heartbeat_interval: float = 5.0, poll_interval: float = 1.0
) -> None:
    """Refuse settings a worker cannot run with (a zero interval busy-loops).

    Raises:
        ConfigError: ``parallelism`` outside 1 to :data:`MAX_PARALLELISM`, or an
            interval that is not a positive number of seconds up to
            :data:`MAX_INTERVAL` (NaN included).
    """
    if not 1 <= parallelism <= MAX_PARALLELISM:
        raise ConfigError(
            f"trials at once (--workers / --parallelism) must be from 1 to "
            f"{MAX_PARALLELISM}, got {parallelism}"
            + ("; start more workers for more" if parallelism > MAX_PARALLELISM else "")
        )
    for flag, value in (("--heartbeat", heartbeat_interval), ("--poll", poll_interval)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{flag} must be a positive number of seconds, got {value}")
        if value > MAX_INTERVAL:
            raise ConfigError(f"{flag} must be at most {MAX_INTERVAL:g} seconds, got {value:g}")


def _tail(folder: Path, name: str, lines: int = 5) -> str:
    """The last few lines of the target's log ``name`` in ``folder``."""
    try:
        text = trialfs.read_tail(folder, name, 4096).decode("utf-8", "replace")
    except trialfs.TrialFileError as exc:
        return f"({exc})"
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)


def check_results_dir(path: str | os.PathLike[str]) -> Path:
    """Check that the results folder can be used: it is a folder where files can be
    written, or it is missing and can be created (it is not created here).

    Returns:
        Its absolute path.

    Raises:
        ConfigError: it is not a folder, or it (or the folder it would be created in)
            cannot be written.
    """
    folder = Path(path).expanduser().resolve()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is" if existing == folder else f"would be inside {existing}, which is"
        raise ConfigError(
            f"the results folder {folder} {what} a file, not a folder: give --results a "
            "folder (it is created if missing)"
        )
    try:
        _probe_write(existing)
    except OSError as exc:
        raise ConfigError(
            f"the results folder {folder} cannot be written ({exc.strerror or exc}): make it "
            "writable (a read-only mount? a full disk?) or give --results another folder"
        ) from None
    return folder


def _probe_write(folder: Path) -> None:
    """Create and delete a small file in ``folder``; raises OSError if that fails."""
    probe = folder / f".hyperdock-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)


class _FolderFault(HostError):
    """The results folder cannot be written."""


def _folder_fault(folder: Path, exc: OSError) -> HostError:
    return _FolderFault(
        f"the results folder {folder} cannot be written ({exc.strerror or exc}); trials "
        "wait in the queue until it can (a read-only mount? a full disk?)",
        summary=f"results folder {folder} not writable: {exc.strerror or exc}",
    )


def read_loss(folder: Path, limits: trialfs.Limits = trialfs.DEFAULT_LIMITS) -> LossReport:
    """Parse the ``loss.json`` the target wrote into ``folder``.

    Raises:
        LossFileError: it is missing or holds no usable loss.
        TrialFileError: it is not a regular file in the folder (a symlink, a named
            pipe …), or larger than ``limits.loss_bytes``.
    """
    try:
        data = trialfs.read_bytes(folder, LOSS_FILE, limits.loss_bytes)
    except FileNotFoundError:
        raise LossFileError("the target wrote no loss.json") from None
    except trialfs.TrialFileError:
        raise
    except OSError as exc:
        raise LossFileError(f"loss.json could not be read: {exc.strerror}") from None
    return parse_loss(data.decode("utf-8", errors="replace"))


def _wrote_loss(folder: Path, limits: trialfs.Limits) -> bool:
    """Whether the target in ``folder`` has written a valid, successful ``loss.json``."""
    try:
        return read_loss(folder, limits).ok
    except TargetError:
        return False


class Worker:
    """Claims and runs trials until stopped.

    Attributes:
        upload_drain: Seconds a stopping worker spends on pending uploads to the
            artifact store; the rest stays in the journal for the next worker on the
            same results folder.

    Args:
        store: Where trials come from.
        results_dir: Host folder for trial folders (``HYPERDOCK_RESULT_DIR``).
        parallelism: Trials run at once.
        runtimes: Runtime per target kind; built lazily with defaults when missing.
        runtime_factory: Builds a runtime for a kind ("process", "docker") on first use.
        env: Extra environment for targets (``HYPERDOCK_ENV``).
        gpus: GPUs for Docker targets: "all" or "0,1". An experiment with
            ``--gpus-per-trial N`` gets N of them per trial (a trial waits for free
            ones); otherwise, with several ids and ``parallelism`` > 1, each slot gets
            its own share.
        experiment_id: Only run trials of this experiment.
        heartbeat_interval: Seconds between heartbeats.
        poll_interval: Longest wait between claims when the queue is empty.
        stop_grace: Seconds a target gets to exit after SIGTERM before it is killed.
        burst: Exit once the queue is empty and nothing runs (like ``rq worker --burst``).
        wake: Set by an in-process supervisor when it queued trials (no polling delay).
        on_trial_end: Called after each trial this worker ended.
        worker_id: Defaults to ``host-pid-random``.
        sweep_orphans: Kill Docker containers of dead workers (see :meth:`kill_orphans`).
        progress_interval: Seconds between two reads of the targets' ``progress.jsonl``
            (their intermediate losses go to the store for the pruner).
        limits: How much of the files a target writes is read at most (loss.json,
            progress lines).
        data: Trial-data settings (artifact store, checkpoint sync) for every
            experiment, in place of those stored with each.
        artifacts: This worker's artifact store URL, instead of the experiments' own
            (``--artifacts``; the same shared folder may be mounted elsewhere here).
        artifacts_endpoint: Its S3 endpoint (``--artifacts-endpoint``).
    """

    upload_drain = 30.0

    def __init__(
        self,
        store: Store,
        *,
        results_dir: str | os.PathLike[str] = "results",
        parallelism: int = 1,
        runtime_factory: Callable[[str], Runtime] | None = None,
        env: Mapping[str, str] | None = None,
        gpus: str | None = None,
        experiment_id: int | None = None,
        heartbeat_interval: float = 5.0,
        poll_interval: float = 1.0,
        stop_grace: float = 10.0,
        burst: bool = False,
        wake: threading.Condition | None = None,
        on_trial_end: TrialListener | None = None,
        worker_id: str | None = None,
        sweep_orphans: bool = True,
        progress_interval: float = 1.0,
        limits: trialfs.Limits = trialfs.DEFAULT_LIMITS,
        data: DataSettings | None = None,
        artifacts: str | None = None,
        artifacts_endpoint: str | None = None,
    ) -> None:
        check_worker_settings(parallelism, heartbeat_interval, poll_interval)
        # Checked now: a bad URL or a missing boto3 is refused before any trial runs.
        self._worker_data = DataSettings(artifacts=artifacts, endpoint=artifacts_endpoint)
        self.store = store
        # Refused now, not in the middle of the run: an unusable folder cannot run anything.
        self.results_dir = check_results_dir(results_dir)
        self.parallelism = parallelism
        self.host = socket.gethostname()
        self.id = worker_id or f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._runtime_factory = runtime_factory or default_runtime_factory()
        self._runtimes: dict[str, Runtime] = {}
        self._env = dict(env or {})
        self._gpu_slots = _split_gpus(gpus, parallelism)
        self._gpu_pool = GpuPool.parse(gpus)
        self._experiment_id = experiment_id
        self._heartbeat_interval = heartbeat_interval
        self._poll_interval = poll_interval
        self._stop_grace = stop_grace
        self._burst = burst
        self._wake = wake or threading.Condition()
        self._on_trial_end = on_trial_end
        self._sweep_orphans = sweep_orphans
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, Execution | None] = {}
        self._stop_reasons: dict[int, str] = {}
        # Attempt folders of running trials (a late prune checks for their loss.json).
        self._folders: dict[int, Path] = {}
        # Prunes put off because the target had written its loss (see _obey_stops).
        self._late_stops: dict[int, threading.Timer] = {}
        self._experiments: dict[int, Experiment] = {}
        # Trials whose target has ended, waiting for the reporter thread.
        self._reports: queue.Queue[tuple[Trial, Report] | None] = queue.Queue(parallelism)
        self._ended: set[int] = set()
        self._progress_interval = progress_interval
        self._progress: dict[int, ProgressReader] = {}
        self._progress_lock = threading.Lock()
        self._progress_thread: threading.Thread | None = None
        self._limits = limits
        self._logship = LogShipper(store, head=limits.log_head_bytes, tail=limits.log_tail_bytes)
        # What is wrong with this host now (see _host_fault), and how to tell it is over.
        self._fault: tuple[str, Callable[[], None]] | None = None
        self._fault_lock = threading.Lock()
        # Slots whose thread died of an exception, for run() to start again.
        self._crashed: queue.Queue[int] = queue.Queue()
        self._data = data
        # Trials' checkpoint folders: restored before, synced while and after they run.
        self._checkpoints = CheckpointSync(self._data_settings)
        #: Uploads ended attempts to the artifact store (see hyperdock.artifacts.uploader).
        self.uploader = Uploader(self.results_dir)
        if artifacts is not None:
            self.uploader.stores.get(artifacts, artifacts_endpoint)

    # -- lifecycle --------------------------------------------------------------------
    def run(self) -> None:
        """Run until :meth:`stop` (or, with ``burst``, until the queue is empty)."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        call_with_retry(
            functools.partial(
                self.store.register_worker,
                self.id,
                host=self.host,
                pid=os.getpid(),
                parallelism=self.parallelism,
                meta={"results_dir": str(self.results_dir)},
            ),
            what="registering the worker",
            stop=self._stopping,
        )
        log.info(
            "worker %s started: %d slot(s), store %s",
            self.id,
            self.parallelism,
            self.store.describe(),
        )
        self.kill_orphans()
        self.uploader.start()
        beat = threading.Thread(target=self._heartbeat_loop, name="hd-heartbeat", daemon=True)
        beat.start()
        self._ensure_progress_thread()
        reporter = threading.Thread(target=self._report_loop, name="hd-reporter")
        reporter.start()
        slots = [self._start_slot(i) for i in range(self.parallelism)]
        try:
            # A slot that crashed is started again (after a pause: a crash may repeat),
            # so the worker never sits with fewer slots, or none, while trials wait.
            while any(t.is_alive() for t in slots) or not self._crashed.empty():
                with contextlib.suppress(queue.Empty):
                    slot = self._crashed.get(timeout=0.5)
                    if not self._stopping.wait(1.0):
                        slots[slot] = self._start_slot(slot)
        finally:
            self._stopping.set()
            for t in slots:
                t.join()
            self._reports.put(None)
            reporter.join()
            beat.join(timeout=5)
            self._checkpoints.close()
            self._logship.close()
            self.uploader.close(self.upload_drain)
            with contextlib.suppress(HyperdockError):
                self.store.unregister_worker(self.id)
            for runtime in self._runtimes.values():
                runtime.close()
            log.info("worker %s stopped", self.id)

    def stop(self) -> None:
        """Stop claiming; stop running targets and requeue their trials. Thread-safe."""
        if self._stopping.is_set():
            return
        log.info("worker %s stopping: running trials go back to the queue", self.id)
        self._stopping.set()
        with self._lock:
            running = [(t, e) for t, e in self._running.items() if t not in self._ended]
            for trial_id, _ in running:
                self._stop_reasons.setdefault(trial_id, "shutdown")
        for _, execution in running:
            if execution is not None:
                execution.stop(self._stop_grace)
        with self._wake:
            self._wake.notify_all()

    @property
    def running_trials(self) -> list[int]:
        """Ids of the trials this worker runs now."""
        with self._lock:
            return list(self._running)

    # -- slots ------------------------------------------------------------------------
    def _start_slot(self, slot: int) -> threading.Thread:
        thread = threading.Thread(target=self._slot_main, args=(slot,), name=f"hd-slot-{slot}")
        thread.start()
        return thread

    def _slot_main(self, slot: int) -> None:
        """A slot's thread: :meth:`_slot_loop`; a crash is logged and reported to
        :meth:`run`, which starts the slot again."""
        try:
            self._slot_loop(slot)
        except Exception:
            log.exception("worker slot %d crashed; starting it again", slot)
            self._crashed.put(slot)

    def _slot_loop(self, slot: int) -> None:
        backoff = Backoff()
        host_backoff = Backoff()
        while not self._stopping.is_set():
            if not self._host_ok():
                self._stopping.wait(host_backoff.next())
                continue
            host_backoff.reset()
            try:
                trial = self.store.claim(self.id, experiment_id=self._experiment_id)
            except HyperdockError as exc:
                if isinstance(exc, StoreConnectionError):
                    note_failure()
                delay = backoff.next()
                log.warning("claim failed (%s); retrying in %.1f s", exc, delay)
                self._stopping.wait(delay)
                continue
            backoff.reset()
            if trial is None:
                if self._burst and self._all_idle():
                    return
                with self._wake:
                    self._wake.wait(self._poll_interval)
                continue
            self._run_trial(trial, slot)

    def _all_idle(self) -> bool:
        with self._lock:
            return not self._running

    def _experiment(self, experiment_id: int) -> Experiment:
        exp = self._experiments.get(experiment_id)
        if exp is None:
            exp = self.store.get_experiment(experiment_id)
            self._experiments[experiment_id] = exp
        return exp

    def _trial_dir(self, exp: Experiment, trial: Trial) -> Path:
        """The folder of ``trial``'s attempts (and of its checkpoint folder)."""
        return self.results_dir / f"{slugify(exp.name)}-{trial.id}"

    def _data_settings(self, exp: Experiment) -> DataSettings:
        """The trial-data settings of ``exp`` as this worker sees them."""
        settings = self._data if self._data is not None else DataSettings.from_meta(exp.meta)
        return settings.with_worker(self._worker_data.artifacts, self._worker_data.endpoint)

    def _runtime(self, kind: str) -> Runtime:
        with self._lock:
            runtime = self._runtimes.get(kind)
            if runtime is None:
                runtime = self._runtimes[kind] = self._runtime_factory(kind)
            return runtime

    def _run_trial(self, trial: Trial, slot: int) -> None:
        """Run the target in this slot; hand the reporting to the reporter thread, so
        the slot can claim its next trial while the result is saved."""
        with self._lock:
            self._running[trial.id] = None
        report: Report
        try:
            report = self._attempt(trial, slot)
        except HostError as exc:
            report = self._host_report(trial, exc, None)
        except Exception as exc:  # never lose a trial to a bug or a surprise
            log.exception("trial %d: unexpected error", trial.id)
            report = functools.partial(
                self._release, trial, f"Hyperdock error while running the trial: {exc!r}"
            )
        with self._lock:
            self._ended.add(trial.id)
        self._reports.put((trial, report))

    def _report_loop(self) -> None:
        while (item := self._reports.get()) is not None:
            trial, report = item
            state: TrialState | None = None
            try:
                # Never give up on a result: wait out store outages, then save it.
                state = call_with_retry(report, what=f"saving trial {trial.id}")
            except Exception as exc:
                log.exception("trial %d: could not save the result", trial.id)
                with contextlib.suppress(Exception):
                    state = self._release(trial, f"Hyperdock error while saving: {exc!r}")
            finally:
                with self._lock:
                    self._running.pop(trial.id, None)
                    stopped = self._stop_reasons.pop(trial.id, None) == "shutdown"
                    folder = self._folders.pop(trial.id, None)
                    self._ended.discard(trial.id)
                    late = self._late_stops.pop(trial.id, None)
                if late is not None:
                    late.cancel()
                with self._progress_lock:
                    self._progress.pop(trial.id, None)
            if state is not None and folder is not None and not stopped:
                self._upload(trial, folder)  # in the background, after the result is saved
            if state is TrialState.QUEUED:  # a retry: an idle slot may take it now
                with self._wake:
                    self._wake.notify_all()
            if state is not None and self._on_trial_end is not None:
                self._on_trial_end(trial.id, state)

    def _upload(self, trial: Trial, folder: Path) -> None:
        """Queue the attempt's files for the artifact store, if there is one."""
        try:
            exp = self._experiment(trial.experiment_id)
            settings = self._data_settings(exp)
            self.uploader.submit(settings, exp.name, trial.id, trial.attempt, folder)
        except Exception:  # the trial's result is saved: an upload never fails it
            log.exception("trial %d: could not queue the upload of its files", trial.id)

    # -- faults of this host ----------------------------------------------------------
    def _host_report(self, trial: Trial, fault: HostError, result: dict[str, Any] | None) -> Report:
        """Pause claiming at once (the other slots too), and report the fault later."""
        with self._fault_lock:
            if self._fault is None:
                self._fault = ("", self._probe_for(fault))  # _set_fault fills it in
        return functools.partial(self._host_fault, trial, fault, result)

    def _host_fault(
        self, trial: Trial, fault: HostError, result: dict[str, Any] | None
    ) -> TrialState | None:
        """Put ``trial`` back without using a retry, and pause claiming (reporter thread)."""
        self._set_fault(fault)
        state = self.store.release(
            trial.id, self.id, error=str(fault), count_attempt=False, result=result
        )
        if state is TrialState.QUEUED:
            log.warning(
                "trial %d back in the queue, no retry used: this host cannot run it now",
                trial.id,
            )
        return state

    def _set_fault(self, fault: HostError) -> None:
        probe = self._probe_for(fault)
        with self._fault_lock:
            known = self._fault is not None and self._fault[0] == fault.summary
            self._fault = (fault.summary, probe)
        if known:
            return
        log.warning("worker %s paused: %s", self.id, fault)
        with contextlib.suppress(HyperdockError):
            self.store.set_worker_status(self.id, f"paused: {fault.summary}")

    def _probe_for(self, fault: HostError) -> Callable[[], None]:
        """A check that raises while the fault lasts."""
        if isinstance(fault, _FolderFault):

            def folder() -> None:
                try:
                    _probe_write(self.results_dir)
                except OSError as exc:
                    raise _folder_fault(self.results_dir, exc) from None

            return folder
        runtimes = list(self._runtimes.values())

        def engines() -> None:
            for runtime in runtimes:
                runtime.check()

        return engines

    def _host_ok(self) -> bool:
        """False while this host is at fault; checks whether it still is."""
        with self._fault_lock:
            fault = self._fault
        if fault is None:
            return True
        summary, probe = fault
        try:
            probe()
        except HostError as exc:
            if exc.summary != summary:
                self._set_fault(exc)
            return False
        except Exception as exc:  # a check that breaks must not stop the worker for good
            log.warning("checking this host failed: %r", exc)
            return False
        with self._fault_lock:
            if self._fault is not fault:
                return self._fault is None
            self._fault = None
        log.warning("worker %s resumed: its host works again (was: %s)", self.id, summary)
        with contextlib.suppress(HyperdockError):
            self.store.set_worker_status(self.id, None)
        return True

    def _release(
        self, trial: Trial, error: str, *, retry: bool = True, result: dict[str, Any] | None = None
    ) -> TrialState | None:
        with self._lock:
            reason = self._stop_reasons.get(trial.id)
        if reason == "shutdown":
            return self.store.release(
                trial.id, self.id, error="worker stopped", count_attempt=False, result=result
            )
        state = self.store.release(trial.id, self.id, error=error, retry=retry, result=result)
        # One line each: the full error (with the log's last lines) is stored with the
        # trial, and `run` prints it once when the experiment ends.
        headline = (error or "").splitlines()[0] if error else ""
        if state is TrialState.QUEUED:
            log.warning(
                "trial %d attempt %d failed, will retry: %s", trial.id, trial.attempt + 1, headline
            )
        elif state is TrialState.FAILED:
            log.warning("trial %d failed: %s (hyperdock logs %d)", trial.id, headline, trial.id)
        return state

    def _attempt(self, trial: Trial, slot: int) -> Report:
        """Run the trial's target (or adopt the run a lost worker left on a cluster
        engine); return how to report the result."""
        exp = self._experiment(trial.experiment_id)
        runtime = self._runtime(exp.target.kind)
        adopted = (
            runtime.adopt(trial.id, trial.attempt, self._store_workers()) if trial.attempt else None
        )
        if (
            adopted is not None
            and adopted.job == trial.result.get("launcher")
            and "exit_code" in trial.result
        ):
            # The ended run of the previous attempt, which its worker reported: this is
            # a retry, not a takeover (Slurm lists ended jobs for a while). Waiting for
            # it returns at once and lets the runtime forget it.
            adopted.wait()
            adopted = None
        if adopted is not None and adopted.folder is not None:
            return self._follow(trial, exp, adopted, adopted.folder)
        try:
            checkpoint = self._checkpoints.prepare(exp, trial, self._trial_dir(exp, trial))
        except OSError as exc:  # read-only, full, gone: the host's fault
            raise _folder_fault(self.results_dir, exc) from None
        try:
            return self._start_on_gpus(trial, exp, runtime, slot, checkpoint)
        finally:
            # Before the result is saved: the experiment may end with it, and its
            # checkpoints be pruned (--keep-checkpoints).
            self._checkpoints.finish(trial.id)

    def _store_workers(self) -> set[str]:
        """Ids of the workers this store knows (a killed one stays registered): only
        their cluster runs may be adopted."""
        workers = call_with_retry(
            self.store.list_workers, what="listing the workers", stop=self._stopping
        )
        return {w.id for w in workers}

    def _start_on_gpus(
        self, trial: Trial, exp: Experiment, runtime: Runtime, slot: int, checkpoint: Path
    ) -> Report:
        """Take the GPUs the trial needs (waiting for them), then start it."""
        resources = Resources.from_meta(exp.meta)
        gpus: list[str] | None = None
        if self._gpu_pool is not None and resources.gpus and runtime.kind in LOCAL_KINDS:
            gpus = self._gpu_pool.acquire(resources, self._stopping)
            if gpus is None:  # the worker is stopping
                return functools.partial(self._release, trial, "worker stopped")
        try:
            return self._start(trial, exp, runtime, slot, resources, gpus, checkpoint)
        finally:
            if gpus:
                self._gpu_pool.release(gpus)  # type: ignore[union-attr]

    def _start(
        self,
        trial: Trial,
        exp: Experiment,
        runtime: Runtime,
        slot: int,
        resources: Resources,
        gpus: list[str] | None,
        checkpoint: Path,
    ) -> Report:
        """Prepare a new attempt folder, start the target and follow it."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%S.%fZ")
        folder = self._trial_dir(exp, trial) / stamp
        try:
            folder.mkdir()
            (folder / "out").mkdir()
            trialfs.write_new(folder, "params.json", dumps(trial.params).encode())
        except OSError as exc:  # read-only, full, gone: the host's fault
            raise _folder_fault(self.results_dir, exc) from None
        with self._lock:
            self._folders[trial.id] = folder
        with self._progress_lock:
            self._progress[trial.id] = ProgressReader(folder / PROGRESS_FILE, self._limits)
        env = dict(self._env)
        for item in exp.target.env:
            key, _, value = item.partition("=")
            env[key] = value
        ctx = RunContext(
            trial_id=trial.id,
            experiment=exp.name,
            folder=folder,
            image=exp.target.image,
            command=list(exp.target.command) if exp.target.command else None,
            timeout=exp.target.timeout,
            env=env,
            labels={"hyperdock.worker": self.id},
            gpus=",".join(gpus) if gpus else (self._gpu_slots[slot] if self._gpu_slots else None),
            attempt=trial.attempt,
            resources=resources,
            checkpoint=checkpoint,
        )
        base: dict[str, Any] = {"folder": str(folder), "worker": self.id}
        try:
            execution = runtime.start(ctx)
        except HostError as exc:
            return self._host_report(trial, exc, base)
        except OSError as exc:
            # The folder turned read-only (or the disk full) as the target started: the
            # log could not be created. The host's fault, not the trial's.
            try:
                _probe_write(self.results_dir)
            except OSError as err:
                return self._host_report(trial, _folder_fault(self.results_dir, err), base)
            raise exc from None
        except TargetError as exc:
            return functools.partial(
                self._release, trial, str(exc), retry=exc.retryable, result=base
            )
        return self._follow(trial, exp, execution, folder)

    def _follow(self, trial: Trial, exp: Experiment, execution: Execution, folder: Path) -> Report:
        """Wait for a started (or adopted) run; return how to report its result."""
        base: dict[str, Any] = {"folder": str(folder), "worker": self.id}
        if execution.job is not None:
            base["launcher"] = dict(execution.job)
        with self._lock:
            self._running[trial.id] = execution
            self._folders[trial.id] = folder
            pending_stop = trial.id in self._stop_reasons
        with self._progress_lock:
            self._progress.setdefault(
                trial.id, ProgressReader(folder / PROGRESS_FILE, self._limits)
            )
        if pending_stop:
            execution.stop(self._stop_grace)
        self._logship.start(trial.id, trial.attempt, folder)
        try:
            outcome = execution.wait()
        except HostError as exc:  # e.g. the engine went away while the target ran
            return self._host_report(trial, exc, base)
        finally:
            self._logship.end(trial.id, trial.attempt)  # the whole log before the result
        return functools.partial(self._report, trial, exp, folder, outcome, base)

    def _report(
        self,
        trial: Trial,
        exp: Experiment,
        folder: Path,
        outcome: RunOutcome,
        result: dict[str, Any],
    ) -> TrialState | None:
        result = {**result, "exit_code": outcome.exit_code, "duration": outcome.duration}
        reader = self.flush_progress(trial.id, final=True)
        if outcome.stopped:
            with self._lock:
                reason = self._stop_reasons.get(trial.id, "stop")
            if reason == "prune":
                return self._pruned(trial, reader, result)
            return self._release(trial, "Cancelled" if reason != "shutdown" else "", result=result)
        if outcome.timed_out:
            return self._release(
                trial,
                f"timed out after {exp.target.timeout:g} s (--timeout); the target was "
                f"killed. Last output:\n{_tail(folder, outcome.log_file.name)}".rstrip(),
                result=result,
            )
        try:
            if reader is not None and reader.refused is not None:
                raise reader.refused  # a link or a pipe planted as progress.jsonl
            report = read_loss(folder, self._limits)
        except (LossFileError, trialfs.TrialFileError) as exc:
            try:  # could the target have written its loss at all?
                _probe_write(self.results_dir)
            except OSError as err:
                return self._host_fault(trial, _folder_fault(self.results_dir, err), result)
            reason = str(exc)
            if outcome.exit_code:
                reason = f"the target exited with code {outcome.exit_code}; {reason}"
            tail = _tail(folder, outcome.log_file.name)
            if tail:
                reason += f"\nLast output ({outcome.log_file.name}):\n{tail}"
            failure = {
                "attempt": trial.attempt,
                "exit_code": outcome.exit_code,
                "last_line": tail.rsplit("\n", 1)[-1],
            }
            result["failure"] = failure
            same = _same_failure_as(trial, failure)
            if same is not None:
                # A deterministic error (a bug in the script, a missing file): another
                # attempt would only fail the same way.
                head, _, rest = reason.partition("\n")
                message = f"{head} (same error as attempt {same}; not retried)"
                return self._release(
                    trial, f"{message}\n{rest}" if rest else message, retry=False, result=result
                )
            return self._release(trial, reason, result=result)
        if report.extra:
            # The target's own keys, apart: they never replace Hyperdock's fields.
            result["data"] = report.extra
        loss = report.loss
        if report.ok:
            objectives = Objectives.from_meta(exp.meta)
            try:
                values = report.ordered(objectives.names)
            except LossFileError as exc:
                return self._release(trial, str(exc), result=result)
            loss = values[0]
            if objectives.multi or report.values is not None:
                result["values"] = values
        if not report.ok:
            ok = self.store.finish(
                trial.id,
                self.id,
                state=TrialState.FAILED,
                loss=report.loss,
                result=result,
                error='the target reported failure ("state": "fail" in loss.json)',
            )
            return TrialState.FAILED if ok else None
        if outcome.exit_code:
            log.warning(
                "trial %d: the target exited with code %s but wrote a valid loss; the loss is kept",
                trial.id,
                outcome.exit_code,
            )
        if not self.store.finish(
            trial.id, self.id, state=TrialState.COMPLETED, loss=loss, result=result
        ):
            log.warning("trial %d: lease lost before the result was saved; discarded", trial.id)
            return None
        return TrialState.COMPLETED

    def _pruned(
        self, trial: Trial, reader: ProgressReader | None, result: dict[str, Any]
    ) -> TrialState | None:
        last = reader.last if reader is not None else None
        if last is not None:
            result = {**result, "step": last[0]}
        message = "pruned: its intermediate losses were poor" + (
            f" (step {last[0]}, loss {last[1]:.6g})" if last else ""
        )
        ok = self.store.finish(
            trial.id,
            self.id,
            state=TrialState.PRUNED,
            loss=last[1] if last else None,
            result=result,
            error=message,
        )
        if ok:
            log.info("trial %d %s", trial.id, message)
        return TrialState.PRUNED if ok else None

    # -- progress -----------------------------------------------------------------------
    def _ensure_progress_thread(self) -> None:
        """Start the progress reader thread, or a new one if it died: pruning must
        never silently stop on this worker."""
        thread = self._progress_thread
        if thread is not None and thread.is_alive():
            return
        if thread is not None:
            log.error("the progress reader thread had stopped; restarted it")
        self._progress_thread = threading.Thread(
            target=self._progress_loop, name="hd-progress", daemon=True
        )
        self._progress_thread.start()

    def _progress_loop(self) -> None:
        while not self._stopping.wait(self._progress_interval):
            with self._progress_lock:
                ids = list(self._progress)
            reported = []
            for trial_id in ids:
                try:
                    reader = self.flush_progress(trial_id)
                except HyperdockError as exc:
                    if isinstance(exc, StoreConnectionError):
                        note_failure()
                    log.warning("could not save progress of trial %d: %s", trial_id, exc)
                    continue
                except Exception:  # one trial's trouble never ends the others' progress
                    log.exception("could not read or save progress of trial %d", trial_id)
                    continue
                if reader is not None and reader.last is not None:
                    reported.append(trial_id)
            if reported:
                # Trials that report progress may get pruned: learn of it now rather
                # than at the next heartbeat.
                with contextlib.suppress(HyperdockError):
                    self._obey_stops(self.store.heartbeat(self.id, reported))

    def flush_progress(self, trial_id: int, *, final: bool = False) -> ProgressReader | None:
        """Send the new lines of a running trial's ``progress.jsonl`` to the store;
        ``final`` also takes an unterminated last line (the target has ended)."""
        with self._progress_lock:
            reader = self._progress.get(trial_id)
            if reader is None:
                return None
            reported = len(reader.bad)
            refused = reader.refused
            for _ in range(_MAX_PROGRESS_READS):
                points, offset = reader.peek(final=final)
                if points:
                    self.store.add_progress(trial_id, self.id, points)
                reader.commit(points, offset)
                if not reader.more:
                    break
            for line in reader.bad[reported:]:
                log.warning(
                    'trial %d: progress.jsonl line skipped, not {"step": N, "loss": x}: %s',
                    trial_id,
                    line,
                )
            if refused is None and reader.refused is not None:
                log.warning("trial %d: %s; its progress is not read", trial_id, reader.refused)
            return reader

    # -- heartbeats -------------------------------------------------------------------
    def _beat_interval(self) -> float:
        """``--heartbeat``, shortened to a third of the shortest lease among the
        experiments this worker runs trials of: a heartbeat slower than a lease would
        have live trials reaped and run twice."""
        leases = [e.lease_timeout for e in list(self._experiments.values())]
        return min([self._heartbeat_interval, *(lease / 3 for lease in leases)])

    def _heartbeat_loop(self) -> None:
        last_sweep = last_beat = time.monotonic()
        while True:
            # Short waits: a trial of an experiment with a shorter lease may start now.
            wait = last_beat + self._beat_interval() - time.monotonic()
            if self._stopping.wait(min(max(wait, 0.0), 1.0)):
                return
            if time.monotonic() - last_beat < self._beat_interval():
                continue
            last_beat = time.monotonic()
            try:
                self._ensure_progress_thread()
                if last_beat - last_sweep > ORPHAN_SWEEP_INTERVAL:
                    last_sweep = last_beat
                    self.kill_orphans()
                    self.stop_unwanted_jobs()
                self.beat()
            except HyperdockError as exc:
                if isinstance(exc, StoreConnectionError):
                    note_failure()
                log.warning("heartbeat failed (targets keep running): %s", exc)
            except Exception:  # a bug must not end the leases of every running trial
                log.exception("heartbeat failed; trying again at the next one")

    def beat(self) -> None:
        """One heartbeat: renew leases, obey stop requests, reap lost trials."""
        ids = self.running_trials
        self._obey_stops(self.store.heartbeat(self.id, ids))
        lost = reap_unless_recovering(self.store)
        for trial in lost:
            log.warning("trial %d was lost by its worker: %s", trial.id, trial.state)
        if lost:
            self.kill_orphans()  # their containers may still be running somewhere

    def _obey_stops(self, stop: set[int]) -> None:
        """Stop the targets of trials the store wants stopped (cancel, prune, lost)."""
        for trial_id in stop:
            with self._lock:
                if trial_id in self._stop_reasons:  # being stopped already
                    continue
            reason = "stop"
            with contextlib.suppress(HyperdockError):
                if self.store.get_trial(trial_id).prune_requested:
                    reason = "prune"
            with self._lock:
                self._stop_reasons.setdefault(trial_id, reason)
                execution = self._running.get(trial_id)
                folder = self._folders.get(trial_id)
            if execution is None:
                continue  # not started yet: _attempt stops it once it has
            if reason == "prune" and folder is not None and _wrote_loss(folder, self._limits):
                # The target has finished its work and is on its way out: completion
                # wins over a late prune. It is only stopped (and pruned) if it does
                # not exit by itself within the grace period.
                log.info(
                    "trial %d: prune requested after the target wrote its loss; "
                    "it has %g s to exit before it is stopped",
                    trial_id,
                    self._stop_grace,
                )
                timer = threading.Timer(self._stop_grace, execution.stop, (self._stop_grace,))
                timer.daemon = True
                with self._lock:
                    if trial_id in self._ended:
                        continue
                    self._late_stops[trial_id] = timer
                timer.start()
                continue
            log.info("trial %d: %s requested; stopping its target", trial_id, reason)
            execution.stop(self._stop_grace)

    def stop_unwanted_jobs(self) -> list[str]:
        """Stop cluster jobs (of any worker of this store) whose trial ended, was
        cancelled or deleted while their worker was gone: nobody would collect them.
        Jobs of trials still queued or running are left to be adopted."""

        try:
            known = {w.id for w in self.store.list_workers()}  # a killed worker stays
        except HyperdockError:
            return []

        def wanted(trial_id: int, worker_id: str) -> bool | None:
            if worker_id not in known:
                return None  # another store's job on the same cluster
            try:
                return self.store.get_trial(trial_id).state in (
                    TrialState.QUEUED,
                    TrialState.RUNNING,
                )
            except ExperimentNotFound:  # the store's "no such trial" too
                return False

        if getattr(self._runtime_factory, "launcher", "local") != "local":
            with contextlib.suppress(HyperdockError):
                self._runtime("process")  # a cluster launcher's one runtime, built now
        with self._lock:
            runtimes = list(self._runtimes.values())
        stopped: list[str] = []
        for runtime in runtimes:
            try:
                stopped += runtime.stop_unwanted(wanted)
            except HyperdockError as exc:
                log.debug("no sweep of %s: %s", runtime.kind, exc)
        for what in stopped:
            log.warning("stopped %s: its trial is over and its worker is gone", what)
        return stopped

    def kill_orphans(self) -> list[str]:
        """Kill target containers on this Docker engine that no live worker holds.

        A worker killed with ``kill -9`` leaves its containers running; their trials
        go back to the queue when the lease times out. A container counts as orphaned
        when its trial is no longer running under the worker that started it, or that
        worker stopped heartbeating. Whichever worker sweeps next (at start, after
        reaping, and every few seconds) kills it. Only containers of workers this
        store knows (live or dead: a killed worker stays registered) are considered:
        those of another store's workers on the same engine are none of its business.
        Does nothing when Docker is not reachable.
        """
        if not self._sweep_orphans or recently_failed():
            return []
        try:
            runtime = self._runtime("docker")
        except Exception:  # no Docker runtime here (not installed, not reachable)
            return []
        kill = getattr(runtime, "kill_orphans", None)
        if kill is None:
            return []
        try:
            leases = {
                (trial_id, w.id)
                for w in self.store.list_workers(max_age=ORPHAN_WORKER_AGE)
                for trial_id in w.running
            }
            known = {w.id for w in self.store.list_workers()}
            removed: list[str] = kill(leases=leases, workers=known)
        except (HyperdockError, OSError) as exc:
            # the runtime exists (Docker was there), so this is worth an operator's eye
            log.warning("could not sweep for orphaned containers (trying again later): %s", exc)
            return []
        for name in removed:
            log.warning("killed orphaned target container %s (its worker is gone)", name)
        return removed


def _same_failure_as(trial: Trial, failure: dict[str, Any]) -> int | None:
    """The 1-based number of the previous attempt when it failed with the same exit code
    and the same last log line as ``failure`` (this attempt's), else None.

    The previous attempt's failure is in the trial's ``result`` (a retried trial keeps the
    result of its last release); its history entry must say it was retried, so a result
    left from before a lost (reaped) attempt is not taken for it.
    """
    previous = trial.result.get("failure")
    if not isinstance(previous, dict) or not trial.history:
        return None
    last = trial.history[-1]
    if previous.get("attempt") != trial.attempt - 1 or last.get("state") != "requeued":
        return None
    if last.get("attempt") != trial.attempt - 1:
        return None
    keys = ("exit_code", "last_line")
    if any(previous.get(k) != failure[k] for k in keys):
        return None
    return trial.attempt  # attempts are 1-based for people: the previous is number `attempt`


def _split_gpus(gpus: str | None, parallelism: int) -> list[str]:
    """Give each slot its share of the GPUs ("0,1,2,3" over 2 slots → "0,1", "2,3")."""
    if not gpus:
        return []
    if gpus == "all" or parallelism == 1:
        return [gpus] * parallelism
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if len(ids) < parallelism:
        return [gpus] * parallelism  # not enough to split: every slot sees them all
    per = len(ids) // parallelism
    return [",".join(ids[i * per : (i + 1) * per]) for i in range(parallelism)]


def default_runtime_factory(
    *,
    data_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    docker_options: Mapping[str, Any] | None = None,
    launcher: str = "local",
    launcher_options: Mapping[str, Any] | None = None,
) -> Callable[[str], Runtime]:
    """A factory building, on first use, the runtime for a target kind (``process``,
    ``docker``) on ``launcher``: ``local`` (a process or a Docker container here),
    ``slurm`` (a job for either kind) or ``kubernetes`` (a Job; images only).

    Raises:
        ConfigError: an unknown launcher.
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")
    options = dict(launcher_options or {})

    def build(kind: str) -> Runtime:
        if launcher == "slurm":
            from hyperdock.runtimes.slurm import SlurmRuntime

            docker_runtime = (docker_options or {}).get("docker_runtime")
            return SlurmRuntime(
                data_dir=data_dir, env=env, docker_runtime=docker_runtime, **options
            )
        if launcher == "kubernetes":
            from hyperdock.runtimes.kubernetes import KubernetesRuntime

            return KubernetesRuntime(env=env, data_dir=data_dir, **options)
        if kind == "docker":
            from hyperdock.runtimes.docker import DockerRuntime

            return DockerRuntime(data_dir=data_dir, env=env, **dict(docker_options or {}))
        from hyperdock.runtimes.process import ProcessRuntime

        return ProcessRuntime(env=env, data_dir=data_dir)

    build.launcher = launcher  # type: ignore[attr-defined]
    return build
