"""Riding out store outages: retry with backoff, and no reaping right after an outage.

When the database goes away (restart, network cut), workers and supervisors keep going:
every store call that must not be lost is retried with exponential backoff until the
store answers again. Results that targets produced meanwhile are saved then.

After an outage, leases look stale to the database clock although their workers are
alive and simply could not heartbeat. So a process that has just seen the store fail
does not reap lost trials for :data:`REAP_GRACE` seconds, giving every worker time to
heartbeat again first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from hyperdock.errors import StoreConnectionError
from hyperdock.storage.base import Store
from hyperdock.trial import Trial

log = logging.getLogger("hyperdock.store")

T = TypeVar("T")

#: Seconds after a failed store call during which this process does not reap.
REAP_GRACE = 30.0
#: First and longest pause between two attempts.
FIRST_DELAY, MAX_DELAY = 0.2, 10.0

_last_failure = -float("inf")
_lock = threading.Lock()


def note_failure() -> None:
    """Record that this process could not reach the store just now."""
    global _last_failure
    with _lock:
        _last_failure = time.monotonic()


def recently_failed(within: float = REAP_GRACE) -> bool:
    """True if a store call of this process failed in the last ``within`` seconds."""
    with _lock:
        return time.monotonic() - _last_failure < within


class Backoff:
    """Exponential delays: 0.2 s, 0.4 s, … up to 10 s; :meth:`reset` after a success."""

    def __init__(self, first: float = FIRST_DELAY, longest: float = MAX_DELAY) -> None:
        self.first, self.longest = first, longest
        self.delay = first

    def next(self) -> float:
        """The pause to take now (and double the next one)."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.longest)
        return delay

    def reset(self) -> None:
        """Start again from the first delay."""
        self.delay = self.first


def call_with_retry(fn: Callable[[], T], *, what: str, stop: threading.Event | None = None) -> T:
    """Call ``fn`` until it does not raise :class:`StoreConnectionError`.

    Args:
        fn: The store call.
        what: What is being done, for the log ("saving trial 12").
        stop: When set, give up and re-raise instead of waiting again.
    """
    backoff = Backoff()
    while True:
        try:
            return fn()
        except StoreConnectionError as exc:
            note_failure()
            if stop is not None and stop.is_set():
                raise
            delay = backoff.next()
            log.warning("%s: the store is unreachable (%s); retrying in %.1f s", what, exc, delay)
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)


def reap_unless_recovering(store: Store) -> list[Trial]:
    """:meth:`Store.reap`, skipped while this process is recovering from an outage."""
    if recently_failed():
        return []
    try:
        return store.reap()
    except StoreConnectionError:
        note_failure()
        raise
