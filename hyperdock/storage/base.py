"""The store contract: the one interface every database backend implements.

A store holds three kinds of records: experiments, trials and workers. Supervisors,
workers, the CLI and the dashboard talk to each other only through it, so its rules are
the rules of the whole system.

States and who changes them:
    * A trial is created ``queued`` by the supervisor (:meth:`Store.add_trials`).
    * ``queued → running``: only :meth:`Store.claim`, atomically. Two concurrent claims
      never return the same trial; a claim returns ``None`` when nothing is claimable.
      Claims take trials of ``running`` experiments only, highest experiment priority
      first, then trials queued to the front (``add_trials(front=True)``; a later front
      batch before an earlier one), then oldest trial first (lowest id).
    * A running trial is leased to the claiming worker. The lease lives while the worker
      heartbeats (:meth:`Store.heartbeat`). Only the lease holder may end the attempt
      (:meth:`Store.finish`, :meth:`Store.release`); a call from a worker that lost the
      lease changes nothing and returns False.
    * ``running → queued``: :meth:`Store.release` with ``retry`` while retries remain
      (``attempt`` + 1), or without counting (``count_attempt=False``, graceful worker
      shutdown); :meth:`Store.reap` for leases not renewed for the experiment's
      ``lease_timeout``, measured on the lease clock (see Clocks below).
    * ``running → failed``: :meth:`Store.release` when retries are spent or the error is
      not retryable, or :meth:`Store.reap` when the lost trial has no retries left.
    * ``running → completed | pruned``: :meth:`Store.finish` by the lease holder. The
      pruner asks for a stop first (:meth:`Store.prune_trial`: ``stop_requested`` and
      ``prune_requested``); a stopped trial that is released or reaped ends ``pruned``.
    * While a trial runs, its lease holder records intermediate losses
      (:meth:`Store.add_progress`, one value per step, a repeated step overwrites).
    * ``queued | running → cancelled``: :meth:`Store.cancel_trial` /
      :meth:`Store.set_experiment_state` (``cancelled`` or ``failed``); a running trial
      gets ``stop_requested`` and its worker ends the target (the next heartbeat tells
      it) and then finishes it as ``cancelled``.
    * Finished trials (completed, failed, pruned, cancelled) never change state again.

Retries: a trial may be attempted ``1 + experiment.max_retries`` times.

Clocks: a lease's age is measured on one clock, the same for the heartbeat that renews
it and the reap that judges it, and never on the wall clocks of the processes involved,
which may disagree or jump (NTP, a user, a resumed VM). A jump of any worker's or
supervisor's wall clock neither reaps a live trial nor keeps a lost one:
    * PostgreSQL: the server's clock (``clock_timestamp()``), in the statements.
    * MongoDB: the server's ``localTime``, measured at connect and every minute against
      each process's monotonic clock (mongomock: the local clock read once at open,
      advanced by the monotonic clock).
    * SQLite: there is no server. Every process of an SQLite store runs on one machine
      (WAL needs shared memory), so the machine's monotonic clock is the one clock:
      each heartbeat records it (``lease_mono``), a reap compares with its own. A lease
      whose monotonic time is ahead of the reaper's was renewed before the machine
      restarted, and is lost.
    A jump of the database server's own clock (PostgreSQL, MongoDB) is not covered:
    keep it on NTP, which slews rather than jumps. The times a trial shows
    (``started_at``, ``heartbeat_at``, ...) are wall-clock times: the server's, or under
    SQLite the writing process's.

Thread safety: every method may be called from any thread of the process that created
the store; implementations serialise or pool connections as needed. A store is not
shared across ``fork``: each process opens its own.

Times are Unix seconds (float). Ids are integers, unique in the store.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hyperdock.errors import ConfigError, ExperimentNotFound
from hyperdock.storage.logchunks import StoredLog
from hyperdock.trial import (
    Experiment,
    ExperimentState,
    Target,
    Trial,
    TrialState,
    TrialSummary,
    Worker,
)

#: Bumped whenever the stored layout changes; recorded in every store.
#: 4: SQLite leases on the machine's monotonic clock (``lease_mono``, ``heartbeat_mono``).
#: 5: a trial's place in its experiment's queue (``queue_rank``: front batches).
#: 6: attempts' logs (:meth:`Store.add_log`).
SCHEMA_VERSION = 6


class Store(abc.ABC):
    """Abstract store. See the module docstring for the rules every backend keeps."""

    #: Short name of the backend ("sqlite", "postgresql", "mongodb").
    backend: str = ""

    # -- experiments ------------------------------------------------------------------
    @abc.abstractmethod
    def create_experiment(
        self,
        name: str,
        *,
        space: Any,
        target: Target,
        sampler: str,
        seed: int,
        max_trials: int | None,
        max_retries: int = 5,
        priority: int = 0,
        lease_timeout: float = 60.0,
        meta: dict[str, Any] | None = None,
    ) -> Experiment:
        """Create a ``running`` experiment.

        Raises:
            ExperimentExists: an experiment with that name exists already.
        """

    @abc.abstractmethod
    def get_experiment(self, name_or_id: str | int) -> Experiment:
        """Return one experiment by name (str) or id (int).

        Raises:
            ExperimentNotFound: there is none.
        """

    @abc.abstractmethod
    def list_experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""

    @abc.abstractmethod
    def set_experiment_state(self, experiment_id: int, state: ExperimentState) -> None:
        """Change an experiment's state.

        ``cancelled`` and ``failed`` also cancel its queued trials and ask its running
        ones to stop.
        """

    @abc.abstractmethod
    def update_experiment(
        self,
        experiment_id: int,
        *,
        max_trials: int | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Experiment:
        """Change an experiment's budget, priority or retries; return it updated.

        Args:
            meta: Keys to set in the experiment's ``meta`` (the others are kept).
        """

    @abc.abstractmethod
    def delete_experiment(self, experiment_id: int) -> None:
        """Delete an experiment and all its trials."""

    # -- trials -----------------------------------------------------------------------
    @abc.abstractmethod
    def add_trials(
        self,
        experiment_id: int,
        params: Sequence[dict[str, Any]],
        *,
        first_number: int | None = None,
        front: bool = False,
    ) -> list[Trial]:
        """Queue new trials, numbered after the experiment's existing ones. Atomic.

        Args:
            first_number: The number the caller expects the first new trial to get.
                Trials whose numbers exist already are skipped, so repeating a call
                whose reply was lost (connection dropped after the commit) adds
                nothing twice.
            front: Claim these (in their order) before every trial of the experiment
                queued so far; trials queued later without ``front`` come after them.

        Returns:
            The trials created by this call.
        """

    @abc.abstractmethod
    def claim(self, worker_id: str, *, experiment_id: int | None = None) -> Trial | None:
        """Atomically take the next queued trial for ``worker_id`` (see module rules).

        The returned trial is ``running``, leased to ``worker_id``, with ``started_at``
        and ``heartbeat_at`` set to now. ``experiment_id`` restricts the claim.
        """

    @abc.abstractmethod
    def heartbeat(self, worker_id: str, trial_ids: Iterable[int]) -> set[int]:
        """Renew the leases of ``worker_id`` on ``trial_ids`` and the worker's own record.

        Returns:
            The ids among ``trial_ids`` whose target must stop now: stop was requested
            (cancel, prune) or the lease is no longer this worker's.
        """

    @abc.abstractmethod
    def finish(
        self,
        trial_id: int,
        worker_id: str,
        *,
        state: TrialState,
        loss: float | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """End the running attempt as ``completed``, ``pruned``, ``failed`` or
        ``cancelled`` (a final state; no retry).

        Returns:
            False (and changes nothing) when ``worker_id`` no longer holds the lease.
        """

    @abc.abstractmethod
    def release(
        self,
        trial_id: int,
        worker_id: str,
        *,
        error: str,
        retry: bool = True,
        count_attempt: bool = True,
        result: dict[str, Any] | None = None,
    ) -> TrialState | None:
        """End the running attempt without a result.

        With ``retry`` the trial returns to ``queued`` (``attempt`` + 1 when
        ``count_attempt``) while retries remain, otherwise it becomes ``failed`` with
        ``error``. A stop that was requested makes it ``cancelled`` instead.

        Returns:
            The trial's new state, or None when ``worker_id`` no longer holds the lease.
        """

    @abc.abstractmethod
    def reap(self) -> list[Trial]:
        """Return lost trials (no heartbeat for their experiment's ``lease_timeout``) to
        the queue with ``attempt`` + 1, or fail them with "Timed out" when retries are
        spent. Safe to run from many processes at once. Returns the trials changed.
        """

    @abc.abstractmethod
    def get_trial(self, trial_id: int) -> Trial:
        """Return one trial.

        Raises:
            ExperimentNotFound: no trial with that id.
        """

    @abc.abstractmethod
    def list_trials(
        self,
        experiment_id: int,
        *,
        states: Iterable[TrialState] | None = None,
        since_id: int | None = None,
        limit: int | None = None,
    ) -> list[Trial]:
        """Trials of an experiment in creation order, optionally filtered."""

    def list_trials_page(
        self,
        experiment_id: int,
        *,
        limit: int,
        offset: int = 0,
        newest_first: bool = True,
        states: Iterable[TrialState] | None = None,
    ) -> list[Trial]:
        """One page of an experiment's trials: ``limit`` trials after skipping
        ``offset``, newest first (highest id) unless ``newest_first`` is False.

        Backends answer with an indexed query whose cost does not grow with the
        experiment (this default reads every trial: correct, slow).
        """
        trials = self.list_trials(experiment_id, states=states)
        if newest_first:
            trials.reverse()
        return trials[offset : offset + limit] if limit > 0 else []

    def iter_trials(
        self,
        experiment_id: int,
        *,
        batch: int = 1000,
        states: Iterable[TrialState] | None = None,
    ) -> Iterator[Trial]:
        """Every trial of an experiment in creation order, read ``batch`` at a time
        (keyset pagination on the id: memory stays constant however many there are)."""
        wanted = list(states) if states is not None else None
        last: int | None = None
        while True:
            page = self.list_trials(experiment_id, states=wanted, since_id=last, limit=batch)
            yield from page
            if len(page) < batch:
                return
            last = page[-1].id

    def iter_trial_summaries(
        self,
        experiment_id: int,
        *,
        since_id: int | None = None,
        with_result: bool = False,
        batch: int = 5000,
    ) -> Iterator[TrialSummary]:
        """Every trial of an experiment after id ``since_id``, in creation order, as
        :class:`~hyperdock.trial.TrialSummary` rows (``result`` filled only
        ``with_result``), read ``batch`` at a time (keyset pagination on the id): what a
        resumed supervisor loads its sampler's mirror from."""
        last = since_id
        while True:
            page = self._trial_summaries(experiment_id, last, with_result, batch)
            yield from page
            if len(page) < batch:
                return
            last = page[-1].id

    def _trial_summaries(
        self, experiment_id: int, since_id: int | None, with_result: bool, limit: int
    ) -> list[TrialSummary]:
        """One page of :meth:`iter_trial_summaries`. Backends read only those columns
        (this default reads whole trials)."""
        return [
            TrialSummary(t.id, t.number, t.state, t.params, t.loss, t.result if with_result else {})
            for t in self.list_trials(experiment_id, since_id=since_id, limit=limit)
        ]

    def best_trials(self, experiment_id: int, n: int, *, maximize: bool = False) -> list[Trial]:
        """The ``n`` completed trials with the lowest (``maximize``: highest) loss, best
        first, lowest id on ties. Backends use an index on the loss (this default
        reads every completed trial)."""
        done = self.list_trials(experiment_id, states=[TrialState.COMPLETED])
        done = [t for t in done if t.loss is not None]
        sign = -1.0 if maximize else 1.0
        done.sort(key=lambda t: (sign * (t.loss or 0.0), t.id))
        return done[: max(n, 0)]

    def trials_by_number(self, experiment_id: int, numbers: Iterable[int]) -> list[Trial]:
        """The trials of an experiment with these numbers (``Trial.number``), in number
        order; numbers with no trial are left out."""
        wanted = set(numbers)
        return [t for t in self.list_trials(experiment_id) if t.number in wanted]

    def last_finished_at(self, experiment_id: int) -> float | None:
        """When the experiment's last finished trial ended (None: none has), for its
        duration. Backends answer without reading the trials' data."""
        ends = [t.finished_at for t in self.list_trials(experiment_id) if t.state.finished]
        return max((e for e in ends if e is not None), default=None)

    @abc.abstractmethod
    def count_trials(self, experiment_id: int) -> dict[TrialState, int]:
        """Number of trials in each state (every state present, zeros included)."""

    @abc.abstractmethod
    def best_trial(self, experiment_id: int, *, maximize: bool = False) -> Trial | None:
        """The completed trial with the lowest (``maximize``: highest) loss, lowest id on
        ties; None when no trial completed."""

    @abc.abstractmethod
    def cancel_trial(self, trial_id: int) -> TrialState:
        """Cancel a queued trial, or ask a running one to stop; returns its state after."""

    @abc.abstractmethod
    def prune_trial(self, trial_id: int) -> bool:
        """Ask a running trial to stop because its intermediate losses are poor.

        Returns:
            True when the request was recorded: the trial is running and no stop was
            requested yet (a cancel wins over a prune).
        """

    @abc.abstractmethod
    def add_progress(
        self, trial_id: int, worker_id: str, points: Sequence[tuple[int, float]]
    ) -> bool:
        """Record ``(step, loss)`` intermediate values of a running trial.

        Returns:
            False (and records nothing) when ``worker_id`` no longer holds the lease.
        """

    @abc.abstractmethod
    def list_progress(
        self, experiment_id: int, *, trial_ids: Iterable[int] | None = None
    ) -> dict[int, list[tuple[int, float]]]:
        """Intermediate values per trial id (only trials that have some), by step."""

    # -- logs -------------------------------------------------------------------------
    @abc.abstractmethod
    def add_log(
        self, trial_id: int, attempt: int, offset: int, data: bytes, *, head: int, tail: int
    ) -> None:
        """Record ``data`` as bytes ``offset`` on of the log of a trial's attempt, then
        drop the stored chunks that start at or after byte ``head`` and end at or
        before the last ``tail`` bytes (the log's size is the largest chunk end; the
        chunk ending there is never dropped). The stored copy stays within ``head +
        tail`` bytes and one chunk when the writer sends no chunk across byte ``head``.

        A repeated ``(attempt, offset)`` changes nothing (a call retried after its
        reply was lost) unless its ``data`` is longer, which replaces the shorter: empty
        ``data`` at offset 0 records that the attempt has a log, empty so far, and the
        first output replaces it. A trial that does not exist (deleted) records nothing.
        """

    @abc.abstractmethod
    def read_log(self, trial_id: int, attempt: int | None = None, *, start: int = 0) -> StoredLog:
        """What the store holds of an attempt's log (``attempt`` None: the latest
        attempt that has one).

        Args:
            trial_id: The trial.
            attempt: The attempt (0-based), or None.
            start: Only the chunks ending after this byte; negative: after that many
                bytes before the log's end (``-65536``: the last 64 KB).

        Returns:
            The chunks in offset order and the log's size; no chunks and size 0 when
            there is no log (``attempt`` -1 when None found none).
        """

    @abc.abstractmethod
    def log_attempts(self, trial_id: int) -> list[int]:
        """The attempts of a trial that have a log in the store, oldest first."""

    # -- workers ----------------------------------------------------------------------
    @abc.abstractmethod
    def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        parallelism: int,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Add (or refresh) a worker in the registry."""

    @abc.abstractmethod
    def set_worker_status(self, worker_id: str, status: str | None) -> None:
        """Say why a worker does not run trials now (``None``: it does again).

        Shown by ``hyperdock workers``; e.g. "paused: Docker is not reachable at …".
        :meth:`register_worker` starts with no status. Does nothing for a worker the
        registry does not hold.
        """

    @abc.abstractmethod
    def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker from the registry (clean shutdown)."""

    @abc.abstractmethod
    def list_workers(self, *, max_age: float | None = None) -> list[Worker]:
        """Registered workers, with the trials each is running. ``max_age`` drops those
        whose last heartbeat is older than that many seconds (on the lease clock)."""

    # -- misc -------------------------------------------------------------------------
    @abc.abstractmethod
    def schema_version(self) -> int:
        """The layout version recorded in the database."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Close connections. The store is unusable afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """The store's URL with any password hidden."""
        return self.backend


def cancel_message(state: ExperimentState) -> str:
    """The error of a queued trial cancelled because its experiment stopped (``state``)."""
    if state is ExperimentState.CANCELLED:
        return "Cancelled"
    return f"Cancelled: the experiment {state.value}"


def experiment_done_counts(counts: dict[TrialState, int]) -> tuple[int, int]:
    """Return ``(finished, active)`` trial counts from :meth:`Store.count_trials`."""
    active = counts[TrialState.QUEUED] + counts[TrialState.RUNNING]
    return sum(counts.values()) - active, active


#: The name that stands for the newest experiment in :func:`resolve_experiment`.
LATEST = "latest"
#: How many names an error message lists at most.
_LISTED = 10


def _names(exps: Sequence[Experiment]) -> str:
    names = [e.name for e in exps[:_LISTED]]
    more = len(exps) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def resolve_experiment(store: Store, ref: str | None) -> Experiment:
    """Find the experiment a person means by ``ref``.

    Tried in order: the exact name, an id (``ref`` all digits), ``latest`` (the newest
    created), a unique name prefix. ``None`` means the store's only experiment.

    Args:
        store: The store to look in.
        ref: A name, id, ``latest`` or name prefix; None for "the only one".

    Raises:
        ConfigError: ``ref`` is a prefix of several names, or is None and the store
            holds several experiments; the message lists them.
        ExperimentNotFound: nothing matches (the message lists what exists).
    """
    if ref is not None:
        try:
            return store.get_experiment(ref)
        except ExperimentNotFound:
            pass
        if ref.isdigit():
            try:
                return store.get_experiment(int(ref))
            except ExperimentNotFound:
                pass
    # Newest first, so "latest" and every listing below start with the newest.
    exps = sorted(store.list_experiments(), key=lambda e: (e.created_at, e.id), reverse=True)
    where = store.describe()
    if not exps:
        raise ExperimentNotFound(
            f"no experiments in {where} yet; start one with: hyperdock run CONFIG --command '…'"
        )
    if ref is None:
        if len(exps) == 1:
            return exps[0]
        raise ConfigError(
            f"{where} holds {len(exps)} experiments ({_names(exps)}); name one "
            f"(a unique prefix of its name works, and {LATEST} is the newest)"
        )
    if ref == LATEST:
        return exps[0]
    matches = [e for e in exps if e.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(
            f"{ref!r} is the start of {len(matches)} experiment names ({_names(matches)}); "
            "give more of the name"
        )
    raise ExperimentNotFound(
        f"no experiment {ref!r} in {where}; it holds: {_names(exps)} "
        f"(a unique prefix of a name works, and {LATEST} is the newest)"
    )


def resolve_trial(store: Store, ref: str, number: int | None = None) -> Trial:
    """Find the trial a person means: ``ref`` alone and all digits is a trial id;
    otherwise ``ref`` names an experiment (as in :func:`resolve_experiment`) and
    ``number`` is its trial number (the ``#`` of ``hyperdock trials``), by default the
    trial started last.

    Raises:
        ConfigError: no such trial, or no trial of the experiment has started yet.
        ExperimentNotFound: no experiment matches ``ref``.
    """
    if number is None and ref.isdigit():
        try:
            return store.get_trial(int(ref))
        except ExperimentNotFound:
            raise ConfigError(f"no trial with id {ref} in {store.describe()}") from None
    exp = resolve_experiment(store, ref)
    trials = store.list_trials(exp.id)
    if number is not None:
        for trial in trials:
            if trial.number == number:
                return trial
        span = f"0 to {trials[-1].number}" if trials else "none yet"
        raise ConfigError(
            f"experiment {exp.name} has no trial number {number} (its numbers: {span})"
        )
    started = [t for t in trials if t.started_at is not None]
    if not started:
        raise ConfigError(f"no trial of experiment {exp.name} has started yet, so none has a log")
    return max(started, key=lambda t: (t.started_at or 0.0, t.id))
