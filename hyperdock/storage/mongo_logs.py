"""Attempts' logs in the MongoDB store (schema 6): the :class:`~hyperdock.storage.base.Store`
log methods of :class:`~hyperdock.storage.mongo.MongoStore`.

``<prefix>.logs`` holds one document per chunk, ``_id`` ``"<trial>:<attempt>:<pos>"``
(a repeated chunk changes nothing; a longer one replaces a shorter one), with ``end``
(``pos`` plus the chunk's length) and the trial's ``experiment_id`` (deleting an
experiment deletes its logs). The index ``hd_logs`` (trial, attempt, pos) serves every
read of one log.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hyperdock.storage.logchunks import LogChunk, StoredLog
from hyperdock.storage.mongo_base import MongoBase, guarded

__all__ = ["MongoLogs"]


class MongoLogs(MongoBase):
    """:class:`MongoBase` with the log methods (see the module docstring)."""

    def _log_size(self, trial_id: int, attempt: int) -> int:
        last = self._logs.find_one(
            {"trial_id": trial_id, "attempt": attempt}, {"end": 1}, sort=[("end", -1)]
        )
        return int(last["end"]) if last is not None else 0

    @guarded
    def add_log(
        self, trial_id: int, attempt: int, offset: int, data: bytes, *, head: int, tail: int
    ) -> None:
        trial = self._trials.find_one({"_id": trial_id}, {"experiment_id": 1})
        if trial is None:  # deleted meanwhile: nothing to keep
            return
        fields = {
            "experiment_id": int(trial["experiment_id"]),
            "trial_id": trial_id,
            "attempt": attempt,
            "pos": offset,
            "end": offset + len(data),
            "data": bytes(data),
        }
        # Only a longer chunk replaces one (the first chunk the empty one that says a
        # log exists); the same chunk again finds no match and its insert fails.
        with contextlib.suppress(self._errors.DuplicateKeyError):
            self._logs.update_one(
                {"_id": f"{trial_id}:{attempt}:{offset}", "end": {"$lt": fields["end"]}},
                {"$set": fields},
                upsert=True,
            )
        size = self._log_size(trial_id, attempt)
        self._logs.delete_many(
            {
                "trial_id": trial_id,
                "attempt": attempt,
                "pos": {"$gte": max(head, 0)},
                "end": {"$lte": size - max(tail, 0), "$lt": size},
            }
        )

    @guarded
    def read_log(self, trial_id: int, attempt: int | None = None, *, start: int = 0) -> StoredLog:
        if attempt is None:
            last = self._logs.find_one(
                {"trial_id": trial_id}, {"attempt": 1}, sort=[("attempt", -1)]
            )
            if last is None:
                return StoredLog(trial_id, -1, (), 0)
            attempt = int(last["attempt"])
        size = self._log_size(trial_id, attempt)
        after = size + start if start < 0 else start
        query: dict[str, Any] = {"trial_id": trial_id, "attempt": attempt, "end": {"$gt": after}}
        docs = self._logs.find(query, sort=[("pos", 1)])
        chunks = tuple(LogChunk(int(d["pos"]), bytes(d["data"])) for d in docs)
        return StoredLog(trial_id, attempt, chunks, size)

    @guarded
    def log_attempts(self, trial_id: int) -> list[int]:
        return sorted(int(a) for a in self._logs.distinct("attempt", {"trial_id": trial_id}))
