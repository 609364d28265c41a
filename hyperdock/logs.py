"""Trial logs: which file holds a trial's output, and reading it, whole, its last lines,
or as it grows (``hyperdock logs``, ``hyperdock logs --follow``).

Logs live in the trial folders a worker writes under its results folder, in full; only
a process on the worker's host (or sharing its results folder) finds them. Workers
also send each attempt's log to the store as it is written (:mod:`hyperdock.logship`),
bounded to its start and its end: where the trial folder is not on this host, the
store's copy is read instead, with a marker where bytes were cut. The target owns its
folder: every read goes through :mod:`hyperdock.trialfs` (no symlink followed, regular
files only).
"""

from __future__ import annotations

import codecs
import os
import time
from collections.abc import Callable
from pathlib import Path

from hyperdock import trialfs
from hyperdock.errors import ConfigError, ExperimentNotFound
from hyperdock.runtimes.base import CHECKPOINT_NAME
from hyperdock.storage import Store
from hyperdock.storage.logchunks import StoredLog, StoredLogReader
from hyperdock.trial import Experiment, Trial, TrialState

__all__ = [
    "LOG_NAMES",
    "LogTail",
    "StoreTail",
    "attempt_folders",
    "follow",
    "get_trial",
    "last_lines",
    "log_file",
    "missing_log",
    "no_output_yet",
    "read_log",
    "stored_log",
]

#: Names of the file holding a trial's output (local command, Docker).
LOG_NAMES = ("log.txt", "docker_log.txt")
#: Bytes of a log read (and written out) at once.
CHUNK = 1024 * 1024
#: Largest log :func:`read_log` reads whole (ask for the last lines of a larger one).
WHOLE_LOG_LIMIT = 256 * 1024 * 1024
#: Seconds between store polls of :func:`follow`.
FOLLOW_POLL = 0.5
#: Seconds :func:`follow` waits for a running trial's folder to appear on this host.
FOLLOW_GRACE = 10.0


def attempt_folders(results: str, exp: Experiment, trial: Trial) -> list[Path]:
    """The trial's attempt folders under ``results`` on this host, newest first."""
    from hyperdock.layout import slugify

    trial_dir = Path(results).expanduser() / f"{slugify(exp.name)}-{trial.id}"
    try:
        folders = (p for p in trial_dir.iterdir() if p.is_dir() and p.name != CHECKPOINT_NAME)
        return sorted(folders, reverse=True)
    except OSError:
        return []


def log_file(store: Store, trial: Trial, results: str) -> Path | None:
    """The log of the trial's current (running) or last attempt, if it is on this host.

    A running trial's log is in the newest timestamp folder under
    ``<results>/<experiment slug>-<trial id>/``; a finished one's in the folder its result
    records, else the newest one found under ``results``.

    Args:
        store: The store holding the trial.
        trial: The trial.
        results: The results folder of the worker that ran it (on this host).

    Returns:
        The log's path (a log the target replaced by a symlink or a pipe too: reading
        it refuses), or None when no attempt folder here holds one.
    """
    recorded = trial.folder
    newest = attempt_folders(results, store.get_experiment(trial.experiment_id), trial)[:1]
    if trial.state is TrialState.RUNNING:
        candidates = newest
    else:
        candidates = ([Path(recorded)] if recorded else []) + newest
    for folder in candidates:
        for name in LOG_NAMES:
            # A log the target replaced by a symlink or a pipe is found too: reading
            # it then refuses, which says more than "no log".
            if trialfs.is_file(folder, name) or _exists(folder, name):
                return Path(os.path.abspath(folder)) / name
    return None


def _exists(folder: Path, name: str) -> bool:
    """Whether ``folder/name`` exists at all (a symlink or special file included)."""
    try:
        os.lstat(folder / name)
    except OSError:
        return False
    return True


