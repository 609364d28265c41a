"""The dashboard at 100,000 trials: the plots get a bounded sample that always holds the
best trials, the totals are the store's, the trial table is paged by the server, and
importances are computed in the background, never while a request waits.

The store is built directly (rows written in batches, not run through claims): 100,000
trials on SQLite take a few seconds. No timing asserts: ``bench/dashboard_scale.py``
measures the speed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import wait_for
from test_dashboard_api import call, post
from test_dashboard_browser import browser, page  # noqa: F401 - fixtures

from hyperdock import hp
from hyperdock.dashboard import create_app, importances, make_dashboard_server
from hyperdock.dashboard.sampling import (
    BEST_TRIALS,
    RECENT_TRIALS,
    STRATA,
    stratified_numbers,
)
from hyperdock.jsonutil import dumps
from hyperdock.objectives import Objectives
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.trial import Experiment, Target, TrialState

N = 100_000
NAME = "big"
SPACE = Space.from_obj(
    {
        "x": hp.uniform("x", 0, 1),
        "layers": hp.randint("layers", 1, 5),
        "optimizer": hp.choice("optimizer", ["adam", "sgd"]),
    }
)
#: States of the synthetic trials besides completed, and their shares.
MIX = (("failed", 0.04), ("pruned", 0.03), ("cancelled", 0.01), ("running", 0.002))
_COLUMNS = (
    "experiment_id, number, params, state, worker_id, loss, result, error, history, "
    "created_at, started_at, finished_at, heartbeat_at"
)


def fill(store: Any, name: str, n: int, seed: int = 0) -> Experiment:
    """Experiment ``name`` with ``n`` trials written straight into an SQL store's table:
    mostly completed (loss rounded, so that some tie; x matters most), some failed,
    pruned, cancelled, running, and the last ten queued."""
    exp = store.create_experiment(
        name,
        space=SPACE.to_json(),
        target=Target(command=("true",)),
        sampler="random",
        seed=seed,
        max_trials=n,
        meta={"objectives": Objectives().to_meta()},
    )
    rng = random.Random(seed)
    rows = []
    for number in range(n):
        draw, state = rng.random(), "completed"
        for kind, share in MIX:
            if draw < share:
                state = kind
                break
            draw -= share
        if number >= n - 10:
            state = "queued"
        x, layers = rng.random(), rng.randint(1, 4)
        params = {"x": x, "layers": layers, "optimizer": rng.choice(["adam", "sgd"])}
        loss = round((x - 0.3) ** 2 + 0.01 * layers + rng.random() * 0.05, 4)
        created = 1.7e9 + number
        started = None if state == "queued" else created + 1
        finished = None if state in ("queued", "running") else created + 2
        rows.append(
            (
                exp.id,
                number,
                dumps(params),
                state,
                None if started is None else "w1",
                loss if state in ("completed", "pruned") else None,
                dumps({"loss": loss} if finished else {}),
                "exit code 1" if state == "failed" else None,
                "[]",
                created,
                started,
                finished,
                started,
            )
        )
    marks = "(" + ", ".join("?" * 13) + ")"
    with store._tx() as cur:
        for start in range(0, len(rows), 500):  # within SQLite's variable limit
            part = rows[start : start + 500]
            cur.execute(
                store._q(
                    f"INSERT INTO hd_trials ({_COLUMNS}) VALUES {', '.join([marks] * len(part))}"
                ),
                [v for row in part for v in row],
            )
        cur.execute(store._q("UPDATE hd_experiments SET next_number = ? WHERE id = ?"), (n, exp.id))
    return exp


@pytest.fixture(scope="session")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A SQLite store holding experiment ``big`` with 100,000 trials."""
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('scale') / 'big.db'}")
    fill(store, NAME, N)
    yield store
    store.close()


def brute_best(store: Store, n: int) -> list[int]:
    """Ids of the best ``n`` completed trials, read the slow way."""
    exp = store.get_experiment(NAME)
    done = [t for t in store.list_trials(exp.id) if t.state is TrialState.COMPLETED]
    done.sort(key=lambda t: (t.loss, t.id))
    return [t.id for t in done[:n]]


