"""The supervisor: keeps an experiment's queue filled until its budget is spent.

One supervisor per experiment. It is stateless between steps: everything it knows comes
from the store, so a supervisor that is killed and started again carries on exactly
where the old one stopped (trial ``n`` gets the same parameters from a non-adaptive
sampler, and numbering continues).

It keeps up with its workers without being told: with a non-adaptive sampler it
measures how fast trials leave the queue, keeps :data:`QUEUE_SECONDS` of them queued
(added in one batch), and polls fast while trials are being claimed and less and less
often while nothing happens (see :meth:`Supervisor.next_wait`).
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import logging
import math
import os
import random
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hyperdock.artifacts.retention import prune_checkpoints
from hyperdock.errors import (
    ConfigError,
    ExperimentExists,
    ExperimentNotFound,
    HyperdockError,
    SpaceError,
    StoreConnectionError,
)
from hyperdock.finite import FinitePoints
from hyperdock.jsonutil import dumps
from hyperdock.objectives import Objectives
from hyperdock.pruners import PrunerSpec, make_pruner
from hyperdock.resources import Resources
from hyperdock.samplers import Sampler, default_sampler, make_sampler
from hyperdock.space import Space
from hyperdock.storage.base import Store, experiment_done_counts
from hyperdock.storage.retry import Backoff, note_failure, reap_unless_recovering
from hyperdock.trial import Experiment, ExperimentState, Target, Trial, TrialState

if TYPE_CHECKING:
    from hyperdock.study import StudyMirror

log = logging.getLogger("hyperdock.supervisor")

#: How many trials a non-adaptive sampler queues ahead of the workers at least.
QUEUE_AHEAD = 256
#: ... and at most: the margin grows with the measured claim rate up to this.
MAX_QUEUE_AHEAD = 4096
#: Seconds of claims (at the measured rate) a non-adaptive sampler queues ahead.
QUEUE_SECONDS = 2.0
#: Most trials per store call when queuing (one call each, committed as it goes).
ADD_BATCH = 256
#: Seconds over which the claim rate is measured.
RATE_WINDOW = 1.0
#: Seconds without a claim before the margin shrinks back to the measured rate.
MARGIN_HOLD = 5.0
#: Shortest pause between two steps.
MIN_STEP_INTERVAL = 0.02
#: Longest pause between two steps while trials are being claimed.
ACTIVE_POLL = 0.1
#: Seconds a worker may go without a heartbeat and still count as a free slot.
LIVE_WORKER_AGE = 60.0
#: Trials in a row that may end ``failed`` before the experiment stops as failed
#: (``--max-failures``; 0 never stops). Experiments stored without the setting get it.
DEFAULT_MAX_FAILURES = 5
#: Trials per page when the mirror is first loaded (a resumed experiment's history).
SYNC_PAGE = 1000
#: States of a trial whose point needs no new trial: evaluated, or failed with its
#: retries spent (running it again would be one more retry).
TRIED_STATES = (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED)


@dataclass(frozen=True)
class Progress:
    """A snapshot of an experiment, for progress displays.

    Attributes:
        budget: Trials the experiment will create at most (None: unbounded).
        counts: Trials per state.
        best: The best completed trial so far.
        state: The experiment's state.
    """

    budget: int | None
    counts: dict[TrialState, int]
    best: Trial | None
    state: ExperimentState

    @property
    def finished(self) -> int:
        """Trials that reached a final state."""
        return experiment_done_counts(self.counts)[0]


_T = TypeVar("_T")


def _pages(trials: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """``trials`` in lists of ``size`` (the last one shorter)."""
    it = iter(trials)
    while page := list(itertools.islice(it, size)):
        yield page


def check_poll(poll_interval: float) -> None:
    """Refuse a supervisor poll interval that is not a positive number of seconds.

    Raises:
        ConfigError: naming ``--poll``.
    """
    if not (math.isfinite(poll_interval) and poll_interval > 0):
        raise ConfigError(f"--poll must be a positive number of seconds, got {poll_interval}")


class Supervisor:
    """Drives one experiment to completion.

    Args:
        store: The store holding the experiment.
        experiment: The experiment (as read from the store).
        poll_interval: Longest sleep between steps.
        reap_interval: Seconds between reaps of lost trials (default: a quarter of the
            experiment's lease timeout).
        wake: Condition notified after trials are queued (in-process workers wait on it);
            also waited on, so workers can wake the supervisor when a trial ends.
        results_dir: The results folder of this process's workers (``hyperdock run``):
            the checkpoints ``--keep-checkpoints`` does not keep are deleted there too
            when the experiment is done.
    """

    def __init__(
        self,
        store: Store,
        experiment: Experiment,
        *,
        poll_interval: float = 1.0,
        reap_interval: float | None = None,
        wake: threading.Condition | None = None,
        results_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        check_poll(poll_interval)
        self.results_dir = Path(results_dir).absolute() if results_dir is not None else None
        self.store = store
        self.experiment = experiment
        self.poll_interval = poll_interval
        self.reap_interval = (
            reap_interval if reap_interval is not None else max(experiment.lease_timeout / 4, 0.1)
        )
        self.wake = wake or threading.Condition()
        space = Space.from_json(experiment.space)
        self.objectives = Objectives.from_meta(experiment.meta)
        self.sampler: Sampler = make_sampler(
            experiment.sampler, space, experiment.seed, self.objectives
        )
        self.pruner = make_pruner(experiment.meta.get("pruner"))
        #: The optuna view of the experiment (adaptive samplers and pruners).
        self.mirror: StudyMirror | None = getattr(self.sampler, "mirror", None)
        if self.mirror is None and self.pruner is not None:
            from hyperdock.study import StudyMirror  # numpy: only a supervisor's import

            self.mirror = StudyMirror(space, self.objectives)
        if self.mirror is not None and self.pruner is not None:
            self.mirror.track_curves()
        self.stop_reason: str | None = None
        #: Trials queued ahead of the workers, and the level that triggers a refill
        #: (non-adaptive samplers: sized to the claim rate, see :meth:`_pace`).
        self.queue_ahead = QUEUE_AHEAD
        self.low_watermark = QUEUE_AHEAD // 2
        #: The most the margin may grow to (0: queue nothing).
        self.max_queue_ahead = MAX_QUEUE_AHEAD
        #: Trials per second leaving the queue, measured by :meth:`_pace` from
        #: (time, trials taken so far) samples.
        self.claim_rate = 0.0
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._moved = False
        self._backoff = MIN_STEP_INTERVAL
        self._held_at = -math.inf
        self._queued = 0
        self._last_reap = 0.0
        self._exhausted = False
        self._kick = threading.Event()
        #: A finite space's points (None: not finite): its trials get distinct points,
        #: and the experiment ends once every point was tried.
        self._finite = FinitePoints.of(space)
        # Counts at the last look at the failure streak / the tried points.
        self._failed_seen = -1
        self._tried_seen = -1

    @property
    def budget(self) -> int | None:
        """Trials to create at most: ``max_trials``, capped by the grid's size or, on a
        finite space, its number of distinct points."""
        if self.experiment.sampler == "grid":
            size: int | None = self.sampler.size()
        else:
            size = None if self._finite is None else self._finite.size
        limits = [n for n in (self.experiment.max_trials, size) if n is not None]
        return min(limits) if limits else None

    def notify(self) -> None:
        """Wake the supervisor now (a trial ended). Thread-safe."""
        self._kick.set()

    def step(self) -> bool:
        """Reap lost trials, top up the queue, close the experiment when done.

        Returns:
            True when the experiment is over (done or cancelled).
        """
        now = time.monotonic()
        if now - self._last_reap >= self.reap_interval:
            self._last_reap = now
            for trial in reap_unless_recovering(self.store):
                log.warning("trial %d lost its worker; now %s", trial.id, trial.state)
        exp = self.experiment = self.store.get_experiment(self.experiment.id)
        if exp.state is not ExperimentState.RUNNING:
            return True
        counts = self.store.count_trials(exp.id)
        streak = self._failure_streak(exp, counts)
        if streak:
            self._fail(exp, streak)
            return True
        if self.pruner is not None and counts[TrialState.RUNNING]:
            self._prune()
        if not self._exhausted and (reason := self._stop_condition(exp, counts)):
            self._exhausted = True
            self.stop_reason = reason
            log.info("experiment %s: %s; no new trials", exp.name, reason)
            for trial in self.store.list_trials(exp.id, states=[TrialState.QUEUED]):
                self.store.cancel_trial(trial.id)
            counts = self.store.count_trials(exp.id)
        created = sum(counts.values())
        budget = self.budget
        remaining = None if budget is None else budget - created
        queued = counts[TrialState.QUEUED]
        self._pace(created - queued, queued)
        if self.sampler.adaptive:
            # Suggest as late as possible (each suggestion learns from every result so
            # far): queue only what idle worker slots will take now.
            ahead, low = self._free_slots(), 0
        else:
            ahead, low = self.queue_ahead, self.low_watermark
        if not self._exhausted and queued <= low and remaining != 0 and ahead > queued:
            want = ahead - queued
            if remaining is not None:
                want = min(want, remaining)
            added = self._queue(created, want)
            counts[TrialState.QUEUED] += added
            created += added
        self._queued = counts[TrialState.QUEUED]
        _, active = experiment_done_counts(counts)
        spent = self._exhausted or (budget is not None and created >= budget)
        if spent and active == 0:
            self.store.set_experiment_state(exp.id, ExperimentState.DONE)
            self.experiment = self.store.get_experiment(exp.id)
            log.info("experiment %s is done: %d trials", exp.name, created)
            try:
                prune_checkpoints(self.store, self.experiment, results_dir=self.results_dir)
            except HyperdockError as exc:  # the experiment is done all the same
                log.warning("experiment %s: checkpoints not pruned: %s", exp.name, exc)
            return True
        return False

    def _pace(self, taken: int, queued: int) -> None:
        """Measure the claim rate from ``taken`` (trials that left the queue so far,
        over the last :data:`RATE_WINDOW` seconds) and size the queue's margin to it:
        :data:`QUEUE_SECONDS` of claims, from :data:`QUEUE_AHEAD` to
        :attr:`max_queue_ahead` trials, refilled at half.

        Workers that find the queue empty wait before they claim again, so while they
        starve the measured rate understates what they would take. A queue found empty
        after claims therefore sizes the margin to twice the rate of the last interval
        (a lower bound: the queue ran out within it), at least doubled; and the margin
        shrinks only after :data:`MARGIN_HOLD` seconds without a claim.
        """
        now = time.monotonic()
        samples = self._samples
        last = samples[-1] if samples else None
        moved = last is not None and taken > last[1]
        samples.append((now, taken))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        then, before = samples[0]
        self.claim_rate = max(taken - before, 0) / (now - then) if now > then else 0.0
        ahead = math.ceil(self.claim_rate * QUEUE_SECONDS)
        if moved:
            assert last is not None
            if queued == 0 and now > last[0]:
                burst = (taken - last[1]) / (now - last[0])
                ahead = max(ahead, 2 * self.queue_ahead, math.ceil(2 * burst * QUEUE_SECONDS))
            self._held_at = now
            self._backoff = MIN_STEP_INTERVAL
        else:  # nothing claimed since the last look: poll less and less often
            self._backoff = min(self._backoff * 2, self.poll_interval)
        if now - self._held_at < MARGIN_HOLD:
            ahead = max(ahead, self.queue_ahead)
        self.queue_ahead = min(max(ahead, QUEUE_AHEAD), self.max_queue_ahead)
        self.low_watermark = self.queue_ahead // 2
        self._moved = moved

    def next_wait(self) -> float:
        """Seconds to wait before the next step: adaptive polling. While trials are
        being claimed, half the time the queue takes to drain to the refill level at
        the measured rate (at least :data:`MIN_STEP_INTERVAL`, at most
        :data:`ACTIVE_POLL` and ``poll_interval``: the rate may be underestimated while
        workers start); otherwise a backoff from :data:`MIN_STEP_INTERVAL` that
        doubles at every step that saw no claim, up to ``poll_interval``."""
        if self.sampler.adaptive:
            return self.poll_interval
        if self._moved and self.claim_rate > 0:
            drain = max(self._queued - self.low_watermark, 0) / self.claim_rate
            return min(self.poll_interval, ACTIVE_POLL, max(drain / 2, MIN_STEP_INTERVAL))
        return self._backoff

    def _free_slots(self) -> int:
        """Worker slots that are idle now and that no other experiment's queued trial
        will take first (at least 1: workers may not be up yet).

        Workers claim by priority, then age: the trials other running experiments of
        the same or a higher priority have queued already go first, so supervisors that
        share workers do not queue more adaptive suggestions than the slots can take
        (each waiting suggestion is one made without the results that come in first).
        """
        workers = self.store.list_workers(max_age=LIVE_WORKER_AGE)
        free = sum(w.parallelism - len(w.running) for w in workers)
        if free > 1:
            me = self.experiment
            for exp in self.store.list_experiments():
                if (
                    exp.id != me.id
                    and exp.state is ExperimentState.RUNNING
                    and exp.priority >= me.priority
                ):
                    free -= self.store.count_trials(exp.id)[TrialState.QUEUED]
        return max(1, free)

    def _failure_streak(self, exp: Experiment, counts: dict[TrialState, int]) -> list[Trial]:
        """The last ``--max-failures`` trials to end (by end time) when they all failed,
        else ``[]``. Cancelled trials neither break nor extend a streak; only trials
        numbered from ``meta["failures_from"]`` (set when a failed experiment is
        resumed) count."""
        limit = int(exp.meta.get("max_failures", DEFAULT_MAX_FAILURES))
        failed = counts[TrialState.FAILED]
        if limit <= 0 or failed < limit or failed == self._failed_seen:
            return []
        self._failed_seen = failed  # a streak can only start when a trial fails
        since = int(exp.meta.get("failures_from", 0))
        ended = [
            t for t in self.store.list_trials(exp.id, states=TRIED_STATES) if t.number >= since
        ]
        ended.sort(key=lambda t: (t.finished_at or 0.0, t.id))
        streak = ended[-limit:]
        if len(streak) == limit and all(t.state is TrialState.FAILED for t in streak):
            return streak
        return []

    def _fail(self, exp: Experiment, streak: list[Trial]) -> None:
        """Stop the experiment as failed: record why, cancel its queued trials, stop its
        running ones."""
        first = streak[0]
        reason = f"{len(streak)} trials in a row failed (--max-failures {len(streak)})"
        first_error = {
            "trial": first.id,
            "number": first.number,
            "exit_code": first.result.get("exit_code"),
            "error": first.error or "(no error message)",
        }
        # The reason first: whoever sees the state "failed" finds it.
        self.store.update_experiment(
            exp.id, meta={"stop_reason": reason, "first_error": first_error}
        )
        self.store.set_experiment_state(exp.id, ExperimentState.FAILED)
        self.experiment = self.store.get_experiment(exp.id)
        self.stop_reason = reason
        log.error(
            "experiment %s stopped as failed: %s; queued trials cancelled, running ones "
            "stopped. First error (trial %d): %s",
            exp.name,
            reason,
            first.id,
            (str(first_error["error"] or "").splitlines() or [""])[0],
        )

    def _stop_condition(self, exp: Experiment, counts: dict[TrialState, int]) -> str | None:
        """Why no more trials should start (``--max-time``, ``--target-loss``, every
        point of a finite space tried), or None."""
        max_time = exp.meta.get("max_time")
        if max_time is not None and time.time() - exp.created_at >= float(max_time):
            return f"--max-time {float(max_time):g} s reached"
        target = exp.meta.get("target_loss")
        if target is not None and counts[TrialState.COMPLETED] and not self.objectives.multi:
            best = self.store.best_trial(exp.id, maximize=self.objectives.maximize)
            if best is not None and best.loss is not None:
                reached = (
                    best.loss >= float(target)
                    if self.objectives.maximize
                    else best.loss <= float(target)
                )
                if reached:
                    return f"--target-loss {float(target):g} reached (trial {best.id})"
        if self._finite is not None:
            tried = sum(counts[s] for s in TRIED_STATES)
            if tried >= self._finite.size and tried != self._tried_seen:
                self._tried_seen = tried
                seen = {
                    dumps(t.params) for t in self.store.list_trials(exp.id, states=TRIED_STATES)
                }
                if self._finite.all_tried(seen):
                    n = self._finite.size
                    return f"all {n} point{'s' if n != 1 else ''} of the space evaluated"
        return None

    def sync_mirror(self) -> None:
        """Copy the trials that may have changed since the last sync (on the first,
        every trial, streamed a page at a time) and their intermediate losses into
        :attr:`mirror`."""
        mirror = self.mirror
        if mirror is None:
            return
        # Only the columns the mirror reads (a resumed supervisor reads every trial).
        rows = self.store.iter_trial_summaries(
            self.experiment.id,
            since_id=mirror.settled_below(),
            with_result=mirror.objectives.multi,
        )
        for trials in _pages(rows, SYNC_PAGE):
            wanted = [t.id for t in trials if mirror.wants_progress(t)]
            progress = (
                self.store.list_progress(self.experiment.id, trial_ids=wanted) if wanted else {}
            )
            mirror.sync(trials, progress)

    def _prune(self) -> None:
        assert self.mirror is not None and self.pruner is not None
        self.sync_mirror()
        for trial_id in self.mirror.prune(self.pruner):
            if self.store.prune_trial(trial_id):
                log.info("trial %d pruned: its intermediate losses are poor", trial_id)

    def _queue(self, first: int, n: int) -> int:
        adaptive = self.sampler.adaptive
        if adaptive:  # the sampler reads the mirror, kept in step here
            self.sync_mirror()
        # On a finite space no point gets a second trial while another has none (the
        # grid sampler never repeats one): the point of a cancelled trial is free again.
        finite = self._finite if self.experiment.sampler != "grid" else None
        taken: set[str] = set()
        if finite is not None:
            trials = self.store.iter_trials(self.experiment.id)
            taken = {dumps(t.params) for t in trials if t.state is not TrialState.CANCELLED}
        batch: list[dict[str, Any]] = []
        added = 0
        for number in range(first, first + n):
            if finite is not None and len(taken) >= finite.size and finite.all_tried(taken):
                break  # every point has a trial: the stop condition ends the experiment
            params = self.sampler.suggest(number, [])
            if params is None:
                self._exhausted = True
                break
            if finite is not None:
                key = dumps(params)
                if key in taken:
                    rng = random.Random(f"hyperdock:{self.experiment.seed}:{number}:unevaluated")
                    free = finite.free_point(rng, taken)
                    if free is None:  # every point has a trial (the space repeats points)
                        break
                    params, key = free, dumps(free)
                    if adaptive and self.mirror is not None:
                        self.mirror.replace(number, params)
                    log.debug("trial %d: a point with a trial already; %s instead", number, key)
                taken.add(key)
            batch.append(params)
            if len(batch) >= ADD_BATCH:  # workers get the first ones while we go on
                added += self._add(batch, first + added)
                batch = []
        return added + self._add(batch, first + added)

    def _add(self, batch: list[dict[str, Any]], first: int) -> int:
        """Queue ``batch`` (numbered from ``first``) in one store call; wake the
        in-process workers."""
        if batch:
            self.store.add_trials(self.experiment.id, batch, first_number=first)
            with self.wake:
                self.wake.notify_all()
        return len(batch)

    def progress(self) -> Progress:
        """Where the experiment stands now."""
        exp = self.experiment
        return Progress(
            budget=self.budget,
            counts=self.store.count_trials(exp.id),
            best=self.store.best_trial(exp.id, maximize=self.objectives.maximize),
            state=exp.state,
        )

    def run(self, stop: threading.Event | None = None) -> Experiment:
        """Step until the experiment is over or ``stop`` is set; return it."""
        stop = stop or threading.Event()
        backoff = Backoff()
        while not stop.is_set():
            try:
                if self.step():
                    break
                backoff.reset()
            except StoreConnectionError as exc:
                note_failure()
                delay = backoff.next()
                log.warning("the store is unreachable (%s); retrying in %.1f s", exc, delay)
                stop.wait(delay)
                continue
            self._kick.wait(self.next_wait())
            # Trials ending in a burst wake us once, not once each.
            stop.wait(MIN_STEP_INTERVAL)
            self._kick.clear()
        return self.experiment


def _validate(space: Space, sampler: str, meta: dict[str, Any]) -> None:
    """Refuse settings that cannot work together, before anything is stored."""
    objectives = Objectives.from_meta(meta)
    spec = PrunerSpec.parse(meta.get("pruner"))  # validates the spec
    meta["pruner"] = str(spec)  # stored normalised: a restart builds the same pruner
    if spec.name != "none" and objectives.multi:
        raise ConfigError("--pruner works with one objective; drop it or the other objectives")
    make_sampler(sampler, space, 0, objectives)  # validates the space for the sampler


#: Trials a new experiment runs when no budget is given (a grid runs whole).
DEFAULT_MAX_TRIALS = 50
#: Defaults of the settings a new experiment gets when they are not given.
DEFAULT_MAX_RETRIES = 5
DEFAULT_LEASE_TIMEOUT = 30.0
#: How many ``-2``, ``-3`` … suffixes a default name tries before giving up.
_NAME_ATTEMPTS = 1000


def budget_of(exp: Experiment) -> int | None:
    """The trials experiment ``exp`` will create at most, as its supervisor counts them
    (``max_trials`` capped by the grid or the finite space's size), for displays."""
    try:
        space = Space.from_json(exp.space)
    except SpaceError:  # not a space this version can read: say what is stored
        return exp.max_trials
    size: int | None = None
    if exp.sampler == "grid":
        size = space.grid_size()
    elif (finite := FinitePoints.of(space)) is not None:
        size = finite.size
    limits = [n for n in (exp.max_trials, size) if n is not None]
    return min(limits) if limits else None


def default_name(base: str | None) -> str:
    """``<base>-<local time>``: the start of a new experiment's default name (the store
    makes it unique: see :func:`open_experiment`)."""
    # Short and printable, so the name passes validate_name() with a suffix added.
    stem = "".join(c for c in (base or "") if c != "/" and unicodedata.category(c) != "Cc")
    stem = stem[:60] or "experiment"
    return f"{stem}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _check_settings(exp: Experiment, given: dict[str, Any], target: Target | None) -> None:
    """Refuse given settings other than resumed experiment ``exp`` was created with: its
    stored ones drive it, so other ones would be silently ignored."""
    clashes = []
    stored_meta = exp.meta
    if target is not None:
        if (target.image, target.command) != (exp.target.image, exp.target.command):
            raise ConfigError(
                f"experiment {exp.name!r} exists with another target "
                f"({exp.target.describe()}); pick a new --name, or leave the target out "
                "to resume it"
            )
        if target.timeout is not None and target.timeout != exp.target.timeout:
            had = "none" if exp.target.timeout is None else f"{exp.target.timeout:g}"
            clashes.append(f"--timeout {target.timeout:g} (it has {had})")
        if target.env and target.env != exp.target.env:
            clashes.append("--target-env (it has other values)")
    stored = {
        "sampler": exp.sampler,
        "seed": exp.seed,
        "max_retries": exp.max_retries,
        "lease_timeout": exp.lease_timeout,
    }
    flags = {"max_retries": "--retries", "lease_timeout": "--lease-timeout"}
    for key, have in stored.items():
        want = given.get(key)
        if want is not None and want != have:
            flag = flags.get(key, f"--{key}")
            clashes.append(f"{flag} {want} (it has {have})")
    meta = given.get("meta") or {}
    if "pruner" in meta:
        want_p, have_p = (str(PrunerSpec.parse(m.get("pruner"))) for m in (meta, stored_meta))
        if want_p != have_p:
            clashes.append(f"--pruner {want_p} (it has {have_p})")
    if "objectives" in meta:
        want_o, have_o = (Objectives.from_meta(m) for m in (meta, stored_meta))
        if want_o != have_o:
            clashes.append(f"objectives {want_o.describe()} (it has {have_o.describe()})")
    if "resources" in meta:
        want_r, have_r = (Resources.from_meta(m) for m in (meta, stored_meta))
        if want_r != have_r:
            clashes.append(
                f"resources {want_r.describe() or 'none'} (it has {have_r.describe() or 'none'})"
            )
    for key, option in (("max_time", "--max-time"), ("target_loss", "--target-loss")):
        if key in meta and meta[key] != stored_meta.get(key):
            old = stored_meta.get(key)
            clashes.append(f"{option} {meta[key]:g} (it has {'none' if old is None else old})")
    if clashes:
        raise ConfigError(
            f"experiment {exp.name!r} exists and was created with other settings: "
            f"{'; '.join(clashes)}. Leave them out to resume it with its own, or pick a "
            "new --name"
        )


#: Largest whole number every store keeps in an integer column (PostgreSQL INTEGER).
MAX_STORED_INT = 2**31 - 1
#: Seeds are kept in a 64-bit column.
SEED_RANGE = (-(2**63), 2**63 - 1)
#: Longest experiment name: it is part of every trial folder's name.
MAX_NAME_LENGTH = 100


def validate_name(name: str) -> None:
    """Refuse an experiment name that cannot name a folder or a dashboard page.

    Raises:
        ConfigError: empty, longer than :data:`MAX_NAME_LENGTH` characters, or holding
            ``/`` or a control character.
    """
    shown = name if len(name) <= 40 else f"{name[:40]}..."
    if not name.strip():
        raise ConfigError("the experiment name is empty; give --name a few letters")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"the experiment name {shown!r} has {len(name)} characters; use at most "
            f"{MAX_NAME_LENGTH} (it is part of every trial folder's name)"
        )
    bad = [c for c in name if c == "/" or unicodedata.category(c) == "Cc"]
    if bad:
        raise ConfigError(
            f"the experiment name {shown!r} holds {bad[0]!r}; names may not contain '/' "
            f"or control characters"
        )


def _whole(flag: str, value: int | None, low: int, high: int = MAX_STORED_INT) -> None:
    if value is not None and not low <= value <= high:
        raise ConfigError(f"{flag} must be a whole number from {low} to {high}, got {value}")


def _positive(flag: str, value: float | None, what: str = "a positive number of seconds") -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag} must be {what}, got {value}")


