"""Runaway failures stop: --max-failures, and errors that repeat are not retried."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd, spawn, stop_all, write

from hyperdock import hp
from hyperdock.space import Space
from hyperdock.storage import Store, open_store
from hyperdock.supervisor import Supervisor, open_experiment
from hyperdock.trial import ExperimentState, Target, TrialState

#: A user's script with a bug: every attempt dies with the same KeyError.
BROKEN = """
import json, os
with open("runs.txt", "a") as fh:
    fh.write("run\\n")
p = json.load(open(os.environ["HYPERDOCK_PARAMS"]))
print("loading the data")
print(p["learning_rate"])
"""

#: Fails twice, each time with another last line, then works.
FLAKY = """
import json, os
with open("flaky.txt", "a") as fh:
    fh.write("run\\n")
n = len(open("flaky.txt").read().split())
if n < 3:
    print(f"connection reset (try {n})")
    raise SystemExit(1)
json.dump({"loss": 0.5}, open(os.environ["HYPERDOCK_LOSS"], "w"))
"""


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    write(tmp_path / "space.py", "from hyperdock import hp\nSPACE = {'x': hp.uniform('x', 0, 1)}")
    write(tmp_path / "broken.py", BROKEN)
    write(tmp_path / "flaky.py", FLAKY)
    return tmp_path


@pytest.fixture
def posts() -> Iterator[tuple[str, list[Any]]]:
    """A local webhook receiver: its URL and the JSON bodies POSTed to it."""
    bodies: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


# -- end to end -------------------------------------------------------------------------
def test_a_target_that_always_fails_stops_the_run(proj: Path, posts: tuple[str, list[Any]]) -> None:
    url, bodies = posts
    out = hd(
        "run", "space.py", "--command", f"{PY} broken.py", "--name", "bug", "-q",
        "--notify", url, cwd=proj,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Experiment bug: failed (5 failed")
    assert lines[1] == "Stopped: 5 trials in a row failed (--max-failures 5)"
    assert lines[2].startswith("First error (trial 1, exit code 1): the target exited with code 1")
    assert "KeyError: 'learning_rate'" in out.stdout
    # 5 trials of 2 attempts each (the second failed like the first), not 50 x 6; the
    # next trial may have started before the experiment stopped.
    assert 10 <= len((proj / "runs.txt").read_text().split()) <= 12
    [body] = bodies
    assert body["event"] == "failed" and body["state"] == "failed"
    assert body["stop_reason"] == "5 trials in a row failed (--max-failures 5)"
    assert body["first_error"]["exit_code"] == 1
    assert "KeyError: 'learning_rate'" in body["first_error"]["error"]
    status = json.loads(hd("status", "--json", cwd=proj).stdout)
    assert [e["state"] for e in status] == ["failed"]
    with open_store(f"sqlite:///{proj}/hyperdock.db") as st:
        exp = st.get_experiment("bug")
        assert exp.meta["max_failures"] == 5
        assert exp.meta["first_error"] == body["first_error"]
        trials = st.list_trials(exp.id)
    assert {t.state for t in trials} <= {TrialState.FAILED, TrialState.CANCELLED}
    assert all(t.state is not TrialState.QUEUED for t in trials)


def test_max_failures_is_an_option_and_0_never_stops(proj: Path) -> None:
    out = hd(
        "run", "space.py", "--command", f"{PY} broken.py", "--name", "two", "-q",
        "--max-failures", "2", "--retries", "0", cwd=proj,
    )  # fmt: skip
    assert out.returncode == 1
    assert "Stopped: 2 trials in a row failed (--max-failures 2)" in out.stdout
    out = hd(
        "run", "space.py", "--command", f"{PY} broken.py", "--name", "never", "-q",
        "--max-failures", "0", "--retries", "0", "--max-trials", "7", cwd=proj,
    )  # fmt: skip
    assert out.returncode == 1  # nothing completed
    assert out.stdout.startswith("Experiment never: done (7 failed)")
    bad = hd("run", "space.py", "--command", "x", "--max-failures", "-1", cwd=proj)
    assert bad.returncode == 2 and "--max-failures must be 0" in bad.stderr


def test_a_repeated_error_is_not_retried_but_a_changing_one_is(proj: Path) -> None:
    out = hd(
        "run", "space.py", "--command", f"{PY} flaky.py", "--name", "flaky", "-q",
        "--max-trials", "1", cwd=proj,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert len((proj / "flaky.txt").read_text().split()) == 3  # two different errors, retried
    out = hd(
        "run", "space.py", "--command", f"{PY} broken.py", "--name", "same", "-q",
        "--max-trials", "1", "--retries", "5", "--json", cwd=proj,
    )  # fmt: skip
    assert len((proj / "runs.txt").read_text().split()) == 2
    [trial] = json.loads(hd("trials", "same", "--json", cwd=proj).stdout)
    assert trial["state"] == "failed"
    first_line = trial["error"].splitlines()[0]
    assert first_line == (
        "the target exited with code 1; the target wrote no loss.json "
        "(same error as attempt 1; not retried)"
    )


def test_the_legacy_supervisor_takes_max_failures(proj: Path) -> None:
    store = f"sqlite:///{proj}/legacy.db"
    sup = spawn(
        "--name", "legacy", "--command", f"{PY} broken.py", "--config_module", "space.py",
        "--trials", "0", "--max-failures", "3", "--store", store, "--config-dir", str(proj),
        cwd=proj, exe=shutil.which("hyperdock-supervisor"), log=proj / "sup.log",
    )  # fmt: skip
    worker = spawn("worker", "--store", store, "--poll", "0.1", cwd=proj, log=proj / "w.log")
    try:
        assert sup.wait(timeout=120) == 1, (proj / "sup.log").read_text()
    finally:
        stop_all([sup, worker])
    assert "Stopped: 3 trials in a row failed (--max-failures 3)" in (proj / "sup.log").read_text()
    with open_store(store) as st:
        exp = st.get_experiment("legacy")
        assert exp.state is ExperimentState.FAILED and exp.meta["max_failures"] == 3


# -- the supervisor ------------------------------------------------------------------------
def _end(store: Store, exp_id: int, state: TrialState) -> int:
    """Queue one trial, claim it and end it in ``state``; return its id."""
    (trial,) = store.add_trials(exp_id, [{"x": 0.5}])
    claimed = store.claim("w", experiment_id=exp_id)
    assert claimed is not None and claimed.id == trial.id
    if state is TrialState.FAILED:
        store.release(trial.id, "w", error=f"boom {trial.id}", retry=False, result={"exit_code": 3})
    else:
        store.finish(trial.id, "w", state=state, loss=1.0)
    return trial.id


def _open(store: Store, **meta: Any) -> Any:
    exp, _ = open_experiment(
        store, "e", space=Space.from_obj({"x": hp.uniform("x", 0, 1)}),
        target=Target(command=("true",)), sampler="random", seed=1, max_trials=100,
        max_retries=0, meta=meta,
    )  # fmt: skip
    return exp


def test_only_failures_in_a_row_by_end_time_stop_the_experiment(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        exp = _open(store, max_failures=3)
        sup = Supervisor(store, exp)
        sup.max_queue_ahead = 0  # the test queues the trials itself
        for state in (TrialState.FAILED, TrialState.FAILED, TrialState.COMPLETED):
            _end(store, exp.id, state)
            assert not sup.step()
        first = _end(store, exp.id, TrialState.FAILED)  # the streak starts again here
        for _ in range(2):
            assert store.get_experiment(exp.id).state is ExperimentState.RUNNING
            assert not sup.step()
            _end(store, exp.id, TrialState.FAILED)
        (pending,) = store.add_trials(exp.id, [{"x": 0.5}])
        assert sup.step()
        exp = store.get_experiment(exp.id)
        assert exp.state is ExperimentState.FAILED
        assert exp.meta["stop_reason"] == "3 trials in a row failed (--max-failures 3)"
        assert exp.meta["first_error"] == {
            "trial": first, "number": 3, "exit_code": 3, "error": f"boom {first}",
        }  # fmt: skip
        assert store.get_trial(pending.id).state is TrialState.CANCELLED


def test_a_failed_experiment_resumed_counts_failures_afresh(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        exp = _open(store, max_failures=2)
        for _ in range(2):
            _end(store, exp.id, TrialState.FAILED)
        sup = Supervisor(store, exp)
        sup.max_queue_ahead = 0
        assert sup.step()
        assert store.get_experiment(exp.id).state is ExperimentState.FAILED
        exp = _open(store)  # the user fixed the target and runs again
        assert exp.state is ExperimentState.RUNNING
        assert exp.meta["stop_reason"] is None
        sup = Supervisor(store, exp)
        sup.max_queue_ahead = 0
        _end(store, exp.id, TrialState.FAILED)
        assert not sup.step()  # one failure since the resume, not three in a row
        assert store.get_experiment(exp.id).state is ExperimentState.RUNNING
