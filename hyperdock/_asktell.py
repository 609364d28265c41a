"""The machinery behind :meth:`hyperdock.experiment.Experiment.ask`, ``tell`` and
``report``: the worker asked trials are leased to, the thread renewing their leases,
claiming the next trial, and checking what a tell gives.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hyperdock.errors import ConfigError, HyperdockError
from hyperdock.objectives import Objectives
from hyperdock.storage import Store
from hyperdock.trial import Experiment as ExperimentRecord
from hyperdock.trial import ExperimentState, Trial, TrialState

if TYPE_CHECKING:
    from hyperdock.supervisor import Supervisor

log = logging.getLogger("hyperdock.experiment")


class Lease:
    """The worker trials asked in this process are leased to, and the trials it holds.

    With no ``worker_id`` given, :meth:`ensure_worker` registers one of its own
    (``api-HOST-PID-…``) and starts a thread that renews the held trials' leases.
    """

    def __init__(self, store: Store, worker_id: str | None, renew: bool) -> None:
        self.store = store
        #: Guards the fields below (held by ask / tell / report for their whole call).
        self.lock = threading.RLock()
        self.worker_id = worker_id
        #: Whether the thread renews the leases (False: only ``report`` does).
        self.renew = renew
        self.own_worker = False
        #: Trials asked and not told yet.
        self.held: set[int] = set()
        #: Held trials the store asked to stop.
        self.stops: set[int] = set()
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None

    def ensure_worker(self, lease_timeout: float) -> str:
        """The worker's id, registering a worker of this process on first use."""
        if self.worker_id is None:
            wid = f"api-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            self.store.register_worker(
                wid, host=socket.gethostname(), pid=os.getpid(), parallelism=1, meta={"api": True}
            )
            self.worker_id = wid
            self.own_worker = True
            self._beat_stop.clear()
            self._beat = threading.Thread(
                target=self._heartbeat, args=(lease_timeout,), name="hd-api-lease", daemon=True
            )
            self._beat.start()
        return self.worker_id

    def _heartbeat(self, lease_timeout: float) -> None:
        # Renew well within the lease: a third of it, at most every 5 s.
        interval = min(5.0, max(lease_timeout / 3, 0.05))
        while not self._beat_stop.wait(interval):
            wid = self.worker_id
            if wid is None:
                return
            with self.lock:
                held = list(self.held)
            try:
                stops = self.store.heartbeat(wid, held)
            except HyperdockError as exc:  # a store outage: the next beat tries again
                log.warning("heartbeat failed: %s", exc)
                continue
            with self.lock:
                self.stops.update(stops)

    def close(self) -> None:
        """Stop the thread and unregister a worker registered here."""
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self.worker_id is not None and self.own_worker:
            try:
                self.store.unregister_worker(self.worker_id)
            except HyperdockError as exc:
                log.warning("could not unregister worker %s: %s", self.worker_id, exc)
            self.worker_id = None


def parse_states(
    state: str | TrialState | Iterable[str | TrialState] | None,
) -> list[TrialState] | None:
    """``state`` (one state or several, by value or name) as trial states; None for all.

    Raises:
        ConfigError: an unknown state.
    """
    if state is None:
        return None
    items = [state] if isinstance(state, str | TrialState) else list(state)
    try:
        return [TrialState(s) for s in items]
    except ValueError:
        known = ", ".join(s.value for s in TrialState)
        raise ConfigError(f"unknown trial state in {items!r}; use one of {known}") from None


def claim_next(
    store: Store, wid: str, sup: Supervisor, current: Callable[[], ExperimentRecord]
) -> Trial:
    """Claim a queued trial of the experiment for worker ``wid``, queueing the sampler's
    next suggestion when none is; ``current`` reads the experiment as stored now.

    Raises:
        HyperdockError: the experiment is not running, its budget is spent, its finite
            space has no point left, or other processes took every trial queued.
    """
    for _ in range(100):  # another process may take what was queued: try again
        exp = current()
        if exp.state is not ExperimentState.RUNNING:
            raise HyperdockError(
                f"experiment {exp.name!r} is {exp.state.value}; open it again with a "
                "larger max_trials to continue, or start a new one"
            )
        trial = store.claim(wid, experiment_id=exp.id)
        if trial is not None:
            return trial
        created = sum(store.count_trials(exp.id).values())
        sup.experiment = exp
        budget = sup.budget
        if budget is not None and created >= budget:
            raise HyperdockError(
                f"experiment {exp.name!r} has all its {budget} trials; open it with a "
                "larger max_trials to ask for more"
            )
        if sup._queue(created, 1) == 0:
            raise HyperdockError(f"experiment {exp.name!r} has no point of its space left to try")
    raise HyperdockError("other processes took every trial queued; ask again")


def tell_result(
    objectives: Objectives,
    state: str | TrialState,
    loss: float | None,
    values: Sequence[float] | Mapping[str, float] | None,
    data: Mapping[str, Any] | None,
) -> tuple[TrialState, float | None, dict[str, Any]]:
    """What a tell stores: the final state, the loss and the result (see
    :meth:`hyperdock.experiment.Experiment.tell` for the arguments).

    Raises:
        ConfigError: a state that is not final, a missing or non-finite loss, or values
            not matching the objectives.
    """
    final = parse_states(state)
    assert final is not None
    st = final[0]
    if not st.finished:
        raise ConfigError(f"tell() ends a trial: state must be final, got {st.value!r}")
    # Extra keys live under "data", as the worker keeps a target's extra loss.json keys.
    result: dict[str, Any] = {"data": dict(data)} if data else {}
    if values is not None:
        if isinstance(values, Mapping):
            missing = [n for n in objectives.names if n not in values]
            if missing:
                raise ConfigError(f"values lacks objective(s) {', '.join(missing)}")
            values = [values[n] for n in objectives.names]
        vals = [float(v) for v in values]
        if len(vals) != len(objectives.names):
            raise ConfigError(
                f"values has {len(vals)} numbers; the experiment has "
                f"{len(objectives.names)} objective(s): {', '.join(objectives.names)}"
            )
        result["values"] = vals
        loss = vals[0] if loss is None else loss
    elif st is TrialState.COMPLETED and objectives.multi:
        raise ConfigError(
            f"the experiment has objectives {', '.join(objectives.names)}; give values="
        )
    if loss is not None:
        loss = float(loss)
        if not math.isfinite(loss):
            raise ConfigError(f"the loss must be a finite number, got {loss}")
    if st is TrialState.COMPLETED and loss is None:
        raise ConfigError("a completed trial needs a loss: tell(trial, loss=...)")
    return st, loss, result


def not_running(store: Store, tid: int) -> str:
    """Why trial ``tid`` cannot be told or reported: the message of ``TrialNotRunning``."""
    try:
        now = store.get_trial(tid).state.value
    except HyperdockError:
        return f"no trial {tid} in {store.describe()}"
    return (
        f"trial {tid} is {now}, not running under this experiment's lease (told "
        "already, or its lease ran out); ask() for another trial"
    )


def close_if_done(store: Store, sup: Supervisor, exp: ExperimentRecord) -> None:
    """Mark the experiment done once its budget is spent and nothing is pending."""
    from hyperdock.storage.base import experiment_done_counts

    sup.experiment = exp
    budget = sup.budget
    counts = store.count_trials(exp.id)
    _, active = experiment_done_counts(counts)
    spent = budget is not None and sum(counts.values()) >= budget
    if exp.state is ExperimentState.RUNNING and spent and active == 0:
        store.set_experiment_state(exp.id, ExperimentState.DONE)
