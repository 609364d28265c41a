"""Run the target as a local command (no Docker)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from hyperdock import trialfs
from hyperdock.errors import TargetError
from hyperdock.runtimes.base import Execution, RunContext, RunOutcome, Runtime

#: Name of the target's log in the trial folder.
LOG_NAME = "log.txt"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _ProcessExecution(Execution):
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        log: IO[bytes],
        log_file: Path,
        timeout: float | None,
        started: float,
    ) -> None:
        self._proc = proc
        self._log = log
        self._log_file = log_file
        self._timeout = timeout
        self._started = started
        self._stopped = False
        self._lock = threading.Lock()
        self._killer: threading.Timer | None = None

    def wait(self) -> RunOutcome:
        timed_out = False
        try:
            try:
                code = self._proc.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                timed_out = not self._stopped
                self._terminate(grace=2.0)
                code = self._proc.wait()
        finally:
            # Nothing of the target outlives the trial: children left behind die too.
            _signal_group(self._proc.pid, signal.SIGKILL)
            with self._lock:
                if self._killer is not None:
                    self._killer.cancel()
            self._log.close()
        return RunOutcome(
            exit_code=code,
            log_file=self._log_file,
            timed_out=timed_out,
            stopped=self._stopped,
            duration=time.monotonic() - self._started,
        )

    def _terminate(self, grace: float) -> None:
        with self._lock:
            if self._proc.poll() is not None:
                return
            _signal_group(self._proc.pid, signal.SIGTERM)
            if self._killer is None:
                self._killer = threading.Timer(
                    grace, _signal_group, (self._proc.pid, signal.SIGKILL)
                )
                self._killer.daemon = True
                self._killer.start()

    def stop(self, grace: float = 10.0) -> None:
        with self._lock:
            if self._proc.poll() is not None:
                return  # it ended by itself: a stop that comes late changes nothing
            self._stopped = True
        self._terminate(grace)


class ProcessRuntime(Runtime):
    """Runs ``RunContext.command`` as a local process, without a shell.

    The target gets the trial folder in ``HYPERDOCK_DIR`` and the paths of its files in
    ``HYPERDOCK_PARAMS``, ``HYPERDOCK_LOSS`` and ``HYPERDOCK_PROGRESS`` (also
    ``HYPERDOCK_TRIAL_ID`` and, when set, ``HYPERDOCK_DATA_DIR``). It runs in its own
    process group, so a timeout or stop ends everything it started. Its stdout and
    stderr go to ``log.txt`` in the folder.

    Args:
        env: Extra environment for every target (on top of this process's own).
        data_dir: Passed to targets as ``HYPERDOCK_DATA_DIR``.
        cwd: Working directory of targets (default: this process's).
    """

    kind = "process"

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self._env = dict(env or {})
        self._data_dir = str(data_dir) if data_dir else None
        self._cwd = cwd

    def start(self, ctx: RunContext) -> Execution:
        if not ctx.command:
            raise TargetError(
                "the experiment has no command to run; give one with --command", retryable=False
            )
        folder = ctx.folder
        env = {**os.environ, **self._env, **ctx.env}
        env.update(
            HYPERDOCK_DIR=str(folder),
            HYPERDOCK_PARAMS=str(folder / "params.json"),
            HYPERDOCK_LOSS=str(folder / "loss.json"),
            HYPERDOCK_PROGRESS=str(folder / "progress.jsonl"),
            HYPERDOCK_TRIAL_ID=str(ctx.trial_id),
        )
        if self._data_dir:
            env["HYPERDOCK_DATA_DIR"] = self._data_dir
        log_file = folder / LOG_NAME
        # Created before the target starts and written through this descriptor only:
        # a symlink the target plants as log.txt is never written through.
        log = open(trialfs.create(folder, LOG_NAME, replace=True), "wb")  # noqa: SIM115
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(ctx.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            log.close()
            raise TargetError(
                f"command {ctx.command[0]!r} was not found: check the spelling and PATH, "
                "or give a path to the program",
                retryable=False,
            ) from None
        except PermissionError:
            log.close()
            raise TargetError(
                f"command {ctx.command[0]!r} is not executable: chmod +x it, or start it "
                "through its interpreter (e.g. python script.py)",
                retryable=False,
            ) from None
        except OSError as exc:
            log.close()
            raise TargetError(f"could not start {ctx.command[0]!r}: {exc}") from None
        return _ProcessExecution(proc, log, log_file, ctx.timeout, started)

    def describe(self) -> str:
        return "local process"
