"""The storage conformance suite on MongoDB, plus what is special about MongoDB.

The suite always runs on mongomock (one process: the multi-process test skips there). Set
``HYPERDOCK_TEST_MONGO_URL`` (e.g. ``mongodb://localhost:27017``) to run it against a
real server as well: every test then gets a fresh database, dropped afterwards. Without
the variable that class is not even defined, so CI shows no skipped tests for it.
"""

from __future__ import annotations

import datetime
import importlib
import os
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest

from hyperdock.errors import ConfigError, ExperimentNotFound, StoreConnectionError, StoreError
from hyperdock.storage import SCHEMA_VERSION, Store, open_store
from hyperdock.storage.mongo import MongoStore, parse_url
from hyperdock.testing.conformance import StoreConformance, make_experiment
from hyperdock.trial import TrialState

REAL_SERVER_URL = os.environ.get("HYPERDOCK_TEST_MONGO_URL")


class TestMongoStore(StoreConformance):
    """The suite on mongomock, a fresh in-memory server per test."""

    # mongomock cannot be shared between processes: the multi-process test runs against
    # a real server (TestMongoServerStore, with HYPERDOCK_TEST_MONGO_URL) instead.
    test_processes_never_double_claim = None

    @pytest.fixture
    def store_url(self) -> None:
        return None  # mongomock lives in this process only

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        s = MongoStore(client=mongomock.MongoClient(), database="hd")
        yield s
        s.close()


