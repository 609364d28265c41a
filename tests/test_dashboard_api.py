"""The dashboard's JSON API, pages and security rules, on SQLite and PostgreSQL.

The WSGI app is called directly (environ from ``wsgiref.util.setup_testing_defaults``);
one test serves it over real HTTP on 127.0.0.1 with an ephemeral port, and the CLI's
bind refusal runs as a subprocess. Browser behaviour is in test_dashboard_browser.py.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from clihelp import hd, spawn, wait_for

from hyperdock.config import space_from_v04
from hyperdock.dashboard import check_bind, create_app, make_dashboard_server
from hyperdock.errors import ConfigError, ExperimentNotFound
from hyperdock.objectives import Objectives
from hyperdock.storage import Store, open_store
from hyperdock.trial import ExperimentState, Target, TrialState

XSS = "<script>alert(1)</script>"
TOKEN = "s3cret-token-0123456789"


# -- filling a store --------------------------------------------------------------------
def fill_store(store: Store, folder_root: Path) -> dict[str, Any]:
    """An experiment ``exp`` with 2 completed trials (one holding a trial folder), one
    running (with intermediate losses), one queued; a 2-objective experiment ``multi``;
    a live worker. Returns the ids the tests look at."""
    space = space_from_v04({"x": [0.5, 1.5, 2.0, 3.0], "name": [XSS, "b", "c", "d"]})
    exp = store.create_experiment(
        "exp",
        space=space.to_json(),
        target=Target(command=("python", "train.py")),
        sampler="random",
        seed=1,
        max_trials=10,
        meta={"objectives": Objectives().to_meta(), "pruner": "none"},
    )
    params = [
        {"x": 0.5, "name": XSS},
        {"x": 1.5, "name": "b"},
        {"x": 2.0, "name": "c"},
        {"x": 3.0, "name": "d"},
    ]
    trials = store.add_trials(exp.id, params)
    store.register_worker("w1", host="host-a", pid=123, parallelism=2)
    folder = folder_root / "exp-1" / "20240101T000000Z"
    (folder / "out" / "sub").mkdir(parents=True)
    (folder / "log.txt").write_text("epoch 1\nepoch 2 " + XSS + "\ndone\n")
    (folder / "out" / "model.txt").write_text("weights")
    (folder / "out" / "sub" / "more.bin").write_bytes(b"\0" * 10)
    graphs = [{"name": "acc", "x_axis": "epoch", "y_axis": "acc", "series": [
        {"label": "train", "x": [1, 2, 3], "y": [0.5, 0.7, 0.8]}]}]  # fmt: skip
    (folder / "graphs.json").write_text(json.dumps(graphs))
    first = store.claim("w1", experiment_id=exp.id)
    assert first is not None and first.id == trials[0].id
    store.add_progress(first.id, "w1", [(1, 2.0), (2, 1.0)])
    store.finish(
        first.id, "w1", state=TrialState.COMPLETED, loss=0.25, result={"folder": str(folder)}
    )
    second = store.claim("w1", experiment_id=exp.id)
    assert second is not None
    store.finish(second.id, "w1", state=TrialState.COMPLETED, loss=0.75)
    running = store.claim("w1", experiment_id=exp.id)
    assert running is not None
    store.add_progress(running.id, "w1", [(1, 3.0)])
    store.heartbeat("w1", [running.id])

    multi = store.create_experiment(
        "multi",
        space=space.to_json(),
        target=Target(command=("python", "train.py")),
        sampler="random",
        seed=1,
        max_trials=10,
        meta={"objectives": Objectives(("err", "time"), ("minimize", "minimize")).to_meta()},
    )
    store.add_trials(multi.id, params[:3])
    for values in ([1.0, 3.0], [2.0, 1.0], [3.0, 4.0]):
        t = store.claim("w2", experiment_id=multi.id)
        assert t is not None
        store.finish(
            t.id, "w2", state=TrialState.COMPLETED, loss=values[0], result={"values": values}
        )
    return {
        "exp": exp.id,
        "completed": first.id,
        "completed2": second.id,
        "running": running.id,
        "queued": trials[3].id,
        "folder": str(folder),
        "multi": multi.id,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dash.db'}"
    factory: Callable[[], str] = request.getfixturevalue("postgres_url")
    return factory()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def filled(store: Store, tmp_path: Path) -> dict[str, Any]:
    return fill_store(store, tmp_path / "results")


# -- calling the WSGI app --------------------------------------------------------------
class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def data(self) -> Any:
        assert self.headers["Content-Type"].startswith("application/json"), self.headers
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def call(
    app: Any,
    path: str,
    *,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Run one request through the WSGI app ``app``."""
    raw = b"" if body is None else json.dumps(body).encode()
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(raw)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(raw),
    }
    for key, value in (headers or {}).items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    got: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> None:
        got["status"] = int(status.split()[0])
        got["headers"] = dict(hdrs)

    chunks = app(environ, start_response)
    return Reply(got["status"], got["headers"], b"".join(chunks))