def get_trial(store: Store, trial_id: int) -> Trial:
    """Trial ``trial_id``.

    Raises:
        ConfigError: there is no such trial (a usage error: the user named it).
    """
    try:
        return store.get_trial(trial_id)
    except ExperimentNotFound:
        raise ConfigError(f"no trial with id {trial_id} in {store.describe()}") from None


def last_lines(text: str, lines: int | None) -> str:
    """The last ``lines`` lines of ``text`` (all of it for None, none for 0 or less)."""
    if lines is None:
        return text
    if lines <= 0:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:])


def read_log(path: Path, lines: int | None) -> str:
    """The log at ``path`` (its last ``lines`` lines when given), decoded as UTF-8.

    Raises:
        TrialFileError, OSError: as :func:`hyperdock.trialfs.read_bytes`.
    """
    if lines is None:
        data = trialfs.read_bytes(path.parent, path.name, WHOLE_LOG_LIMIT)
    else:
        data, _ = trialfs.read_last_lines(path.parent, path.name, max(lines, 0))
    return last_lines(data.decode("utf-8", "replace"), lines)


class LogTail:
    """Passes on what is appended to a trial's log (bytes decoded as UTF-8 across reads).

    With ``lines`` only the end of the file is read at the start; without, all of it,
    in chunks (a large log never sits in memory whole).
    """

    def __init__(self, path: Path, lines: int | None, write: Callable[[str], None]) -> None:
        """Start the tail: write the file's content so far (its last ``lines`` lines).

        Args:
            path: The log.
            lines: Only the last N lines of what is there now; None: all of it.
            write: Called with each piece of decoded text.
        """
        self.path = path
        self._write = write
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if lines is None:
            self._pos = 0
            #: Whether the file held anything when the tail started.
            self.printed = self.pump()
            return
        data, self._pos = trialfs.read_last_lines(path.parent, path.name, max(lines, 0))
        self.printed = self._pos > 0
        self._emit(last_lines(self._decoder.decode(data), lines))

    def _emit(self, text: str) -> None:
        if text:
            self._write(text)

    def pump(self, final: bool = False) -> bool:
        """Write what was appended since the last call (in chunks).

        Args:
            final: The log is complete: flush a partial UTF-8 sequence at its end.

        Returns:
            Whether there was anything.

        Raises:
            TrialFileError: the log was replaced by a symlink or a special file.
        """
        printed = False
        while True:
            try:
                data = trialfs.read_from(self.path.parent, self.path.name, self._pos, CHUNK)
            except FileNotFoundError:
                data = b""
            except trialfs.TrialFileError:
                raise
            except OSError:
                data = b""
            self._pos += len(data)
            printed = printed or bool(data)
            self._emit(self._decoder.decode(data, final=final and len(data) < CHUNK))
            if len(data) < CHUNK:
                return printed


def stored_log(store: Store, trial: Trial) -> StoredLog | None:
    """The store's copy of the log of the trial's latest attempt that has one, or None."""
    if trial.state is TrialState.QUEUED and not trial.history:
        return None
    stored = store.read_log(trial.id)
    return stored if stored.attempt >= 0 else None


class StoreTail:
    """Passes on what is added to the store's copy of an attempt's log (as
    :class:`LogTail` does for a file), with a marker where bytes were cut."""

    def __init__(
        self,
        store: Store,
        trial_id: int,
        attempt: int,
        lines: int | None,
        write: Callable[[str], None],
    ) -> None:
        """Start the tail: write the stored log so far (its last ``lines`` lines).

        Args:
            store: The store.
            trial_id: The trial.
            attempt: The attempt (0-based).
            lines: Only the last N lines of what is there now; None: all of it.
            write: Called with each piece of decoded text.
        """
        self.key = ("store", attempt)
        self.attempt = attempt
        self._store = store
        self._write = write
        stored = store.read_log(trial_id, attempt)
        self._reader = StoredLogReader(trial_id, attempt)
        if lines is None:
            self._reader.feed(stored, write)
        else:
            text = last_lines(stored.text(), lines)
            if text:
                write(text)
            self._reader = StoredLogReader(trial_id, attempt, stored.size)
            self._reader.learn(stored)
        #: Whether the log held anything when the tail started.
        self.printed = stored.size > 0

    def pump(self, final: bool = False) -> bool:
        """Write what the store gained since the last call; return whether it had any."""
        reader = self._reader
        stored = self._store.read_log(reader.trial_id, self.attempt, start=reader.pos)
        return reader.feed(stored, self._write, final=final)


