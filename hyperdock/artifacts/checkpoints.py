"""A trial's checkpoint folder on a worker's host, kept in step with its copy in the
artifact store (``<experiment>/<trial id>/checkpoint/``).

The folder is ``<results>/<experiment>-<trial id>/checkpoint``, beside the attempts'
folders: every attempt of the trial on this host sees the same one. With an artifact
store, :class:`CheckpointSync`

* restores the stored copy into it before an attempt starts, when the previous attempt
  ran elsewhere (another host or results folder) or the local folder is empty;
* uploads what changed (by size and modification time) every ``checkpoint_sync``
  seconds while the attempt runs, from one thread shared by the worker's slots, and
  deletes from the store what the target deleted (a mirror);
* syncs once more when the attempt has ended, however it ended (a worker stopping
  included), with retries for a bounded time.

The folder is the target's: it is read through :mod:`hyperdock.trialfs` (a symlink is
never followed, so nothing outside the trial's folder is uploaded), and a restore is
written into a new folder that then replaces it. A failure is logged and retried with
backoff; it never fails a trial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from hyperdock import trialfs
from hyperdock.artifacts import ArtifactStore, ArtifactStoreError, check_key, checkpoint_key
from hyperdock.artifacts.settings import DataSettings
from hyperdock.errors import HyperdockError
from hyperdock.runtimes.base import CHECKPOINT_NAME
from hyperdock.trial import Experiment, Trial

__all__ = ["FINAL_SYNC_TIMEOUT", "MAX_FILES", "CheckpointSync", "checkpoint_folder"]

log = logging.getLogger("hyperdock.checkpoints")

#: Files of one checkpoint folder synced (and restored) at most.
MAX_FILES = 100_000
#: Seconds the sync at the end of an attempt may take at most, retries included: a
#: stopping worker waits this long for it at most.
FINAL_SYNC_TIMEOUT = 60.0
#: Longest pause between two tries of a failing sync.
MAX_BACKOFF = 300.0


def checkpoint_folder(trial_dir: Path) -> Path:
    """The checkpoint folder of the trial whose folder is ``trial_dir``."""
    return trial_dir / CHECKPOINT_NAME


@dataclasses.dataclass
class _Watch:
    """One running attempt's checkpoint folder and what the store holds of it."""

    trial_id: int
    trial_dir: Path
    store: ArtifactStore
    prefix: str
    every: float
    #: Relative path → (size, mtime in ns) of the local file last uploaded.
    synced: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    #: Relative paths the store holds.
    remote: set[str] = dataclasses.field(default_factory=set)
    due: float = 0.0
    failures: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class CheckpointSync:
    """Restores and syncs the checkpoint folders of a worker's running trials.

    Args:
        settings: The trial-data settings of an experiment as this worker sees them
            (the experiment's, or the worker's own artifact store).
    """

    def __init__(self, settings: Callable[[Experiment], DataSettings]) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._stores: dict[tuple[str, str | None], ArtifactStore | None] = {}
        self._watches: dict[int, _Watch] = {}
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the worker's calls -----------------------------------------------------------
    def prepare(self, exp: Experiment, trial: Trial, trial_dir: Path) -> Path:
        """Make the trial's checkpoint folder, restore it from the artifact store when
        it should be, and start syncing it; return its path.

        Raises:
            OSError: the folder cannot be made (the results folder's fault).
        """
        folder = checkpoint_folder(trial_dir)
        _make_folder(folder)
        store = self._store(exp)
        if store is None:
            return folder
        settings = self._settings(exp)
        watch = _Watch(
            trial.id, trial_dir, store, checkpoint_key(exp.name, trial.id), settings.checkpoint_sync
        )
        try:
            self._start_from_store(watch, trial)
        except ArtifactStoreError as exc:
            log.warning(
                "trial %d: the stored checkpoint could not be restored (%s); the attempt "
                "starts from the checkpoint folder on this host",
                trial.id,
                exc,
            )
        watch.due = time.monotonic() + watch.every
        with self._lock:
            self._watches[trial.id] = watch
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="hd-checkpoints", daemon=True
                )
                self._thread.start()
        return folder

    def finish(self, trial_id: int) -> None:
        """The attempt of ``trial_id`` has ended: sync its folder a last time (retrying
        for :data:`FINAL_SYNC_TIMEOUT` seconds at most) and stop watching it."""
        with self._lock:
            watch = self._watches.pop(trial_id, None)
        if watch is None:
            return
        deadline = time.monotonic() + FINAL_SYNC_TIMEOUT
        delay = 1.0
        while True:
            try:
                self._sync(watch)
                return
            except ArtifactStoreError as exc:
                if not exc.retryable or time.monotonic() + delay > deadline:
                    log.warning(
                        "trial %d: the checkpoint folder's last changes could not be "
                        "uploaded (%s); a later attempt elsewhere starts from the last "
                        "uploaded state",
                        trial_id,
                        exc,
                    )
                    return
                log.info("trial %d: checkpoint upload failed (%s); retrying", trial_id, exc)
            except Exception:  # a bug here must never cost the trial its result
                log.exception("trial %d: the checkpoint folder could not be synced", trial_id)
                return
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def close(self) -> None:
        """Stop the sync thread (the worker has stopped; its attempts were finished)."""
        self._closed.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=FINAL_SYNC_TIMEOUT)
        with self._lock:
            stores = [s for s in self._stores.values() if s is not None]
            self._stores.clear()
        for store in stores:
            with contextlib.suppress(Exception):
                store.close()

    # -- the store ----------------------------------------------------------------------
    def _store(self, exp: Experiment) -> ArtifactStore | None:
        settings = self._settings(exp)
        if settings.artifacts is None:
            return None
        key = (settings.artifacts, settings.endpoint)
        with self._lock:
            if key in self._stores:
                return self._stores[key]
            from hyperdock.artifacts import open_artifacts

            store: ArtifactStore | None
            try:
                store = open_artifacts(settings.artifacts, endpoint=settings.endpoint)
            except HyperdockError as exc:
                log.warning("checkpoints are not synced to %s: %s", settings.artifacts, exc)
                store = None
            self._stores[key] = store
            return store

    def _start_from_store(self, watch: _Watch, trial: Trial) -> None:
        """Learn what the store holds of the folder; restore it when it should be."""
        stored = watch.store.list(watch.prefix)
        objects = {}
        for info in stored[:MAX_FILES]:
            rel = info.key[len(watch.prefix) :]
            with contextlib.suppress(HyperdockError):
                objects[check_key(rel)] = info
        folder = checkpoint_folder(watch.trial_dir)
        local = trialfs.list_files(watch.trial_dir, CHECKPOINT_NAME, MAX_FILES)
        # A first attempt restores nothing: what the store holds under its key is
        # another trial's (an experiment of the same name in another store) and is
        # replaced by the first sync.
        retried = trial.attempt > 0 or bool(trial.history)
        if objects and retried and (not local or not _ran_here(trial, watch.trial_dir)):
            log.info(
                "trial %d: restoring its checkpoint (%d files) from %s",
                trial.id,
                len(objects),
                watch.store.describe(),
            )
            watch.synced = _restore(watch, folder, sorted(objects))
            watch.remote = set(objects)
            return
        # The local folder is the newest: what the store holds alike (same size, stored
        # after the file last changed) is not uploaded again.
        watch.remote = set(objects)
        for entry in local:
            stored_as = objects.get(entry.path)
            if stored_as is None or stored_as.size != entry.size:
                continue
            with contextlib.suppress(OSError):
                st = os.lstat(folder / entry.path)
                if st.st_mtime <= stored_as.modified:
                    watch.synced[entry.path] = (st.st_size, st.st_mtime_ns)

    # -- syncing ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._closed.is_set():
            now = time.monotonic()
            with self._lock:
                watches = list(self._watches.values())
            for watch in watches:
                if watch.due > now or self._closed.is_set():
                    continue
                try:
                    self._sync(watch)
                    watch.failures = 0
                    watch.due = time.monotonic() + watch.every
                except Exception as exc:
                    watch.failures += 1
                    delay = min(2.0**watch.failures, watch.every, MAX_BACKOFF)
                    if isinstance(exc, ArtifactStoreError):
                        log.warning(
                            "trial %d: checkpoint upload failed (%s); retrying in %g s",
                            watch.trial_id,
                            exc,
                            delay,
                        )
                    else:  # a bug: logged, and the next sync tried all the same
                        log.exception("trial %d: checkpoint sync failed", watch.trial_id)
                    watch.due = time.monotonic() + delay
            with self._lock:
                dues = [w.due for w in self._watches.values()]
            wait = min([*dues, time.monotonic() + 1.0]) - time.monotonic()
            self._wake.wait(min(max(wait, 0.05), 1.0))
            self._wake.clear()

    def _sync(self, watch: _Watch) -> None:
        """Upload the files that changed since the last sync, delete from the store the
        ones that are gone.

        Raises:
            ArtifactStoreError: the store failed (what was done so far is kept).
        """
        with watch.lock:
            try:
                mode = os.lstat(checkpoint_folder(watch.trial_dir)).st_mode
            except OSError:
                return  # gone: nothing is deleted from the store for it
            if not stat.S_ISDIR(mode):
                log.warning(
                    "trial %d: its checkpoint folder was replaced by a link or a file; "
                    "it is not synced",
                    watch.trial_id,
                )
                return
            entries = trialfs.list_files(watch.trial_dir, CHECKPOINT_NAME, MAX_FILES + 1)
            if len(entries) > MAX_FILES:
                log.warning(
                    "trial %d: the checkpoint folder holds more than %d files; only the "
                    "first %d are synced",
                    watch.trial_id,
                    MAX_FILES,
                    MAX_FILES,
                )
                entries = entries[:MAX_FILES]
            seen: set[str] = set()
            for entry in entries:
                try:
                    rel = check_key(entry.path)
                except HyperdockError:
                    continue
                seen.add(rel)
                self._upload(watch, rel)
            gone = sorted(watch.remote - seen) if len(entries) < MAX_FILES else []
            if gone:
                watch.store.delete([watch.prefix + rel for rel in gone])
                for rel in gone:
                    watch.remote.discard(rel)
                    watch.synced.pop(rel, None)

    @staticmethod
    def _upload(watch: _Watch, rel: str) -> None:
        try:
            fd = trialfs.open_file(watch.trial_dir, f"{CHECKPOINT_NAME}/{rel}")
        except (trialfs.TrialFileError, OSError):
            return  # gone, or swapped for a link, since it was listed
        try:
            st = os.fstat(fd)
            signature = (st.st_size, st.st_mtime_ns)
            if watch.synced.get(rel) == signature and rel in watch.remote:
                return
            watch.store.put_file(watch.prefix + rel, fd)
        finally:
            os.close(fd)
        watch.synced[rel] = signature
        watch.remote.add(rel)


