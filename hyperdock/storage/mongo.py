"""MongoDB store (pymongo 4, ``pip install 'hyperdock[mongo]'``).

URLs:
    * ``mongodb://[user:password@]host[:port][,host…]/[database[.prefix]][?options]`` and
      ``mongodb+srv://…``: the database comes from the path (default ``hyperdock``); the
      path's database is also the authentication database unless ``authSource`` says
      otherwise, as everywhere in MongoDB.
    * ``mongo://[user:password@]host:port/database/collection`` (the original, hyperopt
      style): the collection becomes the prefix of Hyperdock's collections.

The prefix defaults to ``jobs`` (hyperopt's default collection), so the original
supervisor (``--mongo mongo://host:27017/hyperdock/jobs``), the original worker
(``MONGO_URL=mongo://host:27017/hyperdock``) and ``mongodb://host:27017/hyperdock`` all
meet in the same collections of the database ``hyperdock``:

    * ``<prefix>.experiments``: one document per experiment, ``_id`` an integer.
    * ``<prefix>.trials``: one document per trial, ``_id`` an integer. The experiment's
      ``priority``, ``state`` (as ``exp_state``), ``lease_timeout`` and ``max_retries``
      are copied into every trial, so that a claim and a reap are single-document
      atomic operations; the copies are rewritten whenever the experiment changes.
    * ``<prefix>.workers``: the worker registry, ``_id`` the worker id.
    * ``<prefix>.counters``: integer id sequences (``$inc``).
    * ``<prefix>.meta``: ``schema_version``.
    * ``<prefix>.logs``: attempts' log chunks (:mod:`hyperdock.storage.mongo_logs`).

MongoDB has no multi-document transactions on a standalone server, so every change of a
trial is one atomic single-document update whose filter states what the change relies
on: a claim is one ``find_one_and_update`` on ``state: queued`` (sorted by priority,
queue rank, then id); an update that ends an attempt is conditioned on the lease it read
(``state: running``, ``worker_id``, ``attempt``, ``started_at``) and retried if the
document changed in between; a reap is conditioned on the stale ``heartbeat_at`` it saw.

:mod:`hyperdock.storage.mongo_base` holds the plumbing underneath: how values are stored
(as JSON text where MongoDB cannot hold them as a document), the server's clock that
leases are measured on, id sequences and the translation of pymongo's errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hyperdock.errors import ExperimentExists, ExperimentNotFound, StoreError
from hyperdock.jsonutil import to_jsonable
from hyperdock.storage.base import cancel_message
from hyperdock.storage.mongo_base import (
    ACTIVE,
    CLOCK_REFRESH,
    DEFAULT_DATABASE,
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT_MS,
    QUEUED,
    RUNNING,
    guarded,
    pack,
    parse_url,
    trial_doc,
    unpack,
)
from hyperdock.storage.mongo_logs import MongoLogs
from hyperdock.storage.mongo_reads import MongoReads
from hyperdock.trial import (
    Experiment,
    ExperimentState,
    Target,
    Trial,
    TrialState,
    TrialSummary,
    Worker,
)

__all__ = [
    "CLOCK_REFRESH",
    "DEFAULT_DATABASE",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_MS",
    "MongoStore",
    "parse_url",
]

#: How often an optimistic update is retried when its document changed in between.
_CAS_ATTEMPTS = 50


def _stopped_state(doc: dict[str, Any]) -> TrialState:
    """The final state of a trial whose target was stopped on request."""
    return TrialState.PRUNED if doc.get("prune_requested") else TrialState.CANCELLED


class MongoStore(MongoLogs, MongoReads):
    """A store in a MongoDB database (pymongo 4).

    Args:
        url: A ``mongodb://``, ``mongodb+srv://`` or ``mongo://host:port/db/collection``
            URL (see the module docstring). Options in the URL go to pymongo.
        client: An existing client (``pymongo.MongoClient`` or ``mongomock.MongoClient``)
            instead of ``url``; the store does not close it.
        database: Database name; overrides the URL's (default ``hyperdock``).
        prefix: Prefix of the collections; overrides the URL's (default ``jobs``).
        timeout_ms: ``serverSelectionTimeoutMS`` when the URL sets none.

    Raises:
        ConfigError: pymongo is not installed.
        StoreConnectionError: the URL is malformed, the server cannot be reached or
            refuses the credentials.
        StoreError: the database was written by a newer Hyperdock.
    """

    backend = "mongodb"

    # -- experiments ------------------------------------------------------------------
    @guarded
    def create_experiment(
        self,
        name: str,
        *,
        space: Any,
        target: Target,
        sampler: str,
        seed: int,
        max_trials: int | None,
        max_retries: int = 5,
        priority: int = 0,
        lease_timeout: float = 60.0,
        meta: dict[str, Any] | None = None,
    ) -> Experiment:
        exists = ExperimentExists(
            f"an experiment named {name!r} exists already; pick another --name, "
            "or resume it by running the same command with that name"
        )
        if self._experiments.find_one({"name": name}, {"_id": 1}) is not None:
            raise exists
        doc: dict[str, Any] = {
            "_id": self._next_ids("experiments", 1),
            "name": name,
            **pack("space", space),
            **pack("target", target.to_json()),
            "sampler": sampler,
            "seed": int(seed),
            "max_trials": None if max_trials is None else int(max_trials),
            "max_retries": int(max_retries),
            "priority": int(priority),
            "lease_timeout": float(lease_timeout),
            "state": ExperimentState.RUNNING.value,
            "created_at": self._now(),
            **pack("meta", meta or {}),
        }
        try:
            self._experiments.insert_one(doc)
        except self._errors.DuplicateKeyError:
            raise exists from None
        return self._experiment(doc)

    @guarded
    def get_experiment(self, name_or_id: str | int) -> Experiment:
        by_id = isinstance(name_or_id, int)
        doc = self._experiments.find_one({"_id" if by_id else "name": name_or_id})
        if doc is None:
            what = f"id {name_or_id}" if by_id else repr(name_or_id)
            raise ExperimentNotFound(
                f"no experiment {what} in {self.describe()}; `hyperdock status` lists them"
            )
        return self._experiment(doc)

    @guarded
    def list_experiments(self) -> list[Experiment]:
        return [self._experiment(d) for d in self._experiments.find({}, sort=[("_id", 1)])]

    @guarded
    def set_experiment_state(self, experiment_id: int, state: ExperimentState) -> None:
        state = ExperimentState(state)
        self._experiments.update_one({"_id": experiment_id}, {"$set": {"state": state.value}})
        # The copies in the trials first: claims stop at once.
        self._trials.update_many(
            {"experiment_id": experiment_id, "state": {"$in": ACTIVE}},
            {"$set": {"exp_state": state.value}},
        )
        if state.stops_trials:
            # Running trials first: one released to the queue meanwhile is then either
            # released as cancelled (it sees the stop) or cancelled in the queue below.
            self._trials.update_many(
                {"experiment_id": experiment_id, "state": RUNNING},
                {"$set": {"stop_requested": True}},
            )
            self._trials.update_many(
                {"experiment_id": experiment_id, "state": QUEUED},
                {
                    "$set": {
                        "state": TrialState.CANCELLED.value,
                        "finished_at": self._now(),
                        "error": cancel_message(state),
                    }
                },
            )

    @guarded
    def update_experiment(
        self,
        experiment_id: int,
        *,
        max_trials: int | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Experiment:
        if meta:
            self._merge_meta(experiment_id, meta)
        changes: dict[str, Any] = {}
        if max_trials is not None:
            changes["max_trials"] = int(max_trials)
        if priority is not None:
            changes["priority"] = int(priority)
        if max_retries is not None:
            changes["max_retries"] = int(max_retries)
        if changes:
            self._experiments.update_one({"_id": experiment_id}, {"$set": changes})
            copies = {k: v for k, v in changes.items() if k in ("priority", "max_retries")}
            if copies:
                self._trials.update_many(
                    {"experiment_id": experiment_id, "state": {"$in": ACTIVE}},
                    {"$set": copies},
                )
        return self.get_experiment(experiment_id)

    def _merge_meta(self, experiment_id: int, meta: dict[str, Any]) -> None:
        """Set ``meta``'s keys in the experiment's meta; a compare-and-swap on the old
        value, so concurrent updates of different keys do not undo each other."""
        for _ in range(100):
            doc = self._experiments.find_one({"_id": experiment_id}, {"meta": 1, "meta_json": 1})
            if doc is None:
                return
            old = {"meta": doc.get("meta"), "meta_json": doc.get("meta_json")}
            merged = {**(unpack(doc, "meta") or {}), **meta}
            found = self._experiments.update_one(
                {"_id": experiment_id, **old}, {"$set": pack("meta", merged)}
            )
            if found.matched_count:
                return
        raise StoreError(
            f"MongoDB store {self.describe()}: experiment {experiment_id}'s settings kept "
            "changing while they were updated; try again"
        )

    @guarded
    def delete_experiment(self, experiment_id: int) -> None:
        self._trials.delete_many({"experiment_id": experiment_id})
        self._progress.delete_many({"experiment_id": experiment_id})
        self._logs.delete_many({"experiment_id": experiment_id})
        self._experiments.delete_one({"_id": experiment_id})

    # -- trials -----------------------------------------------------------------------
    @guarded
    def add_trials(
        self,
        experiment_id: int,
        params: Sequence[dict[str, Any]],
        *,
        first_number: int | None = None,
        front: bool = False,
    ) -> list[Trial]:
        exp = self._experiments.find_one({"_id": experiment_id})
        if exp is None:
            raise ExperimentNotFound(f"no experiment with id {experiment_id}")
        pending = list(params)
        wanted = first_number
        created: list[dict[str, Any]] = []
        # The unique (experiment_id, number) index is the source of truth: a number is
        # taken once its trial exists. Another process adding to the same experiment at
        # the same moment makes the insert fail on a duplicate number; start over then.
        for _ in range(_CAS_ATTEMPTS):
            last = self._trials.find_one(
                {"experiment_id": experiment_id}, {"number": 1}, sort=[("number", -1)]
            )
            first = int(last["number"]) + 1 if last is not None else 0
            if wanted is not None and wanted < first:
                pending = pending[first - wanted :]  # those exist already
                wanted = first
            if not pending:
                break
            first_id = self._next_ids("trials", len(pending))
            now = self._now()
            rank = self._front_rank(experiment_id) if front else 0
            docs = [
                trial_doc(exp, first_id + i, first + i, p, now, rank) for i, p in enumerate(pending)
            ]
            try:
                self._trials.insert_many(docs, ordered=True)
            except self._errors.BulkWriteError as exc:
                codes = {e.get("code") for e in exc.details.get("writeErrors", [])}
                if codes - {11000}:
                    raise
                done = int(exc.details.get("nInserted", 0))
                created += docs[:done]
                pending = pending[done:]
                if wanted is not None:
                    wanted += done
                continue
            created += docs
            break
        else:
            raise StoreError(
                f"MongoDB store {self.describe()}: other processes kept adding trials to "
                f"experiment {experiment_id}; try again"
            )
        if created:
            self._refresh_copies(experiment_id, [d["_id"] for d in created], exp)
        return [self._trial(d) for d in created]

    def _front_rank(self, experiment_id: int) -> int:
        """One rank below the lowest of the experiment's queued trials (and below 0)."""
        low = self._trials.find_one(
            {"experiment_id": experiment_id, "state": QUEUED},
            {"queue_rank": 1},
            sort=[("queue_rank", 1)],
        )
        return min(int(low.get("queue_rank", 0)) if low else 0, 0) - 1

    def _refresh_copies(self, experiment_id: int, ids: list[int], seen: dict[str, Any]) -> None:
        """Rewrite the experiment's fields copied into new trials if the experiment
        changed while they were added."""
        exp = self._experiments.find_one({"_id": experiment_id})
        if exp is None:  # deleted meanwhile: so are its trials
            self._trials.delete_many({"_id": {"$in": ids}})
            return
        fields = {"priority": "priority", "exp_state": "state", "max_retries": "max_retries"}
        changed = {k: exp[v] for k, v in fields.items() if exp[v] != seen[v]}
        if changed:
            self._trials.update_many(
                {"_id": {"$in": ids}, "state": {"$in": ACTIVE}}, {"$set": changed}
            )
            state = ExperimentState(exp["state"])
            if state.stops_trials:
                self._trials.update_many(
                    {"_id": {"$in": ids}, "state": QUEUED},
                    {
                        "$set": {
                            "state": TrialState.CANCELLED.value,
                            "finished_at": self._now(),
                            "error": cancel_message(state),
                        }
                    },
                )

    @guarded
    def claim(self, worker_id: str, *, experiment_id: int | None = None) -> Trial | None:
        query: dict[str, Any] = {"state": QUEUED, "exp_state": ExperimentState.RUNNING.value}
        if experiment_id is not None:
            query["experiment_id"] = experiment_id
        now = self._now()
        doc = self._trials.find_one_and_update(
            query,
            {
                "$set": {
                    "state": RUNNING,
                    "worker_id": worker_id,
                    "started_at": now,
                    "heartbeat_at": now,
                    "stop_requested": False,
                    "prune_requested": False,
                    "finished_at": None,
                }
            },
            sort=[("priority", -1), ("queue_rank", 1), ("_id", 1)],
            return_document=self._after,
        )
        return self._trial(doc) if doc is not None else None

    @guarded
    def heartbeat(self, worker_id: str, trial_ids: Iterable[int]) -> set[int]:
        ids = sorted(set(trial_ids))
        now = self._now()
        self._workers.update_one({"_id": worker_id}, {"$set": {"heartbeat_at": now}})
        if not ids:
            return set()
        self._trials.update_many(
            {"_id": {"$in": ids}, "state": RUNNING, "worker_id": worker_id},
            {"$set": {"heartbeat_at": now}},
        )
        docs = self._trials.find(
            {"_id": {"$in": ids}}, {"state": 1, "worker_id": 1, "stop_requested": 1}
        )
        keep = {
            int(d["_id"])
            for d in docs
            if d["state"] == RUNNING
            and d.get("worker_id") == worker_id
            and not d.get("stop_requested")
        }
        return set(ids) - keep

    @guarded
    def finish(
        self,
        trial_id: int,
        worker_id: str,
        *,
        state: TrialState,
        loss: float | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        if not state.finished:
            raise ValueError(f"finish() needs a final state, not {state}")
        for _ in range(_CAS_ATTEMPTS):
            lease = self._lease(trial_id, worker_id)
            if lease is None:
                return False
            now = self._now()
            entry = self._entry(
                attempt=int(lease["attempt"]),
                worker=worker_id,
                started=lease.get("started_at"),
                ended=now,
                state=state.value,
                message=error,
            )
            done = self._trials.update_one(
                self._same_lease(lease),
                {
                    "$set": {
                        "state": state.value,
                        "loss": None if loss is None else float(to_jsonable(loss)),
                        **pack("result", result or {}),
                        "error": error,
                        "finished_at": now,
                    },
                    "$push": {"history": entry},
                },
            )
            if done.matched_count:
                return True
        raise self._contention(trial_id)

    @guarded
    def release(
        self,
        trial_id: int,
        worker_id: str,
        *,
        error: str,
        retry: bool = True,
        count_attempt: bool = True,
        result: dict[str, Any] | None = None,
    ) -> TrialState | None:
        for _ in range(_CAS_ATTEMPTS):
            lease = self._lease(trial_id, worker_id)
            if lease is None:
                return None
            attempt, max_retries = int(lease["attempt"]), int(lease["max_retries"])
            if lease.get("stop_requested"):
                new_state = _stopped_state(lease)
            elif retry and (not count_attempt or attempt < max_retries):
                new_state = TrialState.QUEUED
            else:
                new_state = TrialState.FAILED
            queued = new_state is TrialState.QUEUED
            now = self._now()
            entry = self._entry(
                attempt=attempt,
                worker=worker_id,
                started=lease.get("started_at"),
                ended=now,
                state="requeued" if queued else new_state.value,
                message=error,
            )
            done = self._trials.update_one(
                self._same_lease(lease, stop=True),
                {
                    "$set": {
                        "state": new_state.value,
                        "attempt": attempt + 1 if queued and count_attempt else attempt,
                        "error": error,
                        **pack("result", result or {}),
                        "finished_at": None if queued else now,
                        "heartbeat_at": None,
                    },
                    "$push": {"history": entry},
                },
            )
            if done.matched_count:
                return new_state
        raise self._contention(trial_id)

    @guarded
    def reap(self) -> list[Trial]:
        now = self._now()
        lost = self._trials.find(
            {
                "state": RUNNING,
                "$expr": {"$lt": ["$heartbeat_at", {"$subtract": [now, "$lease_timeout"]}]},
            },
            sort=[("_id", 1)],
        )
        changed: list[Trial] = []
        for doc in lost:
            attempt, beat = int(doc["attempt"]), float(doc["heartbeat_at"])
            worker, stop = doc.get("worker_id"), bool(doc.get("stop_requested"))
            message = (
                f"Timed out: worker {worker} sent no heartbeat for {now - beat:.0f} s "
                "(it crashed, was killed or lost the database)"
            )
            if stop:
                new_state = _stopped_state(doc)
            elif attempt < int(doc["max_retries"]):
                new_state = TrialState.QUEUED
            else:
                new_state = TrialState.FAILED
            queued = new_state is TrialState.QUEUED
            entry = self._entry(
                attempt=attempt,
                worker=worker,
                started=doc.get("started_at"),
                ended=now,
                state="requeued" if queued else new_state.value,
                message=message,
            )
            # Only while nobody else changed it: a heartbeat, release or another reaper
            # in between makes the filter miss.
            query = self._same_lease(doc, stop=True)
            query["heartbeat_at"] = doc["heartbeat_at"]
            after = self._trials.find_one_and_update(
                query,
                {
                    "$set": {
                        "state": new_state.value,
                        "attempt": attempt + 1 if queued else attempt,
                        "error": message,
                        "finished_at": None if queued else now,
                        "heartbeat_at": None,
                    },
                    "$push": {"history": entry},
                },
                return_document=self._after,
            )
            if after is not None:
                changed.append(self._trial(after))
        return changed

    @guarded
    def get_trial(self, trial_id: int) -> Trial:
        doc = self._trials.find_one({"_id": trial_id})
        if doc is None:
            raise ExperimentNotFound(f"no trial with id {trial_id} in {self.describe()}")
        return self._trial(doc)

    @guarded
    def list_trials(
        self,
        experiment_id: int,
        *,
        states: Iterable[TrialState] | None = None,
        since_id: int | None = None,
        limit: int | None = None,
    ) -> list[Trial]:
        query: dict[str, Any] = {"experiment_id": experiment_id}
        if states is not None:
            wanted = [TrialState(s).value for s in states]
            if not wanted:
                return []
            query["state"] = {"$in": wanted}
        if since_id is not None:
            query["_id"] = {"$gt": since_id}
        if limit is not None and limit <= 0:
            return []
        docs = self._trials.find(query, sort=[("_id", 1)], limit=limit or 0)
        return [self._trial(d) for d in docs]

    @guarded
    def _trial_summaries(
        self, experiment_id: int, since_id: int | None, with_result: bool, limit: int
    ) -> list[TrialSummary]:
        fields = ["number", "state", "params", "params_json", "loss"]
        if with_result:
            fields += ["result", "result_json"]
        docs = self._trials.find(
            {"experiment_id": experiment_id, "_id": {"$gt": -1 if since_id is None else since_id}},
            projection=dict.fromkeys(fields, 1), sort=[("_id", 1)], limit=limit,
        )  # fmt: skip
        out = []
        for d in docs:
            loss = d.get("loss")
            result = (unpack(d, "result") or {}) if with_result else {}
            state, params = TrialState(d["state"]), unpack(d, "params")
            loss = None if loss is None else float(loss)
            out.append(TrialSummary(int(d["_id"]), int(d["number"]), state, params, loss, result))
        return out

    @guarded
    def cancel_trial(self, trial_id: int) -> TrialState:
        self._trials.update_one(
            {"_id": trial_id, "state": QUEUED},
            {
                "$set": {
                    "state": TrialState.CANCELLED.value,
                    "finished_at": self._now(),
                    "error": "Cancelled",
                }
            },
        )
        self._trials.update_one(
            {"_id": trial_id, "state": RUNNING}, {"$set": {"stop_requested": True}}
        )
        doc = self._trials.find_one({"_id": trial_id}, {"state": 1})
        if doc is None:
            raise ExperimentNotFound(f"no trial with id {trial_id} in {self.describe()}")
        return TrialState(doc["state"])

    @guarded
    def prune_trial(self, trial_id: int) -> bool:
        done = self._trials.update_one(
            {"_id": trial_id, "state": RUNNING, "stop_requested": {"$ne": True}},
            {"$set": {"stop_requested": True, "prune_requested": True}},
        )
        return bool(done.matched_count)

    @guarded
    def add_progress(
        self, trial_id: int, worker_id: str, points: Sequence[tuple[int, float]]
    ) -> bool:
        lease = self._lease(trial_id, worker_id)
        if lease is None:
            return False
        for step, loss in points:
            self._progress.update_one(
                {"_id": f"{trial_id}:{int(step)}"},
                {
                    "$set": {
                        "experiment_id": int(lease["experiment_id"]),
                        "trial_id": trial_id,
                        "step": int(step),
                        "loss": float(loss),
                    }
                },
                upsert=True,
            )
        return True

    @guarded
    def list_progress(
        self, experiment_id: int, *, trial_ids: Iterable[int] | None = None
    ) -> dict[int, list[tuple[int, float]]]:
        query: dict[str, Any] = {"experiment_id": experiment_id}
        if trial_ids is not None:
            query["trial_id"] = {"$in": sorted(set(trial_ids))}
        out: dict[int, list[tuple[int, float]]] = {}
        for doc in self._progress.find(query, sort=[("trial_id", 1), ("step", 1)]):
            out.setdefault(int(doc["trial_id"]), []).append((int(doc["step"]), float(doc["loss"])))
        return out

    # -- workers ----------------------------------------------------------------------
    @guarded
    def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        parallelism: int,
        meta: dict[str, Any] | None = None,
    ) -> None:
        now = self._now()
        self._workers.replace_one(
            {"_id": worker_id},
            {
                "host": host,
                "pid": int(pid),
                "parallelism": int(parallelism),
                "started_at": now,
                "heartbeat_at": now,
                **pack("meta", meta or {}),
            },
            upsert=True,
        )

    @guarded
    def set_worker_status(self, worker_id: str, status: str | None) -> None:
        change = {"$unset": {"status": ""}} if status is None else {"$set": {"status": status}}
        self._workers.update_one({"_id": worker_id}, change)

    @guarded
    def unregister_worker(self, worker_id: str) -> None:
        self._workers.delete_one({"_id": worker_id})

    @guarded
    def list_workers(self, *, max_age: float | None = None) -> list[Worker]:
        now = self._now()
        docs = list(self._workers.find({}, sort=[("started_at", 1)]))
        running: dict[str, list[int]] = {}
        for doc in self._trials.find({"state": RUNNING}, {"worker_id": 1}, sort=[("_id", 1)]):
            running.setdefault(doc.get("worker_id"), []).append(int(doc["_id"]))
        return [
            Worker(
                id=d["_id"],
                host=d["host"],
                pid=int(d["pid"]),
                parallelism=int(d["parallelism"]),
                started_at=float(d["started_at"]),
                heartbeat_at=float(d["heartbeat_at"]),
                running=tuple(running.get(d["_id"], ())),
                meta=unpack(d, "meta") or {},
                status=d.get("status"),
            )
            for d in docs
            if max_age is None or now - float(d["heartbeat_at"]) <= max_age
        ]

    # -- misc -------------------------------------------------------------------------
    @guarded
    def schema_version(self) -> int:
        doc = self._meta.find_one({"_id": "schema_version"})
        if doc is None:
            raise StoreError(f"MongoDB store {self.describe()} records no schema version")
        return int(doc["value"])
