"""Attempts' logs in the SQL stores (schema 6): the ``hd_logs`` table and the
:class:`~hyperdock.storage.base.Store` log methods of
:class:`~hyperdock.storage.sql.SQLStore`.

One row per chunk, keyed by ``(trial_id, attempt, pos)``: a repeated chunk is ignored
(``ON CONFLICT``: only a longer one replaces it, as a first chunk
does the empty one that says a log exists), and every read of one attempt's log is a range of that
key. ``end_pos`` is ``pos`` plus the chunk's length, so trimming and the log's size need
no look at the bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

from hyperdock.storage.logchunks import LogChunk, StoredLog

__all__ = ["SQLLogs", "logs_table"]


def logs_table(ref_type: str, blob_type: str) -> str:
    """The ``hd_logs`` table in the dialect's id-reference and bytes types."""
    return f"""CREATE TABLE IF NOT EXISTS hd_logs (
            trial_id {ref_type} NOT NULL REFERENCES hd_trials(id) ON DELETE CASCADE,
            attempt INTEGER NOT NULL, pos BIGINT NOT NULL, end_pos BIGINT NOT NULL,
            data {blob_type} NOT NULL,
            PRIMARY KEY (trial_id, attempt, pos))"""


class _SQL(Protocol):
    """What the log methods use of :class:`~hyperdock.storage.sql.SQLStore`."""

    def _tx(
        self, write: bool = True, *, single: bool = False
    ) -> contextlib.AbstractContextManager[Any]: ...

    def _q(self, sql: str) -> str: ...

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...


#: The size of one attempt's log: its largest chunk end.
_SIZE_SQL = "SELECT MAX(end_pos) FROM hd_logs WHERE trial_id = ? AND attempt = ?"


class SQLLogs:
    """The log methods; mixed into :class:`~hyperdock.storage.sql.SQLStore`."""

    def add_log(
        self: _SQL, trial_id: int, attempt: int, offset: int, data: bytes, *, head: int, tail: int
    ) -> None:
        end = offset + len(data)
        with self._tx() as cur:
            # Only for a trial that exists (an experiment deleted meanwhile: nothing).
            cur.execute(
                self._q(
                    "INSERT INTO hd_logs (trial_id, attempt, pos, end_pos, data) "
                    "SELECT id, ?, ?, ?, ? FROM hd_trials WHERE id = ? "
                    "ON CONFLICT (trial_id, attempt, pos) DO UPDATE SET "
                    "end_pos = excluded.end_pos, data = excluded.data "
                    "WHERE excluded.end_pos > hd_logs.end_pos"
                ),
                (attempt, offset, end, bytes(data), trial_id),
            )
            cur.execute(
                self._q(
                    "DELETE FROM hd_logs WHERE trial_id = ? AND attempt = ? AND pos >= ? "
                    "AND end_pos <= (SELECT MAX(end_pos) FROM hd_logs "
                    "WHERE trial_id = ? AND attempt = ?) - ? "
                    "AND end_pos < (SELECT MAX(end_pos) FROM hd_logs "
                    "WHERE trial_id = ? AND attempt = ?)"
                ),
                (
                    trial_id,
                    attempt,
                    max(head, 0),
                    trial_id,
                    attempt,
                    max(tail, 0),
                    trial_id,
                    attempt,
                ),
            )

    def read_log(
        self: _SQL, trial_id: int, attempt: int | None = None, *, start: int = 0
    ) -> StoredLog:
        if attempt is None:
            found = self._read("SELECT MAX(attempt) FROM hd_logs WHERE trial_id = ?", (trial_id,))
            if not found or found[0][0] is None:
                return StoredLog(trial_id, -1, (), 0)
            attempt = int(found[0][0])
        size_sql = f"({_SIZE_SQL})"
        if start < 0:
            bound, args = f"{size_sql} + ?", [trial_id, attempt, start]
        else:
            bound, args = "?", [start]
        rows = self._read(
            f"SELECT pos, data, {size_sql} FROM hd_logs "
            f"WHERE trial_id = ? AND attempt = ? AND end_pos > {bound} ORDER BY pos",
            (trial_id, attempt, trial_id, attempt, *args),
        )
        chunks = tuple(LogChunk(int(r[0]), bytes(r[1])) for r in rows)
        if rows:
            size = int(rows[0][2])
        else:
            got = self._read(_SIZE_SQL, (trial_id, attempt))
            size = int(got[0][0]) if got and got[0][0] is not None else 0
        return StoredLog(trial_id, attempt, chunks, size)

    def log_attempts(self: _SQL, trial_id: int) -> list[int]:
        rows = self._read(
            "SELECT DISTINCT attempt FROM hd_logs WHERE trial_id = ? ORDER BY attempt",
            (trial_id,),
        )
        return [int(r[0]) for r in rows]