LOCAL = {"X-Requested-With": "hyperdock"}


def post(app: Any, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    return call(app, path, method="POST", body=body if body is not None else {}, headers=headers)


# -- reading ----------------------------------------------------------------------------
def test_list_experiments(store: Store, filled: dict[str, Any]) -> None:
    rows = call(create_app(store), "/api/experiments").data
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"exp", "multi"}
    exp = by_name["exp"]
    assert exp["id"] == filled["exp"]
    assert exp["state"] == "running"
    assert exp["sampler"] == "random"
    assert (exp["done"], exp["budget"], exp["running"], exp["failed"]) == (2, 10, 1, 0)
    assert exp["best_loss"] == 0.25
    assert exp["objectives"] == [{"name": "loss", "direction": "minimize"}]
    assert len(by_name["multi"]["objectives"]) == 2


def test_experiment_detail(store: Store, filled: dict[str, Any]) -> None:
    data = call(create_app(store), "/api/experiments/exp").data
    assert data["experiment"]["name"] == "exp"
    assert data["experiment"]["done"] == 2
    states = {t["id"]: t["state"] for t in data["trials"]}
    assert states == {
        filled["completed"]: "completed",
        filled["completed2"]: "completed",
        filled["running"]: "running",
        filled["queued"]: "queued",
    }
    xss_row = next(t for t in data["trials"] if t["id"] == filled["completed"])
    assert xss_row["params"] == {"x": 0.5, "name": XSS}  # data, not markup
    assert data["progress"][str(filled["completed"])] == [[1, 2.0], [2, 1.0]]
    assert data["progress"][str(filled["running"])] == [[1, 3.0]]
    assert isinstance(data["importances"], dict)
    assert set(data["importances"]) <= {"x", "name"}
    assert data["pareto_front"] is None


