"""Ask/tell over HTTP (the dashboard's /ask, /tell, /report), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_dashboard_api import LOCAL, TOKEN, post

import hyperdock
from hyperdock import hp
from hyperdock.dashboard import create_app
from hyperdock.storage import Store, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dash.db'}"
    else:
        factory: Callable[[], str] = request.getfixturevalue("postgres_url")
        url = factory()
    s = open_store(url)
    yield s
    s.close()


def open_exp(store: Store, **settings: Any) -> hyperdock.Experiment:
    return hyperdock.Experiment.open(
        "lab",
        store=store,
        space={"x": hp.uniform("x", 0, 1)},
        sampler="random",
        seed=1,
        **settings,
    )


@pytest.mark.parametrize("token", [None, TOKEN])
def test_ask_report_tell(store: Store, token: str | None) -> None:
    exp = open_exp(store, max_trials=2, pruner="median")
    app = create_app(store, token=token)
    auth = LOCAL if token is None else {"X-Hyperdock-Token": token}
    asked = post(app, "/api/experiments/lab/ask", {}, auth)
    assert asked.status == 200, asked.text
    tid = asked.data["trial"]
    assert asked.data["number"] == 0 and 0 <= asked.data["params"]["x"] <= 1
    assert store.get_trial(tid).state.value == "running"
    reported = post(app, f"/api/trials/{tid}/report", {"step": 1, "loss": 0.7}, auth)
    assert reported.status == 200, reported.text
    assert reported.data == {"stop": False}
    assert store.list_progress(exp.id) == {tid: [(1, 0.7)]}
    told = post(app, f"/api/trials/{tid}/tell", {"loss": 0.5, "data": {"run": "a"}}, auth)
    assert told.status == 200, told.text
    trial = store.get_trial(tid)
    assert (trial.state.value, trial.loss, trial.data) == ("completed", 0.5, {"run": "a"})
    # A second tell is refused and changes nothing.
    again = post(app, f"/api/trials/{tid}/tell", {"loss": 0.1}, auth)
    assert again.status == 409, again.text
    assert "completed" in again.data["error"]
    assert store.get_trial(tid) == trial
    # Failed as told; then the budget of 2 is spent and ask is refused.
    second = post(app, "/api/experiments/lab/ask", {}, auth).data["trial"]
    body = {"state": "failed", "error": "the instrument jammed"}
    assert post(app, f"/api/trials/{second}/tell", body, auth).status == 200
    assert store.get_trial(second).error == "the instrument jammed"
    spent = post(app, "/api/experiments/lab/ask", {}, auth)
    assert spent.status == 409, spent.text
    exp.close()


def test_tell_for_a_trial_not_running_is_409_and_changes_nothing(store: Store) -> None:
    exp = open_exp(store)
    queued = exp.enqueue({"x": 0.25})
    python_asked = exp.ask()  # the queued one
    other = exp.enqueue({"x": 0.75})
    app = create_app(store)
    for tid in (other.id, python_asked.id):  # queued; running under the Python API
        before = store.get_trial(tid)
        reply = post(app, f"/api/trials/{tid}/tell", {"loss": 1.0}, LOCAL)
        assert reply.status == 409, reply.text
        assert post(app, f"/api/trials/{tid}/report", {"step": 0, "loss": 1.0}, LOCAL).status == 409
        assert store.get_trial(tid) == before
    assert python_asked.id == queued.id
    assert post(app, "/api/trials/999999/tell", {"loss": 1.0}, LOCAL).status == 404
    exp.close()


def test_bad_bodies_are_400(store: Store) -> None:
    exp = open_exp(store)
    app = create_app(store)
    tid = post(app, "/api/experiments/lab/ask", {}, LOCAL).data["trial"]
    for body in ({}, {"loss": "x"}, {"loss": float("inf")}, {"loss": 1, "state": "running"}):
        reply = post(app, f"/api/trials/{tid}/tell", body, LOCAL)
        assert reply.status == 400, (body, reply.text)
    assert post(app, f"/api/trials/{tid}/report", {"step": -1, "loss": 1}, LOCAL).status == 400
    assert store.get_trial(tid).state.value == "running"
    assert post(app, "/api/experiments/nope/ask", {}, LOCAL).status == 404
    exp.close()


@pytest.mark.parametrize("path", ["/api/experiments/lab/ask", "/api/trials/{tid}/tell",
                                  "/api/trials/{tid}/report"])  # fmt: skip
def test_without_the_token_nothing_happens(store: Store, path: str) -> None:
    exp = open_exp(store)
    app = create_app(store, token=TOKEN)
    tid = post(app, "/api/experiments/lab/ask", {}, {"X-Hyperdock-Token": TOKEN}).data["trial"]
    body = {"loss": 0.5, "step": 1}
    for headers in ({}, LOCAL, {"X-Hyperdock-Token": "wrong"}):
        reply = post(app, path.format(tid=tid), body, headers)
        assert reply.status == 403, (headers, reply.text)
    assert exp.counts()["running"] == 1 and sum(exp.counts().values()) == 1
    assert store.list_progress(exp.id) == {}
    exp.close()
