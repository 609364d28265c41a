"""Ship running attempts' logs into the store, so ``hyperdock logs`` and the dashboard
show them from any machine that reaches the store.

A worker has one :class:`LogShipper`: one background thread that, at most every
``interval`` seconds, sends what each running attempt's log (``log.txt`` or
``docker_log.txt`` in its trial folder, whatever the launcher) gained, in chunks. The
store keeps the first ``head`` and the last ``tail`` bytes of each attempt's log
(:meth:`~hyperdock.storage.base.Store.add_log`), so the shipper reads only what will be
kept: once the head is sent, a log that grew by more than ``tail`` bytes since the last
tick is read from its last ``tail`` bytes on; the middle of a fast log is never read.

The log file is the target's: it is opened through :mod:`hyperdock.trialfs` (no symlink
followed, regular files only). Log shipping never fails or holds up a trial: a store
that is away costs a warning, and the shipper tries again at the next tick; the final
flush of an ending attempt waits for the store at most ``final_wait`` seconds.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from hyperdock import trialfs
from hyperdock.errors import HyperdockError
from hyperdock.logs import LOG_NAMES
from hyperdock.storage import Store

__all__ = ["CHUNK", "LogShipper"]

log = logging.getLogger("hyperdock.logship")

#: Bytes of a log sent in one store call (and the store's chunk: its copy of a log
#: stays within head + tail + one chunk).
CHUNK = 64 * 1024
#: Ticks an ended attempt's last bytes are retried for while the store is away.
_FINAL_TRIES = 60


@dataclass
class _Attempt:
    """One attempt's log and how much of it the store has."""

    trial_id: int
    attempt: int
    folder: Path
    #: The log's name once found (it appears when the target starts).
    name: str | None = None
    #: The next byte of the log to send (bytes before it were sent or skipped).
    pos: int = 0
    #: Offset of the last chunk sent while it is not full (sent again as it grows).
    open: int | None = None
    #: Whether the store knows the attempt has a log (empty chunk sent).
    announced: bool = False
    #: The attempt ended: ship what is left, then forget it.
    ended: bool = False
    tries: int = 0
    #: Refused for good (the log was replaced by a symlink or a special file).
    refused: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class LogShipper:
    """Sends running attempts' logs to the store (see the module docstring).

    Args:
        store: The worker's store.
        head: Bytes kept from each log's start.
        tail: Bytes kept to each log's end.
        interval: Seconds between two sends of one log at most.
        final_wait: Seconds :meth:`end` waits for the final flush at most.
    """

    def __init__(
        self,
        store: Store,
        *,
        head: int = trialfs.DEFAULT_LIMITS.log_head_bytes,
        tail: int = trialfs.DEFAULT_LIMITS.log_tail_bytes,
        interval: float = 1.0,
        final_wait: float = 10.0,
    ) -> None:
        self.store = store
        self.head = max(head, 0)
        self.tail = max(tail, 1)
        self.interval = interval
        self.final_wait = final_wait
        self._attempts: dict[tuple[int, int], _Attempt] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self, trial_id: int, attempt: int, folder: Path) -> None:
        """Ship the log of a started (or adopted) attempt whose trial folder is
        ``folder``."""
        with self._lock:
            self._attempts.setdefault(
                (trial_id, attempt), _Attempt(trial_id, attempt, Path(folder))
            )
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="hd-logship", daemon=True)
                self._thread.start()

    def end(self, trial_id: int, attempt: int) -> None:
        """The attempt's target has ended: ship the rest of its log, waiting at most
        ``final_wait`` seconds (a store that is away gets it later, in the background)."""
        with self._lock:
            item = self._attempts.get((trial_id, attempt))
            if item is None:
                return
            item.ended = True
        self._wake.set()
        item.done.wait(self.final_wait)

    def close(self) -> None:
        """Stop the thread after one last attempt at shipping what is left."""
        self._closing.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(self.final_wait)

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            woken = self._wake.wait(self.interval)
            self._wake.clear()
            closing = self._closing.is_set()
            with self._lock:
                items = list(self._attempts.values())
            for item in items:
                # An early wake (an attempt ended) ships the ended ones only: the others
                # keep their pace of one send per interval.
                if woken and not item.ended and not closing:
                    continue
                ok = self._ship_safely(item)
                if item.ended and (ok or item.tries >= _FINAL_TRIES or item.refused):
                    with self._lock:
                        self._attempts.pop((item.trial_id, item.attempt), None)
                    item.done.set()
            if closing:
                return

    def _ship_safely(self, item: _Attempt) -> bool:
        """Ship one attempt's new bytes; False when the store failed (retried later)."""
        if item.refused:
            return True
        try:
            self._ship(item)
        except trialfs.TrialFileError as exc:
            item.refused = True
            log.warning("trial %d: its log is not sent to the store: %s", item.trial_id, exc)
            return True
        except HyperdockError as exc:
            item.tries += item.ended
            if not self._failing:
                log.warning(
                    "cannot send trial logs to the store (%s); trying again every %.0f s",
                    exc,
                    self.interval,
                )
            self._failing = True
            return False
        except Exception:  # one log's trouble never stops the others
            item.tries += 1
            log.exception("trial %d: could not send its log to the store", item.trial_id)
            return item.tries >= _FINAL_TRIES
        if self._failing:
            log.warning("trial logs reach the store again")
            self._failing = False
        return True

    def _open(self, item: _Attempt) -> int | None:
        """A descriptor of the attempt's log, or None while there is none."""
        for name in (item.name,) if item.name else LOG_NAMES:
            try:
                fd = trialfs.open_file(item.folder, name)
            except FileNotFoundError:
                continue
            item.name = name
            return fd
        return None

    def _ship(self, item: _Attempt) -> None:
        fd = self._open(item)
        if fd is None:
            return
        try:
            size = os.fstat(fd).st_size
            if not item.announced and item.pos == 0:
                self.store.add_log(
                    item.trial_id, item.attempt, 0, b"", head=self.head, tail=self.tail
                )
                item.announced = True
            while item.pos < size:
                if item.pos >= self.head and size - item.pos > self.tail:
                    item.pos = size - self.tail  # the middle would be dropped: skip it
                    item.open = None
                # A chunk not full yet is sent again, grown (a longer chunk replaces a
                # shorter one at its offset): a slow log makes few chunks, not one a tick.
                start = item.pos if item.open is None else item.open
                limit = CHUNK if start >= self.head else min(CHUNK, self.head - start)
                data = os.pread(fd, min(limit, size - start), start)
                if len(data) <= item.pos - start:  # truncated meanwhile
                    return
                self.store.add_log(
                    item.trial_id, item.attempt, start, data, head=self.head, tail=self.tail
                )
                item.pos = start + len(data)
                item.open = start if len(data) < limit else None
        finally:
            os.close(fd)
