"""A stop request that comes after the target finished its work: completion wins.

The races are driven deterministically: targets wait on files the test creates, and the
test calls the worker's heartbeat (:meth:`Worker.beat`) itself, so the worker learns of
a prune exactly when the test says.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from clihelp import PY, wait_for, write

from hyperdock.runtimes.base import RunContext
from hyperdock.runtimes.process import ProcessRuntime
from hyperdock.storage import Store, open_store
from hyperdock.trial import Target, Trial, TrialState
from hyperdock.worker import Worker

#: Reports its last step, writes its loss, then waits for ``release`` (a slow teardown:
#: saving a model, flushing logs) before it exits; with ``hang`` it never exits.
FINISHING = """
import json, os, sys, time
release = os.path.join(os.path.dirname(os.path.abspath(__file__)), "release")
open(os.path.join(os.environ["HYPERDOCK_DIR"], "pid"), "w").write(str(os.getpid()))
open(os.environ["HYPERDOCK_PROGRESS"], "a").write('{"step": 20, "loss": 0.25}\\n')
json.dump({"loss": 0.25, "state": "ok"}, open(os.environ["HYPERDOCK_LOSS"], "w"))
hang = json.load(open(os.environ["HYPERDOCK_PARAMS"]))["hang"]
while hang or not os.path.exists(release):
    time.sleep(0.02)
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/hd.db") as st:
        yield st


def _prune_after_the_loss(
    store: Store, tmp_path: Path, name: str, *, hang: bool, stop_grace: float
) -> Trial:
    """Run one trial of a new experiment ``name``; prune it once it wrote its loss.

    Returns:
        The trial as stored once the worker is done with it.
    """
    write(tmp_path / "finishing.py", FINISHING)
    exp = store.create_experiment(
        name, space={}, target=Target(command=(PY, str(tmp_path / "finishing.py"))),
        sampler="grid", seed=0, max_trials=1, max_retries=0,
    )  # fmt: skip
    [trial] = store.add_trials(exp.id, [{"hang": hang}])
    # Heartbeats and progress reads only when the test calls beat().
    worker = Worker(
        store, results_dir=tmp_path / "results", experiment_id=exp.id,
        heartbeat_interval=3600, progress_interval=3600, poll_interval=0.05,
        stop_grace=stop_grace, sweep_orphans=False, burst=True,
    )  # fmt: skip
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        loss_files = (tmp_path / "results").glob
        wait_for(lambda: any(loss_files(f"{name}-{trial.id}/*/loss.json")), 60, "the loss")
        assert store.prune_trial(trial.id)
        worker.beat()  # the worker learns of the prune now, its target still running
        (tmp_path / "release").write_text("")
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        worker.stop()
        thread.join(timeout=60)
    return store.get_trial(trial.id)


def test_a_prune_that_arrives_after_the_loss_was_written_lets_the_trial_complete(
    store: Store, tmp_path: Path
) -> None:
    # A grace far longer than the test: only the target's own exit can end it.
    done = _prune_after_the_loss(store, tmp_path, "finishing", hang=False, stop_grace=600)
    assert done.state is TrialState.COMPLETED, done.error
    assert done.loss == 0.25 and done.result["exit_code"] == 0
    assert done.error is None
    # A target that writes its loss and goes on running is still pruned: it is given
    # the grace period to exit, then stopped.
    hanging = _prune_after_the_loss(store, tmp_path, "hanging", hang=True, stop_grace=0.5)
    assert hanging.state is TrialState.PRUNED
    assert hanging.result["step"] == 20


def test_a_stop_after_the_target_exited_by_itself_is_not_reported_as_a_stop(
    tmp_path: Path,
) -> None:
    """The process ended (not yet reaped) when the stop came: it finished on its own."""
    folder = tmp_path / "trial"
    (folder / "out").mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"hang": False}))
    (tmp_path / "release").write_text("")  # the target exits at once after its loss
    script = write(tmp_path / "finishing.py", FINISHING)
    ctx = RunContext(trial_id=1, experiment="late", folder=folder, command=[PY, str(script)])
    execution = ProcessRuntime().start(ctx)
    wait_for((folder / "loss.json").exists, 60, "the loss.json")
    pid = int((folder / "pid").read_text())

    def exited() -> bool:  # a zombie: ended, not waited for yet
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"

    wait_for(exited, 60, "the target to exit")
    execution.stop(grace=1)
    outcome = execution.wait()
    assert outcome.exit_code == 0
    assert not outcome.stopped
