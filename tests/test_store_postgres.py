"""The storage conformance suite on PostgreSQL, plus what only a server store must do:
clear connection errors, concurrent schema creation, surviving a server restart.

Server: HYPERDOCK_TEST_POSTGRES_URL (default: the local cluster that .ci/run starts, see
``DEFAULT_POSTGRES_URL`` in conftest.py). Every test gets fresh, empty databases.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PostgresCluster

from hyperdock.errors import ConfigError, StoreConnectionError, StoreError
from hyperdock.storage import SCHEMA_VERSION, Store, open_store
from hyperdock.testing.conformance import StoreConformance, make_experiment
from hyperdock.trial import TrialState

#: A password no test server has: it must never appear in a message.
WRONG_PASSWORD = "not-the-password-7f3a"


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_url(self, postgres_url: Callable[[], str]) -> str:
        return postgres_url()

    @pytest.fixture
    def store(self, store_url: str) -> Iterator[Store]:
        s = open_store(store_url)
        yield s
        s.close()


def _with(url: str, **changes: str | int) -> str:
    """``url`` with its password, port or database changed."""
    parts = urllib.parse.urlsplit(url)
    user = parts.username or "postgres"
    password = str(changes.get("password", parts.password or ""))
    host = parts.hostname or "127.0.0.1"
    port = changes.get("port", parts.port or 5432)
    path = "/" + str(changes.get("database", parts.path.lstrip("/")))
    return urllib.parse.urlunsplit(
        parts._replace(netloc=f"{user}:{password}@{host}:{port}", path=path)
    )


# -- opening --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_url_schemes_and_describe(postgres_url: Callable[[], str], scheme: str) -> None:
    url = postgres_url()
    with open_store(scheme + url[url.index(":") :]) as store:
        assert store.backend == "postgresql"
        assert store.schema_version() == SCHEMA_VERSION
        described = store.describe()
    password = urllib.parse.urlsplit(url).password
    assert password and f":{password}@" not in described and ":***@" in described


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"password": WRONG_PASSWORD}, "password authentication failed"),
        ({"password": WRONG_PASSWORD, "port": 1}, "connection refused"),
        ({"password": WRONG_PASSWORD, "port": "notaport"}, "invalid PostgreSQL store URL"),
        ({"database": "hd_test_no_such_database"}, "does not exist; create it"),
    ],
    ids=["wrong-password", "refused", "bad-url", "missing-database"],
)
def test_connection_errors_are_one_clear_line(
    postgres_admin_url: str, change: dict[str, str | int], expected: str
) -> None:
    url = _with(postgres_admin_url, **change)
    start = time.monotonic()
    with pytest.raises(StoreConnectionError) as info:
        open_store(url)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and WRONG_PASSWORD not in message
    assert time.monotonic() - start < 15
    if "port" in change and change["port"] == 1:
        assert "127.0.0.1:1" in message


def test_malformed_url_never_shows_the_password() -> None:
    for url in (
        f"postgresql://u:{WRONG_PASSWORD}%zz@127.0.0.1/db",
        f"postgresql://u:{WRONG_PASSWORD}@[::1/db",
    ):
        with pytest.raises(StoreConnectionError) as info:
            open_store(url)
        assert WRONG_PASSWORD not in str(info.value) and "\n" not in str(info.value)


def test_missing_psycopg_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError, match=r"pip install 'hyperdock\[postgres\]'"):
        open_store("postgresql://u:p@127.0.0.1:1/db")


def test_sqlite_users_do_not_import_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom hyperdock.storage import open_store\n"
        f"open_store('sqlite:///{tmp_path}/x.db').close()\n"
        "assert not any(m.startswith('psycopg') for m in sys.modules), 'psycopg imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _open_and_create(url: str, name: str) -> None:
    with open_store(url) as store:
        make_experiment(store, name)


def test_many_processes_create_the_schema_at_once(postgres_url: Callable[[], str]) -> None:
    url = postgres_url()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_open_and_create, args=(url, f"e{i}")) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 8
    with open_store(url) as store:
        assert sorted(e.name for e in store.list_experiments()) == [f"e{i}" for i in range(8)]
        assert store.schema_version() == SCHEMA_VERSION


def test_newer_schema_is_refused(postgres_url: Callable[[], str]) -> None:
    import psycopg

    url = postgres_url()
    open_store(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE hd_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer Hyperdock"):
        open_store(url)


def test_literal_percent_and_question_marks_round_trip(postgres_url: Callable[[], str]) -> None:
    with open_store(postgres_url()) as store:
        exp = make_experiment(store, "100% done? yes", meta={"fmt": "%s %(x)s ?"})
        (trial,) = store.add_trials(exp.id, [{"q": "a ? b % c"}])
        assert store.get_experiment("100% done? yes").meta == {"fmt": "%s %(x)s ?"}
        assert store.get_trial(trial.id).params == {"q": "a ? b % c"}


# -- outages --------------------------------------------------------------------------


def _busy(store: Store, n: int = 4) -> None:
    """Use ``n`` pooled connections at once, so the pool holds several when the server
    goes away."""
    barrier = threading.Barrier(n)

    def work() -> None:
        barrier.wait()
        for _ in range(5):
            store.list_experiments()

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _calls_after_outage(store: Store, experiment_id: int) -> int:
    """Make 20 store calls; return how many raised StoreConnectionError (only the first
    may), then check that claiming and finishing work."""
    failures = 0
    for i in range(20):
        try:
            store.count_trials(experiment_id)
        except StoreConnectionError as exc:
            assert i == 0, f"call {i} after the outage failed too: {exc}"
            assert "\n" not in str(exc)
            failures += 1
    trial = store.claim("after")
    assert trial is not None
    assert store.finish(trial.id, "after", state=TrialState.COMPLETED, loss=1.0)
    return failures


def test_recovers_when_its_connections_are_terminated(postgres_url: Callable[[], str]) -> None:
    import psycopg

    url = postgres_url()
    with open_store(url) as store:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}])
        _busy(store)
        database = urllib.parse.urlsplit(url).path.lstrip("/")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        time.sleep(0.2)
        assert _calls_after_outage(store, exp.id) <= 1


@pytest.mark.slow
def test_restarts_server_store_recovers(
    postgres_url: Callable[[], str], postgres_cluster: PostgresCluster
) -> None:
    """RESTARTS THE POSTGRESQL SERVER (pg_ctlcluster … restart): the same store object
    works again afterwards; at most the first call fails, with StoreConnectionError."""
    with open_store(postgres_url()) as store:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}])
        _busy(store)
        postgres_cluster.ctl("restart")
        assert _calls_after_outage(store, exp.id) <= 1


@pytest.mark.slow
def test_stops_server_calls_fail_fast_then_recover(
    postgres_url: Callable[[], str], postgres_cluster: PostgresCluster
) -> None:
    """STOPS AND STARTS THE POSTGRESQL SERVER: while it is down every call fails at once
    with a one-line StoreConnectionError; once it is back the store works again."""
    with open_store(postgres_url()) as store:
        exp = make_experiment(store)
        store.add_trials(exp.id, [{"n": 0}])
        _busy(store)
        postgres_cluster.ctl("stop")
        try:
            for _ in range(3):
                start = time.monotonic()
                with pytest.raises(StoreConnectionError) as info:
                    store.count_trials(exp.id)
                assert time.monotonic() - start < 5
                assert "\n" not in str(info.value)
        finally:
            postgres_cluster.ctl("start")
        assert _calls_after_outage(store, exp.id) <= 1


@pytest.mark.parametrize("form", ["query", "userinfo-unencoded"])
def test_no_output_shows_the_password(
    postgres_admin_url: str, postgres_url: Callable[[], str], tmp_path: Path, form: str
) -> None:
    """Issue 12, item 10: `?password=` and a password with an unencoded `@` were printed
    by the run banner, the worker log and the dashboard banner."""
    import psycopg
    from clihelp import PY, hd, spawn, wait_for, write

    secret = "Qx9@redact-me"
    database = urllib.parse.urlsplit(postgres_url()).path.lstrip("/")
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS hd_redact")
        conn.execute(f"CREATE ROLE hd_redact LOGIN PASSWORD '{secret}'")
        conn.execute(f'GRANT ALL ON DATABASE "{database}" TO hd_redact')
        conn.execute(f'ALTER DATABASE "{database}" OWNER TO hd_redact')
    host = "127.0.0.1:5432"
    if form == "query":
        url = f"postgresql://hd_redact@{host}/{database}?password={urllib.parse.quote(secret)}"
    else:
        url = f"postgresql://hd_redact:{secret}@{host}/{database}"
    write(tmp_path / "sp.py", "SPACE = {'x': [1, 2]}")
    write(
        tmp_path / "t.py",
        "import json, os\njson.dump(1, open(os.environ['HYPERDOCK_LOSS'], 'w'))\n",
    )
    outputs = []
    run = hd("run", "sp.py", "--command", f"{PY} t.py", "--store", url, "--loglevel", "info",
             cwd=tmp_path)  # fmt: skip
    outputs.append(run.stdout + run.stderr)
    if form == "query":
        assert run.returncode == 0, run.stderr
    else:  # libpq itself cannot use it (it splits at the first @): the error must not leak
        assert run.returncode == 1 and "cannot connect" in run.stderr, run.stderr
    worker = hd("worker", "--burst", "--store", url, "--loglevel", "debug", cwd=tmp_path)
    outputs.append(worker.stdout + worker.stderr)
    outputs.append(hd("status", "--store", url, cwd=tmp_path).stdout)
    log = tmp_path / "dash.log"
    dash = spawn("dashboard", "--store", url, "--port", "0", "--no-token", cwd=tmp_path, log=log)
    wait_for(
        lambda: "Dashboard on" in log.read_text() or dash.poll() is not None, 60, "the dashboard"
    )
    dash.terminate()
    dash.wait(timeout=30)
    outputs.append(log.read_text())
    for text in outputs:
        for form_ in (secret, urllib.parse.quote(secret), "redact-me"):
            assert form_ not in text, text
    assert "hd_redact" in outputs[0]
    if form == "query":
        assert "Dashboard on" in outputs[-1] and "password=***" in outputs[0]


def test_a_schema_4_database_gets_queue_ranks(postgres_url: Callable[[], str]) -> None:
    import psycopg

    url = postgres_url()
    with open_store(url) as st:
        exp = make_experiment(st)
        old = st.add_trials(exp.id, [{"n": 0}, {"n": 1}])
    # As a Hyperdock of schema 4 left it: no queue_rank, the queue index without it.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX hd_trials_queue_rank")
        conn.execute("ALTER TABLE hd_trials DROP COLUMN queue_rank")
        conn.execute(
            "CREATE INDEX hd_trials_queue ON hd_trials (priority DESC, id) WHERE state = 'queued'"
        )
        conn.execute("UPDATE hd_meta SET value = '4' WHERE key = 'schema_version'")
    with open_store(url) as st:
        assert st.schema_version() == SCHEMA_VERSION
        (front,) = st.add_trials(exp.id, [{"n": 2}], front=True)
        order = [st.claim("w") for _ in range(3)]
        assert [t.id for t in order if t] == [front.id, old[0].id, old[1].id]


def test_a_claim_takes_one_trial_whatever_plan_the_server_picks(
    postgres_url: Callable[[], str],
) -> None:
    """The claim's 'next queued trial' subquery must run once: planned as the inner side
    of a nested loop (the plan PostgreSQL picks for a small or unanalyzed table), a
    rescan skipped the row just claimed and claimed the next one too."""
    import psycopg

    url = postgres_url()
    with open_store(url) as st:
        exp = make_experiment(st)
        trials = st.add_trials(exp.id, [{"n": i} for i in range(4)])
        with psycopg.connect(url, autocommit=True) as conn:
            # Records the table's row count, as VACUUM and CREATE INDEX do: with a small
            # queue the planner then picks the nested loop (before the fix, the first
            # claim took all four trials).
            conn.execute("CREATE INDEX hd_test_counts ON hd_trials (id)")
        for i, trial in enumerate(trials):
            claimed = st.claim("w")
            assert claimed is not None and claimed.id == trial.id
            states = [t.state for t in st.list_trials(exp.id)]
            assert states.count(TrialState.RUNNING) == i + 1, states


def test_a_schema_5_database_gets_logs(postgres_url: Callable[[], str]) -> None:
    import psycopg

    url = postgres_url()
    with open_store(url) as st:
        exp = make_experiment(st)
        (trial,) = st.add_trials(exp.id, [{"n": 0}])
    # As a Hyperdock of schema 5 left it: no log table.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE hd_logs")
        conn.execute("UPDATE hd_meta SET value = '5' WHERE key = 'schema_version'")
    with open_store(url) as st:
        assert st.schema_version() == SCHEMA_VERSION == 6
        st.add_log(trial.id, 0, 0, b"hi\n", head=10, tail=10)
        assert st.read_log(trial.id).text() == "hi\n"