def _url_with_database(url: str, database: str) -> str:
    """``url`` naming ``database``, keeping the authentication database it named."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    if parts.username and not any(k.lower() == "authsource" for k, _ in query):
        query.append(("authSource", parts.path.strip("/").split(".")[0] or "admin"))
    return urllib.parse.urlunsplit(
        parts._replace(path="/" + database, query=urllib.parse.urlencode(query))
    )


if REAL_SERVER_URL:

    class TestMongoServerStore(StoreConformance):
        """The suite on the server named by HYPERDOCK_TEST_MONGO_URL."""

        @pytest.fixture
        def store_url(self) -> Iterator[str]:
            import pymongo

            assert REAL_SERVER_URL is not None
            database = f"hd_test_{uuid.uuid4().hex[:12]}"
            yield _url_with_database(REAL_SERVER_URL, database)
            with pymongo.MongoClient(REAL_SERVER_URL, serverSelectionTimeoutMS=5000) as client:
                client.drop_database(database)

        @pytest.fixture
        def store(self, store_url: str) -> Iterator[Store]:
            s = open_store(store_url)
            yield s
            s.close()

    def test_real_server_clock_is_measured() -> None:
        import pymongo

        assert REAL_SERVER_URL is not None
        database = f"hd_test_{uuid.uuid4().hex[:12]}"
        try:
            with MongoStore(_url_with_database(REAL_SERVER_URL, database)) as st:
                assert isinstance(st, MongoStore)
                assert st._clock is not None  # the server's clock, not ours
                assert abs(st._now() - time.time()) < 60  # a sane server clock
        finally:
            with pymongo.MongoClient(REAL_SERVER_URL, serverSelectionTimeoutMS=5000) as client:
                client.drop_database(database)


# -- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "client_url", "database", "prefix"),
    [
        (
            "mongo://172.17.0.1:27017/hyperdock/jobs",
            "mongodb://172.17.0.1:27017/hyperdock",
            "hyperdock",
            "jobs",
        ),
        ("mongo://h:1/db/runs?w=1", "mongodb://h:1/db?w=1", "db", "runs"),
        (
            "mongo://localhost:27017/hyperdock",
            "mongodb://localhost:27017/hyperdock",
            "hyperdock",
            "jobs",
        ),
        ("mongodb://localhost:27017", "mongodb://localhost:27017", "hyperdock", "jobs"),
        (
            "mongodb://u:p@h1,h2/mine?replicaSet=rs",
            "mongodb://u:p@h1,h2/mine?replicaSet=rs",
            "mine",
            "jobs",
        ),
        ("mongodb://h/mine.exp", "mongodb://h/mine.exp", "mine", "exp"),
        ("mongodb+srv://c.example.net/x", "mongodb+srv://c.example.net/x", "x", "jobs"),
    ],
)
def test_url_parsing(url: str, client_url: str, database: str, prefix: str) -> None:
    assert parse_url(url) == (client_url, database, prefix)


@pytest.mark.parametrize(
    "url", ["mongo://h:1/db/coll/extra", "mongodb:///db", "mongo://u:pw@/db", "mongodb://h/a b"]
)
def test_malformed_urls(url: str) -> None:
    with pytest.raises(StoreConnectionError) as info:
        parse_url(url)
    assert "pw" not in str(info.value)


def test_legacy_url_names_database_and_collection_prefix() -> None:
    with mongomock.patch(servers=(("mongo.example", 27017),)):
        import pymongo

        store = open_store("mongo://mongo.example:27017/mydb/trials1")
        assert isinstance(store, MongoStore)
        assert (store.database, store.prefix) == ("mydb", "trials1")
        make_experiment(store)
        client: Any = pymongo.MongoClient("mongo.example", 27017)
        names = set(client["mydb"].list_collection_names())
        assert {"trials1.experiments", "trials1.trials", "trials1.meta"} <= names
        assert "trials1.counters" in names
        store.close()
        # The original worker's default URL (no collection) meets the same collections.
        with open_store("mongo://mongo.example:27017/mydb") as other:
            assert other.list_experiments() == []  # prefix "jobs", not "trials1"
        with open_store("mongodb://mongo.example:27017/mydb.trials1") as same:
            assert [e.name for e in same.list_experiments()] == ["exp"]


def test_default_prefix_is_shared_by_old_and_new_urls() -> None:
    with mongomock.patch(servers=(("db.example", 27017),)):
        with open_store("mongo://db.example:27017/hyperdock/jobs") as sup:
            make_experiment(sup, "trial1")
        for url in ("mongo://db.example:27017/hyperdock", "mongodb://db.example:27017/hyperdock"):
            with open_store(url) as worker:
                assert worker.get_experiment("trial1").name == "trial1"


def test_password_never_shown() -> None:
    with mongomock.patch(servers=(("h.example", 27017),)):
        store = open_store("mongodb://alice:s3cr%40t@h.example:27017/hd")
        assert store.describe() == "mongodb://alice:***@h.example:27017/hd"
        with pytest.raises(ExperimentNotFound) as info:
            store.get_experiment("nope")
        assert "s3cr" not in str(info.value) and "***" in str(info.value)
        store.close()


def test_unreachable_server_is_one_clear_line() -> None:
    started = time.monotonic()
    with pytest.raises(StoreConnectionError) as info:
        MongoStore("mongodb://bob:hunter2@127.0.0.1:1/hd", timeout_ms=300)
    message = str(info.value)
    assert time.monotonic() - started < 10
    assert message.startswith("cannot reach MongoDB at 127.0.0.1:1")
    assert "\n" not in message and "hunter2" not in message
    assert "Topology" not in message
    # A timeout in the URL wins over the default.
    with pytest.raises(StoreConnectionError, match="cannot reach MongoDB"):
        open_store("mongo://127.0.0.1:1/hd/jobs?serverSelectionTimeoutMS=300")


def test_bad_url_option_is_a_connection_error() -> None:
    with pytest.raises(StoreConnectionError) as info:
        open_store("mongodb://carol:pa55@127.0.0.1:port/hd")
    message = str(info.value)
    assert message.startswith("cannot use the MongoDB store URL mongodb://carol:***@")
    assert "pa55" not in message and "\n" not in message


def test_refused_credentials_are_a_connection_error(mock_store: MongoStore) -> None:
    import pymongo.errors

    mock_store._url = "mongodb://alice:pa%24%24word@db.example:27017/hd"
    refused = pymongo.errors.OperationFailure(
        "Authentication failed.", code=18, details={"errmsg": "Authentication failed."}
    )
    error = mock_store._translate(refused)
    assert isinstance(error, StoreConnectionError)
    assert str(error).startswith(
        "MongoDB at db.example:27017 refused the login of user 'alice' (Authentication failed.)"
    )
    assert "pa$$" not in str(error) and "pa%24" not in str(error)


def test_pymongo_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymongo", None)
    with pytest.raises(ConfigError, match=r"pip install 'hyperdock\[mongo\]'"):
        MongoStore(client=mongomock.MongoClient())


# -- values -----------------------------------------------------------------------------


@pytest.fixture
def mock_store() -> Iterator[MongoStore]:
    store = MongoStore(client=mongomock.MongoClient(), database="hd")
    yield store
    store.close()


def test_numpy_values_round_trip(mock_store: MongoStore) -> None:
    np = importlib.import_module("numpy")
    exp = make_experiment(mock_store, meta={"n": np.int32(4)})
    params = {"i": np.int64(3), "f": np.float64(0.25), "b": np.bool_(True), "m": np.eye(2)}
    (trial,) = mock_store.add_trials(exp.id, [params])
    assert trial.params == {"i": 3, "f": 0.25, "b": True, "m": [[1.0, 0.0], [0.0, 1.0]]}
    assert mock_store.claim("w") is not None
    assert mock_store.finish(
        trial.id,
        "w",
        state=TrialState.COMPLETED,
        loss=np.float32(0.5),  # type: ignore[arg-type]
        result={"epochs": np.int64(7), "curve": np.array([0.5, 0.25])},
    )
    done = mock_store.get_trial(trial.id)
    assert done.loss == 0.5 and type(done.loss) is float
    assert done.result == {"epochs": 7, "curve": [0.5, 0.25]}
    assert mock_store.get_experiment(exp.id).meta == {"n": 4}


def test_keys_mongodb_cannot_hold_are_kept_as_json(mock_store: MongoStore) -> None:
    exp = make_experiment(mock_store, space={"$hp": "choice", "a.b": [1, 2]})
    params = {"model.lr": 0.1, "$weird": 1, "huge": 2**70}
    (trial,) = mock_store.add_trials(exp.id, [params, {"plain": 1}])[:1]
    assert mock_store.get_trial(trial.id).params == params
    assert mock_store.get_experiment(exp.id).space == {"$hp": "choice", "a.b": [1, 2]}
    raw = list(mock_store._trials.find({"experiment_id": exp.id}, sort=[("_id", 1)]))
    assert raw[0]["params"] is None and isinstance(raw[0]["params_json"], str)
    assert raw[1]["params"] == {"plain": 1} and raw[1]["params_json"] is None


# -- MongoDB specifics ------------------------------------------------------------------


def test_denormalised_fields_follow_the_experiment(mock_store: MongoStore) -> None:
    exp = make_experiment(mock_store, max_retries=0)
    (trial,) = mock_store.add_trials(exp.id, [{"n": 0}])
    mock_store.update_experiment(exp.id, priority=7, max_retries=3)
    raw = mock_store._trials.find_one({"_id": trial.id})
    assert (raw["priority"], raw["max_retries"], raw["exp_state"]) == (7, 3, "running")
    assert mock_store.claim("w") is not None
    assert mock_store.release(trial.id, "w", error="boom") is TrialState.QUEUED  # 3 retries


def test_history_matches_the_sql_store(mock_store: MongoStore) -> None:
    exp = make_experiment(mock_store, max_retries=1)
    (trial,) = mock_store.add_trials(exp.id, [{"n": 0}])
    assert mock_store.claim("w1")
    assert mock_store.release(trial.id, "w1", error="boom") is TrialState.QUEUED
    assert mock_store.claim("w2")
    assert mock_store.finish(trial.id, "w2", state=TrialState.COMPLETED, loss=1.0)
    history = mock_store.get_trial(trial.id).history
    assert [(h["attempt"], h["worker"], h["state"], h["message"]) for h in history] == [
        (0, "w1", "requeued", "boom"),
        (1, "w2", "completed", None),
    ]
    assert set(history[0]) == {"attempt", "worker", "started_at", "ended_at", "state", "message"}


def test_indexes_exist(mock_store: MongoStore) -> None:
    names = set(mock_store._trials.index_information())
    assert {"hd_queue", "hd_running", "hd_exp_number", "hd_exp_best", "hd_exp_id"} <= names
    assert "hd_exp_state" not in names  # replaced by hd_exp_best
    assert "hd_name" in set(mock_store._experiments.index_information())


def test_reopening_keeps_data_and_refuses_newer_schema() -> None:
    client = mongomock.MongoClient()
    with MongoStore(client=client, database="hd") as first:
        make_experiment(first)
    with MongoStore(client=client, database="hd") as again:
        assert [e.name for e in again.list_experiments()] == ["exp"]
    client["hd"]["jobs.meta"].update_one({"_id": "schema_version"}, {"$set": {"value": 99}})
    with pytest.raises(StoreError, match="newer Hyperdock"):
        MongoStore(client=client, database="hd")


def test_a_schema_4_database_gets_queue_ranks() -> None:
    client = mongomock.MongoClient()
    with MongoStore(client=client, database="hd") as first:
        exp = make_experiment(first)
        old = first.add_trials(exp.id, [{"n": 0}, {"n": 1}])
    # As a Hyperdock of schema 4 left it: no queue_rank, the queue index without it.
    trials = client["hd"]["jobs.trials"]
    trials.update_many({}, {"$unset": {"queue_rank": ""}})
    trials.drop_index("hd_queue")
    trials.create_index(
        [("state", 1), ("exp_state", 1), ("priority", -1), ("_id", 1)], name="hd_queue"
    )
    client["hd"]["jobs.meta"].update_one({"_id": "schema_version"}, {"$set": {"value": 4}})
    with MongoStore(client=client, database="hd") as again:
        assert again.schema_version() == SCHEMA_VERSION
        assert "queue_rank" in dict(trials.index_information()["hd_queue"]["key"])
        assert trials.count_documents({"queue_rank": 0}) == 2
        (front,) = again.add_trials(exp.id, [{"n": 2}], front=True)
        order = [again.claim("w") for _ in range(3)]
        assert [t.id for t in order if t] == [front.id, old[0].id, old[1].id]


def test_closed_store_refuses_work(mock_store: MongoStore) -> None:
    mock_store.close()
    with pytest.raises(StoreError, match="closed"):
        mock_store.list_experiments()


class _HelloAdmin:
    """Stands in for ``client.admin`` of a server whose clock is 1000 s ahead."""

    def command(self, name: str) -> dict[str, Any]:
        assert name == "hello"
        ahead = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1000)
        return {"ok": 1, "localTime": ahead.replace(tzinfo=None)}


class _HelloClient:
    admin = _HelloAdmin()


def test_leases_use_the_server_clock(mock_store: MongoStore) -> None:
    real_client = mock_store._client
    mock_store._client = _HelloClient()
    mock_store._sync_clock()
    mock_store._client = real_client
    assert abs(mock_store._now() - (time.time() + 1000)) < 1
    exp = make_experiment(mock_store)
    mock_store.add_trials(exp.id, [{"n": 0}])
    trial = mock_store.claim("w")
    assert trial is not None and trial.heartbeat_at is not None
    assert abs(trial.heartbeat_at - (time.time() + 1000)) < 1
    assert mock_store.reap() == []  # measured with the same (server) clock


def test_a_schema_5_database_gets_logs() -> None:
    client = mongomock.MongoClient()
    with MongoStore(client=client, database="hd") as first:
        exp = make_experiment(first)
        (trial,) = first.add_trials(exp.id, [{"n": 0}])
    client["hd"]["jobs.logs"].drop()
    client["hd"]["jobs.meta"].update_one({"_id": "schema_version"}, {"$set": {"value": 5}})
    with MongoStore(client=client, database="hd") as again:
        assert again.schema_version() == SCHEMA_VERSION == 6
        assert "hd_logs" in client["hd"]["jobs.logs"].index_information()
        again.add_log(trial.id, 0, 0, b"hi\n", head=10, tail=10)
        assert again.read_log(trial.id).text() == "hi\n"
