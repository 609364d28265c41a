"""The worker's uploader: each ended attempt's files go to the artifact store from a
background thread, so the uploads overlap the next trial.

What is uploaded, under :func:`~hyperdock.artifacts.base.attempt_key`:
``params.json``, ``loss.json``, ``progress.jsonl``, ``graphs.json``, the log
(``log.txt`` / ``docker_log.txt``) and ``out/`` (recursively). Every file is read
through :mod:`hyperdock.trialfs`: symlinks and special files are never followed nor
uploaded, so nothing outside the trial folder leaves the host.

Promises:
    * Bounded (:class:`UploadLimits`): a file larger than ``file_bytes`` is skipped
      (logged), and so is everything past ``attempt_bytes`` or ``attempt_files``.
    * A failed upload never touches the trial (its result is saved already): it is
      logged and retried with exponential backoff (capped at ``max_delay``) for as long
      as the worker lives.
    * Nothing is uploaded twice for the same attempt: a journal per pending attempt
      (``<results>/.hyperdock-uploads/<hash>.json``) records the files done. A worker
      started again on the same results folder resumes the pending ones; a journal is
      locked (``flock``) by the uploader working on it, so two live workers sharing a
      results folder never take each other's.
    * On :meth:`Uploader.close` (worker stop), the queue is drained for a bounded time;
      what is left stays in the journal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import heapq
import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from hyperdock import trialfs
from hyperdock.artifacts.base import ArtifactStore, ArtifactStoreError, attempt_key
from hyperdock.artifacts.settings import DataSettings
from hyperdock.errors import HyperdockError

__all__ = [
    "ATTEMPT_FILES",
    "JOURNAL_DIR",
    "StoreCache",
    "UploadLimits",
    "Uploader",
    "attempt_files",
    "upload_file",
]

log = logging.getLogger("hyperdock.artifacts")

#: The journal folder in a worker's results folder.
JOURNAL_DIR = ".hyperdock-uploads"
#: Top-level files of an attempt folder that are uploaded when present (then ``out/``).
ATTEMPT_FILES = (
    "params.json",
    "loss.json",
    "progress.jsonl",
    "graphs.json",
    "log.txt",
    "docker_log.txt",
)

_GB = 1024**3


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """How much of one attempt is uploaded at most.

    Attributes:
        file_bytes: Largest file uploaded (larger ones are skipped and logged).
        attempt_bytes: Bytes uploaded per attempt at most.
        attempt_files: Files uploaded per attempt at most.
    """

    file_bytes: int = 5 * _GB
    attempt_bytes: int = 20 * _GB
    attempt_files: int = 10_000


class StoreCache:
    """One open :class:`ArtifactStore` per (URL, endpoint), shared by threads."""

    def __init__(self) -> None:
        self._stores: dict[tuple[str, str | None], ArtifactStore] = {}
        self._lock = threading.Lock()

    def get(self, url: str, endpoint: str | None) -> ArtifactStore:
        """The store at ``url`` (opened on first use).

        Raises:
            ConfigError: a bad URL, or the backend's extra is missing.
        """
        from hyperdock.artifacts import open_artifacts

        with self._lock:
            store = self._stores.get((url, endpoint))
            if store is None:
                store = self._stores[(url, endpoint)] = open_artifacts(url, endpoint=endpoint)
            return store

    def close(self) -> None:
        """Close every store opened."""
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            with contextlib.suppress(Exception):
                store.close()


def attempt_files(folder: Path, limits: UploadLimits = UploadLimits()) -> list[str]:
    """The files of an attempt folder to upload (paths relative to it): the present
    :data:`ATTEMPT_FILES` that are regular files, then ``out/``'s regular files."""
    names = [n for n in ATTEMPT_FILES if trialfs.is_file(folder, n)]
    names += [f"out/{e.path}" for e in trialfs.list_files(folder, "out", limits.attempt_files)]
    return names[: limits.attempt_files]


def upload_file(store: ArtifactStore, folder: Path | int, name: str, key: str, limit: int) -> int:
    """Upload the regular file ``name`` of ``folder`` (opened through
    :mod:`hyperdock.trialfs`, no symlink followed) as ``key``; return its size.

    Raises:
        TrialFileError: ``name`` is a symlink or not a regular file, or larger than
            ``limit`` bytes.
        OSError: it cannot be read (missing …).
        ArtifactStoreError: the upload failed.
    """
    fd = trialfs.open_file(folder, name)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise trialfs.TrialFileError(name, f"is larger than {limit} bytes (not uploaded)")
        return store.put_file(key, fd)
    finally:
        os.close(fd)


