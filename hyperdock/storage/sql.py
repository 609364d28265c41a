"""The SQL stores' shared part: the tables, the queries and :class:`SQLStore`.

Two dialects subclass :class:`SQLStore`: :class:`~hyperdock.storage.sqlite.SQLiteStore`
(the embedded default, ``storage/sqlite.py``) and
:class:`~hyperdock.storage.postgres.PostgresStore` (``storage/postgres.py``). They differ
in connection handling, placeholders, the clock and row locking; the queries are shared,
except that PostgreSQL ends an attempt (:meth:`PostgresStore.finish`) in one statement,
the server appending the history entry, and analyzes the trials table after a large
batch of new trials. Claims are a single ``UPDATE … WHERE id = (SELECT … LIMIT 1)
RETURNING`` statement: under SQLite the statement holds the database's write lock, under
PostgreSQL the inner select takes ``FOR UPDATE OF t SKIP LOCKED``, so concurrent claims
pass each other. Multi-statement changes run in ``BEGIN IMMEDIATE`` (SQLite) or in a
transaction that locks what it reads with ``SELECT … FOR UPDATE`` (PostgreSQL); a lease
check locks the trial's row only, never its experiment's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hyperdock.errors import ExperimentExists, ExperimentNotFound, StoreError
from hyperdock.jsonutil import dumps
from hyperdock.storage.base import SCHEMA_VERSION, cancel_message
from hyperdock.storage.sql_logs import SQLLogs, logs_table
from hyperdock.storage.sql_reads import TRIAL_COLS, SQLReads
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
    "EXPERIMENT_COLS",
    "LEASE_OF_ANOTHER_BOOT",
    "READS_INDEX",
    "TRIAL_COLS",
    "SQLStore",
    "schema",
]

#: An experiment row's columns, as :meth:`SQLStore._experiment` reads them.
EXPERIMENT_COLS = (
    "id, name, space, target, sampler, seed, max_trials, max_retries, priority, "
    "lease_timeout, state, created_at, meta"
)
#: The index the reads need beyond schema 5's (made at open, so no schema bump).
READS_INDEX = (
    "CREATE INDEX IF NOT EXISTS hd_trials_state ON hd_trials (experiment_id, state, number)"
)
#: Trials per INSERT statement of :meth:`SQLStore.add_trials` (6 parameters each: under
#: SQLite's oldest limit of 999 per statement).
_INSERT_ROWS = 150

#: Trial states by stored value.
_STATES = {s.value: s for s in TrialState}
#: Key of a worker's status in its stored meta.
_STATUS_KEY = "hyperdock.status"


def schema(
    id_type: str,
    float_type: str,
    ref_type: str = "INTEGER",
    add_queue_rank: Sequence[str] = (),
    blob_type: str = "BLOB",
) -> list[str]:
    """The tables and indexes, in the dialect's id, float, id-reference and bytes
    types; ``add_queue_rank`` adds schema 5's column to a table made before it (where
    the dialect can say so in a statement). Schema 6's log table is new: made here."""
    return [
        "CREATE TABLE IF NOT EXISTS hd_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS hd_experiments (
            id {id_type}, name TEXT NOT NULL UNIQUE, space TEXT NOT NULL,
            target TEXT NOT NULL, sampler TEXT NOT NULL, seed BIGINT NOT NULL,
            max_trials INTEGER, max_retries INTEGER NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0, lease_timeout {float_type} NOT NULL,
            state TEXT NOT NULL, created_at {float_type} NOT NULL, meta TEXT NOT NULL,
            next_number INTEGER NOT NULL DEFAULT 0)""",
        f"""CREATE TABLE IF NOT EXISTS hd_trials (
            id {id_type},
            experiment_id {ref_type} NOT NULL REFERENCES hd_experiments(id) ON DELETE CASCADE,
            number INTEGER NOT NULL, params TEXT NOT NULL, state TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0, attempt INTEGER NOT NULL DEFAULT 0,
            worker_id TEXT, loss {float_type}, result TEXT, error TEXT,
            history TEXT NOT NULL DEFAULT '[]', created_at {float_type} NOT NULL,
            started_at {float_type}, finished_at {float_type}, heartbeat_at {float_type},
            stop_requested INTEGER NOT NULL DEFAULT 0,
            queue_rank INTEGER NOT NULL DEFAULT 0,
            UNIQUE (experiment_id, number))""",
        *add_queue_rank,
        # Schema 5 orders the queue by queue_rank too (front batches).
        "DROP INDEX IF EXISTS hd_trials_queue",
        "CREATE INDEX IF NOT EXISTS hd_trials_queue_rank ON hd_trials "
        "(priority DESC, queue_rank, id) WHERE state = 'queued'",
        # Running trials only (as many as worker slots): the reaper's scan, a worker's
        # heartbeat and the worker list. heartbeat_at is in no index, so a heartbeat's
        # update stays HOT (PostgreSQL writes no index entry for it).
        "CREATE INDEX IF NOT EXISTS hd_trials_running ON hd_trials (worker_id) "
        "WHERE state = 'running'",
        # Best trial by loss. Partial, so that only a finished trial adds an entry: a
        # trial's row changes state twice (claim, finish), and every index that a
        # change touches costs the claim loop time. Schema 1 had a full index here.
        "DROP INDEX IF EXISTS hd_trials_exp",
        "CREATE INDEX IF NOT EXISTS hd_trials_done ON hd_trials (experiment_id, loss) "
        "WHERE state = 'completed'",
        # Counts by state (index only) and pages of some states (storage/sql_reads.py).
        READS_INDEX,
        f"""CREATE TABLE IF NOT EXISTS hd_progress (
            trial_id {ref_type} NOT NULL REFERENCES hd_trials(id) ON DELETE CASCADE,
            step INTEGER NOT NULL, loss {float_type} NOT NULL,
            PRIMARY KEY (trial_id, step))""",
        f"""CREATE TABLE IF NOT EXISTS hd_workers (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
            parallelism INTEGER NOT NULL, started_at {float_type} NOT NULL,
            heartbeat_at {float_type} NOT NULL, meta TEXT NOT NULL)""",
        logs_table(ref_type, blob_type),
    ]


#: The age the lease clock gives a lease renewed before the machine restarted (SQLite):
#: older than any lease timeout.
LEASE_OF_ANOTHER_BOOT = 1e18

#: ``stop_requested`` values: 0 none, 1 cancel, 2 prune (a cancel overrides a prune).
_STOP_CANCEL = 1
_STOP_PRUNE = 2


def _stopped_state(stop_requested: Any) -> TrialState:
    """The final state of a trial whose target was stopped on request."""
    return TrialState.PRUNED if stop_requested == _STOP_PRUNE else TrialState.CANCELLED


class SQLStore(SQLLogs, SQLReads):
    """Shared implementation; subclasses provide connections and dialect bits."""

    #: SQL expression for the database's current Unix time.
    now_sql = ""
    #: Appended to a SELECT that must lock the rows it reads.
    lock_sql = ""
    #: Appended to the claim's inner SELECT.
    claim_lock_sql = ""
    #: Statement that starts a write transaction.
    begin_sql = "BEGIN"

    # -- plumbing provided by dialects ------------------------------------------------
    def _q(self, sql: str) -> str:
        """Translate ``?`` placeholders to the driver's style."""
        return sql

    @contextlib.contextmanager
    def _tx(self, write: bool = True, *, single: bool = False) -> Iterator[Any]:
        """A cursor inside one transaction, committed on success. ``write=False`` for
        reads only: it takes no write lock. ``single`` promises that the block runs one
        statement, atomic by itself, so a dialect may skip BEGIN/COMMIT round trips."""
        raise NotImplementedError
        yield  # pragma: no cover

    # -- helpers ----------------------------------------------------------------------
    def _all(self, cur: Any, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        cur.execute(self._q(sql), tuple(args))
        return list(cur.fetchall())

    def _one(self, cur: Any, sql: str, args: Sequence[Any] = ()) -> Any:
        cur.execute(self._q(sql), tuple(args))
        return cur.fetchone()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._tx(write=False) as cur:
            return self._all(cur, sql, args)

    def _init_schema(self) -> None:
        with self._tx() as cur:
            # Before the statements (their indexes may need a column an old table lacks)
            # and after them (a new table gets the columns only migrations add).
            self._migrate(cur)
            for statement in self._schema_statements():
                cur.execute(statement)
            self._migrate(cur)
            row = self._one(cur, "SELECT value FROM hd_meta WHERE key = 'schema_version'")
            if row is None:
                cur.execute(
                    self._q("INSERT INTO hd_meta (key, value) VALUES ('schema_version', ?)"),
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"the database was written by a newer Hyperdock (schema {row[0]}, this "
                    f"one knows {SCHEMA_VERSION}); upgrade Hyperdock: pip install -U hyperdock"
                )
            elif int(row[0]) < SCHEMA_VERSION:  # the statements above upgraded it
                cur.execute(
                    self._q("UPDATE hd_meta SET value = ? WHERE key = 'schema_version'"),
                    (str(SCHEMA_VERSION),),
                )

    def _schema_statements(self) -> list[str]:
        raise NotImplementedError

    def _migrate(self, cur: Any) -> None:
        """Changes to an existing layout that ``CREATE … IF NOT EXISTS`` cannot make;
        runs before and after the schema statements (tables may not exist yet): it must
        be idempotent."""

    @staticmethod
    def _experiment(row: Sequence[Any]) -> Experiment:
        return Experiment(
            id=int(row[0]),
            name=row[1],
            space=json.loads(row[2]),
            target=Target.from_json(json.loads(row[3])),
            sampler=row[4],
            seed=int(row[5]),
            max_trials=row[6],
            max_retries=int(row[7]),
            priority=int(row[8]),
            lease_timeout=float(row[9]),
            state=ExperimentState(row[10]),
            created_at=float(row[11]),
            meta=json.loads(row[12]),
        )

    @staticmethod
    def _trial(row: Sequence[Any]) -> Trial:
        return Trial(
            id=int(row[0]),
            experiment_id=int(row[1]),
            number=int(row[2]),
            params=json.loads(row[3]),
            state=TrialState(row[4]),
            attempt=int(row[5]),
            worker_id=row[6],
            loss=row[7],
            result=json.loads(row[8]) if row[8] else {},
            error=row[9],
            history=json.loads(row[10]) if row[10] != "[]" else [],
            created_at=float(row[11]),
            started_at=row[12],
            finished_at=row[13],
            heartbeat_at=row[14],
            stop_requested=bool(row[15]),
            prune_requested=row[15] == _STOP_PRUNE,
        )

    def _now(self, cur: Any) -> float:
        return float(self._one(cur, f"SELECT {self.now_sql}")[0])

    # -- lease clock: the database's clock here; SQLite measures on the machine's ------
    def _beat_sql(self, table: str) -> tuple[str, tuple[Any, ...]]:
        """SET clause renewing a lease in ``table`` (a trial's or a worker's), and its
        arguments."""
        return f"heartbeat_at = {self.now_sql}", ()

    def _age_sql(self, table: str) -> tuple[str, tuple[Any, ...]]:
        """Expression for the seconds since ``table``'s last heartbeat, with arguments."""
        return f"{self.now_sql} - {table}.heartbeat_at", ()

    # -- experiments ------------------------------------------------------------------
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
        with self._tx() as cur:
            if self._one(cur, "SELECT id FROM hd_experiments WHERE name = ?", (name,)):
                raise ExperimentExists(
                    f"an experiment named {name!r} exists already; pick another --name, "
                    "or resume it by running the same command with that name"
                )
            row = self._one(
                cur,
                f"INSERT INTO hd_experiments (name, space, target, sampler, seed, max_trials, "
                f"max_retries, priority, lease_timeout, state, created_at, meta) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', {self.now_sql}, ?) "
                f"RETURNING {EXPERIMENT_COLS}",
                (
                    name,
                    dumps(space),
                    dumps(target.to_json()),
                    sampler,
                    seed,
                    max_trials,
                    max_retries,
                    priority,
                    lease_timeout,
                    dumps(meta or {}),
                ),
            )
        return self._experiment(row)

    def get_experiment(self, name_or_id: str | int) -> Experiment:
        column = "id" if isinstance(name_or_id, int) else "name"
        rows = self._read(
            f"SELECT {EXPERIMENT_COLS} FROM hd_experiments WHERE {column} = ?", (name_or_id,)
        )
        if not rows:
            what = f"id {name_or_id}" if column == "id" else repr(name_or_id)
            raise ExperimentNotFound(
                f"no experiment {what} in {self.describe()}; `hyperdock status` lists them"
            )
        return self._experiment(rows[0])

    def list_experiments(self) -> list[Experiment]:
        rows = self._read(f"SELECT {EXPERIMENT_COLS} FROM hd_experiments ORDER BY id")
        return [self._experiment(r) for r in rows]

    def set_experiment_state(self, experiment_id: int, state: ExperimentState) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE hd_experiments SET state = ? WHERE id = ?"),
                (state.value, experiment_id),
            )
            if state.stops_trials:
                cur.execute(
                    self._q(
                        f"UPDATE hd_trials SET state = 'cancelled', finished_at = {self.now_sql}, "
                        "error = ? WHERE experiment_id = ? AND state = 'queued'"
                    ),
                    (cancel_message(state), experiment_id),
                )
                cur.execute(
                    self._q(
                        "UPDATE hd_trials SET stop_requested = 1 "
                        "WHERE experiment_id = ? AND state = 'running'"
                    ),
                    (experiment_id,),
                )

    def update_experiment(
        self,
        experiment_id: int,
        *,
        max_trials: int | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Experiment:
        with self._tx() as cur:
            if meta:
                # Read and write in one transaction, the row locked (PostgreSQL), so
                # concurrent updates of different keys do not undo each other.
                row = self._one(
                    cur,
                    f"SELECT meta FROM hd_experiments WHERE id = ?{self.lock_sql}",
                    (experiment_id,),
                )
                if row is not None:
                    merged = {**json.loads(row[0] or "{}"), **meta}
                    cur.execute(
                        self._q("UPDATE hd_experiments SET meta = ? WHERE id = ?"),
                        (dumps(merged), experiment_id),
                    )
            for column, value in (
                ("max_trials", max_trials),
                ("priority", priority),
                ("max_retries", max_retries),
            ):
                if value is not None:
                    cur.execute(
                        self._q(f"UPDATE hd_experiments SET {column} = ? WHERE id = ?"),
                        (value, experiment_id),
                    )
            if priority is not None:
                cur.execute(
                    self._q("UPDATE hd_trials SET priority = ? WHERE experiment_id = ?"),
                    (priority, experiment_id),
                )
        return self.get_experiment(experiment_id)

    def delete_experiment(self, experiment_id: int) -> None:
        with self._tx() as cur:
            # Explicitly: an in-memory SQLite store does not enforce the cascade.
            cur.execute(
                self._q(
                    "DELETE FROM hd_logs WHERE trial_id IN "
                    "(SELECT id FROM hd_trials WHERE experiment_id = ?)"
                ),
                (experiment_id,),
            )
            cur.execute(self._q("DELETE FROM hd_trials WHERE experiment_id = ?"), (experiment_id,))
            cur.execute(self._q("DELETE FROM hd_experiments WHERE id = ?"), (experiment_id,))

    # -- trials -----------------------------------------------------------------------
    def add_trials(
        self,
        experiment_id: int,
        params: Sequence[dict[str, Any]],
        *,
        first_number: int | None = None,
        front: bool = False,
    ) -> list[Trial]:
        with self._tx() as cur:
            row = self._one(
                cur,
                f"SELECT next_number, priority FROM hd_experiments WHERE id = ?{self.lock_sql}",
                (experiment_id,),
            )
            if row is None:
                raise ExperimentNotFound(f"no experiment with id {experiment_id}")
            first, priority = int(row[0]), int(row[1])
            if first_number is not None and first_number < first:
                params = params[first - first_number :]  # those exist already
            if not params:
                return []
            cur.execute(
                self._q("UPDATE hd_experiments SET next_number = ? WHERE id = ?"),
                (first + len(params), experiment_id),
            )
            rank = 0
            if front:  # ahead of everything queued: one rank below the lowest so far
                low = self._one(
                    cur,
                    "SELECT MIN(queue_rank) FROM hd_trials WHERE experiment_id = ? "
                    "AND state = 'queued'",
                    (experiment_id,),
                )
                rank = min(int(low[0]) if low and low[0] is not None else 0, 0) - 1
            now = self._now(cur)
            texts = [dumps(p) for p in params]
            numbers = range(first, first + len(texts))
            ids = self._insert_queued(cur, experiment_id, numbers, texts, priority, now, rank)
        # Built here, not read back: the row holds nothing else yet.
        return [
            Trial(
                id=ids[number],
                experiment_id=experiment_id,
                number=number,
                params=json.loads(text),
                state=TrialState.QUEUED,
                created_at=now,
            )
            for number, text in zip(numbers, texts, strict=True)
        ]

    def _insert_queued(
        self,
        cur: Any,
        experiment_id: int,
        numbers: range,
        texts: list[str],
        priority: int,
        now: float,
        rank: int,
    ) -> dict[int, int]:
        """Insert queued trials (``params`` as JSON ``texts``, numbered ``numbers``);
        return their ids by number. A few multi-row INSERTs, not one per trial."""
        ids: dict[int, int] = {}
        for start in range(0, len(texts), _INSERT_ROWS):
            chunk = texts[start : start + _INSERT_ROWS]
            values = ", ".join(["(?, ?, ?, 'queued', ?, ?, ?)"] * len(chunk))
            args: list[Any] = []
            for number, text in zip(numbers[start:], chunk, strict=False):
                args += (experiment_id, number, text, priority, now, rank)
            rows = self._all(
                cur,
                "INSERT INTO hd_trials (experiment_id, number, params, state, priority, "
                f"created_at, queue_rank) VALUES {values} RETURNING number, id",
                args,
            )
            ids.update((int(n), int(i)) for n, i in rows)
        return ids

    def claim(self, worker_id: str, *, experiment_id: int | None = None) -> Trial | None:
        only = "AND t.experiment_id = ? " if experiment_id is not None else ""
        beat, beat_args = self._beat_sql("hd_trials")
        args: tuple[Any, ...] = (worker_id, *beat_args)
        if experiment_id is not None:
            args += (experiment_id,)
        with self._tx(single=True) as cur:
            row = self._one(
                cur,
                f"UPDATE hd_trials SET state = 'running', worker_id = ?, "
                f"started_at = {self.now_sql}, {beat}, "
                f"stop_requested = 0, finished_at = NULL "
                f"WHERE id = (SELECT t.id FROM hd_trials t JOIN hd_experiments e "
                f"ON e.id = t.experiment_id WHERE t.state = 'queued' AND e.state = 'running' "
                f"{only}ORDER BY t.priority DESC, t.queue_rank, t.id LIMIT 1"
                f"{self.claim_lock_sql}) "
                f"AND state = 'queued' RETURNING {TRIAL_COLS}",
                args,
            )
        return self._trial(row) if row else None

    def heartbeat(self, worker_id: str, trial_ids: Iterable[int]) -> set[int]:
        ids = sorted(set(trial_ids))
        worker_beat, worker_args = self._beat_sql("hd_workers")
        beat, beat_args = self._beat_sql("hd_trials")
        with self._tx() as cur:
            cur.execute(
                self._q(f"UPDATE hd_workers SET {worker_beat} WHERE id = ?"),
                (*worker_args, worker_id),
            )
            if not ids:
                return set()
            marks = ", ".join("?" * len(ids))
            # The renewed rows say which leases are still this worker's: no second read.
            rows = self._all(
                cur,
                f"UPDATE hd_trials SET {beat} WHERE id IN ({marks}) "
                "AND state = 'running' AND worker_id = ? RETURNING id, stop_requested",
                (*beat_args, *ids, worker_id),
            )
        return set(ids) - {int(r[0]) for r in rows if not r[1]}

    def _locked_lease(self, cur: Any, trial_id: int, worker_id: str) -> Any:
        """Lock and return (attempt, max_retries, stop_requested, history, started_at,
        now) of a running trial leased to ``worker_id``, or None.

        Only the trial's row is locked (the experiment is read in a subquery), so
        concurrent finishes of one experiment's trials do not wait for each other.
        """
        return self._one(
            cur,
            "SELECT t.attempt, (SELECT e.max_retries FROM hd_experiments e "
            "WHERE e.id = t.experiment_id), t.stop_requested, t.history, t.started_at, "
            f"{self.now_sql} FROM hd_trials t "
            f"WHERE t.id = ? AND t.state = 'running' AND t.worker_id = ?{self.lock_sql}",
            (trial_id, worker_id),
        )

    @staticmethod
    def _history(
        raw: str,
        *,
        attempt: int,
        worker: str | None,
        started: float | None,
        ended: float,
        state: str,
        message: str | None,
    ) -> str:
        entries = json.loads(raw)
        entries.append(
            {
                "attempt": attempt,
                "worker": worker,
                "started_at": started,
                "ended_at": ended,
                "state": state,
                "message": message,
            }
        )
        return dumps(entries)

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
        with self._tx() as cur:
            lease = self._locked_lease(cur, trial_id, worker_id)
            if lease is None:
                return False
            now = float(lease[5])
            history = self._history(
                lease[3],
                attempt=int(lease[0]),
                worker=worker_id,
                started=lease[4],
                ended=now,
                state=state.value,
                message=error,
            )
            cur.execute(
                self._q(
                    "UPDATE hd_trials SET state = ?, loss = ?, result = ?, error = ?, "
                    "finished_at = ?, history = ? WHERE id = ?"
                ),
                (state.value, loss, dumps(result or {}), error, now, history, trial_id),
            )
        return True

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
        with self._tx() as cur:
            lease = self._locked_lease(cur, trial_id, worker_id)
            if lease is None:
                return None
            attempt, max_retries, stop_requested = int(lease[0]), int(lease[1]), lease[2]
            if stop_requested:
                new_state = _stopped_state(stop_requested)
            elif retry and (not count_attempt or attempt < max_retries):
                new_state = TrialState.QUEUED
            else:
                new_state = TrialState.FAILED
            now = float(lease[5])
            history = self._history(
                lease[3],
                attempt=attempt,
                worker=worker_id,
                started=lease[4],
                ended=now,
                state="requeued" if new_state is TrialState.QUEUED else new_state.value,
                message=error,
            )
            next_attempt = (
                attempt + 1 if new_state is TrialState.QUEUED and count_attempt else attempt
            )
            cur.execute(
                self._q(
                    "UPDATE hd_trials SET state = ?, attempt = ?, error = ?, history = ?, "
                    "result = ?, finished_at = ?, heartbeat_at = NULL WHERE id = ?"
                ),
                (
                    new_state.value,
                    next_attempt,
                    error,
                    history,
                    dumps(result or {}),
                    None if new_state is TrialState.QUEUED else now,
                    trial_id,
                ),
            )
        return new_state

    def reap(self) -> list[Trial]:
        changed: list[int] = []
        # Every heartbeat of every worker reaps: look first without taking a write lock.
        age, age_args = self._age_sql("t")
        stale = self._read(
            "SELECT 1 FROM hd_trials t JOIN hd_experiments e ON e.id = t.experiment_id "
            f"WHERE t.state = 'running' AND {age} > e.lease_timeout LIMIT 1",
            age_args,
        )
        if not stale:
            return []
        with self._tx() as cur:
            now = self._now(cur)
            rows = self._all(
                cur,
                "SELECT t.id, t.attempt, e.max_retries, t.history, t.worker_id, t.started_at, "
                f"{age}, t.stop_requested FROM hd_trials t "
                "JOIN hd_experiments e ON e.id = t.experiment_id "
                f"WHERE t.state = 'running' AND {age} > e.lease_timeout"
                f"{self.claim_lock_sql}",
                (*age_args, *age_args),
            )
            for tid, attempt, max_retries, raw, worker, started, silent, stop in rows:
                since = (
                    "since its machine restarted"
                    if silent >= LEASE_OF_ANOTHER_BOOT
                    else f"for {silent:.0f} s"
                )
                message = (
                    f"Timed out: worker {worker} sent no heartbeat {since} "
                    "(it crashed, was killed or lost the database)"
                )
                if stop:
                    new_state = _stopped_state(stop)
                elif attempt < max_retries:
                    new_state = TrialState.QUEUED
                else:
                    new_state = TrialState.FAILED
                history = self._history(
                    raw,
                    attempt=attempt,
                    worker=worker,
                    started=started,
                    ended=now,
                    state="requeued" if new_state is TrialState.QUEUED else new_state.value,
                    message=message,
                )
                queued = new_state is TrialState.QUEUED
                cur.execute(
                    self._q(
                        "UPDATE hd_trials SET state = ?, attempt = ?, error = ?, history = ?, "
                        "finished_at = ?, heartbeat_at = NULL WHERE id = ? AND state = 'running'"
                    ),
                    (
                        new_state.value,
                        attempt + 1 if queued else attempt,
                        message,
                        history,
                        None if queued else now,
                        tid,
                    ),
                )
                changed.append(int(tid))
        return [self.get_trial(t) for t in changed]

    def get_trial(self, trial_id: int) -> Trial:
        rows = self._read(f"SELECT {TRIAL_COLS} FROM hd_trials WHERE id = ?", (trial_id,))
        if not rows:
            raise ExperimentNotFound(f"no trial with id {trial_id} in {self.describe()}")
        return self._trial(rows[0])

    def list_trials(
        self,
        experiment_id: int,
        *,
        states: Iterable[TrialState] | None = None,
        since_id: int | None = None,
        limit: int | None = None,
    ) -> list[Trial]:
        sql = f"SELECT {TRIAL_COLS} FROM hd_trials WHERE experiment_id = ?"
        args: list[Any] = [experiment_id]
        if states is not None:
            wanted = [TrialState(s).value for s in states]
            if not wanted:
                return []
            sql += f" AND state IN ({', '.join('?' * len(wanted))})"
            args += wanted
        if since_id is not None:
            sql += " AND id > ?"
            args.append(since_id)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [self._trial(r) for r in self._read(sql, args)]

    def _trial_summaries(
        self, experiment_id: int, since_id: int | None, with_result: bool, limit: int
    ) -> list[TrialSummary]:
        cols = "id, number, state, params, loss" + (", result" if with_result else "")
        rows = self._read(
            f"SELECT {cols} FROM hd_trials WHERE experiment_id = ? AND id > ? ORDER BY id LIMIT ?",
            (experiment_id, -1 if since_id is None else since_id, limit),
        )
        states, loads = _STATES, json.loads
        if not with_result:
            return [TrialSummary(r[0], r[1], states[r[2]], loads(r[3]), r[4], {}) for r in rows]
        return [
            TrialSummary(r[0], r[1], states[r[2]], loads(r[3]), r[4], loads(r[5]) if r[5] else {})
            for r in rows
        ]

    def cancel_trial(self, trial_id: int) -> TrialState:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"UPDATE hd_trials SET state = 'cancelled', finished_at = {self.now_sql}, "
                    "error = 'Cancelled' WHERE id = ? AND state = 'queued'"
                ),
                (trial_id,),
            )
            cur.execute(
                self._q(
                    "UPDATE hd_trials SET stop_requested = 1 WHERE id = ? AND state = 'running'"
                ),
                (trial_id,),
            )
            row = self._one(cur, "SELECT state FROM hd_trials WHERE id = ?", (trial_id,))
        if row is None:
            raise ExperimentNotFound(f"no trial with id {trial_id} in {self.describe()}")
        return TrialState(row[0])

    def prune_trial(self, trial_id: int) -> bool:
        with self._tx(single=True) as cur:
            cur.execute(
                self._q(
                    f"UPDATE hd_trials SET stop_requested = {_STOP_PRUNE} WHERE id = ? "
                    "AND state = 'running' AND stop_requested = 0"
                ),
                (trial_id,),
            )
            return bool(cur.rowcount)

    def add_progress(
        self, trial_id: int, worker_id: str, points: Sequence[tuple[int, float]]
    ) -> bool:
        rows = [(trial_id, int(step), float(loss)) for step, loss in points]
        with self._tx() as cur:
            if self._locked_lease(cur, trial_id, worker_id) is None:
                return False
            if rows:
                cur.executemany(
                    self._q(
                        "INSERT INTO hd_progress (trial_id, step, loss) VALUES (?, ?, ?) "
                        "ON CONFLICT (trial_id, step) DO UPDATE SET loss = excluded.loss"
                    ),
                    rows,
                )
        return True

    def list_progress(
        self, experiment_id: int, *, trial_ids: Iterable[int] | None = None
    ) -> dict[int, list[tuple[int, float]]]:
        sql = (
            "SELECT p.trial_id, p.step, p.loss FROM hd_progress p "
            "JOIN hd_trials t ON t.id = p.trial_id WHERE t.experiment_id = ?"
        )
        args: list[Any] = [experiment_id]
        if trial_ids is not None:
            ids = sorted(set(trial_ids))
            if not ids:
                return {}
            sql += f" AND p.trial_id IN ({', '.join('?' * len(ids))})"
            args += ids
        out: dict[int, list[tuple[int, float]]] = {}
        for tid, step, loss in self._read(sql + " ORDER BY p.trial_id, p.step", args):
            out.setdefault(int(tid), []).append((int(step), float(loss)))
        return out

    # -- workers ----------------------------------------------------------------------
    def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        parallelism: int,
        meta: dict[str, Any] | None = None,
    ) -> None:
        beat, beat_args = self._beat_sql("hd_workers")
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM hd_workers WHERE id = ?"), (worker_id,))
            cur.execute(
                self._q(
                    "INSERT INTO hd_workers (id, host, pid, parallelism, started_at, "
                    f"heartbeat_at, meta) VALUES (?, ?, ?, ?, {self.now_sql}, {self.now_sql}, ?)"
                ),
                (worker_id, host, pid, parallelism, dumps(meta or {})),
            )
            # The lease clock's fields (SQLite) are set like by a heartbeat.
            cur.execute(
                self._q(f"UPDATE hd_workers SET {beat} WHERE id = ?"), (*beat_args, worker_id)
            )

    def set_worker_status(self, worker_id: str, status: str | None) -> None:
        # Kept in the worker's meta (no column: the stored layout stays as it is).
        with self._tx() as cur:
            row = self._one(
                cur, f"SELECT meta FROM hd_workers WHERE id = ?{self.lock_sql}", (worker_id,)
            )
            if row is None:
                return
            meta = json.loads(row[0])
            if status is None:
                meta.pop(_STATUS_KEY, None)
            else:
                meta[_STATUS_KEY] = status
            cur.execute(
                self._q("UPDATE hd_workers SET meta = ? WHERE id = ?"), (dumps(meta), worker_id)
            )

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx(single=True) as cur:
            cur.execute(self._q("DELETE FROM hd_workers WHERE id = ?"), (worker_id,))

    def list_workers(self, *, max_age: float | None = None) -> list[Worker]:
        age, age_args = self._age_sql("hd_workers")
        with self._tx(write=False) as cur:
            rows = self._all(
                cur,
                f"SELECT id, host, pid, parallelism, started_at, heartbeat_at, meta, {age} "
                "FROM hd_workers ORDER BY started_at",
                age_args,
            )
            running: dict[str, list[int]] = {}
            for tid, wid in self._all(
                cur, "SELECT id, worker_id FROM hd_trials WHERE state = 'running' ORDER BY id"
            ):
                running.setdefault(wid, []).append(int(tid))
        workers = []
        for r in rows:
            if max_age is not None and float(r[7]) > max_age:
                continue
            meta = json.loads(r[6])
            status = meta.pop(_STATUS_KEY, None)
            workers.append(
                Worker(
                    id=r[0],
                    host=r[1],
                    pid=int(r[2]),
                    parallelism=int(r[3]),
                    started_at=float(r[4]),
                    heartbeat_at=float(r[5]),
                    running=tuple(running.get(r[0], ())),
                    meta=meta,
                    status=status,
                )
            )
        return workers

    def schema_version(self) -> int:
        rows = self._read("SELECT value FROM hd_meta WHERE key = 'schema_version'")
        return int(rows[0][0])
