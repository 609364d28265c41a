"""SQL stores: SQLite (embedded default) and PostgreSQL, one implementation.

The two dialects differ in connection handling, placeholders, the clock and row locking;
the queries are shared, except that PostgreSQL ends an attempt (:meth:`PostgresStore.finish`)
in one statement, the server appending the history entry, and analyzes the trials table
after a large batch of new trials. Claims are a single ``UPDATE … WHERE id = (SELECT …
LIMIT 1) RETURNING`` statement: under SQLite the statement holds the database's write
lock, under PostgreSQL the inner select takes ``FOR UPDATE OF t SKIP LOCKED``, so
concurrent claims pass each other. Multi-statement changes run in ``BEGIN IMMEDIATE``
(SQLite) or in a transaction that locks what it reads with ``SELECT … FOR UPDATE``
(PostgreSQL); a lease check locks the trial's row only, never its experiment's.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed change survives any
crash of a Hyperdock process (``kill -9`` included); an OS crash or power cut may lose the
last few commits, never corrupt the file.

PostgreSQL connections come from a small pool and run in autocommit mode: reads and
single-statement changes (claim, finish) take one round trip each, and every commit is
synchronous (durable once acknowledged). Claim and finish, the hot path, run as
statements prepared once per connection straight on libpq (psycopg's ``pq`` layer).
Times come from the server's clock. Schema creation holds an advisory lock, so many
processes may open a new database at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hyperdock.errors import (
    ConfigError,
    ExperimentExists,
    ExperimentNotFound,
    StoreConnectionError,
    StoreError,
)
from hyperdock.jsonutil import dumps
from hyperdock.redact import redact_url, scrub
from hyperdock.storage.base import SCHEMA_VERSION, Store, cancel_message
from hyperdock.trial import Experiment, ExperimentState, Target, Trial, TrialState, Worker

_EXPERIMENT_COLS = (
    "id, name, space, target, sampler, seed, max_trials, max_retries, priority, "
    "lease_timeout, state, created_at, meta"
)
_TRIAL_COLS = (
    "id, experiment_id, number, params, state, attempt, worker_id, loss, result, error, "
    "history, created_at, started_at, finished_at, heartbeat_at, stop_requested"
)
#: Key of a worker's status in its stored meta.
_STATUS_KEY = "hyperdock.status"
_TRIAL_COLS_T = ", ".join("t." + c.strip() for c in _TRIAL_COLS.split(","))
_TRIAL_COLS_H = ", ".join("hd_trials." + c.strip() for c in _TRIAL_COLS.split(","))


def _schema(id_type: str, float_type: str, ref_type: str = "INTEGER") -> list[str]:
    """The tables and indexes, in the dialect's id, float and id-reference types."""
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
            UNIQUE (experiment_id, number))""",
        "CREATE INDEX IF NOT EXISTS hd_trials_queue ON hd_trials (priority DESC, id) "
        "WHERE state = 'queued'",
        "CREATE INDEX IF NOT EXISTS hd_trials_running ON hd_trials (worker_id) "
        "WHERE state = 'running'",
        # Best trial by loss. Partial, so that only a finished trial adds an entry: a
        # trial's row changes state twice (claim, finish), and every index that a
        # change touches costs the claim loop time. Schema 1 had a full index here.
        "DROP INDEX IF EXISTS hd_trials_exp",
        "CREATE INDEX IF NOT EXISTS hd_trials_done ON hd_trials (experiment_id, loss) "
        "WHERE state = 'completed'",
        f"""CREATE TABLE IF NOT EXISTS hd_progress (
            trial_id {ref_type} NOT NULL REFERENCES hd_trials(id) ON DELETE CASCADE,
            step INTEGER NOT NULL, loss {float_type} NOT NULL,
            PRIMARY KEY (trial_id, step))""",
        f"""CREATE TABLE IF NOT EXISTS hd_workers (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
            parallelism INTEGER NOT NULL, started_at {float_type} NOT NULL,
            heartbeat_at {float_type} NOT NULL, meta TEXT NOT NULL)""",
    ]


class SQLStore(Store):
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
            for statement in self._schema_statements():
                cur.execute(statement)
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
                f"RETURNING {_EXPERIMENT_COLS}",
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
            f"SELECT {_EXPERIMENT_COLS} FROM hd_experiments WHERE {column} = ?", (name_or_id,)
        )
        if not rows:
            what = f"id {name_or_id}" if column == "id" else repr(name_or_id)
            raise ExperimentNotFound(
                f"no experiment {what} in {self.describe()}; `hyperdock status` lists them"
            )
        return self._experiment(rows[0])

    def list_experiments(self) -> list[Experiment]:
        rows = self._read(f"SELECT {_EXPERIMENT_COLS} FROM hd_experiments ORDER BY id")
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
            cur.execute(self._q("DELETE FROM hd_trials WHERE experiment_id = ?"), (experiment_id,))
            cur.execute(self._q("DELETE FROM hd_experiments WHERE id = ?"), (experiment_id,))

    # -- trials -----------------------------------------------------------------------
    def add_trials(
        self,
        experiment_id: int,
        params: Sequence[dict[str, Any]],
        *,
        first_number: int | None = None,
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
            now = self._now(cur)
            sql = self._q(
                "INSERT INTO hd_trials (experiment_id, number, params, state, priority, "
                f"created_at) VALUES (?, ?, ?, 'queued', ?, ?) RETURNING {_TRIAL_COLS}"
            )
            trials = []
            for i, p in enumerate(params):
                cur.execute(sql, (experiment_id, first + i, dumps(p), priority, now))
                trials.append(self._trial(cur.fetchone()))
        return trials

    def claim(self, worker_id: str, *, experiment_id: int | None = None) -> Trial | None:
        only = "AND t.experiment_id = ? " if experiment_id is not None else ""
        args: tuple[Any, ...] = (worker_id,)
        if experiment_id is not None:
            args += (experiment_id,)
        with self._tx(single=True) as cur:
            row = self._one(
                cur,
                f"UPDATE hd_trials SET state = 'running', worker_id = ?, "
                f"started_at = {self.now_sql}, heartbeat_at = {self.now_sql}, "
                f"stop_requested = 0, finished_at = NULL "
                f"WHERE id = (SELECT t.id FROM hd_trials t JOIN hd_experiments e "
                f"ON e.id = t.experiment_id WHERE t.state = 'queued' AND e.state = 'running' "
                f"{only}ORDER BY t.priority DESC, t.id LIMIT 1{self.claim_lock_sql}) "
                f"AND state = 'queued' RETURNING {_TRIAL_COLS}",
                args,
            )
        return self._trial(row) if row else None

    def heartbeat(self, worker_id: str, trial_ids: Iterable[int]) -> set[int]:
        ids = sorted(set(trial_ids))
        with self._tx() as cur:
            cur.execute(
                self._q(f"UPDATE hd_workers SET heartbeat_at = {self.now_sql} WHERE id = ?"),
                (worker_id,),
            )
            if not ids:
                return set()
            marks = ", ".join("?" * len(ids))
            cur.execute(
                self._q(
                    f"UPDATE hd_trials SET heartbeat_at = {self.now_sql} WHERE id IN ({marks}) "
                    "AND state = 'running' AND worker_id = ?"
                ),
                (*ids, worker_id),
            )
            rows = self._all(
                cur,
                f"SELECT id, state, worker_id, stop_requested FROM hd_trials WHERE id IN ({marks})",
                ids,
            )
        keep = {
            int(r[0])
            for r in rows
            if r[1] == TrialState.RUNNING.value and r[2] == worker_id and not r[3]
        }
        return set(ids) - keep

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
        stale = self._read(
            "SELECT 1 FROM hd_trials t JOIN hd_experiments e ON e.id = t.experiment_id "
            f"WHERE t.state = 'running' AND t.heartbeat_at < {self.now_sql} - e.lease_timeout "
            "LIMIT 1"
        )
        if not stale:
            return []
        with self._tx() as cur:
            now = self._now(cur)
            rows = self._all(
                cur,
                "SELECT t.id, t.attempt, e.max_retries, t.history, t.worker_id, t.started_at, "
                "t.heartbeat_at, t.stop_requested FROM hd_trials t "
                "JOIN hd_experiments e ON e.id = t.experiment_id "
                "WHERE t.state = 'running' AND t.heartbeat_at < ? - e.lease_timeout"
                f"{self.claim_lock_sql}",
                (now,),
            )
            for tid, attempt, max_retries, raw, worker, started, beat, stop in rows:
                message = (
                    f"Timed out: worker {worker} sent no heartbeat for {now - beat:.0f} s "
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
        rows = self._read(f"SELECT {_TRIAL_COLS} FROM hd_trials WHERE id = ?", (trial_id,))
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
        sql = f"SELECT {_TRIAL_COLS} FROM hd_trials WHERE experiment_id = ?"
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

    def count_trials(self, experiment_id: int) -> dict[TrialState, int]:
        counts = dict.fromkeys(TrialState, 0)
        for state, n in self._read(
            "SELECT state, COUNT(*) FROM hd_trials WHERE experiment_id = ? GROUP BY state",
            (experiment_id,),
        ):
            counts[TrialState(state)] = int(n)
        return counts

    def best_trial(self, experiment_id: int, *, maximize: bool = False) -> Trial | None:
        order = "DESC" if maximize else "ASC"
        rows = self._read(
            f"SELECT {_TRIAL_COLS} FROM hd_trials WHERE experiment_id = ? "
            f"AND state = 'completed' AND loss IS NOT NULL ORDER BY loss {order}, id LIMIT 1",
            (experiment_id,),
        )
        return self._trial(rows[0]) if rows else None

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
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM hd_workers WHERE id = ?"), (worker_id,))
            cur.execute(
                self._q(
                    "INSERT INTO hd_workers (id, host, pid, parallelism, started_at, "
                    f"heartbeat_at, meta) VALUES (?, ?, ?, ?, {self.now_sql}, {self.now_sql}, ?)"
                ),
                (worker_id, host, pid, parallelism, dumps(meta or {})),
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
        with self._tx(write=False) as cur:
            now = self._now(cur)
            rows = self._all(
                cur,
                "SELECT id, host, pid, parallelism, started_at, heartbeat_at, meta "
                "FROM hd_workers ORDER BY started_at",
            )
            running: dict[str, list[int]] = {}
            for tid, wid in self._all(
                cur, "SELECT id, worker_id FROM hd_trials WHERE state = 'running' ORDER BY id"
            ):
                running.setdefault(wid, []).append(int(tid))
        workers = []
        for r in rows:
            if max_age is not None and now - float(r[5]) > max_age:
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


class SQLiteStore(SQLStore):
    """The embedded store: one SQLite file, safe for many processes on one machine.

    Args:
        path: Database file (created with its folder if missing), or ``:memory:``
            (one process only; for tests).
        timeout: Seconds to wait for another process's write lock before failing.
    """

    backend = "sqlite"
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    begin_sql = "BEGIN IMMEDIATE"

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        self.path = str(path)
        self._timeout = timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._memory: sqlite3.Connection | None = None
        if self.path != ":memory:":
            folder = Path(self.path).expanduser().resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreConnectionError(
                    f"cannot create the folder {folder} for the SQLite store: {exc}"
                ) from None
        self._init_schema()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.path == ":memory:":
                if self._memory is None:
                    self._memory = sqlite3.connect(
                        ":memory:", isolation_level=None, check_same_thread=False
                    )
                return self._memory
            conn = sqlite3.connect(
                self.path,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            if self._wal_mode(conn).lower() != "wal":
                raise StoreConnectionError(
                    f"SQLite at {self.path} cannot use WAL mode (network file system?); "
                    "put the database on a local disk"
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreConnectionError(
                f"cannot open the SQLite store at {self.path}: {exc}; check that the path "
                "is a writable file on a local disk"
            ) from None
        with self._lock:
            self._conns.append(conn)
        return conn

    def _wal_mode(self, conn: sqlite3.Connection) -> str:
        """Switch ``conn``'s database to WAL; return the journal mode it is in.

        Two processes opening a new database at once both hold a shared lock and both
        want the exclusive one the switch needs: SQLite then fails one of them at once
        with "database is locked" (waiting could not help), not through the busy
        handler. By the time it retries, the other has switched: a no-op.
        """
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def _tx(self, write: bool = True, *, single: bool = False) -> Iterator[Any]:
        # ``single`` changes nothing here: SQLite always takes its lock up front.
        if self._closed:
            raise StoreError("the store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        # A :memory: database has one connection shared by all threads.
        guard = self._lock if self._memory is not None else contextlib.nullcontext()
        with guard:
            try:
                conn.execute(self.begin_sql if write else "BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: {exc}") from None
            cur = conn.cursor()
            try:
                yield cur
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK")
                    raise StoreError(f"SQLite store {self.path}: {exc}") from None
            finally:
                cur.close()

    def _schema_statements(self) -> list[str]:
        return _schema("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()

    def describe(self) -> str:
        return f"sqlite:///{self.path}"


# -- PostgreSQL -----------------------------------------------------------------------

#: ``stop_requested`` values: 0 none, 1 cancel, 2 prune (a cancel overrides a prune).
_STOP_CANCEL = 1
_STOP_PRUNE = 2


def _stopped_state(stop_requested: Any) -> TrialState:
    """The final state of a trial whose target was stopped on request."""
    return TrialState.PRUNED if stop_requested == _STOP_PRUNE else TrialState.CANCELLED


#: Key of the advisory lock that serialises schema creation across processes.
_SCHEMA_LOCK_KEY = 0x4859504552444F43  # "HYPERDOC"


@functools.lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """``sql`` with ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _numbered(sql: str) -> bytes:
    """psycopg-style ``sql`` (``%s``, ``%%``) with libpq's ``$1, $2, …`` placeholders."""
    parts = sql.split("%%")
    count = 0
    out = []
    for part in parts:
        pieces = part.split("%s")
        numbered = pieces[0]
        for piece in pieces[1:]:
            count += 1
            numbered += f"${count}" + piece
        out.append(numbered)
    return "%".join(out).encode("utf-8")


