"""MongoDB plumbing under :class:`~hyperdock.storage.mongo.MongoStore`: store URLs,
the client and its collections, the server's clock, id sequences, the mapping between
documents and records, and pymongo's errors as Hyperdock's.

Parameters, results, spaces and meta data are stored as documents after
:func:`hyperdock.jsonutil.to_jsonable` (numpy values included). A value MongoDB cannot
hold as a document (a key starting with ``$`` or holding ``.``, an integer beyond 64 bits)
is stored as JSON text in a ``<field>_json`` field instead.

Times are Unix seconds. Leases use the server's clock: at connect (and every minute)
the store measures the server's ``localTime`` (``hello`` command) against its monotonic
clock, so workers whose clocks disagree (or jump) still agree about leases; both the
heartbeats and the reap read that one clock. mongomock has no server clock: the local
wall clock read at open, advanced by the monotonic clock, stands in for it.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from hyperdock.errors import ConfigError, HyperdockError, StoreConnectionError, StoreError
from hyperdock.jsonutil import dumps, to_jsonable
from hyperdock.redact import redact_url, scrub
from hyperdock.storage.base import SCHEMA_VERSION, Store
from hyperdock.trial import Experiment, ExperimentState, Target, Trial, TrialState

__all__ = [
    "ACTIVE",
    "CLOCK_REFRESH",
    "DEFAULT_DATABASE",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_MS",
    "QUEUED",
    "RUNNING",
    "MongoBase",
    "guarded",
    "pack",
    "parse_url",
    "trial_doc",
    "unpack",
]

DEFAULT_DATABASE = "hyperdock"
#: hyperopt's default collection, so old supervisors and workers meet.
DEFAULT_PREFIX = "jobs"
#: How long to look for a server before giving up (``serverSelectionTimeoutMS``).
DEFAULT_TIMEOUT_MS = 5000
#: Seconds between measurements of the server's clock.
CLOCK_REFRESH = 60.0
#: Trial states as stored; ACTIVE ones keep copies of their experiment's fields current.
QUEUED = TrialState.QUEUED.value
RUNNING = TrialState.RUNNING.value
ACTIVE = [QUEUED, RUNNING]
_INT64 = 2**63

#: mongomock's find_one_and_update is a find followed by an update, not one atomic step;
#: every call on a mongomock collection runs under this lock instead.
_MOCK_LOCK = threading.RLock()

_S = TypeVar("_S", bound="MongoBase")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _import_pymongo() -> Any:
    try:
        import pymongo
    except ImportError:
        raise ConfigError("MongoDB stores need pymongo: pip install 'hyperdock[mongo]'") from None
    return pymongo


def parse_url(url: str) -> tuple[str, str, str]:
    """Split a MongoDB store URL.

    Args:
        url: A ``mongo://``, ``mongodb://`` or ``mongodb+srv://`` URL.

    Returns:
        ``(client_url, database, prefix)``: the URL to give ``pymongo.MongoClient``, the
        database and the prefix of Hyperdock's collections.

    Raises:
        StoreConnectionError: the URL is malformed.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if not parts.netloc.rsplit("@", 1)[-1]:
        raise StoreConnectionError(
            f"the store URL {redact_url(url)!r} names no host; "
            "use mongodb://host:27017/database or mongo://host:27017/database/collection"
        )
    path = urllib.parse.unquote(parts.path).strip("/")
    if scheme == "mongo":
        names = [n for n in path.split("/") if n] if path else []
        if len(names) > 2:
            raise StoreConnectionError(
                f"the store URL {redact_url(url)!r} has too many path parts; "
                "use mongo://host:27017/database/collection"
            )
        database = names[0] if names else DEFAULT_DATABASE
        prefix = names[1] if len(names) > 1 else DEFAULT_PREFIX
        client_url = urllib.parse.urlunsplit(
            ("mongodb", parts.netloc, "/" + urllib.parse.quote(database), parts.query, "")
        )
    elif scheme in ("mongodb", "mongodb+srv"):
        database, _, prefix = path.partition(".")
        database = database or DEFAULT_DATABASE
        prefix = prefix or DEFAULT_PREFIX
        client_url = url
    else:
        raise StoreConnectionError(
            f"{redact_url(url)!r} is not a MongoDB URL; use mongodb://host:27017/database"
        )
    if re.search(r'[/\\. "$\x00]', database):
        raise StoreConnectionError(
            f"the store URL {redact_url(url)!r} names an invalid database {database!r}"
        )
    return client_url, database, prefix