def _validate_numbers(
    max_trials: int | None,
    max_retries: int | None,
    lease_timeout: float | None,
    meta: dict[str, Any],
    *,
    seed: int | None = None,
    priority: int | None = None,
    target: Target | None = None,
) -> None:
    """Refuse numbers no store can keep or no loop can use (NaN, infinity, zero
    intervals), naming the option, before anything is stored."""
    _whole("--max-trials", max_trials, 1)
    _whole("--retries", max_retries, 0)
    _whole("--priority", priority, -MAX_STORED_INT)
    _whole("--seed", seed, *SEED_RANGE)
    _positive("--lease-timeout", lease_timeout)
    _positive("--max-time", meta.get("max_time"))
    if target is not None:
        _positive("--timeout", target.timeout)
    target_loss = meta.get("target_loss")
    if target_loss is not None and not math.isfinite(target_loss):
        raise ConfigError(f"--target-loss must be a finite number, got {target_loss}")
    max_failures = meta.get("max_failures")
    if max_failures is not None and max_failures < 0:
        raise ConfigError(f"--max-failures must be 0 (never stop) or more, got {max_failures}")
    _whole("--max-failures", max_failures, 0)


def open_experiment(
    store: Store,
    name: str | None,
    *,
    space: Space | None = None,
    target: Target | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    max_trials: int | None = None,
    max_retries: int | None = None,
    priority: int | None = None,
    lease_timeout: float | None = None,
    meta: dict[str, Any] | None = None,
    name_base: str | None = None,
) -> tuple[Experiment, bool]:
    """Create experiment ``name``, or resume it if it exists.

    Every setting is optional: ``None`` (or a key absent from ``meta``) means "not
    given". A new experiment gets the defaults for what is not given (sampler: grid for a
    grid-only space, else tpe; budget: the whole grid, else :data:`DEFAULT_MAX_TRIALS`;
    a random seed; :data:`DEFAULT_MAX_RETRIES` retries; minimise; no pruner). A resumed
    experiment keeps everything it was stored with: only ``max_trials`` (the budget,
    which may grow or shrink; a finished experiment with budget left runs again),
    ``priority`` and ``meta["max_failures"]`` change it; any other given setting must
    equal the stored one. A failed experiment (``max_failures`` trials in a row failed)
    is reopened, its earlier failures no longer counting.

    Args:
        store: Where the experiment lives.
        name: Its name; ``None`` creates a new one named ``<name_base>-<time>``, made
            unique by the store (``-2``, ``-3`` … on a conflict, race-free across
            processes).
        space: The search space (required to create).
        target: What a trial runs (required to create). On resume its image and
            command must match; its timeout and env only when set.
        sampler: Sampler name.
        seed: Sampler seed.
        max_trials: Budget in trials.
        max_retries: Attempts a failing trial gets again.
        priority: Claim priority against other experiments.
        lease_timeout: Seconds without a heartbeat before a running trial is retried.
        meta: Settings kept in the experiment's ``meta``: ``objectives``, ``pruner``,
            ``max_time``, ``target_loss``, ``max_failures`` (only those given).
        name_base: Start of the default name when ``name`` is None.

    Returns:
        The experiment and whether it was created now.

    Raises:
        ConfigError: a setting is invalid, or differs from the stored one of the
            experiment being resumed, or it does not exist and no space/target was given.
    """
    meta = dict(meta or {})
    _validate_numbers(
        max_trials, max_retries, lease_timeout, meta, seed=seed, priority=priority, target=target
    )
    if name is None or not store_has(store, name):
        if name is not None:
            validate_name(name)  # only new ones: an existing experiment keeps its name
        if space is None or target is None:
            what = f"experiment {name!r} does not exist yet" if name else "no --name given"
            raise ConfigError(
                f"{what}: give a config (space) and a target (--image or --command) to create one"
            )
        sampler = sampler or default_sampler(space)
        meta.setdefault("objectives", Objectives().to_meta())
        meta.setdefault("pruner", "none")
        meta.setdefault("max_failures", DEFAULT_MAX_FAILURES)
        _validate(space, sampler, meta)
        settings: dict[str, Any] = {
            "space": space.to_json(),
            "target": target,
            "sampler": sampler,
            "seed": seed if seed is not None else random.randrange(2**31),
            "max_trials": max_trials
            if max_trials is not None
            else (None if sampler == "grid" else DEFAULT_MAX_TRIALS),
            "max_retries": DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            "priority": priority or 0,
            "lease_timeout": DEFAULT_LEASE_TIMEOUT if lease_timeout is None else lease_timeout,
            "meta": meta,
        }
        if name is not None:
            try:
                return store.create_experiment(name, **settings), True
            except ExperimentExists:
                pass  # another process created it just now: resume it
        else:
            base = default_name(name_base)
            for n in range(1, _NAME_ATTEMPTS + 1):
                try:
                    candidate = base if n == 1 else f"{base}-{n}"
                    return store.create_experiment(candidate, **settings), True
                except ExperimentExists:
                    continue
            raise ConfigError(f"no free name starting {base!r}: give --name")
    assert name is not None
    exp = store.get_experiment(name)
    if space is not None and dumps(space.to_json()) != dumps(exp.space):
        raise ConfigError(
            f"experiment {name!r} exists with a different search space; pick a new --name "
            "to start a new search (or leave --name out for a fresh one)"
        )
    given = {
        "sampler": sampler,
        "seed": seed,
        "max_retries": max_retries,
        "lease_timeout": lease_timeout,
        "meta": meta,
    }
    _check_settings(exp, given, target)
    changes: dict[str, Any] = {}
    if max_trials is not None and max_trials != exp.max_trials:
        changes["max_trials"] = max_trials
    if priority is not None and priority != exp.priority:
        changes["priority"] = priority
    if "max_failures" in meta and meta["max_failures"] != exp.meta.get("max_failures"):
        changes["meta"] = {"max_failures": meta["max_failures"]}
    if changes:
        exp = store.update_experiment(exp.id, **changes)
    if exp.state is ExperimentState.FAILED:
        # Resumed after a runaway failure (the target was fixed, presumably): the
        # failures before now no longer count towards --max-failures.
        created = sum(store.count_trials(exp.id).values())
        exp = store.update_experiment(
            exp.id, meta={"failures_from": created, "stop_reason": None, "first_error": None}
        )
        store.set_experiment_state(exp.id, ExperimentState.RUNNING)
        exp = store.get_experiment(exp.id)
    budget = changes.get("max_trials")
    done = exp.state is ExperimentState.DONE
    if budget is not None and done and sum(store.count_trials(exp.id).values()) < budget:
        store.set_experiment_state(exp.id, ExperimentState.RUNNING)
        exp = store.get_experiment(exp.id)
    return exp, False


def store_has(store: Store, name: str) -> bool:
    """Whether experiment ``name`` exists in ``store``."""
    try:
        store.get_experiment(name)
    except ExperimentNotFound:
        return False
    return True
