"""The PostgreSQL store: the store for workers on many machines.

Connections come from a small pool and run in autocommit mode: reads and
single-statement changes (claim, finish, a worker's heartbeat for all its leases) take
one round trip each, and every commit is synchronous (durable once acknowledged). Claim,
finish and heartbeat, the hot path, run as statements prepared once per connection
straight on libpq (psycopg's ``pq`` layer).
Times come from the server's clock. Schema creation holds an advisory lock, so many
processes may open a new database at once. The other queries are
:class:`~hyperdock.storage.sql.SQLStore`'s.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hyperdock.errors import (
    ConfigError,
    ExperimentExists,
    StoreConnectionError,
    StoreError,
)
from hyperdock.jsonutil import dumps
from hyperdock.redact import redact_url, scrub
from hyperdock.storage.base import SCHEMA_VERSION
from hyperdock.storage.sql import TRIAL_COLS, SQLStore, schema
from hyperdock.trial import Trial, TrialState

__all__ = ["PostgresStore"]

#: Key of the advisory lock that serialises schema creation across processes.
_SCHEMA_LOCK_KEY = 0x4859504552444F43  # "HYPERDOC"


#: The trial columns of the claim's RETURNING, of the table updated by name.
_TRIAL_COLS_H = ", ".join("hd_trials." + c.strip() for c in TRIAL_COLS.split(","))


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


def _int_array(values: Sequence[int]) -> str:
    """A PostgreSQL array literal of whole numbers, for a text-format parameter."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def _text_int(raw: bytes) -> int:
    return int(raw)


def _text_str(raw: bytes) -> str:
    return raw.decode("utf-8")


#: Decoders of a trial row's columns (``TRIAL_COLS``) in text format.
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
        self._heartbeat_sql = _pyformat(
            "WITH worker AS (UPDATE hd_workers SET heartbeat_at = "
            f"{self.now_sql} WHERE id = ?) "
            f"UPDATE hd_trials SET heartbeat_at = {self.now_sql} "
            "WHERE id = ANY(CAST(? AS BIGINT[])) AND state = 'running' AND worker_id = ? "
            "RETURNING id, stop_requested"
        )
        #: Trials added by this store since its last ANALYZE, and the table's rows then.
        self._added_since_analyze = 0
        self._rows_at_analyze = 0
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
        front: bool = False,
    ) -> list[Trial]:
        """:meth:`SQLStore.add_trials`, then ``ANALYZE`` after a large batch.

        Autovacuum analyzes a changed table only a minute or more later; until then the
        planner believes the queue is tiny and may claim by sorting every queued trial
        instead of walking the queue index, which makes each claim cost O(queue).
        """
        trials = super().add_trials(experiment_id, params, first_number=first_number, front=front)
        # Not after every batch: a supervisor that keeps up with its workers adds large
        # batches often. Again only once the table grew by a tenth (autovacuum's rule).
        self._added_since_analyze += len(trials)
        if self._added_since_analyze >= max(self.analyze_batch, self._rows_at_analyze // 10):
            with self._tx(write=False) as cur:
                cur.execute("ANALYZE hd_trials")
                row = self._one(
                    cur, "SELECT reltuples FROM pg_class WHERE oid = 'hd_trials'::regclass"
                )
            self._added_since_analyze = 0
            self._rows_at_analyze = max(int(row[0]), 0) if row else 0
        return trials

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
        """One INSERT however many trials: numbers and params go as two arrays (one
        statement text, so the driver parses it once, and a few parameters only)."""
        cur.execute(
            "INSERT INTO hd_trials (experiment_id, number, params, state, priority, "
            "created_at, queue_rank) SELECT %s, u.n, u.p, 'queued', %s, %s, %s "
            "FROM unnest(CAST(%s AS INTEGER[]), CAST(%s AS TEXT[])) AS u(n, p) "
            "RETURNING number, id",
            (experiment_id, priority, now, rank, list(numbers), texts),
        )
        return {int(n): int(i) for n, i in cur.fetchall()}

    def _claim_sql(self, one_experiment: bool) -> str:
        only = "AND t.experiment_id = ? " if one_experiment else ""
        return _pyformat(
            f"UPDATE hd_trials SET state = 'running', worker_id = ?, "
            f"started_at = {self.now_sql}, heartbeat_at = {self.now_sql}, "
            f"stop_requested = 0, finished_at = NULL "
            # A scalar subquery runs once (an InitPlan). As a join (UPDATE … FROM), the
            # planner may rescan it for every queued row, and a rescan skips the row
            # this statement just updated and locks the next: two trials per claim.
            f"WHERE hd_trials.ctid = (SELECT t.ctid FROM hd_trials t JOIN hd_experiments e "
            f"ON e.id = t.experiment_id WHERE t.state = 'queued' AND e.state = 'running' "
            f"{only}ORDER BY t.priority DESC, t.queue_rank, t.id LIMIT 1"
            f"{self.claim_lock_sql}) AND hd_trials.state = 'queued' "
            f"RETURNING {_TRIAL_COLS_H}"
        )

    def _exec_prepared(
        self, name: bytes, sql: str, args: Sequence[Any]
    ) -> list[bytes | None] | None:
        """The first row of :meth:`_exec_prepared_rows`, or None without rows."""
        rows = self._exec_prepared_rows(name, sql, args, limit=1)
        return rows[0] if rows else None

    def _exec_prepared_rows(
        self, name: bytes, sql: str, args: Sequence[Any], *, limit: int | None = None
    ) -> list[list[bytes | None]]:
        """Run one statement (atomic by itself: autocommit) and return its rows (the
        first ``limit``), each value in PostgreSQL's text format (None: NULL).

        The hot path of claim and finish, straight on libpq through psycopg's ``pq``
        layer: the statement is prepared once per connection under ``name``, the
        parameters go as text, and only the rows asked for are read. That is a third of the
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
            count = res.ntuples if limit is None else min(limit, res.ntuples)
            return [[res.get_value(row, col) for col in range(res.nfields)] for row in range(count)]
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

    def heartbeat(self, worker_id: str, trial_ids: Iterable[int]) -> set[int]:
        """:meth:`SQLStore.heartbeat` in one statement (one round trip, one commit)
        however many leases the worker holds: the worker's row is renewed in a
        data-modifying CTE, its trials by primary key, and the renewed rows say which
        leases are still the worker's and which must stop."""
        ids = sorted(set(trial_ids))
        rows = self._exec_prepared_rows(
            b"hd_heartbeat", self._heartbeat_sql, (worker_id, _int_array(ids), worker_id)
        )
        return set(ids) - {int(r[0] or 0) for r in rows if r[1] == b"0"}

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
            *schema(
                "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                "DOUBLE PRECISION",
                "BIGINT",
                add_queue_rank=[
                    "ALTER TABLE hd_trials ADD COLUMN IF NOT EXISTS "
                    "queue_rank INTEGER NOT NULL DEFAULT 0"
                ],
                blob_type="BYTEA",
            ),
        ]

    def _init_schema(self) -> None:
        # Fast path, taking no lock: the usual case of a database set up already.
        with self._tx(write=False) as cur:
            if self._one(cur, "SELECT to_regclass('hd_meta') IS NOT NULL")[0]:
                row = self._one(cur, "SELECT value FROM hd_meta WHERE key = 'schema_version'")
                # A store of this schema made before the reads' index gets it below.
                made = self._one(cur, "SELECT to_regclass('hd_trials_state') IS NOT NULL")[0]
                if row is not None and int(row[0]) == SCHEMA_VERSION and made:
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
