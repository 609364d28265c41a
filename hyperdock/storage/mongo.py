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

MongoDB has no multi-document transactions on a standalone server, so every change of a
trial is one atomic single-document update whose filter states what the change relies
on: a claim is one ``find_one_and_update`` on ``state: queued`` (sorted by priority, then
id); an update that ends an attempt is conditioned on the lease it read (``state:
running``, ``worker_id``, ``attempt``, ``started_at``) and retried if the document changed
in between; a reap is conditioned on the stale ``heartbeat_at`` it saw.

Parameters, results, spaces and meta data are stored as documents after
:func:`hyperdock.jsonutil.to_jsonable` (numpy values included). A value MongoDB cannot
hold as a document (a key starting with ``$`` or holding ``.``, an integer beyond 64 bits)
is stored as JSON text in a ``<field>_json`` field instead.

Times are Unix seconds. Leases use the server's clock: at connect (and every minute)
the store measures the server's ``localTime`` (``hello`` command) against its monotonic
clock, so workers whose clocks disagree still agree about leases. mongomock has no
server clock; the local clock is used there.
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
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from hyperdock.errors import (
    ConfigError,
    ExperimentExists,
    ExperimentNotFound,
    HyperdockError,
    StoreConnectionError,
    StoreError,
)
from hyperdock.jsonutil import dumps, to_jsonable
from hyperdock.redact import redact_url, scrub
from hyperdock.storage.base import SCHEMA_VERSION, Store, cancel_message
from hyperdock.trial import Experiment, ExperimentState, Target, Trial, TrialState, Worker

DEFAULT_DATABASE = "hyperdock"
#: hyperopt's default collection, so old supervisors and workers meet.
DEFAULT_PREFIX = "jobs"
#: How long to look for a server before giving up (``serverSelectionTimeoutMS``).
DEFAULT_TIMEOUT_MS = 5000
#: Seconds between measurements of the server's clock.
CLOCK_REFRESH = 60.0
#: How often an optimistic update is retried when its document changed in between.
_CAS_ATTEMPTS = 50

_QUEUED = TrialState.QUEUED.value
_RUNNING = TrialState.RUNNING.value
_ACTIVE = [_QUEUED, _RUNNING]
_INT64 = 2**63

#: mongomock's find_one_and_update is a find followed by an update, not one atomic step;
#: every call on a mongomock collection runs under this lock instead.
_MOCK_LOCK = threading.RLock()

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


def _pack(field: str, value: Any) -> dict[str, Any]:
    """``{field: document, field_json: None}``, or the value as JSON text when MongoDB
    cannot hold it as a document."""
    plain = to_jsonable(value)
    if _bson_safe(plain):
        return {field: plain, f"{field}_json": None}
    return {field: None, f"{field}_json": dumps(plain)}


def _unpack(doc: dict[str, Any], field: str) -> Any:
    raw = doc.get(f"{field}_json")
    return json.loads(raw) if raw is not None else doc.get(field)


def _stopped_state(doc: dict[str, Any]) -> TrialState:
    """The final state of a trial whose target was stopped on request."""
    return TrialState.PRUNED if doc.get("prune_requested") else TrialState.CANCELLED


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


