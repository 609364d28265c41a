"""The compact trial history adaptive samplers learn from, and the bounded window of it
each suggestion sees.

:class:`TrialHistory` keeps, per trial number, only what samplers read: the state, the
objective values, the parameters in optuna's internal form (one float column per
distribution label, NaN where a conditional parameter is absent), the last
intermediate loss (pruned trials are ranked by it), and the few system attributes a
generational sampler (CMA-ES, NSGA-II, QMC) wrote. Numpy arrays, no trial objects: a
100,000-trial history with ten parameters takes about 12 MB.

Each suggestion builds a throwaway optuna study from a *window* of the history
(:meth:`TrialHistory.window`), so its cost does not grow with the experiment:

* ``tpe``: up to :data:`TPE_WINDOW` finished trials: the best :data:`TPE_BEST` completed
  ones, then one trial drawn from each of ``TPE_WINDOW - TPE_BEST`` equal strata of the
  others in trial-number order (early, middle and recent trials alike). TPE's "good"
  group (the best ``min(25, 10%)``) is thus exactly the full history's; the "bad"
  density ``g(x)`` is estimated from the sample;
* ``gp``: the same with :data:`GP_WINDOW` and :data:`GP_BEST` (the GP is cubic in its
  points);
* ``cmaes``: the best :data:`CMAES_BEST` completed trials and the trials of the recent
  generations (those carrying CMA-ES's attributes): CMA-ES tells a generation once, so
  nothing older is needed;
* ``nsga2`` and ``qmc``: every finished trial (not bounded);
* every sampler: all pending (queued or running) trials, as optuna's constant liar
  needs them.

Below the window size every finished trial is in it (the suggestion is the same as with
the whole history). The strata's draws come from the suggestion's seed: the same store
and seed give the same window and the same suggestion.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

#: TPE's window: finished trials a suggestion sees at most (plus the pending ones).
TPE_WINDOW = 1000
#: ... of which the best completed trials.
TPE_BEST = 200
#: The GP's window and its best trials.
GP_WINDOW = 128
GP_BEST = 32
#: CMA-ES: best completed trials besides its recent generations.
CMAES_BEST = 10
#: CMA-ES: generations whose attributes are kept (older ones have been told).
CMAES_GENERATIONS = 3

# State codes of the history's rows.
RUNNING, COMPLETE, PRUNED, FAIL, UNFIT = 0, 1, 2, 3, 4
STATE_NAMES = {RUNNING: "RUNNING", COMPLETE: "COMPLETE", PRUNED: "PRUNED", FAIL: "FAIL"}

_Ints = npt.NDArray[np.int64]
_EPOCH = datetime.datetime(2000, 1, 1)


def windows(kind: str) -> tuple[int, int] | None:
    """``(window, best)`` of a sampler kind (None: every finished trial)."""
    if kind == "tpe":
        return TPE_WINDOW, TPE_BEST
    if kind == "gp":
        return GP_WINDOW, GP_BEST
    return None


def external(dist: Any, value: float) -> Any:
    """``value`` (a history cell) as optuna's external value of ``dist``: an int for
    integer and categorical distributions (categorical choices are option indices)."""
    from optuna.distributions import FloatDistribution

    return float(value) if isinstance(dist, FloatDistribution) else int(value)


class TrialHistory:
    """Trials as arrays, one row per trial number (see the module docstring).

    Args:
        labels: The distribution labels (parameter columns).
        n_values: Objective values per trial.
        signs: Per objective, 1 to minimise, -1 to maximise.
    """

    def __init__(self, labels: Sequence[str], n_values: int, signs: Sequence[float]) -> None:
        self.labels = list(labels)
        self.signs = np.asarray(signs, dtype=np.float64)
        self.n = 0
        cap = 64
        self.number: _Ints = np.zeros(cap, np.int64)
        self.state = np.zeros(cap, np.int8)
        self.values = np.full((cap, n_values), np.nan)
        self.params = np.full((cap, len(self.labels)), np.nan)
        self.last_step = np.full(cap, -1, np.int64)
        self.last_value = np.full(cap, np.nan)
        self._row: _Ints = np.full(cap, -1, np.int64)  # trial number -> row
        #: System attributes samplers wrote, by trial number (generational samplers only).
        self.attrs: dict[int, dict[str, Any]] = {}
        #: The study's system attributes (QMC's sample counter, ...).
        self.study_attrs: dict[str, Any] = {}

    def nbytes(self) -> int:
        """Bytes held by the arrays (for tests and benchmarks)."""
        arrays = (self.number, self.state, self.values, self.params, self.last_step)
        return sum(a.nbytes for a in arrays) + self.last_value.nbytes + self._row.nbytes

    # rows -----------------------------------------------------------------------------
    def row(self, number: int) -> int | None:
        """The row of trial ``number`` (None: not recorded)."""
        if 0 <= number < len(self._row) and (r := self._row.item(number)) >= 0:
            return int(r)
        return None

    def add(self, number: int, internal: Mapping[str, Any] | None) -> int:
        """Record trial ``number`` as running with ``internal`` parameters (None: they
        do not fit the space); its row."""
        r = self.row(number)
        if r is None:
            r = self.n
            self._grow(r + 1, number + 1)
            self.n += 1
            self._row[number] = r
            self.number[r] = number
        self.state[r] = RUNNING if internal is not None else UNFIT
        self.set_params(r, internal or {})
        return r

    def set_params(self, r: int, internal: Mapping[str, Any]) -> None:
        """Row ``r`` gets ``internal`` parameters (the others absent)."""
        nan = math.nan  # one assignment of a whole row: per-cell numpy writes are slow
        self.params[r] = [float(internal.get(label, nan)) for label in self.labels]

    def internal(self, r: int) -> dict[str, float]:
        """Row ``r``'s parameters, internal form, absent ones left out."""
        return {
            label: float(v)
            for label, v in zip(self.labels, self.params[r], strict=True)
            if not math.isnan(v)
        }

    def _grow(self, rows: int, numbers: int) -> None:
        if rows > len(self.state):
            cap = max(rows, 2 * len(self.state))
            for name in ("number", "state", "values", "params", "last_step", "last_value"):
                old = getattr(self, name)
                fill = -1 if name == "last_step" else (np.nan if old.dtype.kind == "f" else 0)
                new = np.full((cap, *old.shape[1:]), fill, old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
        if numbers > len(self._row):
            new_row = np.full(max(numbers, 2 * len(self._row)), -1, np.int64)
            new_row[: len(self._row)] = self._row
            self._row = new_row

    # windows --------------------------------------------------------------------------
    def completed(self) -> int:
        """Completed trials (with finite values)."""
        return int(np.count_nonzero(self.state[: self.n] == COMPLETE))

    def best(self, k: int) -> _Ints:
        """Rows of the ``k`` best completed trials, best first (lowest number on ties).
        With several objectives, about ``k / m`` best by each (duplicates dropped)."""
        done = np.flatnonzero(self.state[: self.n] == COMPLETE)
        m = self.values.shape[1]
        if k <= 0 or len(done) == 0:
            return np.zeros(0, np.int64)
        picks = []
        for j in range(m):
            key = self.signs[j] * self.values[done, j]
            kj = min(len(done), math.ceil(k / m))
            if kj < len(done):  # a partial sort first: the full one is O(n log n)
                cut = np.partition(key, kj - 1)[kj - 1]
                keep = key <= cut
                sub, subkey = done[keep], key[keep]
            else:
                sub, subkey = done, key
            order = np.lexsort((self.number[sub], subkey))
            picks.append(sub[order][:kj])
        out: _Ints = np.concatenate(picks)
        if m > 1:
            _, first = np.unique(out, return_index=True)
            out = out[np.sort(first)]
        return out[:k]

    def window(self, kind: str, seed: int) -> _Ints:
        """Rows a ``kind`` suggestion seeded ``seed`` sees, in trial-number order (see
        the module docstring)."""
        st = self.state[: self.n]
        pending = np.flatnonzero(st == RUNNING)
        finished = np.flatnonzero((st == COMPLETE) | (st == PRUNED))
        if kind == "cmaes":
            recent = np.asarray(
                [r for num in self.attrs if (r := self.row(num)) is not None and st[r] != FAIL],
                dtype=np.int64,
            )
            rows = np.concatenate([self.best(CMAES_BEST), recent, pending])
        elif (sizes := windows(kind)) is None or len(finished) <= sizes[0]:
            rows = np.concatenate([finished, pending])
        else:
            size, k = sizes
            best = self.best(k)
            rest = np.setdiff1d(finished, best, assume_unique=True)
            rest = rest[np.argsort(self.number[rest], kind="stable")]
            slots = size - len(best)
            edges = np.linspace(0, len(rest), slots + 1).astype(np.int64)
            width = np.maximum(edges[1:] - edges[:-1], 1)
            rng = np.random.default_rng(seed)
            picks = edges[:-1] + (rng.random(slots) * width).astype(np.int64)
            rows = np.concatenate([best, rest[np.minimum(picks, len(rest) - 1)], pending])
        rows = np.unique(rows)
        return rows[np.argsort(self.number[rows], kind="stable")]

    def trim_attrs(self) -> None:
        """Forget CMA-ES attributes older than :data:`CMAES_GENERATIONS` generations
        (those generations have been told; the newest optimizer states stay)."""
        gens = [a["cma:generation"] for a in self.attrs.values() if "cma:generation" in a]
        if not gens:
            return
        oldest = max(gens) - CMAES_GENERATIONS
        holders = sorted(
            n for n, a in self.attrs.items() if any(k.startswith("cma:optimizer") for k in a)
        )
        keep_opt = set(holders[-CMAES_GENERATIONS:])
        for num in list(self.attrs):
            a = self.attrs[num]
            if a.get("cma:generation", oldest) < oldest and num not in keep_opt:
                del self.attrs[num]


class WindowStudy:
    """A throwaway optuna study holding some history rows (and the study attributes).

    Args:
        optuna: The optuna module.
        history: Where the rows come from.
        distributions: Distribution per label.
        directions: The study's directions.
        number_attr: System attribute holding a trial's store number.
    """

    def __init__(
        self,
        optuna: Any,
        history: TrialHistory,
        distributions: Mapping[str, Any],
        directions: Sequence[str],
        number_attr: str,
    ) -> None:
        self.optuna = optuna
        self.history = history
        self.dists = [distributions[label] for label in history.labels]
        self.number_attr = number_attr
        self.storage = _FastStorage(optuna)
        self.study = optuna.create_study(
            storage=self.storage,
            study_name="hyperdock",
            directions=list(directions),
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        for key, value in history.study_attrs.items():
            self.storage.set_study_system_attr(self.study._study_id, key, value)

    def add(self, rows: Sequence[int] | _Ints) -> None:
        """Put rows into the study, in order (optuna numbers them from 0)."""
        h, opt = self.history, self.optuna
        states = {code: opt.trial.TrialState[name] for code, name in STATE_NAMES.items()}
        ints = [not isinstance(d, opt.distributions.FloatDistribution) for d in self.dists]
        rows = np.asarray(rows, dtype=np.int64)
        labels = h.labels
        study_id = self.study._study_id
        # Whole columns to Python lists at once: per-cell numpy access is the slow part.
        cells = h.params[rows].tolist()
        values = h.values[rows].tolist()
        zipped = zip(
            h.number[rows].tolist(), h.state[rows].tolist(), cells, values,
            h.last_step[rows].tolist(), h.last_value[rows].tolist(), strict=True,
        )  # fmt: skip
        # Trials with the same parameters present share one distributions dict: TPE's
        # search-space grouping then reads each distinct one once (see samplers/tpe.py).
        shared: dict[tuple[int, ...], dict[str, Any]] = {}
        for number, code, row, vals, step, last in zipped:
            params: dict[str, Any] = {}
            present = []
            for j, v in enumerate(row):
                if v == v:  # not NaN
                    params[labels[j]] = int(v) if ints[j] else v
                    present.append(j)
            key = tuple(present)
            if (dists := shared.get(key)) is None:
                dists = shared[key] = {labels[j]: self.dists[j] for j in key}
            attrs = {self.number_attr: number}
            if number in h.attrs:
                attrs.update(h.attrs[number])
            self.storage.append(
                study_id,
                opt.trial.FrozenTrial(
                    number=0,
                    state=states[code],
                    value=None,
                    values=vals if code == COMPLETE else None,
                    datetime_start=_EPOCH,
                    datetime_complete=None if code == RUNNING else _EPOCH,
                    params=params,
                    distributions=dists,
                    user_attrs={},
                    system_attrs=attrs,
                    intermediate_values={step: last} if step >= 0 else {},
                    trial_id=0,
                ),
            )
        self.storage.settle_best(study_id)

    def save_attrs(self, trial_id: int, number: int) -> dict[str, Any]:
        """Keep what the sampler wrote (trial ``number``'s and the study's system
        attributes) in the history; the trial's internal parameters."""
        frozen = self.storage.get_trial(trial_id)
        attrs = {k: v for k, v in frozen.system_attrs.items() if k != self.number_attr}
        if attrs:
            self.history.attrs[number] = attrs
        self.history.study_attrs = dict(self.storage.get_study_system_attrs(self.study._study_id))
        return dict(frozen.params)


def _FastStorage(optuna: Any) -> Any:  # a class factory: optuna is imported late
    """An optuna ``InMemoryStorage`` that takes freshly built trials without copying them
    (optuna deep-copies each, which costs more than the sampler at 1,000 trials)."""

    class FastStorage(optuna.storages.InMemoryStorage):  # type: ignore[misc]
        def append(self, study_id: int, trial: Any) -> None:
            with self._lock:
                trial_id = self._max_trial_id + 1
                self._max_trial_id += 1
                trial.number = len(self._studies[study_id].trials)
                trial._trial_id = trial_id
                self._trial_id_to_study_id_and_number[trial_id] = (study_id, trial.number)
                self._studies[study_id].trials.append(trial)
                for name, dist in trial.distributions.items():
                    self._studies[study_id].param_distribution.setdefault(name, dist)

        def settle_best(self, study_id: int) -> None:
            """Record the study's best trial (what optuna updates after each trial)."""
            with self._lock:
                study = self._studies[study_id]
                done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
                if done and len(study.directions) == 1:
                    sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
                    study.best_trial_id = min(done, key=lambda t: sign * t.values[0])._trial_id

    return FastStorage()
