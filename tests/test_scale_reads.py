"""Reads at scale: a 100,000-trial store (built straight into the tables by
``hyperdock.testing.bulk``, not run through targets) read through the CLI's paged
``trials``, streamed ``export`` and ``best``, and through the store's paged, streamed,
best-n and by-number reads, all checked against brute force (every trial read at once).

SQLite and PostgreSQL at 100,000 trials (slow); MongoDB (mongomock) with fewer.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import hd

from hyperdock.storage import Store, open_store
from hyperdock.testing.bulk import fill_experiment
from hyperdock.trial import ExperimentState, Trial, TrialState

BIG = 100_000
NAME = "scale"


class Built:
    """A store URL holding experiment NAME, and every trial of it read at once."""

    def __init__(self, url: str, trials: list[Trial]) -> None:
        self.url = url
        self.trials = trials


def _build(url: str, n: int) -> Built:
    with open_store(url) as store:
        exp = fill_experiment(store, NAME, n, seed=3)
        store.set_experiment_state(exp.id, ExperimentState.DONE)  # its duration: to the end
        return Built(url, store.list_trials(exp.id))


@pytest.fixture(scope="session")
def sqlite_big(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(f"sqlite:///{tmp_path_factory.mktemp('scale')}/big.db", BIG)


@pytest.fixture(scope="session")
def postgresql_big(postgres_admin_url: str) -> Iterator[Built]:
    import psycopg
    from conftest import _postgres_url_for

    name = f"hd_scale_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _build(_postgres_url_for(postgres_admin_url, name), BIG)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def big(request: pytest.FixtureRequest) -> Built:
    return request.getfixturevalue(f"{request.param}_big")  # type: ignore[no-any-return]


def _cli(built: Built, tmp_path: Path, *args: str) -> str:
    out = hd(*args, NAME, "--store", built.url, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _brute_best(trials: list[Trial], n: int, maximize: bool = False) -> list[int]:
    done = [t for t in trials if t.state is TrialState.COMPLETED and t.loss is not None]
    sign = -1.0 if maximize else 1.0
    done.sort(key=lambda t: (sign * (t.loss or 0.0), t.id))
    return [t.id for t in done[:n]]


@pytest.mark.slow
def test_paged_trials_match_the_streamed_export(big: Built, tmp_path: Path) -> None:
    jsonl = _cli(big, tmp_path, "export", "--format", "jsonl").splitlines()
    exported = [json.loads(line) for line in jsonl]
    assert [row["id"] for row in exported] == [t.id for t in big.trials]  # creation order
    newest = exported[::-1]
    for offset in (0, 1000, 2000, 50_000, BIG - 700):
        page = json.loads(
            _cli(big, tmp_path, "trials", "--json", "--limit", "1000", "--offset", str(offset))
        )
        assert page == newest[offset : offset + 1000]
    completed = json.loads(
        _cli(big, tmp_path, "trials", "--json", "--state", "completed", "--limit", "300")
    )
    assert completed == [r for r in newest if r["state"] == "completed"][:300]
    # (The JSON array export is the same text as the whole-at-once one: checked at a
    # smaller size below.)
    streamed = json.loads(_cli(big, tmp_path, "trials", "--json", "--all"))
    assert streamed == exported


@pytest.mark.slow
def test_streamed_csv_export_has_a_row_per_stored_trial(big: Built, tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_cli(big, tmp_path, "export"))))
    with open_store(big.url) as store:
        total = sum(store.count_trials(store.get_experiment(NAME).id).values())
    assert len(rows) == total == BIG
    assert [int(r["id"]) for r in rows] == [t.id for t in big.trials]
    assert {"params.x", "params.layers", "data.accuracy"} <= set(rows[0])


@pytest.mark.slow
def test_best_is_the_brute_force_minimum(big: Built, tmp_path: Path) -> None:
    best = json.loads(_cli(big, tmp_path, "best", "--json"))
    assert best["best"]["trial"] == _brute_best(big.trials, 1)[0]
    assert best["importances"] == {}  # only with --importances
    counts = {s.value: sum(t.state is s for t in big.trials) for s in TrialState}
    assert best["trials"] == counts
    status = json.loads(hd("status", "--json", "--store", big.url, cwd=tmp_path).stdout)
    assert status[0]["best"]["trial"] == best["best"]["trial"]
    ends = [t.finished_at for t in big.trials if t.finished_at is not None]
    assert status[0]["duration"] == pytest.approx(max(ends) - status[0]["created_at"])


@pytest.mark.slow
def test_importances_on_a_bounded_sample(big: Built, tmp_path: Path) -> None:
    shown = json.loads(_cli(big, tmp_path, "best", "--json", "--importances"))
    assert set(shown["importances"]) == {"x", "layers", "optimizer"}


def _check_store_reads(store: Store, trials: list[Trial]) -> None:
    """Every read of the store agrees with brute force over ``trials`` (all of them)."""
    exp_id = trials[0].experiment_id
    ids = [t.id for t in trials]
    assert [t.id for t in store.iter_trials(exp_id, batch=777)] == ids
    failed = [t.id for t in trials if t.state is TrialState.FAILED]
    assert [t.id for t in store.iter_trials(exp_id, states=[TrialState.FAILED])] == failed
    assert list(store.iter_trials(exp_id, states=[])) == []
    newest = ids[::-1]
    for offset in (0, 5, len(ids) // 2, len(ids) - 3, len(ids) + 10):
        page = store.list_trials_page(exp_id, limit=40, offset=offset)
        assert [t.id for t in page] == newest[offset : offset + 40]
        oldest = store.list_trials_page(exp_id, limit=40, offset=offset, newest_first=False)
        assert [t.id for t in oldest] == ids[offset : offset + 40]
    some = [TrialState.PRUNED, TrialState.QUEUED]
    wanted = [t.id for t in trials if t.state in some][::-1]
    assert [t.id for t in store.list_trials_page(exp_id, limit=25, offset=3, states=some)] == (
        wanted[3:28]
    )
    assert store.list_trials_page(exp_id, limit=0) == []
    for n in (1, 10, 250):
        for maximize in (False, True):
            got = [t.id for t in store.best_trials(exp_id, n, maximize=maximize)]
            assert got == _brute_best(trials, n, maximize), (n, maximize)
    best = store.best_trial(exp_id, maximize=True)
    assert best is not None and best.id == _brute_best(trials, 1, True)[0]
    numbers = random.Random(1).sample(range(len(trials) + 50), 1200)
    by_number = {t.number: t for t in trials}
    expected = [by_number[n] for n in sorted(numbers) if n in by_number]
    assert store.trials_by_number(exp_id, numbers) == expected
    counts = store.count_trials(exp_id)
    assert counts == {s: sum(t.state is s for t in trials) for s in TrialState}
    ends = [t.finished_at for t in trials if t.finished_at is not None]
    assert store.last_finished_at(exp_id) == pytest.approx(max(ends))
    page = store.list_trials_page(exp_id, limit=3, offset=7)
    assert page == [by_number[t.number] for t in page]  # whole trials, every field


@pytest.mark.slow
def test_store_reads_agree_with_brute_force(big: Built) -> None:
    with open_store(big.url) as store:
        _check_store_reads(store, big.trials)


def test_mongodb_reads_agree_with_brute_force() -> None:
    """mongomock, 1,200 trials: correctness only (mongomock's costs say nothing)."""
    import mongomock  # a test extra, like in test_store_mongo: missing fails, never skips

    from hyperdock.storage.mongo import MongoStore

    with MongoStore(client=mongomock.MongoClient(), database="hd") as store:
        exp = fill_experiment(store, NAME, 1200, seed=4, batch=500)
        _check_store_reads(store, store.list_trials(exp.id))


def test_sqlite_reads_agree_with_brute_force_with_ties(tmp_path: Path) -> None:
    """A small store where many losses tie, and a second experiment interleaved."""
    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        other = fill_experiment(store, "other", 500, seed=1, batch=100)
        exp = fill_experiment(store, NAME, 2000, seed=2, batch=300)
        store.add_trials(other.id, [{"x": 1}])
        trials = store.list_trials(exp.id)
        assert len({t.loss for t in trials if t.loss is not None}) < len(trials)  # ties
        _check_store_reads(store, trials)


def _rows(text: str) -> list[dict[str, Any]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_streamed_export_equals_the_whole_export(tmp_path: Path) -> None:
    """The streamed formats are the text the all-at-once export wrote."""
    from hyperdock.export import write_export
    from hyperdock.results import export_text

    with open_store(f"sqlite:///{tmp_path}/e.db") as store:
        exp = fill_experiment(store, NAME, 1234, seed=5, batch=500)
        trials = store.list_trials(exp.id)
        for fmt in ("csv", "json"):
            parts: list[str] = []
            assert write_export(store, exp, fmt, parts.append, batch=100) == 1234
            assert "".join(parts) == export_text(exp, trials, fmt)
        empty = store.create_experiment(
            "empty", space={}, target=exp.target, sampler="random", seed=0, max_trials=1
        )
        for fmt in ("csv", "json"):
            parts = []
            assert write_export(store, empty, fmt, parts.append) == 0
            assert "".join(parts) == export_text(empty, [], fmt)