def follow(
    store: Store,
    trial_id: int,
    results: str,
    lines: int | None,
    *,
    write: Callable[[str], None],
    note: Callable[[str], None],
) -> None:
    """Pass on a trial's log as it grows until the trial is finished, across retries.

    Args:
        store: The store holding the trial.
        trial_id: The trial.
        results: The results folder of the worker running it (on this host).
        lines: Start with only the last N lines of each attempt's log.
        write: Called with the log's text.
        note: Called with a line about the log (a new attempt, no output yet).

    Raises:
        ConfigError: the trial finished without a log here or in the store, or its log
            did not show up here within :data:`FOLLOW_GRACE` seconds of it running.
        TrialFileError: the log was replaced by a symlink or a special file.
    """
    tail: LogTail | StoreTail | None = None
    waiting_since: float | None = None
    while True:
        trial = get_trial(store, trial_id)
        path = log_file(store, trial, results) if trial.state is not TrialState.QUEUED else None
        attempt: int | None = None
        if trial.state is not TrialState.QUEUED and (path is None or isinstance(tail, StoreTail)):
            # Not on this host: the store's copy of the newest attempt's log.
            attempts = store.log_attempts(trial.id)
            attempt = attempts[-1] if attempts else None
        if isinstance(tail, StoreTail) and path is not None and trial.attempt <= tail.attempt:
            path = None  # the attempt followed in the store, its folder seen here at its end
        key: object = path if path is not None else ("store", attempt)
        if (path is not None or attempt is not None) and (tail is None or _key(tail) != key):
            if tail is not None:
                tail.pump(final=True)
                where = path.parent.name if path is not None else "from the store"
                number = attempt if attempt is not None else trial.attempt
                note(f"--- attempt {number + 1}: {where} ---")
            if path is not None:
                tail = LogTail(path, lines, write)
            else:
                tail = StoreTail(store, trial.id, attempt or 0, lines, write)
            if not tail.printed and trial.state is TrialState.RUNNING:
                note(no_output_yet(trial))
        elif tail is not None:
            tail.pump()
        if trial.state.finished:
            if tail is not None:
                tail.pump(final=True)
                return
            raise missing_log(trial, results)
        if trial.state is TrialState.RUNNING and tail is None:
            now = time.monotonic()
            waiting_since = waiting_since or now
            if now - waiting_since > FOLLOW_GRACE:
                raise missing_log(trial, results)
        else:
            waiting_since = None
        time.sleep(FOLLOW_POLL)


def _key(tail: LogTail | StoreTail) -> object:
    """What a tail reads: a file's path, or ``("store", attempt)``."""
    return tail.path if isinstance(tail, LogTail) else tail.key


def no_output_yet(trial: Trial) -> str:
    """What to say when a running trial's log is still empty."""
    return f"trial {trial.id} is running: no output yet"


def missing_log(trial: Trial, results: str) -> ConfigError:
    """The error for a trial whose log is not on this host (or that has none yet)."""
    if trial.state is TrialState.QUEUED and not trial.folder:
        return ConfigError(f"trial {trial.id} has not started yet, so it has no log")
    where = trial.folder or f"{Path(results).expanduser()}/…-{trial.id}/"
    on = f" (worker {trial.worker_id})" if trial.worker_id else ""
    return ConfigError(
        f"the log of trial {trial.id} ({trial.state.value}{on}) is not on this host: "
        f"nothing in {where}, and the store holds no copy (its worker sent none); "
        "give --results DIR, or run this where the trial ran"
    )