def _bson_safe(value: Any) -> bool:
    """True when ``value`` (plain JSON types) can be stored as a MongoDB document."""
    if isinstance(value, dict):
        return all(
            isinstance(k, str)
            and not k.startswith("$")
            and "." not in k
            and "\x00" not in k
            and _bson_safe(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_bson_safe(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -_INT64 <= value < _INT64
    return True


def pack(field: str, value: Any) -> dict[str, Any]:
    """``{field: document, field_json: None}``, or the value as JSON text when MongoDB
    cannot hold it as a document."""
    plain = to_jsonable(value)
    if _bson_safe(plain):
        return {field: plain, f"{field}_json": None}
    return {field: None, f"{field}_json": dumps(plain)}


def unpack(doc: dict[str, Any], field: str) -> Any:
    raw = doc.get(f"{field}_json")
    return json.loads(raw) if raw is not None else doc.get(field)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Serialised:
    """A mongomock collection whose every call runs under :data:`_MOCK_LOCK`.

    Cursors are read inside the lock (``find`` and ``aggregate`` return lists).
    """

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with _MOCK_LOCK:
                result = attr(*args, **kwargs)
                if name in ("find", "aggregate"):
                    result = list(result)
                return result

        return call


def guarded(
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """Turn pymongo's errors into :class:`StoreError` / :class:`StoreConnectionError`."""

    @functools.wraps(method)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._closed:
            raise StoreError("the store is closed")
        try:
            return method(self, *args, **kwargs)
        except HyperdockError:
            raise
        except self._errors.PyMongoError as exc:
            raise self._translate(exc) from None

    return wrapper


def trial_doc(
    experiment: dict[str, Any],
    trial_id: int,
    number: int,
    params: dict[str, Any],
    now: float,
    queue_rank: int = 0,
) -> dict[str, Any]:
    """A new queued trial's document, with the fields copied from ``experiment``'s;
    ``queue_rank`` below 0 puts it ahead in its experiment's queue."""
    return {
        "_id": trial_id,
        "experiment_id": experiment["_id"],
        "number": number,
        **pack("params", params),
        "state": QUEUED,
        "attempt": 0,
        "worker_id": None,
        "loss": None,
        **pack("result", {}),
        "error": None,
        "history": [],
        "created_at": now,
        "started_at": None,
        "finished_at": None,
        "heartbeat_at": None,
        "stop_requested": False,
        "prune_requested": False,
        "priority": int(experiment["priority"]),
        "exp_state": experiment["state"],
        "lease_timeout": float(experiment["lease_timeout"]),
        "max_retries": int(experiment["max_retries"]),
        "queue_rank": queue_rank,
    }


class MongoBase(Store):
    """The connection side of :class:`~hyperdock.storage.mongo.MongoStore` (see it for
    the arguments): client, collections, clock, ids, documents and errors. Not a store
    by itself: the operations are MongoStore's."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        database: str | None = None,
        prefix: str | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        self._closed = False
        self._url = url
        self._owns_client = client is None
        pymongo = _import_pymongo()
        self._errors: Any = pymongo.errors
        self._after: Any = pymongo.ReturnDocument.AFTER
        if client is None:
            if url is None:
                raise ValueError("MongoStore needs a url or a client")
            client_url, url_database, url_prefix = parse_url(url)
            options: dict[str, Any] = {}
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)
            if "serverselectiontimeoutms" not in {k.lower() for k in query}:
                options["serverSelectionTimeoutMS"] = timeout_ms
            try:
                client = pymongo.MongoClient(client_url, **options)
            except (self._errors.PyMongoError, ValueError, TypeError) as exc:
                raise StoreConnectionError(
                    f"cannot use the MongoDB store URL {redact_url(url)}: {self._scrub(str(exc))}; "
                    "use mongodb://[user:password@]host:27017/database or "
                    "mongo://host:27017/database/collection"
                ) from None
        else:
            url_database, url_prefix = DEFAULT_DATABASE, DEFAULT_PREFIX
        self._client: Any = client
        self.database = database or url_database
        self.prefix = prefix if prefix is not None else url_prefix
        self._mock = type(client).__module__.split(".")[0] == "mongomock"
        db = client[self.database]

        def collection(name: str) -> Any:
            coll = db[f"{self.prefix}.{name}" if self.prefix else name]
            return _Serialised(coll) if self._mock else coll

        self._experiments = collection("experiments")
        self._trials = collection("trials")
        self._workers = collection("workers")
        self._counters = collection("counters")
        self._meta = collection("meta")
        self._progress = collection("progress")
        self._logs = collection("logs")
        self._clock_lock = threading.Lock()
        self._clock: tuple[float, float] | None = None  # (server time, monotonic time)
        self._clock_synced = 0.0
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------------------
    @guarded
    def _open(self) -> None:
        self._client.admin.command("ping")
        if self._mock:
            # No server clock: this process's, read once and advanced by the monotonic
            # clock, so that a jump of the wall clock does not age the leases.
            self._clock = (time.time(), time.monotonic())
        else:
            self._sync_clock()
        row = self._meta.find_one({"_id": "schema_version"})
        if row is not None and int(row["value"]) > SCHEMA_VERSION:
            raise StoreError(
                f"the database was written by a newer Hyperdock (schema {row['value']}, "
                f"this one knows {SCHEMA_VERSION}); upgrade Hyperdock: pip install -U hyperdock"
            )
        if row is not None and int(row["value"]) < 5:
            # Schema 5: trials sort by queue_rank, and a missing field sorts first.
            self._trials.update_many(
                {"queue_rank": {"$exists": False}}, {"$set": {"queue_rank": 0}}
            )
            queue = self._trials.index_information().get("hd_queue")
            if queue is not None and "queue_rank" not in dict(queue["key"]):
                self._trials.drop_index("hd_queue")  # made again below, with queue_rank
        if row is None or int(row["value"]) < SCHEMA_VERSION:
            self._upsert(self._meta, "schema_version", {"value": SCHEMA_VERSION})
            self._meta.update_one({"_id": "schema_version"}, {"$max": {"value": SCHEMA_VERSION}})
        for name in ("experiments", "trials"):
            self._upsert(self._counters, name, {"seq": 0})
        self._experiments.create_index([("name", 1)], name="hd_name", unique=True)
        self._trials.create_index(
            [("state", 1), ("exp_state", 1), ("priority", -1), ("queue_rank", 1), ("_id", 1)],
            name="hd_queue",
        )
        self._trials.create_index([("state", 1), ("worker_id", 1)], name="hd_running")
        self._trials.create_index(
            [("experiment_id", 1), ("number", 1)], name="hd_exp_number", unique=True
        )
        self._trials.create_index([("experiment_id", 1), ("_id", 1)], name="hd_exp_id")
        # Counts by state and the best trials (storage/mongo_reads.py); it replaces
        # hd_exp_state (the same without _id: the best by loss then id needed a sort).
        self._trials.create_index(
            [("experiment_id", 1), ("state", 1), ("loss", 1), ("_id", 1)], name="hd_exp_best"
        )
        if "hd_exp_state" in self._trials.index_information():
            self._trials.drop_index("hd_exp_state")
        self._progress.create_index(
            [("experiment_id", 1), ("trial_id", 1), ("step", 1)], name="hd_progress"
        )
        # Schema 6: attempts' logs (a new collection: nothing to migrate).
        self._logs.create_index([("trial_id", 1), ("attempt", 1), ("pos", 1)], name="hd_logs")
        self._logs.create_index([("experiment_id", 1)], name="hd_logs_exp")

    def _upsert(self, collection: Any, key: str, fields: dict[str, Any]) -> None:
        """Create the document ``key`` with ``fields`` unless it exists."""
        # DuplicateKeyError: another process created it at the same moment.
        with contextlib.suppress(self._errors.DuplicateKeyError):
            collection.update_one({"_id": key}, {"$setOnInsert": fields}, upsert=True)

    def _sync_clock(self) -> None:
        """Measure the server's clock against ours (best of three round trips)."""
        best: tuple[float, float, float] | None = None
        for _ in range(3):
            before = time.monotonic()
            try:
                reply = self._client.admin.command("hello")
            except self._errors.OperationFailure:
                reply = self._client.admin.command("isMaster")  # servers before 4.4.2
            after = time.monotonic()
            local_time = reply.get("localTime")
            if not isinstance(local_time, datetime.datetime):
                return  # no server clock: the local one it is
            if local_time.tzinfo is None:
                local_time = local_time.replace(tzinfo=datetime.UTC)
            # localTime has millisecond resolution: add half a millisecond.
            server = local_time.timestamp() + 0.0005
            if best is None or after - before < best[0]:
                best = (after - before, server, (before + after) / 2)
        assert best is not None
        with self._clock_lock:
            self._clock = (best[1], best[2])
            self._clock_synced = time.monotonic()

    def _now(self) -> float:
        """The database's current Unix time (the local clock on mongomock)."""
        if self._clock is None:
            return time.time()
        with self._clock_lock:  # one thread measures again, the others go on
            due = not self._mock and time.monotonic() - self._clock_synced > CLOCK_REFRESH
            if due:
                self._clock_synced = time.monotonic()
        if due:
            # On failure keep the last measurement; the next operation reports the outage.
            with contextlib.suppress(self._errors.PyMongoError):
                self._sync_clock()
        with self._clock_lock:
            server, mono = self._clock
        return server + (time.monotonic() - mono)

    def _hosts(self) -> str:
        if self._url is None:
            return "the given client's server"
        return urllib.parse.urlsplit(self._url).netloc.rsplit("@", 1)[-1] or "?"

    def _scrub(self, text: str) -> str:
        """``text`` in one line, with the URL's password (if any) replaced by ***."""
        if self._url:
            text = scrub(text, self._url)
        return _one_line(text)

    def _translate(self, exc: Exception) -> StoreError:
        errors = self._errors
        hosts = self._hosts()
        if isinstance(exc, errors.OperationFailure) and (
            exc.code in (18, 13, 11) or "auth" in str(exc).lower()
        ):
            user = urllib.parse.urlsplit(self._url).username if self._url else None
            who = f" user {urllib.parse.unquote(user)!r}" if user else ""
            what = "refused the login of" if exc.code != 13 else "denied access to"
            return StoreConnectionError(
                f"MongoDB at {hosts} {what}{who or ' this client'} "
                f"({self._scrub(str(exc.details.get('errmsg') if exc.details else exc))}); "
                "check the user name, password and authSource in the store URL"
            )
        # ServerSelectionTimeoutError, AutoReconnect, NetworkTimeout are ConnectionFailures.
        if isinstance(exc, errors.ConnectionFailure):
            reason = str(exc).split(", Timeout:")[0]
            reason = re.sub(r"\s*\(configured timeouts:[^)]*\)", "", reason)
            reason = reason.removeprefix(f"{hosts}: ")
            return StoreConnectionError(
                f"cannot reach MongoDB at {hosts} ({self._scrub(reason)}); check that the "
                "server runs and that host, port and options in the store URL are right"
            )
        if isinstance(exc, errors.ConfigurationError):
            return StoreConnectionError(
                f"MongoDB store {self.describe()}: {self._scrub(str(exc))}; check the store URL"
            )
        return StoreError(f"MongoDB store {self.describe()}: {self._scrub(str(exc))}")

    def _next_ids(self, name: str, count: int) -> int:
        """Reserve ``count`` consecutive ids of sequence ``name``; return the first."""
        for _ in range(2):
            try:
                doc = self._counters.find_one_and_update(
                    {"_id": name},
                    {"$inc": {"seq": count}},
                    upsert=True,
                    return_document=self._after,
                )
                return int(doc["seq"]) - count + 1
            except self._errors.DuplicateKeyError:
                continue  # two first upserts raced; the second attempt increments
        raise StoreError(f"MongoDB store {self.describe()}: cannot reserve ids for {name}")

    @staticmethod
    def _experiment(doc: dict[str, Any]) -> Experiment:
        return Experiment(
            id=int(doc["_id"]),
            name=doc["name"],
            space=unpack(doc, "space"),
            target=Target.from_json(unpack(doc, "target")),
            sampler=doc["sampler"],
            seed=int(doc["seed"]),
            max_trials=None if doc.get("max_trials") is None else int(doc["max_trials"]),
            max_retries=int(doc["max_retries"]),
            priority=int(doc["priority"]),
            lease_timeout=float(doc["lease_timeout"]),
            state=ExperimentState(doc["state"]),
            created_at=float(doc["created_at"]),
            meta=unpack(doc, "meta") or {},
        )

    @staticmethod
    def _trial(doc: dict[str, Any]) -> Trial:
        return Trial(
            id=int(doc["_id"]),
            experiment_id=int(doc["experiment_id"]),
            number=int(doc["number"]),
            params=unpack(doc, "params"),
            state=TrialState(doc["state"]),
            attempt=int(doc.get("attempt", 0)),
            worker_id=doc.get("worker_id"),
            loss=_float(doc.get("loss")),
            result=unpack(doc, "result") or {},
            error=doc.get("error"),
            history=list(doc.get("history") or []),
            created_at=float(doc["created_at"]),
            started_at=_float(doc.get("started_at")),
            finished_at=_float(doc.get("finished_at")),
            heartbeat_at=_float(doc.get("heartbeat_at")),
            stop_requested=bool(doc.get("stop_requested")),
            prune_requested=bool(doc.get("stop_requested") and doc.get("prune_requested")),
        )

    @staticmethod
    def _entry(
        *,
        attempt: int,
        worker: str | None,
        started: float | None,
        ended: float,
        state: str,
        message: str | None,
    ) -> dict[str, Any]:
        """One history entry, as the SQL store writes it."""
        return {
            "attempt": attempt,
            "worker": worker,
            "started_at": started,
            "ended_at": ended,
            "state": state,
            "message": message,
        }

    # -- leases -----------------------------------------------------------------------
    def _lease(self, trial_id: int, worker_id: str) -> dict[str, Any] | None:
        """The running trial ``trial_id`` if ``worker_id`` holds its lease."""
        doc: dict[str, Any] | None = self._trials.find_one(
            {"_id": trial_id, "state": RUNNING, "worker_id": worker_id}
        )
        return doc

    @staticmethod
    def _same_lease(lease: dict[str, Any], *, stop: bool = False) -> dict[str, Any]:
        """A filter that matches the trial only while it holds the lease read as
        ``lease`` (and, with ``stop``, no stop was requested since)."""
        query = {
            "_id": lease["_id"],
            "state": RUNNING,
            "worker_id": lease["worker_id"],
            "attempt": lease["attempt"],
            "started_at": lease["started_at"],
        }
        if stop:
            query["stop_requested"] = bool(lease.get("stop_requested"))
        return query

    def _contention(self, trial_id: int) -> StoreError:
        return StoreError(
            f"MongoDB store {self.describe()}: trial {trial_id} kept changing while it was "
            "being updated; try again"
        )

    # -- misc -------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        if self._owns_client and getattr(self, "_client", None) is not None:
            with contextlib.suppress(Exception):  # closing a broken client must not fail
                self._client.close()

    def describe(self) -> str:
        if self._url is not None:
            return redact_url(self._url)
        kind = "mongomock" if self._mock else "pymongo"
        return f"mongodb ({kind} client) database {self.database}, collections {self.prefix}.*"