def test_strata_are_nested_and_cover_the_run() -> None:
    """The sample of a grown experiment keeps the picks of its full strata, one pick
    per stratum."""
    coarse, fine = stratified_numbers(6000, strata=750), stratified_numbers(6000, strata=1500)
    assert set(coarse) <= set(fine)  # a level up keeps one of each two picks
    assert set(stratified_numbers(6000)) >= set(stratified_numbers(5999))
    assert {n // 8 for n in coarse} == set(range(750))  # each block of 8 numbers once


def test_plot_sample_holds_the_best_trials_and_the_totals(big: Store) -> None:
    app = create_app(big)
    data = call(app, f"/api/experiments/{NAME}").data
    counts = big.count_trials(big.get_experiment(NAME).id)
    assert data["trials_total"] == sum(counts.values()) == N
    assert data["sampled"] is True
    bound = STRATA + BEST_TRIALS + RECENT_TRIALS + counts[TrialState.RUNNING]
    assert len(data["trials"]) <= bound < N
    ids = {t["id"] for t in data["trials"]}
    assert set(brute_best(big, 100)) <= ids
    summary = data["experiment"]
    assert (summary["completed"], summary["running"]) == (
        counts[TrialState.COMPLETED],
        counts[TrialState.RUNNING],
    )
    # every running trial and the newest ones are there; numbers ascend
    numbers = [t["number"] for t in data["trials"]]
    assert numbers == sorted(numbers)
    assert set(range(N - 100, N)) <= set(numbers)
    # deterministic for a given state: a fresh dashboard sends the same points
    again = call(create_app(big), f"/api/experiments/{NAME}").data
    assert [t["id"] for t in again["trials"]] == [t["id"] for t in data["trials"]]


def test_the_sample_follows_new_best_trials(tmp_path: Path) -> None:
    """A trial that completes with a new best loss is in the next reply."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    exp = fill(store, "grow", 5000)
    app = create_app(store)
    first = call(app, "/api/experiments/grow").data
    assert first["sampled"] is True
    trial = store.claim("w2", experiment_id=exp.id)
    assert trial is not None
    store.finish(trial.id, "w2", state=TrialState.COMPLETED, loss=-1.0)
    second = call(app, "/api/experiments/grow").data
    assert trial.id in {t["id"] for t in second["trials"]}
    assert second["best_ids"][0] == trial.id
    assert second["experiment"]["best_loss"] == -1.0
    store.close()


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_the_table_pages_match_the_store(big: Store, order: str) -> None:
    app = create_app(big)
    exp = big.get_experiment(NAME)
    for offset in (0, 100, N - 50):
        page_ = call(app, f"/api/experiments/{NAME}/trials?limit=100&offset={offset}&order={order}")
        assert page_.status == 200
        want = big.list_trials_page(
            exp.id, limit=100, offset=offset, newest_first=order == "newest"
        )
        assert [t["id"] for t in page_.data["trials"]] == [t.id for t in want]
        assert page_.data["total"] == N
    failed = call(app, f"/api/experiments/{NAME}/trials?limit=50&state=failed").data
    assert failed["total"] == big.count_trials(exp.id)[TrialState.FAILED]
    assert {t["state"] for t in failed["trials"]} == {"failed"}


def test_the_table_sorts_by_loss(big: Store) -> None:
    app = create_app(big)
    best = brute_best(big, 150)
    first = call(app, f"/api/experiments/{NAME}/trials?limit=100&order=best").data
    second = call(app, f"/api/experiments/{NAME}/trials?limit=100&offset=100&order=best").data
    assert [t["id"] for t in first["trials"] + second["trials"]][:150] == best


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "offset=-1",
        "limit=x",
        "order=worst",
        "state=lost",
        "order=best&state=failed",
    ],
)
def test_bad_table_queries_are_400(big: Store, query: str) -> None:
    reply = call(create_app(big), f"/api/experiments/{NAME}/trials?{query}")
    assert reply.status == 400
    assert reply.data["error"]


def test_importances_are_computed_in_the_background(
    big: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply does not wait for importances: it says "pending" while they are being
    computed (held here until the test lets them finish, in another thread), then has
    them; at most every 30 s on its own, at once on request."""
    release = threading.Event()
    computed_in: list[str] = []
    sizes: list[int] = []
    real = importances.importances

    def held(space: Any, objectives: Any, trials: Any) -> dict[str, float]:
        computed_in.append(threading.current_thread().name)
        trials = list(trials)
        sizes.append(len(trials))
        release.wait(60)
        return real(space, objectives, trials)

    monkeypatch.setattr(importances, "importances", held)
    app = create_app(big)
    data = call(app, f"/api/experiments/{NAME}").data  # returns while the computation is held
    assert data["importances"] == {}
    assert data["importances_state"]["status"] == "pending"
    release.set()
    state: dict[str, Any] = {}

    def ready() -> bool:
        state.update(call(app, f"/api/experiments/{NAME}/importances").data)
        return state["status"] == "ready"

    wait_for(ready, timeout=120, what="importances")
    assert computed_in == ["hyperdock-importances"]
    assert 2 <= sizes[0] <= importances.MAX_SAMPLE
    assert set(state["values"]) == {"x", "layers", "optimizer"}
    assert max(state["values"], key=state["values"].get) == "x"
    assert state["age"] >= 0 and state["computed_at"] > 0
    detail = call(app, f"/api/experiments/{NAME}").data  # the detail has them too
    assert detail["importances"] == state["values"]

    # a trial completes: the importances are stale, not recomputed within 30 s
    exp = big.get_experiment(NAME)
    trial = big.claim("w3", experiment_id=exp.id)
    assert trial is not None
    big.finish(trial.id, "w3", state=TrialState.COMPLETED, loss=5.0)
    assert call(app, f"/api/experiments/{NAME}/importances").data["status"] == "stale"
    assert len(computed_in) == 1
    # ... unless asked
    asked = post(
        app, f"/api/experiments/{NAME}/importances", headers={"X-Requested-With": "hyperdock"}
    )
    assert asked.status == 200 and asked.data["status"] == "pending"
    wait_for(ready, timeout=120, what="importances on request")
    assert len(computed_in) == 2
    assert state["completed"] == big.count_trials(exp.id)[TrialState.COMPLETED]


def test_the_page_at_scale_shows_the_totals_and_pages_the_table(
    big: Store,
    page: Any,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    server = make_dashboard_server(big, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    exp = big.get_experiment(NAME)
    total = sum(big.count_trials(exp.id).values())
    try:
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.goto(f"http://127.0.0.1:{server.server_port}/experiments/{NAME}")
        page.wait_for_selector("#trials-pager .pager-text:has-text('of')")
        assert f"of {total} trials" in page.locator("#trials-shown").inner_text()
        pager = page.locator("#trials-pager .pager-text")
        assert f"rows 1\u2013100 of {total}" in pager.inner_text()
        newest = big.list_trials_page(exp.id, limit=200)
        rows = page.locator("#trials tbody tr")
        assert rows.count() == 100
        assert rows.first.get_attribute("data-trial-id") == str(newest[0].id)
        page.locator("#trials-pager button.pager-next").click()
        page.wait_for_selector("#trials-pager .pager-text:has-text('rows 101\u2013200')")
        assert rows.first.get_attribute("data-trial-id") == str(newest[100].id)
        page.select_option("#trials-order", "best")
        page.wait_for_selector("#trials-pager .pager-text:has-text('rows 1\u2013100')")
        best = big.best_trials(exp.id, 1)[0]
        page.wait_for_selector(f"#trials tbody tr:first-child[data-trial-id='{best.id}']")
        page.wait_for_function(
            "() => { const d = document.querySelector('#history'); return d && d.data; }"
        )
        page.locator("#trials-box").scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "scale.png"), full_page=True)
    finally:
        server.shutdown()
        server.server_close()
