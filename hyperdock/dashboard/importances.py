"""Parameter importances for the dashboard, computed off the request path.

A random forest over thousands of trials takes seconds; a page polling every 2 s cannot
wait for it. :class:`ImportanceService` answers with the last importances computed for an
experiment (and when), and computes new ones in one background thread: when asked
(:meth:`ImportanceService.request`), or when a reply finds them out of date (more trials
completed) and the last computation is :data:`MIN_INTERVAL` seconds old or more. A
computation reads at most :data:`MAX_SAMPLE` completed trials: the best ones and an even
spread of the experiment's plot sample (see :mod:`hyperdock.dashboard.sampling`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hyperdock.errors import HyperdockError
from hyperdock.objectives import Objectives
from hyperdock.space import Space
from hyperdock.study import importances
from hyperdock.trial import Experiment, Trial, TrialState

log = logging.getLogger("hyperdock.dashboard")

#: Seconds between two automatic computations for one experiment at least.
MIN_INTERVAL = 30.0
#: Seconds a queued computation waits before it starts.
START_DELAY = 0.5
#: Completed trials a computation uses at most.
MAX_SAMPLE = 2000

#: Reads the completed trials to compute on (called in the background thread).
Loader = Callable[[], list[Trial]]


@dataclass
class _Entry:
    values: dict[str, float] = field(default_factory=dict)
    computed_at: float | None = None  # wall clock, for people
    computed_mono: float | None = None
    completed: int = -1  # completed trials when last computed
    used: int = 0  # of which the computation used (a bounded sample)
    pending: bool = False
    version: int = 0  # bumped whenever values change (the detail cache keys on it)


def spread(trials: list[Trial], limit: int, best_ids: set[int]) -> list[Trial]:
    """At most ``limit`` trials: those in ``best_ids`` first, then an even spread of the
    rest, in their order."""
    if len(trials) <= limit:
        return trials
    best = [t for t in trials if t.id in best_ids][:limit]
    rest = [t for t in trials if t.id not in best_ids]
    room = limit - len(best)
    picked = [rest[i * len(rest) // room] for i in range(room)] if room > 0 else []
    return sorted(best + picked, key=lambda t: t.number)


class ImportanceService:
    """Importances per experiment, computed by one background thread.

    Thread-safe. The thread starts with the first computation and lives as long as the
    process (a daemon).
    """

    def __init__(self, min_interval: float = MIN_INTERVAL) -> None:
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, float], _Entry] = {}
        self._queue: queue.Queue[tuple[tuple[int, float], Experiment, Loader, int]] = queue.Queue()
        self._thread: threading.Thread | None = None

    def state(self, exp: Experiment, completed: int) -> dict[str, Any]:
        """The last importances of ``exp`` with their age: ``{"values", "status",
        "computed_at", "age", "version", "completed", "used"}`` (``used``: the completed
        trials the computation read, a sample of the ``completed`` ones). ``status`` is
        ``ready`` (up to date), ``stale`` (more trials completed since), ``pending`` (a
        computation is queued or running) or ``none`` (never computed)."""
        with self._lock:
            entry = self._entries.get((exp.id, exp.created_at)) or _Entry()
            if entry.pending:
                status = "pending"
            elif entry.computed_at is None:
                status = "none"
            else:
                status = "ready" if entry.completed == completed else "stale"
            age = None if entry.computed_mono is None else time.monotonic() - entry.computed_mono
            return {
                "values": dict(entry.values),
                "status": status,
                "computed_at": entry.computed_at,
                "age": age,
                "version": entry.version,
                "completed": None if entry.completed < 0 else entry.completed,
                "used": entry.used,
            }

    def maybe_refresh(self, exp: Experiment, completed: int, load: Loader) -> None:
        """Queue a computation when more trials completed since the last one and that
        one is :attr:`min_interval` seconds old (or there was none)."""
        key = (exp.id, exp.created_at)
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
            if entry.pending or entry.completed == completed or completed < 2:
                return
            if (
                entry.computed_mono is not None
                and time.monotonic() - entry.computed_mono < self.min_interval
            ):
                return
            entry.pending = True
        self._submit(key, exp, load, completed)

    def request(self, exp: Experiment, completed: int, load: Loader) -> None:
        """Queue a computation now (unless one is queued already)."""
        key = (exp.id, exp.created_at)
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
            if entry.pending:
                return
            entry.pending = True
        self._submit(key, exp, load, completed)

    def _submit(
        self, key: tuple[int, float], exp: Experiment, load: Loader, completed: int
    ) -> None:
        self._queue.put((key, exp, load, completed))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hyperdock-importances", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            key, exp, load, completed = self._queue.get()
            # the reply that queued this goes out first (this thread and the request's
            # share the GIL, and the first computation imports optuna)
            time.sleep(START_DELAY)
            values: dict[str, float] = {}
            trials: list[Trial] = []
            try:
                trials = [t for t in load() if t.state is TrialState.COMPLETED]
                if len(trials) >= 2:
                    values = importances(
                        Space.from_json(exp.space), Objectives.from_meta(exp.meta), trials
                    )
            except HyperdockError as exc:
                log.debug("no importances for %s: %s", exp.name, exc)
            except Exception as exc:  # optuna may refuse odd studies; a plot is optional
                log.debug("importances failed for %s: %s", exp.name, exc)
            with self._lock:
                entry = self._entries.setdefault(key, _Entry())
                if values != entry.values or entry.computed_at is None:
                    entry.version += 1
                entry.values = values
                entry.computed_at = time.time()
                entry.computed_mono = time.monotonic()
                entry.completed = completed
                entry.used = len(trials)
                entry.pending = False
