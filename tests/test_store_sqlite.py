"""The storage conformance suite on the embedded SQLite store."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyperdock.errors import ConfigError, StoreConnectionError, StoreNotFound
from hyperdock.storage import SCHEMA_VERSION, Store, open_store
from hyperdock.testing.conformance import StoreConformance, make_experiment
from hyperdock.trial import TrialState


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/store.db"

    @pytest.fixture
    def store(self, store_url: str) -> Iterator[Store]:
        s = open_store(store_url)
        yield s
        s.close()


def test_relative_and_bare_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///./a/rel.db").close()
    open_store("bare.db").close()
    assert (tmp_path / "a" / "rel.db").exists() and (tmp_path / "bare.db").exists()


def test_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreConnectionError, match="cannot"):
        open_store(f"sqlite:///{blocker}/sub/x.db")


@pytest.mark.parametrize("url", ["redis://x/1"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


def test_a_reader_never_creates_a_missing_store(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path}/sub/dir/x.db", str(tmp_path / "bare.db")):
        with pytest.raises(StoreNotFound, match=r"no store at .*run an experiment first"):
            open_store(url, create=False)
    assert list(tmp_path.iterdir()) == []
    open_store(f"sqlite:///{tmp_path}/made.db").close()
    open_store(f"sqlite:///{tmp_path}/made.db", create=False).close()  # exists: opens


def test_opening_a_new_store_waits_for_a_concurrent_opener(tmp_path: Path) -> None:
    """Two processes opening a new store at once (two `hyperdock run` in one folder):
    while one holds the write lock of the not-yet-WAL file, switching to WAL failed the
    other at once with "database is locked" (SQLite does not wait where it could
    deadlock). It must wait for the lock like any other call."""
    import sqlite3

    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (a)")
    other.execute("BEGIN IMMEDIATE")  # the first opener, mid-way through its set-up
    other.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        with open_store(f"sqlite:///{path}") as st:
            assert st.list_experiments() == []
    finally:
        release.join()
        other.close()


def test_a_schema_3_database_gets_the_monotonic_lease_clock(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with open_store(f"sqlite:///{path}") as st:
        exp = make_experiment(st, lease_timeout=5.0)
        st.add_trials(exp.id, [{"n": 0}])
    # As a Hyperdock of schema 3 left it: a trial claimed 60 s ago by a worker now gone.
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE hd_trials DROP COLUMN lease_mono")
    conn.execute("ALTER TABLE hd_workers DROP COLUMN heartbeat_mono")
    conn.execute("UPDATE hd_meta SET value = '3' WHERE key = 'schema_version'")
    conn.execute(
        "UPDATE hd_trials SET state = 'running', worker_id = 'old', attempt = 0, "
        "started_at = unixepoch() - 60, heartbeat_at = unixepoch() - 60"
    )
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as st:
        assert st.schema_version() == SCHEMA_VERSION
        (reaped,) = st.reap()  # no monotonic time recorded: its wall time tells
        assert reaped.state is TrialState.QUEUED and "Timed out" in (reaped.error or "")
        trial = st.claim("new")
        assert trial is not None
        assert st.heartbeat("new", [trial.id]) == set()
        assert st.reap() == []


def test_a_schema_4_database_gets_queue_ranks(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with open_store(f"sqlite:///{path}") as st:
        exp = make_experiment(st)
        old = st.add_trials(exp.id, [{"n": 0}, {"n": 1}])
    # As a Hyperdock of schema 4 left it: no queue_rank, the queue index without it.
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX hd_trials_queue_rank")
    conn.execute("ALTER TABLE hd_trials DROP COLUMN queue_rank")
    conn.execute(
        "CREATE INDEX hd_trials_queue ON hd_trials (priority DESC, id) WHERE state = 'queued'"
    )
    conn.execute("UPDATE hd_meta SET value = '4' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as st:
        assert st.schema_version() == SCHEMA_VERSION
        (front,) = st.add_trials(exp.id, [{"n": 2}], front=True)
        order = [st.claim("w") for _ in range(3)]
        assert [t.id for t in order if t] == [front.id, old[0].id, old[1].id]


def test_a_schema_5_database_gets_logs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with open_store(f"sqlite:///{path}") as st:
        exp = make_experiment(st)
        (trial,) = st.add_trials(exp.id, [{"n": 0}])
    # As a Hyperdock of schema 5 left it: no log table.
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE hd_logs")
    conn.execute("UPDATE hd_meta SET value = '5' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as st:
        assert st.schema_version() == SCHEMA_VERSION == 6
        st.add_log(trial.id, 0, 0, b"hi\n", head=10, tail=10)
        assert st.read_log(trial.id).text() == "hi\n"
