"""SQL stores: SQLite (embedded default) and PostgreSQL, one implementation.

The two dialects differ only in connection handling, placeholders, the clock and row
locking; every query below is shared. Claims are a single ``UPDATE … WHERE id = (SELECT …
LIMIT 1) RETURNING`` statement: under SQLite the statement holds the database's write
lock, under PostgreSQL the inner select takes ``FOR UPDATE SKIP LOCKED``. Multi-statement
changes run in ``BEGIN IMMEDIATE`` (SQLite) or with ``SELECT … FOR UPDATE`` (PostgreSQL).

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed change survives any
crash of a Hyperdock process (``kill -9`` included); an OS crash or power cut may lose the
last few commits, never corrupt the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hyperdock.errors import ExperimentNotFound, StoreConnectionError, StoreError
from hyperdock.jsonutil import dumps
from hyperdock.storage.base import SCHEMA_VERSION, Store
from hyperdock.trial import Experiment, ExperimentState, Target, Trial, TrialState, Worker

_EXPERIMENT_COLS = (
    "id, name, space, target, sampler, seed, max_trials, max_retries, priority, "
    "lease_timeout, state, created_at, meta"
)
_TRIAL_COLS = (
    "id, experiment_id, number, params, state, attempt, worker_id, loss, result, error, "
    "history, created_at, started_at, finished_at, heartbeat_at, stop_requested"
)
_TRIAL_COLS_T = ", ".join("t." + c.strip() for c in _TRIAL_COLS.split(","))


def _schema(id_type: str, float_type: str) -> list[str]:
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
            experiment_id INTEGER NOT NULL REFERENCES hd_experiments(id) ON DELETE CASCADE,
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
        "CREATE INDEX IF NOT EXISTS hd_trials_exp ON hd_trials (experiment_id, state, loss)",
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
    def _tx(self, write: bool = True) -> Iterator[Any]:
        """A cursor inside one transaction, committed on success. ``write=False`` for
        reads only: it takes no write lock."""
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
            history=json.loads(row[10]),
            created_at=float(row[11]),
            started_at=row[12],
            finished_at=row[13],
            heartbeat_at=row[14],
            stop_requested=bool(row[15]),
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
                raise StoreError(
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
            if state is ExperimentState.CANCELLED:
                cur.execute(
                    self._q(
                        f"UPDATE hd_trials SET state = 'cancelled', finished_at = {self.now_sql}, "
                        "error = 'Cancelled' WHERE experiment_id = ? AND state = 'queued'"
                    ),
                    (experiment_id,),
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
    ) -> Experiment:
        with self._tx() as cur:
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
        with self._tx() as cur:
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
        """Lock and return (attempt, max_retries, stop_requested, history) of a running
        trial leased to ``worker_id``, or None."""
        return self._one(
            cur,
            "SELECT t.attempt, e.max_retries, t.stop_requested, t.history, t.started_at "
            "FROM hd_trials t JOIN hd_experiments e ON e.id = t.experiment_id "
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
            now = self._now(cur)
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
            attempt, max_retries, stop_requested = int(lease[0]), int(lease[1]), bool(lease[2])
            if stop_requested:
                new_state = TrialState.CANCELLED
            elif retry and (not count_attempt or attempt < max_retries):
                new_state = TrialState.QUEUED
            else:
                new_state = TrialState.FAILED
            now = self._now(cur)
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
                    new_state = TrialState.CANCELLED
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

    def best_trial(self, experiment_id: int) -> Trial | None:
        rows = self._read(
            f"SELECT {_TRIAL_COLS} FROM hd_trials WHERE experiment_id = ? "
            "AND state = 'completed' AND loss IS NOT NULL ORDER BY loss, id LIMIT 1",
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

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx() as cur:
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
        return [
            Worker(
                id=r[0],
                host=r[1],
                pid=int(r[2]),
                parallelism=int(r[3]),
                started_at=float(r[4]),
                heartbeat_at=float(r[5]),
                running=tuple(running.get(r[0], ())),
                meta=json.loads(r[6]),
            )
            for r in rows
            if max_age is None or now - float(r[5]) <= max_age
        ]

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
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
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

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
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