def test_experiment_detail_cache_invalidates(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    first = call(app, "/api/experiments/exp")
    again = call(app, "/api/experiments/exp")
    assert again.body == first.body  # served from the cache
    version = first.data["version"]
    assert first.headers["ETag"] == f'"{version}"'
    # the client has this version: 304, no body
    same = call(app, "/api/experiments/exp", headers={"If-None-Match": f'"{version}"'})
    assert (same.status, same.body) == (304, b"")
    # new intermediate losses of the running trial
    store.add_progress(filled["running"], "w1", [(2, 2.5)])
    data = call(app, "/api/experiments/exp").data
    assert data["progress"][str(filled["running"])] == [[1, 3.0], [2, 2.5]]
    # the running trial finishes
    assert store.finish(filled["running"], "w1", state=TrialState.COMPLETED, loss=0.1)
    data = call(app, "/api/experiments/exp").data
    assert data["version"] != version
    states = {t["id"]: t["state"] for t in data["trials"]}
    assert states[filled["running"]] == "completed"
    assert data["experiment"]["done"] == 3
    assert data["experiment"]["best_loss"] == 0.1
    # a cancel of a queued trial
    post(app, f"/api/trials/{filled['queued']}/cancel", headers=LOCAL)
    data = call(app, "/api/experiments/exp").data
    assert {t["id"]: t["state"] for t in data["trials"]}[filled["queued"]] == "cancelled"


def test_experiment_detail_cache_sees_a_stop_request(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    row = next(t for t in call(app, "/api/experiments/exp").data["trials"]
               if t["id"] == filled["running"])  # fmt: skip
    assert row["stop_requested"] is False
    store.cancel_trial(filled["running"])  # running: only asks it to stop
    row = next(t for t in call(app, "/api/experiments/exp").data["trials"]
               if t["id"] == filled["running"])  # fmt: skip
    assert row["stop_requested"] is True


def settle_importances(app: Any, name: str) -> dict[str, Any]:
    """Wait until the importances of ``name`` are not being computed (they are computed
    in the background, and the detail's version changes when they arrive)."""
    found: dict[str, Any] = {}

    def settled() -> bool:
        found.update(call(app, f"/api/experiments/{name}/importances").data)
        return found["status"] != "pending"

    wait_for(settled, timeout=60)
    return found


def test_experiment_detail_gzip(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    settle_importances(app, "exp")
    plain = call(app, "/api/experiments/exp")
    packed = call(app, "/api/experiments/exp", headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.status == 200
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Content-Length"] == str(len(packed.body))
    assert gzip.decompress(packed.body) == plain.body
    assert "Content-Encoding" not in plain.headers


def test_experiment_detail_is_lean(store: Store, tmp_path: Path) -> None:
    """Brief trial rows; at most MAX_CURVES curves of at most MAX_CURVE_POINTS points,
    the best completed ones and the running ones first."""
    from hyperdock.dashboard import api

    exp = store.create_experiment(
        "many",
        space=space_from_v04({"x": [1, 2]}).to_json(),
        target=Target(command=("true",)),
        sampler="random",
        seed=1,
        max_trials=None,
        meta={"objectives": Objectives().to_meta(), "pruner": "none"},
    )
    n = api.MAX_CURVES + 50
    store.add_trials(exp.id, [{"x": 1}] * (n + 1))
    for i in range(n):
        t = store.claim("w", experiment_id=exp.id)
        assert t is not None
        store.add_progress(t.id, "w", [(s, float(s)) for s in range(api.MAX_CURVE_POINTS + 50)])
        store.finish(t.id, "w", state=TrialState.COMPLETED, loss=float(i), error="x\ny")
    live = store.claim("w", experiment_id=exp.id)
    assert live is not None
    store.add_progress(live.id, "w", [(0, 9.0)])
    data = call(create_app(store), "/api/experiments/many").data
    assert len(data["trials"]) == n + 1
    row = data["trials"][0]
    assert "result" not in row and "history" not in row
    assert row["error"] == "x"
    progress = data["progress"]
    assert len(progress) == api.MAX_CURVES
    assert data["progress_total"] == n + 1
    assert str(live.id) in progress
    ids = [t["id"] for t in data["trials"]]
    assert str(ids[0]) in progress  # the best (lowest loss)
    assert str(ids[n - 1]) not in progress  # the worst
    curve = progress[str(ids[0])]
    assert len(curve) <= api.MAX_CURVE_POINTS
    assert curve[0] == [0, 0.0] and curve[-1][0] == api.MAX_CURVE_POINTS + 49


def test_experiment_detail_pareto_front(store: Store, filled: dict[str, Any]) -> None:
    data = call(create_app(store), "/api/experiments/multi").data
    front = data["pareto_front"]
    assert [f["values"] for f in front] == [[1.0, 3.0], [2.0, 1.0]]
    assert all(t["values"] is not None for t in data["trials"])


def test_trial_detail_reads_the_folder(store: Store, filled: dict[str, Any]) -> None:
    data = call(create_app(store), f"/api/trials/{filled['completed']}").data
    assert data["params"] == {"x": 0.5, "name": XSS}
    assert data["state"] == "completed"
    assert data["loss"] == 0.25
    assert data["result"]["folder"] == filled["folder"]
    assert data["folder_here"] is True
    assert data["experiment"] == "exp"
    assert data["attempts"] == 1
    assert isinstance(data["history"], list)
    assert data["log_file"] == "log.txt"
    assert data["log"].endswith("done\n") and XSS in data["log"]
    assert data["graphs"][0]["series"][0]["y"] == [0.5, 0.7, 0.8]
    assert [f["path"] for f in data["files"]] == ["model.txt", "sub/more.bin"]
    assert data["progress"] == [[1, 2.0], [2, 1.0]]


def test_the_graphs_limit_is_configurable(store: Store, filled: dict[str, Any]) -> None:
    from hyperdock.trialfs import Limits

    app = create_app(store, limits=Limits.parse("graphs=50"))
    data = call(app, f"/api/trials/{filled['completed']}").data
    assert data["graphs"] is None
    assert data["graphs_error"] == "graphs.json is larger than 50 bytes: refused"


def test_trial_detail_without_folder(store: Store, filled: dict[str, Any]) -> None:
    data = call(create_app(store), f"/api/trials/{filled['running']}").data
    assert data["state"] == "running"
    assert data["worker"] == "w1"
    assert (data["log"], data["graphs"], data["files"]) == (None, None, [])


def test_trial_log_tail_is_bounded(store: Store, filled: dict[str, Any], tmp_path: Path) -> None:
    from hyperdock.dashboard.api import LOG_TAIL_BYTES

    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "docker_log.txt").write_text("x" * (LOG_TAIL_BYTES * 2) + "END")
    store.finish(filled["running"], "w1", state=TrialState.COMPLETED, loss=1.0,
                 result={"folder": str(folder)})  # fmt: skip
    data = call(create_app(store), f"/api/trials/{filled['running']}").data
    assert data["log_file"] == "docker_log.txt"
    assert len(data["log"]) == LOG_TAIL_BYTES and data["log"].endswith("END")


def test_workers(store: Store, filled: dict[str, Any]) -> None:
    rows = call(create_app(store), "/api/workers").data
    w1 = next(r for r in rows if r["id"] == "w1")
    assert (w1["host"], w1["pid"], w1["parallelism"]) == ("host-a", 123, 2)
    assert filled["running"] in w1["running"]


def test_not_found(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    assert call(app, "/api/experiments/nope").status == 404
    assert "nope" in call(app, "/api/experiments/nope").data["error"]
    assert call(app, "/api/trials/999999").status == 404
    assert call(app, "/api/nothing").status == 404
    assert call(app, "/no/such/page").status == 404
    assert post(app, "/api/trials/999999/cancel", headers=LOCAL).status == 404
    assert call(app, "/api/experiments", method="PUT").status == 405


# -- actions ------------------------------------------------------------------------------
def test_cancel_trial(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    reply = post(app, f"/api/trials/{filled['running']}/cancel", headers=LOCAL)
    assert reply.status == 200, reply.text
    assert reply.data["state"] == "running"
    assert store.get_trial(filled["running"]).stop_requested
    reply = post(app, f"/api/trials/{filled['queued']}/cancel", headers=LOCAL)
    assert reply.data["state"] == "cancelled"
    assert store.get_trial(filled["queued"]).state is TrialState.CANCELLED


def test_cancel_experiment(store: Store, filled: dict[str, Any]) -> None:
    reply = post(create_app(store), "/api/experiments/exp/cancel", headers=LOCAL)
    assert reply.status == 200, reply.text
    assert reply.data["experiment"]["state"] == "cancelled"
    assert store.get_trial(filled["queued"]).state is TrialState.CANCELLED
    assert store.get_trial(filled["running"]).stop_requested


def test_delete_experiment(store: Store, filled: dict[str, Any]) -> None:
    reply = post(create_app(store), "/api/experiments/multi/delete", headers=LOCAL)
    assert reply.status == 200, reply.text
    with pytest.raises(ExperimentNotFound):
        store.get_experiment("multi")
    assert store.get_experiment("exp").id == filled["exp"]


def test_cancelling_an_ended_experiment_is_409_and_changes_nothing(
    store: Store, filled: dict[str, Any]
) -> None:
    app = create_app(store)
    assert post(app, "/api/experiments/exp/cancel", headers=LOCAL).status == 200
    again = post(app, "/api/experiments/exp/cancel", headers=LOCAL)
    assert again.status == 409 and "cancelled already" in again.text
    exp = store.get_experiment("exp")
    store.set_experiment_state(exp.id, ExperimentState.DONE)
    assert post(app, "/api/experiments/exp/cancel", headers=LOCAL).status == 409
    assert store.get_experiment("exp").state is ExperimentState.DONE


def test_clone_experiment(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    reply = post(app, "/api/experiments/exp/clone", {"name": "exp-2"}, headers=LOCAL)
    assert reply.status == 200, reply.text
    old, new = store.get_experiment("exp"), store.get_experiment("exp-2")
    assert new.id != old.id
    assert (new.space, new.target, new.sampler, new.max_trials, new.meta) == (
        old.space,
        old.target,
        old.sampler,
        old.max_trials,
        old.meta,
    )
    assert store.list_trials(new.id) == []
    assert post(app, "/api/experiments/exp/clone", {"name": "exp-2"}, LOCAL).status == 409
    assert post(app, "/api/experiments/exp/clone", {}, LOCAL).status == 400


def test_create_experiment_v04_space(store: Store) -> None:
    app = create_app(store)
    body = {
        "name": "made",
        "space": json.dumps({"a": [1, 2], "b": 1, "n": XSS}),
        "command": "python train.py --fast",
        "max_trials": None,
    }
    reply = post(app, "/api/experiments", body, headers=LOCAL)
    assert reply.status == 200, reply.text
    exp = store.get_experiment("made")
    assert exp.sampler == "grid"  # v0.4 lists are grid axes
    assert exp.max_trials is None
    assert exp.target.command == ("python", "train.py", "--fast")
    assert exp.space["n"] == XSS


@pytest.mark.timeout(60)
def test_create_experiment_with_a_billion_point_grid(store: Store) -> None:
    """The grid's size is computed, never enumerated: the list of experiments shows its
    budget at once."""
    space = {f"p{i}": list(range(10)) for i in range(9)}  # 10**9 points
    body = {"name": "huge", "space": json.dumps(space), "command": "x", "max_trials": 3}
    app = create_app(store)
    reply = post(app, "/api/experiments", body, headers=LOCAL)
    assert reply.status == 200, reply.text
    assert store.get_experiment("huge").max_trials == 3
    rows = call(app, "/api/experiments").data
    assert [r["budget"] for r in rows if r["name"] == "huge"] == [3]


def test_create_experiment_space_json_form(store: Store) -> None:
    space = {"x": {"$hp": "uniform", "label": "x", "low": 0, "high": 1}}
    body = {"name": "tpe", "space": json.dumps(space), "image": "me/img:1", "max_trials": 7}
    reply = post(create_app(store), "/api/experiments", body, headers=LOCAL)
    assert reply.status == 200, reply.text
    exp = store.get_experiment("tpe")
    assert (exp.sampler, exp.max_trials, exp.target.image) == ("tpe", 7, "me/img:1")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "e", "space": "{not json", "command": "x"}, 400, "not valid JSON"),
        ({"name": "e", "space": "[]", "command": "x"}, 400, "invalid space"),
        ({"name": "e", "space": "{}"}, 400, "target"),
        ({"space": "{}", "command": "x"}, 400, "name"),
        ({"name": "e", "space": "{}", "command": "x", "max_trials": 0}, 400, "at least 1"),
        ({"name": "e", "space": '{"a": [1]}', "command": "x", "sampler": "nope"}, 400, "nope"),
        ({"name": "e", "space": "[" * 100_000, "command": "x"}, 400, "200 levels deep"),
        ({"name": "e", "space": '{"a": []}', "command": "x"}, 400, "'a' has no values"),
        ({"name": "a/b", "space": "{}", "command": "x"}, 400, "may not contain '/'"),
        ({"name": "a\x1b[31mb", "space": "{}", "command": "x"}, 400, "control characters"),
        ({"name": "n" * 150, "space": "{}", "command": "x"}, 400, "use at most 100"),
    ],
)
def test_create_experiment_refusals(
    store: Store, body: dict[str, Any], status: int, words: str
) -> None:
    reply = post(create_app(store), "/api/experiments", body, headers=LOCAL)
    assert reply.status == status, reply.text
    assert words in reply.data["error"]
    assert store.list_experiments() == []


def test_create_existing_name_conflicts(store: Store, filled: dict[str, Any]) -> None:
    body = {"name": "exp", "space": "{}", "command": "x"}
    assert post(create_app(store), "/api/experiments", body, headers=LOCAL).status == 409


# -- security -----------------------------------------------------------------------------
ACTIONS = [
    ("/api/experiments/exp/cancel", {}),
    ("/api/experiments/exp/delete", {}),
    ("/api/experiments/exp/clone", {"name": "copy"}),
    ("/api/experiments", {"name": "new", "space": "{}", "command": "x"}),
    ("/api/trials/{running}/cancel", {}),
]


def _unchanged(store: Store, filled: dict[str, Any]) -> None:
    assert [e.name for e in store.list_experiments()] == ["exp", "multi"]
    assert store.get_experiment("exp").state.value == "running"
    assert not store.get_trial(filled["running"]).stop_requested


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_actions_without_token_refused(
    store: Store, filled: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    app = create_app(store, token=TOKEN)
    path = path.format(**filled)
    for headers in ({}, LOCAL, {"X-Hyperdock-Token": "wrong"}, {"X-Hyperdock-Token": ""}):
        reply = post(app, path, body, headers=headers)
        assert reply.status == 403, (headers, reply.text)
        assert "token" in reply.data["error"]
    _unchanged(store, filled)


def test_reading_needs_the_token_when_one_is_set(store: Store, filled: dict[str, Any]) -> None:
    """With a token the API's data is for its holders only; pages and static files hold
    no data and load without it. Without a token reading is open (loopback only)."""
    app = create_app(store, token=TOKEN)
    reads = ["/api/experiments", "/api/experiments/exp", "/api/workers",
             f"/api/trials/{filled['completed']}"]  # fmt: skip
    for path in reads:
        for headers in ({}, LOCAL, {"X-Hyperdock-Token": "wrong"}):
            reply = call(app, path, headers=headers)
            assert reply.status == 401, (path, headers, reply.text)
            assert "token" in reply.data["error"] and "exp" not in reply.text
        reply = call(app, path, headers={"X-Hyperdock-Token": TOKEN})
        assert reply.status == 200, (path, reply.text)
    for path in ("/", "/experiments/exp", "/static/app.js", "/static/style.css"):
        assert call(app, path).status == 200, path
    open_app = create_app(store)
    assert all(call(open_app, path).status == 200 for path in reads)


def test_actions_with_token(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store, token=TOKEN)
    reply = post(app, f"/api/trials/{filled['running']}/cancel", {}, {"X-Hyperdock-Token": TOKEN})
    assert reply.status == 200, reply.text
    assert store.get_trial(filled["running"]).stop_requested


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_cross_site_post_refused(
    store: Store, filled: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    """What a foreign page can send (a form or a simple fetch: no custom header), or a
    DNS-rebound page (custom header, but a foreign Host/Origin), changes nothing."""
    app = create_app(store)
    path = path.format(**filled)
    attempts = [
        {},
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},
        {"X-Requested-With": "XMLHttpRequest"},
        {**LOCAL, "Host": "evil.example:8765"},
        {**LOCAL, "Origin": "http://evil.example"},
    ]
    for headers in attempts:
        reply = post(app, path, body, headers=headers)
        assert reply.status == 403, (headers, reply.text)
    _unchanged(store, filled)


def test_same_origin_post_allowed(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    headers = {**LOCAL, "Host": "127.0.0.1:8765", "Origin": "http://127.0.0.1:8765"}
    assert post(app, "/api/experiments/exp/cancel", {}, headers).status == 200


def test_bad_bodies(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    environ_body = b"[1, 2]"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/experiments",
        "CONTENT_LENGTH": str(len(environ_body)),
        "wsgi.input": io.BytesIO(environ_body),
        "HTTP_X_REQUESTED_WITH": "hyperdock",
    }
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    assert status[0].startswith("400") and b"JSON object" in body


# -- pages and static files ---------------------------------------------------------------
def test_pages(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    for path in ("/", "/workers", "/experiments/exp", f"/trials/{filled['completed']}"):
        reply = call(app, path)
        assert reply.status == 200, path
        assert reply.headers["Content-Type"].startswith("text/html")
        assert re.search(r'<script src="/static/app\.js\?v=[0-9a-f]{12}" defer>', reply.text)
        assert "Content-Security-Policy" in reply.headers
        assert reply.headers["Cache-Control"] == "no-store"
    assert re.search(
        r'<script id="plotly-js" src="/static/plotly\.min\.js\?v=[0-9a-f]{12}" defer>',
        call(app, "/experiments/exp").text,
    )


def test_static_files_are_cached_by_version(store: Store) -> None:
    """Versioned URLs are cached for a year (so browsers also keep plotly.js compiled);
    plain ones revalidate by ETag; gzip when asked; API replies are never stored."""
    app = create_app(store)
    page = call(app, "/experiments/exp").text
    for name in ("app.js", "plotly.min.js", "style.css"):
        match = re.search(rf"/static/{re.escape(name)}\?v=([0-9a-f]{{12}})", page)
        assert match, name
        versioned = call(app, match.group(0))
        assert versioned.status == 200
        assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        plain = call(app, f"/static/{name}")
        assert plain.headers["Cache-Control"] == "no-cache"
        assert plain.body == versioned.body
        etag = plain.headers["ETag"]
        assert call(app, f"/static/{name}", headers={"If-None-Match": etag}).status == 304
        stale = call(app, f"/static/{name}?v=000000000000")
        assert stale.headers["Cache-Control"] == "no-cache"  # an old page's URL
        zipped = call(app, match.group(0), headers={"Accept-Encoding": "gzip, br"})
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(zipped.body) == plain.body
    assert call(app, "/api/experiments").headers["Cache-Control"] == "no-store"


def test_page_escapes_the_name_in_the_shell(store: Store) -> None:
    reply = call(create_app(store), "/experiments/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert XSS not in reply.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in reply.text


def test_static_files(store: Store) -> None:
    app = create_app(store)
    plotly = call(app, "/static/plotly.min.js")
    assert plotly.status == 200 and plotly.headers["Content-Type"].startswith("text/javascript")
    assert len(plotly.body) > 1_000_000 and b"plotly" in plotly.body[:2000].lower()
    assert b"textContent" in call(app, "/static/app.js").body
    assert call(app, "/static/style.css").status == 200
    assert call(app, "/static/../__init__.py").status == 404
    assert call(app, "/static/nothing.js").status == 404


def test_app_js_never_uses_inner_html() -> None:
    from hyperdock.dashboard import STATIC_DIR

    text = (STATIC_DIR / "app.js").read_text()
    assert "innerHTML" not in text and "insertAdjacentHTML" not in text
    assert "document.write" not in text


# -- serving -------------------------------------------------------------------------------
def test_check_bind() -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(ConfigError, match="token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ConfigError):
        check_bind("192.168.1.2", "")


def test_served_over_http(store: Store, filled: dict[str, Any]) -> None:
    server = make_dashboard_server(store, "127.0.0.1", 0, token=TOKEN)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/api/experiments", timeout=10)
        assert info.value.code == 401
        listing = urllib.request.Request(base + "/api/experiments")
        listing.add_header("X-Hyperdock-Token", TOKEN)
        with urllib.request.urlopen(listing, timeout=10) as resp:
            assert {r["name"] for r in json.load(resp)} == {"exp", "multi"}
        url = f"{base}/api/trials/{filled['running']}/cancel"
        request = urllib.request.Request(url, data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 403
        request.add_header("X-Hyperdock-Token", TOKEN)
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.load(resp)["ok"] is True
        assert store.get_trial(filled["running"]).stop_requested
    finally:
        server.shutdown()
        server.server_close()


def test_cli_refuses_public_bind_without_token(tmp_path: Path) -> None:
    out = hd("dashboard", "--store", f"sqlite:///{tmp_path / 'x.db'}", "--host", "0.0.0.0",
             cwd=tmp_path, env={"HYPERDOCK_TOKEN": ""}, timeout=60)  # fmt: skip
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "token" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_cli_serves(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with open_store(url) as st:
        fill_store(st, tmp_path / "results")
    log = tmp_path / "dash.log"
    proc = spawn(
        "dashboard", "--store", url, "--port", str(port), "--no-token", cwd=tmp_path, log=log
    )

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/workers", timeout=2):
                return True
        except OSError:
            return False

    wait_for(up, 30, "the dashboard to listen")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/experiments/exp", timeout=5) as r:
        assert json.load(r)["experiment"]["name"] == "exp"
    proc.terminate()
    proc.wait(timeout=30)
    assert f"127.0.0.1:{port}" in log.read_text()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_cli_makes_a_token_when_none_is_given(tmp_path: Path) -> None:
    """Issue 12, item 12: without --token any local account could act; now a random
    token is made and printed in the URL, unless --no-token."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with open_store(url) as st:
        fill_store(st, tmp_path / "results")
    log = tmp_path / "dash.log"
    spawn("dashboard", "--store", url, "--port", "0", cwd=tmp_path, log=log,
          env={"HYPERDOCK_TOKEN": ""})  # fmt: skip
    wait_for(lambda: "Dashboard on" in log.read_text(), 30, "the banner")
    match = re.search(r"Dashboard on (http://127\.0\.0\.1:\d+/)\?token=(\S+) ", log.read_text())
    assert match, log.read_text()
    base, token = match.groups()
    assert len(token) >= 16
    assert _get(base + "api/experiments")[0] == 401
    assert _get(base + "api/experiments", {"X-Hyperdock-Token": token})[0] == 200


@pytest.mark.parametrize("token", ["short", "fifteen-chars-x"])
def test_short_tokens_are_refused(tmp_path: Path, token: str) -> None:
    out = hd("dashboard", "--store", f"sqlite:///{tmp_path / 'x.db'}", "--token", token,
             cwd=tmp_path, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "at least 16 characters" in out.stderr, out.stderr
    with pytest.raises(ConfigError, match="at least 16"):
        make_dashboard_server(open_store(f"sqlite:///{tmp_path / 'y.db'}"), token=token)


@pytest.mark.parametrize("token", [" " * 16, "abcdefgh abcdefgh", "abcdefghabcdefgh\x1b"])
def test_blank_or_control_character_tokens_are_refused(tmp_path: Path, token: str) -> None:
    with pytest.raises(ConfigError, match="may not hold spaces or control characters"):
        make_dashboard_server(open_store(f"sqlite:///{tmp_path / 'y.db'}"), token=token)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.nip.io", "[::2]"])
def test_dns_rebinding_is_refused(store: Store, filled: dict[str, Any], host: str) -> None:
    """Issue 12, item 3: a page on a rebound DNS name reads nothing, token or not."""
    for app in (create_app(store), create_app(store, bound_host="127.0.0.1")):
        for path in (
            "/api/experiments",
            "/api/experiments/exp",
            f"/api/trials/{filled['completed']}",
        ):
            reply = call(app, path, headers={"Host": host})
            assert reply.status == 403, (host, path, reply.text)
            assert "allow-host" in reply.text and "epoch" not in reply.text
        page = call(app, "/experiments/exp", headers={"Host": host})
        assert page.status == 403 and "DNS rebinding" in page.text


def test_allowed_hosts_are_served(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store, bound_host="10.0.0.5", allow_hosts=["gpu-box.lab"])
    for host in ("127.0.0.1:8765", "localhost", "[::1]:8765", "10.0.0.5:8765", "GPU-box.lab"):
        assert call(app, "/api/experiments", headers={"Host": host}).status == 200, host
    assert call(app, "/api/experiments", headers={"Host": "other.lab"}).status == 403
    # bound to every interface with a token: the token is the guard, any name is served
    wide = create_app(store, TOKEN, bound_host="0.0.0.0")
    auth = {"Host": "gpu-box.lab", "X-Hyperdock-Token": TOKEN}
    assert call(wide, "/api/experiments", headers=auth).status == 200


def test_idle_connections_are_closed(tmp_path: Path) -> None:
    import socket

    from hyperdock.dashboard import IDLE_TIMEOUT, _QuietHandler

    assert _QuietHandler.timeout == IDLE_TIMEOUT == 30.0
    server = make_dashboard_server(open_store(f"sqlite:///{tmp_path / 'x.db'}"), port=0)
    server.RequestHandlerClass.timeout = 0.5  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            sock.sendall(b"GET /api/workers HTTP/1.1\r\n")  # and then nothing
            assert sock.recv(100) == b""  # the server hung up on the silent client
    finally:
        server.shutdown()
        server.server_close()
        server.RequestHandlerClass.timeout = IDLE_TIMEOUT  # type: ignore[attr-defined]


# -- issue 11: what the dashboard shows people -----------------------------------------
def _logs_experiment(store: Store) -> Any:
    """A finished experiment over a loguniform lr, a constant and a conditional
    parameter: one trial completed, one pruned after two steps."""
    from hyperdock import hp
    from hyperdock.space import Space

    space = Space.from_obj(
        {
            "lr": hp.loguniform("lr", -4.6, 0),
            "epochs": 20,
            "opt": hp.choice("opt", [{"name": "sgd", "mom": hp.uniform("mom", 0, 1)}, "adam"]),
        }
    )
    exp = store.create_experiment(
        "logs",
        space=space.to_json(),
        target=Target(command=("true",)),
        sampler="random",
        seed=0,
        max_trials=2,
        meta={"objectives": Objectives().to_meta(), "pruner": "median"},
    )
    store.add_trials(exp.id, [{"lr": 0.1, "epochs": 20, "opt": "adam"}] * 2)
    done = store.claim("w", experiment_id=exp.id)
    assert done is not None
    store.finish(done.id, "w", state=TrialState.COMPLETED, loss=0.5)
    pruned = store.claim("w", experiment_id=exp.id)
    assert pruned is not None
    store.add_progress(pruned.id, "w", [(1, 4.0), (2, 3.0)])
    store.finish(pruned.id, "w", state=TrialState.PRUNED)
    store.set_experiment_state(exp.id, ExperimentState.DONE)
    return exp, done.id, pruned.id


def test_list_shows_pruned_age_and_duration(store: Store) -> None:
    exp, _, pruned = _logs_experiment(store)
    row = next(r for r in call(create_app(store), "/api/experiments").data if r["name"] == "logs")
    assert (row["pruned"], row["completed"], row["done"]) == (1, 1, 2)
    last_end = store.get_trial(pruned).finished_at
    assert last_end is not None
    assert row["duration"] == pytest.approx(last_end - exp.created_at, abs=1e-3)
    assert row["age"] >= row["duration"] >= 0


def test_attempts_count_from_one(store: Store, filled: dict[str, Any]) -> None:
    app = create_app(store)
    rows = call(app, "/api/experiments/exp").data["trials"]
    assert {t["attempt"] for t in rows} == {1}
    trial = call(app, f"/api/trials/{filled['completed']}").data
    assert trial["attempt"] == 1
    assert [h["attempt"] for h in trial["history"]] == [1]
    assert trial["history"][0]["ended_at"] == trial["finished_at"]


def test_detail_describes_the_space_for_people(store: Store) -> None:
    _, _, pruned = _logs_experiment(store)
    data = call(create_app(store), "/api/experiments/logs").data
    exp = data["experiment"]
    params = {p["label"]: p for p in exp["parameters"]}
    assert params["lr"]["log"] is True and params["lr"]["paths"] == ["lr"]
    assert params["lr"]["text"] == "log-uniform 0.01\u20131"
    assert params["mom"]["condition"] == "opt = sgd" and params["mom"]["log"] is False
    assert exp["constants"] == ["epochs"]
    assert "lr: log-uniform 0.01\u20131" in exp["space_text"]
    assert "mom: uniform 0\u20131  (if opt = sgd)" in exp["space_text"]
    row = next(t for t in data["trials"] if t["id"] == pruned)
    assert (row["state"], row["last"]) == ("pruned", [2, 3.0])


def _download(app: Any, trial_id: int, path: str, **kw: Any) -> Reply:
    return call(app, f"/api/trials/{trial_id}/files/{path}", **kw)


def test_out_files_download_only_inside_the_trial_folder(
    store: Store, filled: dict[str, Any], tmp_path: Path
) -> None:
    app = create_app(store)
    trial = filled["completed"]
    reply = _download(app, trial, "model.txt")
    assert reply.status == 200
    assert reply.body == b"weights"
    assert "attachment" in reply.headers["Content-Disposition"]
    assert _download(app, trial, "sub/more.bin").body == b"\0" * 10

    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    out = Path(filled["folder"]) / "out"
    (out / "link.txt").symlink_to(secret)
    (out / "linkdir").symlink_to(tmp_path)
    (Path(filled["folder"]) / "params.json").write_text("{}")
    for bad in ("link.txt", "linkdir/secret.txt", "../params.json", "sub", "sub/../model.txt",
                "missing.txt", "%2e%2e/params.json"):  # fmt: skip
        refused = _download(app, trial, bad)
        assert refused.status == 404, bad
        assert b"do not serve" not in refused.body
    listed = [f["path"] for f in call(app, f"/api/trials/{trial}").data["files"]]
    assert listed == ["model.txt", "sub/more.bin"]  # symlinks are not offered
    assert _download(app, filled["running"], "model.txt").status == 404  # no folder

    guarded = create_app(store, token=TOKEN)
    assert _download(guarded, trial, "model.txt").status == 401
    ok = _download(guarded, trial, "model.txt", headers={"X-Hyperdock-Token": TOKEN})
    assert ok.body == b"weights"


def test_create_experiment_from_a_python_config(store: Store, tmp_path: Path) -> None:
    app = create_app(store)
    text = (
        "from hyperdock import hp\n"
        "SPACE = {'lr': hp.loguniform('lr', -9, -2), 'act': hp.choice('act', ['relu', 'tanh'])}\n"
    )
    body = {"name": "py", "space": text, "command": "python train.py"}
    reply = post(app, "/api/experiments", body, headers=LOCAL)
    assert reply.status == 200, reply.text
    exp = store.get_experiment("py")
    assert exp.space["lr"] == {"$hp": "loguniform", "label": "lr", "low": -9, "high": -2}
    assert exp.sampler == "tpe"

    marker = tmp_path / "ran"
    evil = f"import os\nSPACE = {{'a': os.system('touch {marker}')}}\n"
    reply = post(app, "/api/experiments", {**body, "name": "evil", "space": evil}, headers=LOCAL)
    assert reply.status == 400
    assert "line 1: `import os` is not allowed" in reply.data["error"]
    assert not marker.exists()
    assert [e.name for e in store.list_experiments()] == ["py"]