@dataclasses.dataclass
class _Job:
    """One pending attempt (its journal's contents, and this process's lock on it)."""

    path: Path
    fd: int
    data: dict[str, Any]
    tries: int = 0
    #: Submitted again while uploading: start over once the current pass ends.
    restart: bool = False


class Uploader:
    """Uploads ended attempts from a background thread (see the module docstring).

    Args:
        results_dir: The worker's results folder (its journals go in
            :data:`JOURNAL_DIR` there).
        stores: Where artifact stores are opened (shared with the worker).
        limits: How much of an attempt is uploaded.
        min_delay: First wait before retrying a failed upload (seconds).
        max_delay: Longest wait between two tries.
        threads: Attempts uploaded at once (short trials end faster than one thread
            uploads their files).
    """

    def __init__(
        self,
        results_dir: Path,
        stores: StoreCache | None = None,
        *,
        limits: UploadLimits = UploadLimits(),
        min_delay: float = 1.0,
        max_delay: float = 60.0,
        threads: int = 4,
    ) -> None:
        self.journal_dir = Path(results_dir) / JOURNAL_DIR
        self.stores = stores or StoreCache()
        self.limits = limits
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._cond = threading.Condition()
        # (due time, sequence, job): the next job to try first.
        self._due: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._active: dict[Path, _Job] = {}
        # Every job this uploader holds the lock of (due or active), by journal path.
        self._jobs: dict[Path, _Job] = {}
        self._closing = False
        self._deadline = float("inf")
        self._threads_wanted = threads
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the threads, and take up the pending journals nobody holds."""
        if self._threads:
            return
        with contextlib.suppress(OSError):
            for path in sorted(self.journal_dir.glob("*.json")):
                self._adopt(path)
        for i in range(self._threads_wanted):
            thread = threading.Thread(target=self._loop, name=f"hd-uploader-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, drain: float = 30.0) -> None:
        """Stop: finish the pending uploads for at most ``drain`` seconds; those left
        stay in their journal for the next worker on this results folder."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + drain
            # Failed ones get one more try now rather than after their backoff.
            self._due = [(0.0, seq, job) for _, seq, job in self._due]
            heapq.heapify(self._due)
            self._cond.notify_all()
        end = time.monotonic() + drain + 5.0
        for thread in self._threads:
            thread.join(max(end - time.monotonic(), 0.0))
        with self._cond:
            left = [job for _, _, job in self._due]
            self._due = []
            self._jobs = {}
        for job in left:
            os.close(job.fd)  # releases the lock: the journal stays
        if left:
            log.warning(
                "%d attempt(s) not uploaded yet: a worker started on %s uploads them",
                len(left),
                self.journal_dir.parent,
            )
        self.stores.close()

    @property
    def pending(self) -> int:
        """Attempts waiting to be uploaded by this uploader."""
        with self._cond:
            return len(self._jobs)

    # -- submitting -------------------------------------------------------------------
    def submit(
        self,
        settings: DataSettings,
        experiment: str,
        trial_id: int,
        attempt: int,
        folder: Path,
    ) -> None:
        """Queue the 0-based ``attempt`` of a trial, whose folder is ``folder``, for
        upload to ``settings``' artifact store (nothing without one). The journal is
        written before this returns, so a crash after it loses nothing.

        An attempt submitted again (one that did not count, run again under the same
        number) replaces the pending one.
        """
        if settings.artifacts is None:
            return
        prefix = attempt_key(experiment, trial_id, attempt)
        data: dict[str, Any] = {
            "url": settings.artifacts,
            "endpoint": settings.endpoint,
            "folder": str(folder),
            "prefix": prefix,
            "files": None,  # listed when the upload starts (see _run)
            "done": [],
            "skipped": [],
        }
        digest = hashlib.sha256(f"{settings.artifacts}\0{prefix}".encode()).hexdigest()[:24]
        path = self.journal_dir / f"{digest}.json"
        with self._cond:
            known = self._jobs.get(path)
            if known is not None:
                # Ours already: it starts over with the new folder (from the thread,
                # when it is uploading the old one now).
                known.data = data
                known.tries = 0
                known.restart = True
                self._save(known)
                if known.path not in self._active:
                    self._due = [d for d in self._due if d[2] is not known]
                    heapq.heapify(self._due)
                    heapq.heappush(self._due, (0.0, next(self._seq), known))
                    self._cond.notify_all()
                return
        try:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("cannot write the upload journal in %s: %s", self.journal_dir, exc)
            return
        job = _Job(path, fd, data)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._save(job)
        except OSError as exc:
            os.close(fd)
            log.warning("cannot write the upload journal in %s: %s", self.journal_dir, exc)
            return
        self._queue(job, 0.0)

    def _adopt(self, path: Path) -> None:
        """Queue the journal ``path`` if no live uploader holds it."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # another worker's, and it is alive
            return
        try:
            raw = os.pread(fd, 1024 * 1024, 0)
            data = json.loads(raw.decode("utf-8")) if raw else None
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or not {"url", "prefix", "folder"} <= data.keys():
            with contextlib.suppress(OSError):
                path.unlink()  # a journal cut short by a crash before it was written
            os.close(fd)
            return
        log.info("resuming the upload of %s", data["prefix"])
        self._queue(_Job(path, fd, data), 0.0)

    def _queue(self, job: _Job, delay: float) -> None:
        with self._cond:
            self._jobs[job.path] = job
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), job))
            self._cond.notify_all()

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._closing and (not self._due or now >= self._deadline):
                        return
                    if self._due and self._due[0][0] <= now:
                        _, _, job = heapq.heappop(self._due)
                        self._active[job.path] = job
                        job.restart = False
                        break
                    wait = self._due[0][0] - now if self._due else None
                    if self._closing:
                        wait = min(wait or 1.0, self._deadline - now)
                    self._cond.wait(wait)
            try:
                finished = self._run(job)
            except Exception as exc:  # a bug must not stop the uploads for good
                log.exception("uploading %s failed", job.data.get("prefix"))
                finished = False
                err: Exception | None = exc
            else:
                err = None
            with self._cond:
                self._active.pop(job.path, None)
                if job.restart:  # submitted again meanwhile
                    heapq.heappush(self._due, (0.0, next(self._seq), job))
                    continue
                if finished:
                    self._jobs.pop(job.path, None)
            if finished:
                self._finish(job)
                continue
            job.tries += 1
            delay = min(self._min_delay * 2 ** (job.tries - 1), self._max_delay)
            if isinstance(err, ArtifactStoreError) and not err.retryable:
                delay = self._max_delay
            self._queue(job, delay)

    def _run(self, job: _Job) -> bool:
        """Upload what is left of ``job``; True when it is all done."""
        data = job.data
        folder = Path(data["folder"])
        try:
            store = self.stores.get(data["url"], data.get("endpoint"))
        except HyperdockError as exc:
            self._warn(job, exc)
            return False
        if data.get("files") is None:
            if not folder.is_dir():
                log.warning(
                    "%s: the attempt folder %s is gone; nothing to upload", data["prefix"], folder
                )
                return True
            data["files"] = attempt_files(folder, self.limits)
            self._save(job)
        done = set(data["done"])
        skipped = set(data["skipped"])
        total = int(data.get("bytes", 0))
        for name in data["files"]:
            if name in done or name in skipped:
                continue
            limit = min(self.limits.file_bytes, self.limits.attempt_bytes - total)
            try:
                total += upload_file(store, folder, name, data["prefix"] + name, limit)
            except ArtifactStoreError as exc:
                self._warn(job, exc)
                return False
            except (trialfs.TrialFileError, OSError) as exc:
                # Gone, turned into a symlink, or too large: never uploaded.
                log.warning("%s: %s not uploaded: %s", data["prefix"], name, exc)
                data["skipped"].append(name)
                skipped.add(name)
                self._save(job)
                continue
            data["done"].append(name)
            data["bytes"] = total
            self._save(job)
        if job.tries:
            log.warning("%s: uploaded after %d failed tries", data["prefix"], job.tries)
        return True

    def _warn(self, job: _Job, exc: HyperdockError) -> None:
        # First failure and then every 10th: a long outage does not flood the log.
        if job.tries % 10 == 0:
            log.warning("%s: upload failed, will retry: %s", job.data["prefix"], exc)

    def _save(self, job: _Job) -> None:
        """Write the journal in place (under this process's lock)."""
        raw = json.dumps(job.data).encode("utf-8")
        os.pwrite(job.fd, raw, 0)
        os.ftruncate(job.fd, len(raw))

    def _finish(self, job: _Job) -> None:
        with contextlib.suppress(OSError):
            job.path.unlink()
        os.close(job.fd)