def _text_param(value: Any) -> bytes | None:
    """A statement parameter in PostgreSQL's text format (None: NULL)."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:
            return b"NaN"
        if value in (float("inf"), float("-inf")):
            return b"Infinity" if value > 0 else b"-Infinity"
        return repr(value).encode()
    return str(value).encode("utf-8")


def _text_int(raw: bytes) -> int:
    return int(raw)


def _text_str(raw: bytes) -> str:
    return raw.decode("utf-8")


#: Decoders of a trial row's columns (``_TRIAL_COLS``) in text format.
_TRIAL_TEXT: tuple[Any, ...] = (
    _text_int, _text_int, _text_int, _text_str, _text_str, _text_int, _text_str, float,
    _text_str, _text_str, _text_str, float, float, float, float, _text_int,
)  # fmt: skip


def _redact(url: str) -> str:
    """:func:`redact_url` (kept as the module's name for it)."""
    return redact_url(url)


def _first_line(text: str) -> str:
    """The first non-empty line of a driver message, whitespace collapsed."""
    for line in str(text).splitlines():
        if line.strip():
            return " ".join(line.split())
    return "unknown error"


class _Conn:
    """A pooled PostgreSQL connection with its cursor (results in binary: less to
    parse) and a poller that tells, without a round trip, whether the server sent it
    anything while it was idle."""

    __slots__ = ("_poller", "conn", "cur", "generation", "prepared")

    def __init__(self, conn: Any, generation: int) -> None:
        self.conn = conn
        self.cur = conn.cursor(binary=True)
        self.generation = generation
        #: Names of the statements :meth:`PostgresStore._exec_prepared` prepared here.
        self.prepared: set[bytes] = set()
        self._poller: Any = None
        if hasattr(select, "poll"):
            self._poller = select.poll()
            self._poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)

    def readable(self) -> bool:
        if self._poller is not None:
            return bool(self._poller.poll(0))
        return bool(select.select([self.conn.fileno()], [], [], 0)[0])  # pragma: no cover

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class PostgresStore(SQLStore):
    """A PostgreSQL database: the store for workers on many machines.

    Connections are pooled: at most ``pool_size`` are in use at once in this process;
    idle ones are kept for reuse, newest first, each with its own cursor, so that a
    call costs no connection set-up and next to no client work. Before an idle
    connection is used it is checked without a round trip (anything the server sent to
    an idle connection is its goodbye). After a connection failure the next call probes
    the server, failing fast while it is away, and every connection made before the
    failure is dropped, so the store recovers from a server restart by itself.

    Args:
        url: A libpq URL, ``postgresql://user:password@host:port/database`` (query
            options such as ``?sslmode=require`` pass through).
        pool_size: Most connections this process uses at once.
        timeout: Seconds to wait for a connection: to connect, or for a free one.

    Raises:
        ConfigError: psycopg is not installed.
        StoreConnectionError: the server cannot be reached, the credentials are wrong,
            the database does not exist or the URL is malformed.
    """

    backend = "postgresql"
    now_sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    lock_sql = " FOR UPDATE"
    claim_lock_sql = " FOR UPDATE OF t SKIP LOCKED"
    begin_sql = "BEGIN"

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 30.0) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError(
                f"PostgreSQL stores need psycopg 3 ({exc}); pip install 'hyperdock[postgres]'"
            ) from None
        self._pg = psycopg
        self.url = url
        self._pool_size = max(1, pool_size)
        self._timeout = timeout
        self._closed = False
        self._lock = threading.Lock()
        #: Set when a connection failed: the next call probes the server first.
        self._suspect = False
        #: Idle connections, the most recently used last.
        self._idle: list[_Conn] = []
        #: Guards the idle list and the count of connections in use.
        self._pool_lock = threading.Lock()
        self._freed = threading.Condition(self._pool_lock)
        self._in_use = 0
        self._waiting = 0
        #: Bumped when the server was lost: older connections are not reused.
        self._generation = 0
        self._claim_any = self._claim_sql(False)
        self._claim_one = self._claim_sql(True)
        self._finish_sql = _pyformat(
            "UPDATE hd_trials SET state = ?, loss = ?, result = ?, error = ?, "
            # The history entry is appended as text (the column holds a JSON array
            # written without trailing blanks): no parsing of the whole history into
            # JSONB and back on every finish.
            "finished_at = clock.now, history = left(history, -1) || "
            "CASE WHEN history = '[]' THEN '' ELSE ',' END || "
            "CAST(json_build_object('attempt', attempt, 'worker', worker_id, "
            "'started_at', started_at, 'ended_at', clock.now, 'state', CAST(? AS TEXT), "
            "'message', CAST(? AS TEXT)) AS TEXT) || ']' "
            f"FROM (SELECT {self.now_sql} AS now) AS clock "
            "WHERE id = ? AND state = 'running' AND worker_id = ? RETURNING id"
        )
        self._where = self._location()
        # Connect once now: fails fast, with the cause, when the server cannot be reached.
        self._idle.append(self._open())
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    # -- connections ------------------------------------------------------------------
    def _location(self) -> dict[str, str]:
        """Host, port, database and user the URL names (for messages; no password)."""
        try:
            info = self._pg.conninfo.conninfo_to_dict(self.url)
        except self._pg.Error as exc:
            raise StoreConnectionError(
                f"invalid PostgreSQL store URL {self._scrub(_redact(self.url))}: "
                f"{self._scrub(_first_line(str(exc)))}; expected "
                "postgresql://user:password@host:port/database"
            ) from None
        user = str(info.get("user") or os.environ.get("PGUSER") or "")
        return {
            "host": str(info.get("host") or os.environ.get("PGHOST") or "localhost"),
            "port": str(info.get("port") or os.environ.get("PGPORT") or "5432"),
            "dbname": str(info.get("dbname") or os.environ.get("PGDATABASE") or user),
            "user": user,
        }

    def _conn_kwargs(self) -> dict[str, Any]:
        """Connection options: autocommit (transactions are explicit), and defaults
        the URL may override: a connect timeout, TCP keepalives (a dead server shows up
        on idle pooled connections) and the application name."""
        info = self._pg.conninfo.conninfo_to_dict(self.url)
        defaults: dict[str, Any] = {
            "connect_timeout": max(1, round(min(self._timeout, 10.0))),
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "application_name": "hyperdock",
        }
        kwargs = {key: value for key, value in defaults.items() if key not in info}
        kwargs["autocommit"] = True
        return kwargs

    def _open(self) -> _Conn:
        """A new connection of the current generation."""
        try:
            conn = self._pg.connect(self.url, **self._conn_kwargs())
        except self._pg.Error as exc:
            self._suspect = True
            raise StoreConnectionError(self._connect_message(exc)) from None
        return _Conn(conn, self._generation)

    def _renew(self) -> None:
        """After a connection failure: forget every connection made before it (they
        are suspect), fail fast while the server is away, and go on with a fresh
        connection as soon as it answers again."""
        with self._lock:
            if not self._suspect or self._closed:
                return
            with self._pool_lock:
                self._generation += 1
                stale, self._idle = self._idle, []
            for item in stale:
                item.close()
            fresh = self._open()  # raises StoreConnectionError while the server is away
            with self._pool_lock:
                self._idle.append(fresh)
            self._suspect = False

    def _healthy(self, item: _Conn) -> bool:
        """Check an idle connection without a round trip when it looks fine.

        An idle connection receives nothing unless the server is closing it (restart,
        ``pg_terminate_backend``, idle timeout): then a real round trip decides.
        """
        conn = item.conn
        if conn.closed or conn.broken:
            return False
        try:
            if item.readable():
                conn.execute("")
        except (self._pg.Error, OSError, ValueError):
            return False
        return True

    def _getconn(self) -> _Conn:
        """A healthy connection, counted as in use until :meth:`_putconn`."""
        for _ in range(3):
            if self._closed:
                raise StoreError("the store is closed")
            if self._suspect:
                self._renew()  # raises StoreConnectionError while the server is away
            with self._pool_lock:
                if self._in_use >= self._pool_size:
                    self._waiting += 1
                    try:
                        free = self._freed.wait_for(
                            lambda: self._in_use < self._pool_size, timeout=self._timeout
                        )
                    finally:
                        self._waiting -= 1
                    if not free:
                        raise StoreConnectionError(
                            f"no free connection to PostgreSQL {self.describe()} within "
                            f"{self._timeout:.0f} s (all {self._pool_size} of this process "
                            "in use); retry, or give the store a larger pool_size"
                        )
                self._in_use += 1
                item = self._idle.pop() if self._idle else None
            if item is None:
                try:
                    item = self._open()
                except BaseException:
                    self._release(None)
                    raise
            if self._healthy(item):
                return item
            # The server dropped it, and likely its siblings: renew before the next try.
            self._suspect = True
            item.close()
            self._release(None)
        raise StoreConnectionError(
            f"PostgreSQL {self.describe()} keeps dropping new connections; check the server log"
        )

    def _release(self, keep: _Conn | None) -> None:
        with self._pool_lock:
            self._in_use -= 1
            if keep is not None:
                self._idle.append(keep)
            if self._waiting:
                self._freed.notify()

    def _putconn(self, item: _Conn) -> None:
        conn = item.conn
        keep: _Conn | None = item
        if conn.closed or conn.broken:
            self._suspect = True
            keep = None
        elif self._closed or item.generation != self._generation:
            keep = None
        if keep is None:
            item.close()
        self._release(keep)

    @contextlib.contextmanager
    def _tx(self, write: bool = True, *, single: bool = False) -> Iterator[Any]:
        # Connections are in autocommit mode: reads and single statements need no
        # BEGIN/COMMIT round trips (READ COMMITTED gives every statement its snapshot).
        item = self._getconn()
        try:
            if write and not single:
                with item.conn.transaction():
                    yield item.cur
            else:
                yield item.cur
        except self._pg.Error as exc:
            raise self._error(exc) from None
        finally:
            self._putconn(item)

    def _q(self, sql: str) -> str:
        return _pyformat(sql)

    # -- trials -----------------------------------------------------------------------
    #: A batch at least this large refreshes the planner's statistics at once.
    analyze_batch = 100

    def add_trials(
        self,
        experiment_id: int,
        params: Sequence[dict[str, Any]],
        *,
        first_number: int | None = None,
    ) -> list[Trial]:
        """:meth:`SQLStore.add_trials`, then ``ANALYZE`` after a large batch.

        Autovacuum analyzes a changed table only a minute or more later; until then the
        planner believes the queue is tiny and may claim by sorting every queued trial
        instead of walking the queue index, which makes each claim cost O(queue).
        """
        trials = super().add_trials(experiment_id, params, first_number=first_number)
        if len(trials) >= self.analyze_batch:
            with self._tx(write=False) as cur:
                cur.execute("ANALYZE hd_trials")
        return trials

    def _claim_sql(self, one_experiment: bool) -> str:
        only = "AND t.experiment_id = ? " if one_experiment else ""
        return _pyformat(
            f"UPDATE hd_trials SET state = 'running', worker_id = ?, "
            f"started_at = {self.now_sql}, heartbeat_at = {self.now_sql}, "
            f"stop_requested = 0, finished_at = NULL "
            f"FROM (SELECT t.ctid AS tid FROM hd_trials t JOIN hd_experiments e "
            f"ON e.id = t.experiment_id WHERE t.state = 'queued' AND e.state = 'running' "
            f"{only}ORDER BY t.priority DESC, t.id LIMIT 1{self.claim_lock_sql}) AS next "
            f"WHERE hd_trials.ctid = next.tid AND hd_trials.state = 'queued' "
            f"RETURNING {_TRIAL_COLS_H}"
        )

    def _exec_prepared(
        self, name: bytes, sql: str, args: Sequence[Any]
    ) -> list[bytes | None] | None:
        """Run one statement (atomic by itself: autocommit) and return its first row,
        each value in PostgreSQL's text format (None: NULL), or None without rows.

        The hot path of claim and finish, straight on libpq through psycopg's ``pq``
        layer: the statement is prepared once per connection under ``name``, the
        parameters go as text, and only the first row is read. That is a third of the
        client CPU of a cursor's ``execute`` (which converts, adapts and tracks far
        more), and on a busy host the client shares the CPU with the server. ``sql`` is
        in psycopg's placeholder style.
        """
        pq = self._pg.pq
        item = self._getconn()
        try:
            pgconn = item.conn.pgconn
            if name not in item.prepared:
                self._check(pgconn, pgconn.prepare(name, _numbered(sql)), pq.ExecStatus.COMMAND_OK)
                item.prepared.add(name)
            res = pgconn.exec_prepared(name, [_text_param(a) for a in args])
            self._check(pgconn, res, pq.ExecStatus.TUPLES_OK)
            if not res.ntuples:
                return None
            return [res.get_value(0, col) for col in range(res.nfields)]
        except self._pg.Error as exc:
            raise self._error(exc) from None
        finally:
            self._putconn(item)

    def _check(self, pgconn: Any, res: Any, ok: Any) -> None:
        """Raise the psycopg error that ``res`` (a libpq result) holds, if any."""
        if res.status == ok:
            return
        if pgconn.status == self._pg.pq.ConnStatus.BAD:
            message = (res.error_message or b"").decode("utf-8", "replace").strip()
            raise self._pg.OperationalError(message or "the connection to the server was lost")
        raise self._pg.errors.error_from_result(res, encoding="utf-8")

    def claim(self, worker_id: str, *, experiment_id: int | None = None) -> Trial | None:
        """:meth:`SQLStore.claim`, updating the locked row by its physical address
        (``ctid``): no second index lookup. The row is locked by the inner select, so
        its address cannot change before the update; ``state = 'queued'`` is checked
        again all the same."""
        if experiment_id is None:
            row = self._exec_prepared(b"hd_claim_any", self._claim_any, (worker_id,))
        else:
            row = self._exec_prepared(b"hd_claim_one", self._claim_one, (worker_id, experiment_id))
        if row is None:
            return None
        pairs = zip(_TRIAL_TEXT, row, strict=True)
        return self._trial([None if raw is None else decode(raw) for decode, raw in pairs])

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
        """:meth:`SQLStore.finish` in one statement (one round trip, one commit): the
        lease is checked in the WHERE clause and the server appends the history entry."""
        if not state.finished:
            raise ValueError(f"finish() needs a final state, not {state}")
        row = self._exec_prepared(
            b"hd_finish",
            self._finish_sql,
            (
                state.value,
                loss,
                dumps(result) if result else "{}",
                error,
                state.value,
                error,
                trial_id,
                worker_id,
            ),
        )
        return row is not None

    # -- schema -----------------------------------------------------------------------
    def _schema_statements(self) -> list[str]:
        # The advisory lock (released at commit) makes processes that start together
        # create the tables one after the other: concurrent CREATE … IF NOT EXISTS can
        # otherwise fail on PostgreSQL's catalogs.
        return [
            f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})",
            *_schema(
                "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                "DOUBLE PRECISION",
                "BIGINT",
            ),
        ]

    def _init_schema(self) -> None:
        # Fast path, taking no lock: the usual case of a database set up already.
        with self._tx(write=False) as cur:
            if self._one(cur, "SELECT to_regclass('hd_meta') IS NOT NULL")[0]:
                row = self._one(cur, "SELECT value FROM hd_meta WHERE key = 'schema_version'")
                if row is not None and int(row[0]) == SCHEMA_VERSION:
                    return
        super()._init_schema()

    # -- errors -----------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        """``text`` without any secret of the URL, however the driver quoted it (libpq
        echoes parts of a malformed URL)."""
        return scrub(text, self.url)

    def _is_connection_error(self, exc: Exception) -> bool:
        if isinstance(exc, self._pg.InterfaceError):  # e.g. "the connection is closed"
            return True
        if not isinstance(exc, self._pg.OperationalError):
            return False
        state = getattr(exc, "sqlstate", None) or ""
        if not state:  # raised by the client side: the connection is gone
            return True
        return state[:2] in ("08", "28", "3D") or state in (
            "57P01",  # admin_shutdown
            "57P02",  # crash_shutdown
            "57P03",  # cannot_connect_now
            "53300",  # too_many_connections
        )

    def _error(self, exc: Exception) -> StoreError:
        """Map a driver error to a Hyperdock one (connection problems are retryable)."""
        if self._is_connection_error(exc):
            self._suspect = True
            w = self._where
            return StoreConnectionError(
                f"lost the connection to PostgreSQL at {w['host']}:{w['port']} (database "
                f"{w['dbname']}): {self._scrub(_first_line(str(exc)))}; the server may be "
                "restarting or unreachable; the call can be retried once it is back"
            )
        diag = getattr(exc, "diag", None)
        if getattr(diag, "constraint_name", None) == "hd_experiments_name_key":
            return ExperimentExists(
                "an experiment with that name exists already (another process created it "
                "just now); pick another --name, or resume it by running the same command"
            )
        return StoreError(
            f"PostgreSQL store {self.describe()}: {self._scrub(_first_line(str(exc)))}"
        )

    def _connect_message(self, exc: Exception) -> str:
        """One line: where, what went wrong, what to do. Never the password."""
        w = self._where
        host, port, db, user = w["host"], w["port"], w["dbname"], w["user"]
        raw = str(exc)
        low = raw.lower()
        if (
            isinstance(exc, self._pg.ProgrammingError)
            or "invalid integer value" in low
            or ("invalid" in low and "connection option" in low)
        ):
            return (
                f"invalid PostgreSQL store URL {self._scrub(_redact(self.url))}: "
                f"{self._scrub(_first_line(raw.removeprefix('connection is bad: ')))}; "
                "expected postgresql://user:password@host:port/database"
            )
        if "password authentication failed" in low:
            reason = (
                f"password authentication failed for user {user!r}; check the user name "
                "and password in the store URL"
            )
        elif "no password supplied" in low:
            reason = (
                f"the server wants a password for user {user!r} and none was given; put it "
                "in the URL (postgresql://user:password@host/db), PGPASSWORD or ~/.pgpass"
            )
        elif "does not exist" in low and "database" in low:
            reason = (
                f"database {db!r} does not exist; create it first "
                f"(createdb -h {host} -p {port} -U {user} {db}) or name another one"
            )
        elif "does not exist" in low and "role" in low:
            reason = f"user {user!r} does not exist on the server; create it or use another one"
        elif "connection refused" in low:
            reason = (
                "connection refused; check that the server is running and listens on "
                f"{host}:{port} (postgresql.conf: listen_addresses, port)"
            )
        elif "resolve host" in low or "translate host name" in low or "not known" in low:
            reason = f"unknown host {host!r}; check the host name in the store URL"
        elif "timeout expired" in low or "timed out" in low:
            reason = "no answer in time; check the host, the port and any firewall between"
        elif "pg_hba.conf" in low:
            reason = (
                "the server does not accept this user/database from this machine "
                "(pg_hba.conf); ask its administrator to allow it"
            )
        elif "too many clients" in low or "remaining connection slots" in low:
            reason = (
                "the server has no free connection slots; stop idle clients or raise "
                "max_connections"
            )
        elif "starting up" in low or "shutting down" in low or "recovery mode" in low:
            reason = "the server is starting or stopping; try again in a moment"
        else:
            reason = _first_line(raw.removeprefix("connection failed: "))
        where = f"{host}:{port} (database {db}" + (f", user {user})" if user else ")")
        return self._scrub(f"cannot connect to PostgreSQL at {where}: {reason}")

    # -- misc -------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for item in idle:
            item.close()

    def describe(self) -> str:
        return _redact(self.url)
