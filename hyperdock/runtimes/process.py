"""Run the target as a local command (no Docker), and end everything it started.

A process group is not enough: a target that double-forks into a new session (``fork``,
``setsid``, ``fork``) leaves it, and survives ``killpg``. So each attempt is also
contained in one of two ways, chosen once per runtime:

* **cgroup** (cgroup v2, where the worker may create a child of its own cgroup): the
  target is moved into a fresh cgroup before it runs its first instruction, and at the
  end every process in it is killed (``cgroup.kill``, or one by one from
  ``cgroup.procs`` on kernels before 5.14). Nothing a process does without privileges
  gets it out of its cgroup. The worker is a subreaper here too, so that orphans the
  kill leaves are reaped by it.
* **subreaper** (elsewhere): the worker becomes a child subreaper
  (``prctl(PR_SET_CHILD_SUBREAPER)``), so orphans of a target are re-parented to the
  worker instead of init, and every attempt's environment carries a token
  (``HYPERDOCK_ATTEMPT``). At the end the worker kills every process that descends from
  the attempt's process, and every orphan re-parented to the worker that carries the
  token (with what descends from it), and reaps them. It walks ``/proc/PID/task/*/
  children`` from those processes only, not the whole process table.

Out of reach: in subreaper mode, a process that both left the attempt's process tree
(its parent died) and dropped the token (``exec`` with a clean environment) is not
found; in either mode, processes a target has another service start (``at``, ``systemd-run``,
``ssh localhost``, a Docker container) are not its descendants and are not stopped, and
a target running as root can move itself out of the cgroup.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Literal

from hyperdock import trialfs
from hyperdock.errors import TargetError
from hyperdock.runtimes.base import Execution, RunContext, RunOutcome, Runtime, trial_env

#: Name of the target's log in the trial folder.
LOG_NAME = "log.txt"

#: How a runtime keeps a target's processes together (see the module docstring).
ContainMode = Literal["auto", "cgroup", "subreaper", "group"]

log = logging.getLogger(__name__)

#: Environment variable that marks every process of one attempt (subreaper mode).
ATTEMPT_ENV = "HYPERDOCK_ATTEMPT"
_PR_SET_CHILD_SUBREAPER = 36
#: Seconds to wait for the killed processes of an attempt to be gone.
_KILL_WAIT = 5.0


def _cgroup_root() -> Path | None:
    """This process's cgroup v2 folder, if cgroup v2 is mounted and it has one."""
    mount = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    mount = left.split()[4]
                    break
        own = next(
            (
                line.strip()[3:]
                for line in Path("/proc/self/cgroup").read_text().splitlines()
                if line.startswith("0::")
            ),
            None,
        )
    except OSError:
        return None
    if mount is None or own is None:
        return None
    return Path(mount) / own.lstrip("/")


def _set_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _processes() -> dict[int, int]:
    """Every live (not zombie) process on the host: pid → parent pid."""
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields and fields[0] not in (b"Z", b"X"):
            out[int(entry.name)] = int(fields[1])
    return out