def _ran_here(trial: Trial, trial_dir: Path) -> bool:
    """Whether the previous attempt of ``trial`` ran in ``trial_dir`` on this host (so
    the local checkpoint folder is at least as new as the stored one)."""
    folder = trial.folder
    if folder is None or Path(folder).parent != trial_dir or not Path(folder).is_dir():
        return False
    # An attempt lost after that one (its worker died) records no folder: the history
    # says which worker ran it.
    last = trial.history[-1] if trial.history else None
    return last is None or last.get("worker") == trial.result.get("worker")


def _make_folder(folder: Path) -> None:
    """Make ``folder``; a link or a file a target left in its place is removed first."""
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        folder.mkdir(parents=True)  # the trial's folder too, on its first attempt
        return
    if not stat.S_ISDIR(mode):
        folder.unlink()
        folder.mkdir()


def _restore(watch: _Watch, folder: Path, keys: list[str]) -> dict[str, tuple[int, int]]:
    """Write the stored files ``keys`` into a new folder, then put it in place of
    ``folder``; return what was written (relative path → size, mtime in ns).

    Raises:
        ArtifactStoreError: the store failed; ``folder`` is left as it was.
    """
    fresh = folder.with_name(f".{CHECKPOINT_NAME}-{uuid.uuid4().hex[:8]}")
    fresh.mkdir()
    written: dict[str, tuple[int, int]] = {}
    try:
        for rel in keys:
            _make_dirs(fresh, rel.split("/")[:-1])
            fd = trialfs.create(fresh, rel, replace=True)
            try:
                for chunk in watch.store.iter_bytes(watch.prefix + rel):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                st = os.fstat(fd)
            finally:
                os.close(fd)
            written[rel] = (st.st_size, st.st_mtime_ns)
        old = folder.with_name(f".{CHECKPOINT_NAME}-old-{uuid.uuid4().hex[:8]}")
        os.rename(folder, old)
        os.rename(fresh, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return written


def _make_dirs(top: Path, parts: list[str]) -> None:
    """Make the folders ``parts`` under ``top`` (which Hyperdock made: no link in it)."""
    path = top
    for part in parts:
        path = path / part
        with contextlib.suppress(FileExistsError):
            path.mkdir()
