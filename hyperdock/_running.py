"""Running an experiment's target on local workers in this process: the body of
:meth:`hyperdock.experiment.Experiment.run` (what ``hyperdock run`` does), a supervisor and
a worker side by side.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hyperdock.errors import ConfigError, HyperdockError
from hyperdock.storage import Store
from hyperdock.trial import Experiment as ExperimentRecord
from hyperdock.trial import ExperimentState

if TYPE_CHECKING:
    from hyperdock.supervisor import Supervisor


def run_locally(
    store: Store,
    exp: ExperimentRecord,
    *,
    workers: int,
    progress: bool,
    results: str | os.PathLike[str],
    heartbeat: float,
    env: Mapping[str, str] | None,
    launcher: str = "local",
    launcher_options: Mapping[str, Any] | None = None,
    gpus: str | None = None,
    artifacts: str | None = None,
    artifacts_endpoint: str | None = None,
) -> ExperimentRecord:
    """Run ``exp``'s target on ``workers`` local trial slots until the experiment is
    over; see :meth:`hyperdock.experiment.Experiment.run` for the arguments.

    Returns:
        The experiment as it ended.

    Raises:
        ConfigError: the experiment has no target (it is driven by ask/tell), or a
            setting is invalid.
        HyperdockError: the workers stopped before the experiment ended.
    """
    from hyperdock.supervisor import Supervisor
    from hyperdock.worker import (
        Worker,
        check_results_dir,
        check_worker_settings,
        default_runtime_factory,
    )

    if not exp.target.image and not exp.target.command:
        raise ConfigError(
            f"experiment {exp.name!r} has no target (it is driven by ask/tell): "
            "evaluate its trials with ask() and tell()"
        )
    check_worker_settings(workers, heartbeat)
    check_results_dir(os.fspath(results))
    wake = threading.Condition()
    supervisor = Supervisor(store, exp, poll_interval=1.0, wake=wake, results_dir=results)
    worker = Worker(
        store,
        results_dir=os.fspath(results),
        parallelism=workers,
        env=dict(env or {}),
        experiment_id=exp.id,
        heartbeat_interval=heartbeat,
        poll_interval=1.0,
        runtime_factory=default_runtime_factory(
            launcher=launcher, launcher_options=launcher_options
        ),
        gpus=gpus,
        wake=wake,
        sweep_orphans=exp.target.kind == "docker" and launcher == "local",
        on_trial_end=lambda _tid, _state: supervisor.notify(),
        artifacts=artifacts,
        artifacts_endpoint=artifacts_endpoint,
    )
    stop = threading.Event()
    failed: list[BaseException] = []

    def work() -> None:
        # The supervisor must not wait for trials that no worker will run.
        try:
            worker.run()
        except BaseException as exc:
            failed.append(exc)
        finally:
            stop.set()
            supervisor.notify()

    thread = threading.Thread(target=work, name="hd-worker")
    display = _progress(supervisor, progress)
    with display:
        thread.start()
        try:
            ended = supervisor.run(stop)
        finally:
            worker.stop()
            thread.join()
    if failed and isinstance(failed[0], HyperdockError):
        raise failed[0]
    if failed:
        raise HyperdockError(f"the worker stopped on an unexpected error: {failed[0]}")
    if ended.state is ExperimentState.RUNNING:
        raise HyperdockError(
            "the workers stopped before the experiment ended (see the log); run it again to resume"
        )
    return ended


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(supervisor: Supervisor, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from hyperdock.display import ProgressLine

    return ProgressLine(supervisor, True)