def _has_token(pid: int, token: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return token in fh.read().split(b"\0")
    except OSError:
        return False


class Containment:
    """How one attempt's processes are kept together (see the module docstring).

    Args:
        mode: ``"cgroup"``, ``"subreaper"`` or ``"group"`` (process group only).
    """

    def __init__(self, mode: str, cgroup: Path | None = None) -> None:
        self.mode = mode
        self.token = secrets.token_hex(8)
        self._cgroup = cgroup
        self._procs_fd: int | None = None
        self._pid: int | None = None
        if cgroup is not None:
            cgroup.mkdir()
            self._procs_fd = os.open(cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def env(self) -> dict[str, str]:
        """Variables to add to the target's environment."""
        return {ATTEMPT_ENV: self.token}

    def preexec(self) -> Callable[[], None] | None:
        """Runs in the forked child before ``exec``: joins the attempt's cgroup, so
        the target runs its first instruction inside it (a move from the worker after
        the spawn races with a target that forks at once, and loses under load).

        Only async-signal-safe work here (one ``write`` on a descriptor opened by the
        parent), since the worker has other threads. It costs a full ``fork`` of the
        worker per spawn (``subprocess`` cannot ``vfork`` with a hook).
        """
        fd = self._procs_fd
        if fd is None:
            return None

        def join() -> None:
            with contextlib.suppress(OSError):
                os.write(fd, b"0")

        return join

    def started(self, pid: int) -> None:
        """The target runs as ``pid``."""
        self._pid = pid
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None

    def kill_all(self) -> None:
        """Kill every process of the attempt, wait for them to be gone, clean up."""
        if self._procs_fd is not None:  # the target never started
            os.close(self._procs_fd)
            self._procs_fd = None
        reaps = self.mode in ("subreaper", "cgroup")
        # Orphans re-parented to this process: found before the cgroup kill turns them
        # into zombies of ours, so that they are reaped below.
        orphans = self._orphans() if reaps else set()
        if self._cgroup is not None:
            self._kill_cgroup(self._cgroup)
        if reaps:
            self._kill_descendants(orphans)

    def _orphans(self) -> set[int]:
        """Live children of this process that carry this attempt's token (not the
        target itself: its ``Popen`` reaps it)."""
        token_entry = f"{ATTEMPT_ENV}={self.token}".encode()
        return {
            pid
            for pid in _children(os.getpid())
            if pid != self._pid and _has_token(pid, token_entry)
        }

    def _kill_cgroup(self, cgroup: Path) -> None:
        deadline = time.monotonic() + _KILL_WAIT
        kill_file = cgroup / "cgroup.kill"
        while True:
            try:
                pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pids = []
            if not pids:
                break
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            else:  # kernels before 5.14
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                log.warning("processes %s of cgroup %s did not die", pids, cgroup)
                return
            time.sleep(0.01)
        try:
            cgroup.rmdir()
        except OSError as exc:
            log.debug("could not remove cgroup %s: %s", cgroup, exc)

    def _kill_descendants(self, known: set[int]) -> None:
        """Kill the attempt's orphans (``known`` and any found now), what descends from
        them and from the target, and reap those that are this process's children."""
        me = os.getpid()
        deadline = time.monotonic() + _KILL_WAIT
        killed = set(known)
        while True:
            roots = self._orphans()
            found = roots | {d for r in roots for d in _descendants(r)}
            if self._pid is not None:  # whatever still hangs below the target
                found |= _descendants(self._pid)
                if _alive(self._pid):
                    found.add(self._pid)
            found.discard(me)
            for pid in found:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            killed |= found - {self._pid}
            _reap(killed)
            if not found or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        while killed and time.monotonic() < deadline:  # the last ones may just be dying
            time.sleep(0.01)
            _reap(killed)


def _reap(pids: set[int]) -> None:
    """Reap those of ``pids`` that are zombie children of this process; drop from
    ``pids`` the ones that are gone or not ours."""
    for pid in list(pids):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not (or no longer) a child of ours
            pids.discard(pid)
            continue
        except OSError:
            pids.discard(pid)
            continue
        if done:
            pids.discard(pid)


def _children(pid: int) -> list[int]:
    """The live children of ``pid`` (from ``/proc/PID/task/*/children``; the whole
    process table where the kernel does not have those files)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(c) for c in fh.read().split())
        except FileNotFoundError:
            return [c for c, parent in _processes().items() if parent == pid]
        except OSError:
            continue
    return [c for c in out if _alive(c)]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()
    return bool(fields) and fields[0] not in (b"Z", b"X")


def _descendants(root: int) -> set[int]:
    """Every live process below ``root``."""
    out: set[int] = set()
    todo = [root]
    while todo:
        for child in _children(todo.pop()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


class Container:
    """Chooses the containment mode once and makes a :class:`Containment` per attempt.

    Args:
        mode: ``"auto"`` (cgroup where possible, else subreaper), ``"cgroup"``,
            ``"subreaper"`` or ``"group"`` (process group only, the old behaviour).
    """

    def __init__(self, mode: str = "auto") -> None:
        if mode not in ("auto", "cgroup", "subreaper", "group"):
            raise ValueError(f"unknown containment mode {mode!r}")
        self._base: Path | None = None
        if mode in ("auto", "cgroup"):
            self._base = self._usable_cgroup()
            if self._base is None and mode == "cgroup":
                raise OSError("cgroup v2 is not available or not writable here")
            mode = "cgroup" if self._base is not None else "subreaper"
        if self._base is not None:
            self._sweep(self._base)
            _set_subreaper()  # catches what forks before the move (module docstring)
        if mode == "subreaper" and not _set_subreaper():
            log.warning("cannot become a child subreaper: escaped target processes survive")
            mode = "group"
        self.mode = mode
        log.debug("command targets are contained by %s", mode)

    @staticmethod
    def _usable_cgroup() -> Path | None:
        root = _cgroup_root()
        if root is None:
            return None
        probe = root / f"hyperdock-probe-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            probe.mkdir()
        except OSError:
            return None
        try:
            fd = os.open(probe / "cgroup.procs", os.O_WRONLY)
            os.close(fd)
        except OSError:
            return None
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()
        return root

    @staticmethod
    def _sweep(base: Path) -> None:
        """Kill what is left in the cgroups of dead workers (``kill -9`` of a worker
        leaves its targets running in their cgroups)."""
        for child in base.glob("hyperdock-*-*"):
            owner = child.name.split("-")[1]
            if not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            log.warning("killing the processes left in %s by a dead worker", child)
            Containment("cgroup")._kill_cgroup(child)

    def attempt(self, trial_id: int) -> Containment:
        """A fresh containment for one attempt of ``trial_id``."""
        if self._base is not None:
            name = f"hyperdock-{os.getpid()}-{trial_id}-{secrets.token_hex(3)}"
            try:
                return Containment("cgroup", self._base / name)
            except OSError as exc:
                log.warning("no cgroup for trial %d (%s): using the subreaper", trial_id, exc)
                return Containment("subreaper" if _set_subreaper() else "group")
        return Containment(self.mode)


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
        containment: Containment,
    ) -> None:
        self._proc = proc
        self._containment = containment
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
            # Nothing of the target outlives the trial: children left behind die too,
            # also those that left the process group.
            _signal_group(self._proc.pid, signal.SIGKILL)
            self._containment.kill_all()
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
    process group and its own cgroup (or under the worker as subreaper; see the module
    docstring), so the end of the attempt -- by itself, by timeout, cancel or prune --
    ends everything it started, also processes that escaped into a new session. Its
    stdout and stderr go to ``log.txt`` in the folder.

    Args:
        env: Extra environment for every target (on top of this process's own).
        data_dir: Passed to targets as ``HYPERDOCK_DATA_DIR``.
        cwd: Working directory of targets (default: this process's).
        contain: ``"auto"`` (a cgroup where the host allows it, else the subreaper),
            or one of ``"cgroup"``, ``"subreaper"``, ``"group"`` (process group only).
            Chosen on the first :meth:`start`; the subreaper applies to the whole
            worker process.
    """

    kind = "process"

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        contain: ContainMode = "auto",
    ) -> None:
        self._env = dict(env or {})
        self._data_dir = str(data_dir) if data_dir else None
        self._cwd = cwd
        self._contain_mode = contain
        self._container: Container | None = None
        self._container_lock = threading.Lock()

    @property
    def containment(self) -> str:
        """How targets are contained: ``"cgroup"``, ``"subreaper"`` or ``"group"``."""
        return self._contain().mode

    def _contain(self) -> Container:
        with self._container_lock:
            if self._container is None:
                self._container = Container(self._contain_mode)
            return self._container

    def start(self, ctx: RunContext) -> Execution:
        if not ctx.command:
            raise TargetError(
                "the experiment has no command to run; give one with --command", retryable=False
            )
        folder = ctx.folder
        env = {**os.environ, **self._env, **ctx.env}
        checkpoint = str(ctx.checkpoint) if ctx.checkpoint is not None else None
        env.update(trial_env(str(folder), ctx.trial_id, checkpoint))
        if self._data_dir:
            env["HYPERDOCK_DATA_DIR"] = self._data_dir
        containment = self._contain().attempt(ctx.trial_id)
        env.update(containment.env())
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
                # Safe with threads: it only does one write (see Containment.preexec).
                preexec_fn=containment.preexec(),
            )
        except BaseException as exc:
            containment.kill_all()
            log.close()
            if isinstance(exc, FileNotFoundError):
                raise TargetError(
                    f"command {ctx.command[0]!r} was not found: check the spelling and PATH, "
                    "or give a path to the program",
                    retryable=False,
                ) from None
            if isinstance(exc, PermissionError):
                raise TargetError(
                    f"command {ctx.command[0]!r} is not executable: chmod +x it, or start it "
                    "through its interpreter (e.g. python script.py)",
                    retryable=False,
                ) from None
            if isinstance(exc, OSError):
                raise TargetError(f"could not start {ctx.command[0]!r}: {exc}") from None
            raise
        containment.started(proc.pid)
        return _ProcessExecution(proc, log, log_file, ctx.timeout, started, containment)

    def describe(self) -> str:
        return "local process"
