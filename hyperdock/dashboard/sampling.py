"""The trials an experiment's plots show when it has too many to send them all.

Up to :data:`MAX_PLOT_TRIALS` trials every trial is sent. Beyond, the plots get a bounded,
deterministic sample read through indexed store queries only (its cost does not grow
with the experiment):

* the best :data:`BEST_TRIALS` completed trials by loss (the first objective), so the
  history's best-so-far line, the parallel coordinates' best lines and the slices'
  minima are exact;
* the newest :data:`RECENT_TRIALS` trials and every running one (what is happening now);
* one trial per stratum of trial numbers, at most :data:`STRATA` strata, for the shape of
  the whole run.

The strata are blocks of ``2**level`` consecutive numbers, ``level`` the smallest that
needs at most :data:`STRATA` blocks. The number picked in a block is fixed by a hash of
(level, block), and nested: a block's pick is one of its two halves' picks. So as the
experiment grows, the picks of full blocks never change, and a level up keeps half of
them: :class:`PlotCache` keeps the finished ones (finished trials never change) and
reads only the numbers it has not seen.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from hyperdock.storage.base import Store
from hyperdock.trial import Experiment, Trial, TrialState

#: Experiments with at most this many trials send every trial.
MAX_PLOT_TRIALS = 2000
#: Best completed trials always in the sample.
BEST_TRIALS = 200
#: Newest trials always in the sample.
RECENT_TRIALS = 200
#: Strata of trial numbers sampled at most (one trial each).
STRATA = 1024

_MASK = (1 << 64) - 1


def _mix(level: int, block: int) -> int:
    """splitmix64 of (level, block): the same on every machine and run."""
    z = (level * 0x9E3779B97F4A7C15 + block * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


@functools.lru_cache(maxsize=1 << 16)
def stratum_pick(block: int, level: int) -> int:
    """The trial number picked in block ``block`` of ``2**level`` numbers; nested:
    ``stratum_pick(b, k)`` is ``stratum_pick(2*b + bit, k - 1)`` for a hashed ``bit``."""
    index = block
    for lvl in range(level, 0, -1):
        index = 2 * index + (_mix(lvl, index) & 1)
    return index


def strata_level(total: int, strata: int = STRATA) -> int:
    """The smallest level whose blocks of ``2**level`` numbers cover ``total`` numbers in
    at most ``strata`` blocks."""
    level = 0
    while (total + (1 << level) - 1) >> level > strata:
        level += 1
    return level


def stratified_numbers(total: int, strata: int = STRATA) -> list[int]:
    """One trial number per stratum of ``range(total)``, ascending (picks past the end
    of the last, partial block are left out until trials fill it)."""
    level = strata_level(total, strata)
    blocks = (total + (1 << level) - 1) >> level
    picks = (stratum_pick(b, level) for b in range(blocks))
    return [n for n in picks if n < total]


@dataclass(frozen=True)
class PlotSample:
    """The trials an experiment's plots get.

    Attributes:
        trials: The trials, in number order.
        total: How many trials the experiment has.
        sampled: True when ``trials`` is a sample (else it is every trial).
        best_ids: Ids of the best completed trials (all in ``trials``); empty when not
            sampled.
    """

    trials: list[Trial]
    total: int
    sampled: bool
    best_ids: tuple[int, ...] = ()


class PlotCache:
    """Finished sampled trials per experiment, so that a poll reads only what changed.

    Thread-safe; one per dashboard (keyed by experiment id and creation time, so a
    deleted and re-created experiment starts afresh).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished: dict[tuple[int, float], dict[int, Trial]] = {}

    def strata(self, store: Store, exp: Experiment, numbers: list[int]) -> list[Trial]:
        """The trials with these numbers: finished ones from the cache, others read."""
        key = (exp.id, exp.created_at)
        with self._lock:
            known = dict(self._finished.get(key, {}))
        missing = [n for n in numbers if n not in known]
        read = store.trials_by_number(exp.id, missing) if missing else []
        wanted = set(numbers)
        kept = {n: t for n, t in known.items() if n in wanted}
        kept.update((t.number, t) for t in read if t.state.finished)
        with self._lock:
            self._finished[key] = kept
        found = {**kept, **{t.number: t for t in read}}
        return [found[n] for n in numbers if n in found]

    def forget(self, keep: Iterable[tuple[int, float]]) -> None:
        """Drop the experiments not in ``keep`` (deleted ones)."""
        alive = set(keep)
        with self._lock:
            for key in [k for k in self._finished if k not in alive]:
                del self._finished[key]


def plot_sample(
    store: Store,
    exp: Experiment,
    counts: dict[TrialState, int],
    *,
    maximize: bool,
    cache: PlotCache | None = None,
    limit: int = MAX_PLOT_TRIALS,
    running: list[Trial] | None = None,
) -> PlotSample:
    """The trials to plot for ``exp``: every trial when it has at most ``limit``, else
    the sample the module describes.

    Args:
        store: The store.
        exp: The experiment.
        counts: Its :meth:`~hyperdock.storage.base.Store.count_trials`.
        maximize: Whether a higher loss is better (orders the best trials).
        cache: Keeps finished sampled trials between calls.
        limit: Largest experiment sent whole.
        running: Its running trials, when the caller read them already.
    """
    total = sum(counts.values())
    if total <= limit:
        return PlotSample(store.list_trials(exp.id), total, False)
    best = store.best_trials(exp.id, BEST_TRIALS, maximize=maximize)
    recent = store.list_trials_page(exp.id, limit=RECENT_TRIALS)
    if running is None:
        running = (
            store.list_trials(exp.id, states=[TrialState.RUNNING])
            if counts[TrialState.RUNNING]
            else []
        )
    numbers = stratified_numbers(total)
    strata = (cache or PlotCache()).strata(store, exp, numbers)
    by_id: dict[int, Trial] = {}
    for t in (*strata, *best, *running, *recent):
        by_id[t.id] = t
    trials = sorted(by_id.values(), key=lambda t: (t.number, t.id))
    return PlotSample(trials, total, True, tuple(t.id for t in best))
