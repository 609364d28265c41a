"""The MongoDB store's reads of an experiment's trials, each on an index so that their
cost does not grow with the experiment: counts (a count scan per state), the best
trials, pages, a stream (keyset on ``_id``), trials by number.

Indexes (made in :meth:`MongoBase._open`): ``hd_exp_id`` ``(experiment_id, _id)``
(pages, streams), ``hd_exp_number`` (numbers) and ``hd_exp_best``
``(experiment_id, state, loss, _id)`` (counts by state, the best trials). Figures
measured with mongomock say nothing about a server's costs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from hyperdock.storage.mongo_base import MongoBase, guarded
from hyperdock.trial import Trial, TrialState

__all__ = ["MongoReads"]

_COMPLETED = TrialState.COMPLETED.value


def _state_query(experiment_id: int, states: Iterable[TrialState] | None) -> dict[str, Any]:
    query: dict[str, Any] = {"experiment_id": experiment_id}
    if states is not None:
        query["state"] = {"$in": [TrialState(s).value for s in states]}
    return query


class MongoReads(MongoBase):
    """The read queries of :class:`~hyperdock.storage.mongo.MongoStore`."""

    @guarded
    def count_trials(self, experiment_id: int) -> dict[TrialState, int]:
        return {
            s: int(self._trials.count_documents({"experiment_id": experiment_id, "state": s.value}))
            for s in TrialState
        }

    def best_trial(self, experiment_id: int, *, maximize: bool = False) -> Trial | None:
        best = self.best_trials(experiment_id, 1, maximize=maximize)
        return best[0] if best else None

    @guarded
    def best_trials(self, experiment_id: int, n: int, *, maximize: bool = False) -> list[Trial]:
        if n <= 0:
            return []
        done = {"experiment_id": experiment_id, "state": _COMPLETED, "loss": {"$ne": None}}
        if not maximize:  # the index's order exactly: lowest loss, then lowest id
            docs = self._trials.find(done, sort=[("loss", 1), ("_id", 1)], limit=n)
            return [self._trial(d) for d in docs]
        # Highest loss, lowest id on ties: the index read backwards gives the n best
        # losses (ties by highest id); the ties at the last of them are read again.
        top = list(self._trials.find(done, sort=[("loss", -1), ("_id", -1)], limit=n))
        if not top:
            return []
        edge = top[-1]["loss"]
        above = [d for d in top if d["loss"] != edge]
        ties = self._trials.find(done | {"loss": edge}, sort=[("_id", 1)], limit=n - len(above))
        above.sort(key=lambda d: (-d["loss"], d["_id"]))
        return [self._trial(d) for d in [*above, *ties]]

    @guarded
    def list_trials_page(
        self,
        experiment_id: int,
        *,
        limit: int,
        offset: int = 0,
        newest_first: bool = True,
        states: Iterable[TrialState] | None = None,
    ) -> list[Trial]:
        if limit <= 0:
            return []
        docs = self._trials.find(
            _state_query(experiment_id, states),
            sort=[("_id", -1 if newest_first else 1)],
            skip=max(offset, 0),
            limit=limit,
        )
        return [self._trial(d) for d in docs]

    def iter_trials(
        self,
        experiment_id: int,
        *,
        batch: int = 1000,
        states: Iterable[TrialState] | None = None,
    ) -> Iterator[Trial]:
        query = _state_query(experiment_id, states)
        size = max(batch, 1)
        last = -1
        while True:
            page = self._page_after(query, last, size)
            yield from page
            if len(page) < size:
                return
            last = page[-1].id

    @guarded
    def _page_after(self, query: dict[str, Any], last: int, size: int) -> list[Trial]:
        docs = self._trials.find(query | {"_id": {"$gt": last}}, sort=[("_id", 1)], limit=size)
        return [self._trial(d) for d in docs]

    @guarded
    def trials_by_number(self, experiment_id: int, numbers: Iterable[int]) -> list[Trial]:
        wanted = sorted({int(n) for n in numbers})
        out: list[Trial] = []
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            query = {"experiment_id": experiment_id, "number": {"$in": chunk}}
            out += [self._trial(d) for d in self._trials.find(query, sort=[("number", 1)])]
        return out

    @guarded
    def last_finished_at(self, experiment_id: int) -> float | None:
        # No index on the end time (every finish would write it): the times alone are
        # read, not the documents.
        finished = [s.value for s in TrialState if s.finished]
        ends = self._trials.find(
            {"experiment_id": experiment_id, "state": {"$in": finished}},
            {"finished_at": 1, "_id": 0},
        )
        return max((float(d["finished_at"]) for d in ends if d.get("finished_at")), default=None)
