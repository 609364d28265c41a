"""The SQLite store: the embedded default, one file for the processes of one machine.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed change survives any
crash of a Hyperdock process (``kill -9`` included); an OS crash or power cut may lose the
last few commits, never corrupt the file. Leases are renewed and measured on the
machine's monotonic clock (see :meth:`SQLiteStore._beat_sql`). The queries are
:class:`~hyperdock.storage.sql.SQLStore`'s.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hyperdock.errors import StoreConnectionError, StoreError
from hyperdock.storage.sql import LEASE_OF_ANOTHER_BOOT, SQLStore, schema

__all__ = ["SQLiteStore"]


class SQLiteStore(SQLStore):
    """The embedded store: one SQLite file, safe for many processes on one machine.

    Args:
        path: Database file (created with its folder if missing), or ``:memory:``
            (one process only; for tests).
        timeout: Seconds to wait for another process's write lock before failing.
    """

    backend = "sqlite"
    # The writing process's wall clock (time.time), for the times a trial shows.
    now_sql = "hd_now()"
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
        conn: sqlite3.Connection | None = None
        try:
            if self.path == ":memory:":
                if self._memory is None:
                    self._memory = sqlite3.connect(
                        ":memory:", isolation_level=None, check_same_thread=False
                    )
                    _add_clocks(self._memory)
                return self._memory
            conn = sqlite3.connect(
                self.path,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            _add_clocks(conn)
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            if self._wal_mode(conn).lower() != "wal":
                raise StoreConnectionError(
                    f"SQLite at {self.path} cannot use WAL mode (network file system?); "
                    "put the database on a local disk"
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            if conn is not None and conn is not self._memory:
                conn.close()
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
                self._rollback(conn)
                raise self._error(exc) from None
            cur = conn.cursor()
            try:
                yield cur
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise self._error(exc) from None
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                with contextlib.suppress(sqlite3.Error):  # its connection may be closed
                    cur.close()

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """End a failed transaction, never raising.

        After a full disk or an I/O error SQLite may have rolled back already (a
        ROLLBACK then fails: "no transaction is active"), or the ROLLBACK itself fails;
        either way the error that matters is the first one. A connection that cannot
        roll back is in an unknown state: it is closed, the next call opens another.
        """
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            if conn is self._memory:  # the only copy of the data: keep it
                return
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            if getattr(self._local, "conn", None) is conn:
                self._local.conn = None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """A driver error as a Hyperdock one. A full disk, an I/O error, a lock held too
        long or a file that cannot be opened or written are outages, retried like a
        lost database connection (:class:`StoreConnectionError`); they pass."""
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary is None:  # no code: an old Python; judge by the message
            text = str(exc).lower()
            primary = next((c for c, words in _SQLITE_MESSAGES if words in text), None)
        hint = _SQLITE_TRANSIENT.get(primary) if primary is not None else None
        if hint is None:
            return StoreError(f"SQLite store {self.path}: {exc}")
        return StoreConnectionError(
            f"the SQLite store {self.path} cannot be written or read right now ({exc}); "
            f"{hint}; the call can be retried once that is fixed"
        )

    def _schema_statements(self) -> list[str]:
        return schema("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL")

    def _migrate(self, cur: Any) -> None:
        # Schema 4: the lease clock's columns (see _beat_sql); schema 5: queue_rank.
        for table, column, kind in (
            ("hd_trials", "lease_mono", "REAL"),
            ("hd_workers", "heartbeat_mono", "REAL"),
            ("hd_trials", "queue_rank", "INTEGER NOT NULL DEFAULT 0"),
        ):
            columns = {row[1] for row in self._all(cur, f"PRAGMA table_info({table})")}
            if columns and column not in columns:  # no columns: a new store
                cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    # SQLite has no server, so no clock that every process shares but the machine's
    # monotonic clock: an SQLite store is used by processes of one machine only (WAL
    # needs shared memory). Leases are renewed and measured on it, so a jump of the
    # wall clock (NTP, a user, a VM resumed) neither ages a live lease nor rejuvenates a
    # lost one. A lease renewed on a monotonic clock ahead of this one's (taken before
    # the machine restarted) is lost. Rows renewed by a Hyperdock before schema 4 have
    # no monotonic time: their wall time is used. ``hd_mono()`` is read when the
    # statement runs, under the write lock, not before waiting for it.
    def _beat_sql(self, table: str) -> tuple[str, tuple[Any, ...]]:
        return f"heartbeat_at = {self.now_sql}, {_MONO_COLUMN[table]} = hd_mono()", ()

    def _age_sql(self, table: str) -> tuple[str, tuple[Any, ...]]:
        mono = f"{table}.{_MONO_COLUMN.get(table, 'lease_mono')}"  # "t": the trials
        return (
            f"(CASE WHEN {mono} IS NULL THEN {self.now_sql} - {table}.heartbeat_at "
            f"WHEN {mono} > hd_mono() + {_MONO_SLACK} THEN {LEASE_OF_ANOTHER_BOOT} "
            f"ELSE hd_mono() - {mono} END)",
            (),
        )

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()

    def describe(self) -> str:
        return f"sqlite:///{self.path}"


def _wall_clock() -> float:
    """SQLite's ``hd_now()``: this process's wall clock (looked up at each call)."""
    return time.time()


def _monotonic_clock() -> float:
    """SQLite's ``hd_mono()``: the machine's monotonic clock."""
    return time.monotonic()


def _add_clocks(conn: sqlite3.Connection) -> None:
    conn.create_function("hd_now", 0, _wall_clock)
    conn.create_function("hd_mono", 0, _monotonic_clock)


#: SQLite's monotonic lease columns, by table.
_MONO_COLUMN = {"hd_trials": "lease_mono", "hd_workers": "heartbeat_mono"}
#: Seconds a lease's monotonic time may be ahead of the reaper's (it was renewed while
#: the reaper measured) before it counts as renewed before the machine restarted.
_MONO_SLACK = 5.0

#: SQLite result codes that are outages rather than refusals, with what to do about them.
_SQLITE_TRANSIENT = {
    5: "another process holds its lock",  # SQLITE_BUSY
    6: "another connection holds its lock",  # SQLITE_LOCKED
    7: "the machine is out of memory",  # SQLITE_NOMEM
    8: "make the file and its folder writable again",  # SQLITE_READONLY
    10: "check the disk that holds it (dmesg)",  # SQLITE_IOERR
    13: "free space on the disk that holds it",  # SQLITE_FULL
    14: "check that its folder exists and is writable",  # SQLITE_CANTOPEN
    15: "another process holds its lock",  # SQLITE_PROTOCOL
}
#: Message fragments of those codes, for errors that carry no code.
_SQLITE_MESSAGES = (
    (13, "disk is full"),
    (10, "disk i/o error"),
    (5, "database is locked"),
    (6, "table is locked"),
    (8, "readonly database"),
    (14, "unable to open"),
)
