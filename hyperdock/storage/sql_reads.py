"""The SQL stores' reads of an experiment's trials, each one indexed query whose cost
does not grow with the experiment: counts, the best trials, pages, a stream, trials by
number.

Indexes they rely on (:func:`~hyperdock.storage.sql.schema`): the unique
``(experiment_id, number)`` (pages, streams, numbers), ``hd_trials_state``
``(experiment_id, state, number)`` (counts: an index-only scan, and pages of some
states), and the partial ``hd_trials_done`` ``(experiment_id, loss) WHERE state =
'completed'`` (the best trials). Pages and streams go in number order: within an
experiment numbers grow with ids (:meth:`~hyperdock.storage.sql.SQLStore.add_trials`
numbers a batch under the experiment's lock), so that is creation order, read through
the unique index without a sort.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hyperdock.storage.base import Store
from hyperdock.trial import Trial, TrialState

__all__ = ["TRIAL_COLS", "SQLReads"]

#: A trial row's columns, as :meth:`SQLStore._trial` reads them.
TRIAL_COLS = (
    "id, experiment_id, number, params, state, attempt, worker_id, loss, result, error, "
    "history, created_at, started_at, finished_at, heartbeat_at, stop_requested"
)

#: The finished states, for the time an experiment's last trial ended.
_FINISHED = tuple(s.value for s in TrialState if s.finished)


def _state_filter(states: Iterable[TrialState] | None) -> tuple[str, list[Any]] | None:
    """SQL condition and arguments for ``states`` (``""`` for all); None: no state
    wanted, so nothing matches."""
    if states is None:
        return "", []
    wanted = [TrialState(s).value for s in states]
    if not wanted:
        return None
    return f" AND state IN ({', '.join('?' * len(wanted))})", wanted


class SQLReads(Store):
    """The read queries of :class:`~hyperdock.storage.sql.SQLStore` (which provides
    ``_read`` and ``_trial``)."""

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    @staticmethod
    def _trial(row: Sequence[Any]) -> Trial:
        raise NotImplementedError

    def count_trials(self, experiment_id: int) -> dict[TrialState, int]:
        counts = dict.fromkeys(TrialState, 0)
        for state, n in self._read(
            "SELECT state, COUNT(*) FROM hd_trials WHERE experiment_id = ? GROUP BY state",
            (experiment_id,),
        ):
            counts[TrialState(state)] = int(n)
        return counts

    def best_trial(self, experiment_id: int, *, maximize: bool = False) -> Trial | None:
        best = self.best_trials(experiment_id, 1, maximize=maximize)
        return best[0] if best else None

    def best_trials(self, experiment_id: int, n: int, *, maximize: bool = False) -> list[Trial]:
        if n <= 0:
            return []
        order = "DESC" if maximize else "ASC"
        # The partial index gives the loss order; ties (rare) are sorted by id on top.
        rows = self._read(
            f"SELECT {TRIAL_COLS} FROM hd_trials WHERE experiment_id = ? "
            f"AND state = 'completed' AND loss IS NOT NULL ORDER BY loss {order}, id LIMIT ?",
            (experiment_id, n),
        )
        return [self._trial(r) for r in rows]

    def list_trials_page(
        self,
        experiment_id: int,
        *,
        limit: int,
        offset: int = 0,
        newest_first: bool = True,
        states: Iterable[TrialState] | None = None,
    ) -> list[Trial]:
        where = _state_filter(states)
        if where is None or limit <= 0:
            return []
        cond, args = where
        order = "DESC" if newest_first else "ASC"
        # The offset is skipped in the index (the inner select reads no row), so a deep
        # page costs index entries, not rows.
        rows = self._read(
            f"SELECT {TRIAL_COLS} FROM hd_trials WHERE experiment_id = ? AND number IN "
            f"(SELECT number FROM hd_trials WHERE experiment_id = ?{cond} "
            f"ORDER BY number {order} LIMIT ? OFFSET ?) ORDER BY number {order}",
            (experiment_id, experiment_id, *args, limit, max(offset, 0)),
        )
        return [self._trial(r) for r in rows]

    def iter_trials(
        self,
        experiment_id: int,
        *,
        batch: int = 1000,
        states: Iterable[TrialState] | None = None,
    ) -> Iterator[Trial]:
        where = _state_filter(states)
        if where is None:
            return
        cond, args = where
        last = -1
        while True:
            rows = self._read(
                f"SELECT {TRIAL_COLS} FROM hd_trials WHERE experiment_id = ? AND number > ?"
                f"{cond} ORDER BY number LIMIT ?",
                (experiment_id, last, *args, max(batch, 1)),
            )
            for row in rows:
                yield self._trial(row)
            if len(rows) < max(batch, 1):
                return
            last = int(rows[-1][2])

    def trials_by_number(self, experiment_id: int, numbers: Iterable[int]) -> list[Trial]:
        wanted = sorted({int(n) for n in numbers})
        out: list[Trial] = []
        for start in range(0, len(wanted), 500):  # bounded statement size
            chunk = wanted[start : start + 500]
            rows = self._read(
                f"SELECT {TRIAL_COLS} FROM hd_trials WHERE experiment_id = ? AND number IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY number",
                (experiment_id, *chunk),
            )
            out += [self._trial(r) for r in rows]
        return out

    def last_finished_at(self, experiment_id: int) -> float | None:
        row = self._read(
            "SELECT MAX(finished_at) FROM hd_trials WHERE experiment_id = ? "
            f"AND state IN ({', '.join('?' * len(_FINISHED))})",
            (experiment_id, *_FINISHED),
        )
        return None if not row or row[0][0] is None else float(row[0][0])