def _guarded(
    method: Callable[Concatenate[MongoStore, _P], _R],
) -> Callable[Concatenate[MongoStore, _P], _R]:
    """Turn pymongo's errors into :class:`StoreError` / :class:`StoreConnectionError`."""

    @functools.wraps(method)
    def wrapper(self: MongoStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._closed:
            raise StoreError("the store is closed")
        try:
            return method(self, *args, **kwargs)
        except HyperdockError:
            raise
        except self._errors.PyMongoError as exc:
            raise self._translate(exc) from None

    return wrapper


class MongoStore(Store):
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
        self._clock_lock = threading.Lock()
        self._clock: tuple[float, float] | None = None  # (server time, monotonic time)
        self._clock_synced = 0.0
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------------------
    @_guarded
    def _open(self) -> None:
        self._client.admin.command("ping")
        if not self._mock:
            self._sync_clock()
        row = self._meta.find_one({"_id": "schema_version"})
        if row is not None and int(row["value"]) > SCHEMA_VERSION:
            raise StoreError(
                f"the database was written by a newer Hyperdock (schema {row['value']}, "
                f"this one knows {SCHEMA_VERSION}); upgrade Hyperdock: pip install -U hyperdock"
            )
        if row is None or int(row["value"]) < SCHEMA_VERSION:  # nothing to migrate here
            self._upsert(self._meta, "schema_version", {"value": SCHEMA_VERSION})
        for name in ("experiments", "trials"):
            self._upsert(self._counters, name, {"seq": 0})
        self._experiments.create_index([("name", 1)], name="hd_name", unique=True)
        self._trials.create_index(
            [("state", 1), ("exp_state", 1), ("priority", -1), ("_id", 1)], name="hd_queue"
        )
        self._trials.create_index([("state", 1), ("worker_id", 1)], name="hd_running")
        self._trials.create_index(
            [("experiment_id", 1), ("number", 1)], name="hd_exp_number", unique=True
        )
        self._trials.create_index([("experiment_id", 1), ("_id", 1)], name="hd_exp_id")
        self._trials.create_index(
            [("experiment_id", 1), ("state", 1), ("loss", 1)], name="hd_exp_state"
        )
        self._progress.create_index(
            [("experiment_id", 1), ("trial_id", 1), ("step", 1)], name="hd_progress"
        )

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
            due = time.monotonic() - self._clock_synced > CLOCK_REFRESH
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
            space=_unpack(doc, "space"),
            target=Target.from_json(_unpack(doc, "target")),
            sampler=doc["sampler"],
            seed=int(doc["seed"]),
            max_trials=None if doc.get("max_trials") is None else int(doc["max_trials"]),
            max_retries=int(doc["max_retries"]),
            priority=int(doc["priority"]),
            lease_timeout=float(doc["lease_timeout"]),
            state=ExperimentState(doc["state"]),
            created_at=float(doc["created_at"]),
            meta=_unpack(doc, "meta") or {},
        )

    @staticmethod
    def _trial(doc: dict[str, Any]) -> Trial:
        return Trial(
            id=int(doc["_id"]),
            experiment_id=int(doc["experiment_id"]),
            number=int(doc["number"]),
            params=_unpack(doc, "params"),
            state=TrialState(doc["state"]),
            attempt=int(doc.get("attempt", 0)),
            worker_id=doc.get("worker_id"),
            loss=_float(doc.get("loss")),
            result=_unpack(doc, "result") or {},
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

    # -- experiments ------------------------------------------------------------------
    @_guarded
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
            **_pack("space", space),
            **_pack("target", target.to_json()),
            "sampler": sampler,
            "seed": int(seed),
            "max_trials": None if max_trials is None else int(max_trials),
            "max_retries": int(max_retries),
            "priority": int(priority),
            "lease_timeout": float(lease_timeout),
            "state": ExperimentState.RUNNING.value,
            "created_at": self._now(),
            **_pack("meta", meta or {}),
        }
        try:
            self._experiments.insert_one(doc)
        except self._errors.DuplicateKeyError:
            raise exists from None
        return self._experiment(doc)

    @_guarded
    def get_experiment(self, name_or_id: str | int) -> Experiment:
        by_id = isinstance(name_or_id, int)
        doc = self._experiments.find_one({"_id" if by_id else "name": name_or_id})
        if doc is None:
            what = f"id {name_or_id}" if by_id else repr(name_or_id)
            raise ExperimentNotFound(
                f"no experiment {what} in {self.describe()}; `hyperdock status` lists them"
            )
        return self._experiment(doc)

    @_guarded
    def list_experiments(self) -> list[Experiment]:
        return [self._experiment(d) for d in self._experiments.find({}, sort=[("_id", 1)])]

    @_guarded
    def set_experiment_state(self, experiment_id: int, state: ExperimentState) -> None:
        state = ExperimentState(state)
        self._experiments.update_one({"_id": experiment_id}, {"$set": {"state": state.value}})
        # The copies in the trials first: claims stop at once.
        self._trials.update_many(
            {"experiment_id": experiment_id, "state": {"$in": _ACTIVE}},
            {"$set": {"exp_state": state.value}},
        )
        if state.stops_trials:
            # Running trials first: one released to the queue meanwhile is then either
            # released as cancelled (it sees the stop) or cancelled in the queue below.
            self._trials.update_many(
                {"experiment_id": experiment_id, "state": _RUNNING},
                {"$set": {"stop_requested": True}},
            )
            self._trials.update_many(
                {"experiment_id": experiment_id, "state": _QUEUED},
                {
                    "$set": {
                        "state": TrialState.CANCELLED.value,
                        "finished_at": self._now(),
                        "error": cancel_message(state),
                    }
                },
            )

    @_guarded
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
                    {"experiment_id": experiment_id, "state": {"$in": _ACTIVE}},
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
            merged = {**(_unpack(doc, "meta") or {}), **meta}
            found = self._experiments.update_one(
                {"_id": experiment_id, **old}, {"$set": _pack("meta", merged)}
            )
            if found.matched_count:
                return
        raise StoreError(
            f"MongoDB store {self.describe()}: experiment {experiment_id}'s settings kept "
            "changing while they were updated; try again"
        )

    @_guarded
    def delete_experiment(self, experiment_id: int) -> None:
        self._trials.delete_many({"experiment_id": experiment_id})
        self._progress.delete_many({"experiment_id": experiment_id})
        self._experiments.delete_one({"_id": experiment_id})

    # -- trials -----------------------------------------------------------------------
    @_guarded
    def add_trials(
        self,
        experiment_id: int,
        params: Sequence[dict[str, Any]],
        *,
        first_number: int | None = None,
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
            docs = [
                {
                    "_id": first_id + i,
                    "experiment_id": experiment_id,
                    "number": first + i,
                    **_pack("params", p),
                    "state": _QUEUED,
                    "attempt": 0,
                    "worker_id": None,
                    "loss": None,
                    **_pack("result", {}),
                    "error": None,
                    "history": [],
                    "created_at": now,
                    "started_at": None,
                    "finished_at": None,
                    "heartbeat_at": None,
                    "stop_requested": False,
                    "prune_requested": False,
                    "priority": int(exp["priority"]),
                    "exp_state": exp["state"],
                    "lease_timeout": float(exp["lease_timeout"]),
                    "max_retries": int(exp["max_retries"]),
                }
                for i, p in enumerate(pending)
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
                {"_id": {"$in": ids}, "state": {"$in": _ACTIVE}}, {"$set": changed}
            )
            state = ExperimentState(exp["state"])
            if state.stops_trials:
                self._trials.update_many(
                    {"_id": {"$in": ids}, "state": _QUEUED},
                    {
                        "$set": {
                            "state": TrialState.CANCELLED.value,
                            "finished_at": self._now(),
                            "error": cancel_message(state),
                        }
                    },
                )

    @_guarded
    def claim(self, worker_id: str, *, experiment_id: int | None = None) -> Trial | None:
        query: dict[str, Any] = {"state": _QUEUED, "exp_state": ExperimentState.RUNNING.value}
        if experiment_id is not None:
            query["experiment_id"] = experiment_id
        now = self._now()
        doc = self._trials.find_one_and_update(
            query,
            {
                "$set": {
                    "state": _RUNNING,
                    "worker_id": worker_id,
                    "started_at": now,
                    "heartbeat_at": now,
                    "stop_requested": False,
                    "prune_requested": False,
                    "finished_at": None,
                }
            },
            sort=[("priority", -1), ("_id", 1)],
            return_document=self._after,
        )
        return self._trial(doc) if doc is not None else None

    @_guarded
    def heartbeat(self, worker_id: str, trial_ids: Iterable[int]) -> set[int]:
        ids = sorted(set(trial_ids))
        now = self._now()
        self._workers.update_one({"_id": worker_id}, {"$set": {"heartbeat_at": now}})
        if not ids:
            return set()
        self._trials.update_many(
            {"_id": {"$in": ids}, "state": _RUNNING, "worker_id": worker_id},
            {"$set": {"heartbeat_at": now}},
        )
        docs = self._trials.find(
            {"_id": {"$in": ids}}, {"state": 1, "worker_id": 1, "stop_requested": 1}
        )
        keep = {
            int(d["_id"])
            for d in docs
            if d["state"] == _RUNNING
            and d.get("worker_id") == worker_id
            and not d.get("stop_requested")
        }
        return set(ids) - keep

    def _lease(self, trial_id: int, worker_id: str) -> dict[str, Any] | None:
        """The running trial ``trial_id`` if ``worker_id`` holds its lease."""
        doc: dict[str, Any] | None = self._trials.find_one(
            {"_id": trial_id, "state": _RUNNING, "worker_id": worker_id}
        )
        return doc

    @staticmethod
    def _same_lease(lease: dict[str, Any], *, stop: bool = False) -> dict[str, Any]:
        """A filter that matches the trial only while it holds the lease read as
        ``lease`` (and, with ``stop``, no stop was requested since)."""
        query = {
            "_id": lease["_id"],
            "state": _RUNNING,
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

    @_guarded
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
                        **_pack("result", result or {}),
                        "error": error,
                        "finished_at": now,
                    },
                    "$push": {"history": entry},
                },
            )
            if done.matched_count:
                return True
        raise self._contention(trial_id)

    @_guarded
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
                        **_pack("result", result or {}),
                        "finished_at": None if queued else now,
                        "heartbeat_at": None,
                    },
                    "$push": {"history": entry},
                },
            )
            if done.matched_count:
                return new_state
        raise self._contention(trial_id)

    @_guarded
    def reap(self) -> list[Trial]:
        now = self._now()
        lost = self._trials.find(
            {
                "state": _RUNNING,
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

    @_guarded
    def get_trial(self, trial_id: int) -> Trial:
        doc = self._trials.find_one({"_id": trial_id})
        if doc is None:
            raise ExperimentNotFound(f"no trial with id {trial_id} in {self.describe()}")
        return self._trial(doc)

    @_guarded
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

    @_guarded
    def count_trials(self, experiment_id: int) -> dict[TrialState, int]:
        counts = dict.fromkeys(TrialState, 0)
        for row in self._trials.aggregate(
            [
                {"$match": {"experiment_id": experiment_id}},
                {"$group": {"_id": "$state", "n": {"$sum": 1}}},
            ]
        ):
            counts[TrialState(row["_id"])] = int(row["n"])
        return counts

    @_guarded
    def best_trial(self, experiment_id: int, *, maximize: bool = False) -> Trial | None:
        docs = list(
            self._trials.find(
                {
                    "experiment_id": experiment_id,
                    "state": TrialState.COMPLETED.value,
                    "loss": {"$ne": None},
                },
                sort=[("loss", -1 if maximize else 1), ("_id", 1)],
                limit=1,
            )
        )
        return self._trial(docs[0]) if docs else None

    @_guarded
    def cancel_trial(self, trial_id: int) -> TrialState:
        self._trials.update_one(
            {"_id": trial_id, "state": _QUEUED},
            {
                "$set": {
                    "state": TrialState.CANCELLED.value,
                    "finished_at": self._now(),
                    "error": "Cancelled",
                }
            },
        )
        self._trials.update_one(
            {"_id": trial_id, "state": _RUNNING}, {"$set": {"stop_requested": True}}
        )
        doc = self._trials.find_one({"_id": trial_id}, {"state": 1})
        if doc is None:
            raise ExperimentNotFound(f"no trial with id {trial_id} in {self.describe()}")
        return TrialState(doc["state"])

    @_guarded
    def prune_trial(self, trial_id: int) -> bool:
        done = self._trials.update_one(
            {"_id": trial_id, "state": _RUNNING, "stop_requested": {"$ne": True}},
            {"$set": {"stop_requested": True, "prune_requested": True}},
        )
        return bool(done.matched_count)

    @_guarded
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

    @_guarded
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
    @_guarded
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
                **_pack("meta", meta or {}),
            },
            upsert=True,
        )

    @_guarded
    def set_worker_status(self, worker_id: str, status: str | None) -> None:
        change = {"$unset": {"status": ""}} if status is None else {"$set": {"status": status}}
        self._workers.update_one({"_id": worker_id}, change)

    @_guarded
    def unregister_worker(self, worker_id: str) -> None:
        self._workers.delete_one({"_id": worker_id})

    @_guarded
    def list_workers(self, *, max_age: float | None = None) -> list[Worker]:
        now = self._now()
        docs = list(self._workers.find({}, sort=[("started_at", 1)]))
        running: dict[str, list[int]] = {}
        for doc in self._trials.find({"state": _RUNNING}, {"worker_id": 1}, sort=[("_id", 1)]):
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
                meta=_unpack(d, "meta") or {},
                status=d.get("status"),
            )
            for d in docs
            if max_age is None or now - float(d["heartbeat_at"]) <= max_age
        ]

    # -- misc -------------------------------------------------------------------------
    @_guarded
    def schema_version(self) -> int:
        doc = self._meta.find_one({"_id": "schema_version"})
        if doc is None:
            raise StoreError(f"MongoDB store {self.describe()} records no schema version")
        return int(doc["value"])

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
