"""An experiment seen as an optuna study: objectives, the space in optuna's terms, and
the in-memory mirror that adaptive samplers, pruners and importances work on.

The store is the truth; :class:`StudyMirror` copies what samplers need of it into a
compact :class:`~hyperdock.history.TrialHistory` (arrays: states, objective values,
parameters in optuna's internal form), matched by trial number:

* finished trials become ``COMPLETE`` (with their objective values), ``PRUNED`` (with
  their last intermediate loss) or ``FAIL``;
* queued and running trials stay ``RUNNING``: samplers treat them as pending, so TPE's
  constant liar (and our GP's) keeps parallel workers away from each other's points.

Each suggestion runs the optuna sampler on a throwaway study of a bounded window of the
history (the best trials, a stratified sample of the others, every pending one; see
:mod:`hyperdock.history`), so its cost and the supervisor's memory do not grow with the
experiment. A restarted supervisor builds the same history from the store, so TPE and
GP continue as if nothing happened. (CMA-ES, NSGA-II and QMC also keep generation state
in optuna's trial attributes, which the store does not hold: after a restart they start
a new generation from the history they see.)

Spaces map to optuna distributions one node at a time: ``uniform`` → float,
``loguniform`` → log float, quantised kinds (``quniform``, ``qloguniform``,
``uniformint``) → an integer step index ``k`` with value ``k * q``, ``randint`` → int,
``choice``/``pchoice``/grid axes → a categorical over option indices, whose chosen
option is then walked (conditional parameters appear only when their option is picked).
Unbounded ``normal``-family nodes are searched within mean ± 3 sigma (a warning says so);
``pchoice`` weights are not used by optuna samplers.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from hyperdock.curves import CurveStudy
from hyperdock.errors import ConfigError
from hyperdock.history import (
    COMPLETE,
    FAIL,
    PRUNED,
    RUNNING,
    UNFIT,
    TrialHistory,
    WindowStudy,
    external,
)
from hyperdock.inverse import Inverter, compile_inverse
from hyperdock.objectives import Objectives
from hyperdock.optunautil import import_optuna
from hyperdock.pruners import NUMBER_ATTR, Pruner
from hyperdock.space import UNION_LABEL, Choice, Dist, GridAxis, Space, Union, _steps
from hyperdock.trial import Trial, TrialState, TrialSummary

log = logging.getLogger("hyperdock.study")

#: Unbounded distributions are searched within mean ± this many sigmas.
SIGMAS = 3.0


# -- the space in optuna's terms ----------------------------------------------------------
Pick = Callable[[str, Any], Any]


class OptunaSpace:
    """A :class:`Space` as optuna distributions, walked define-by-run."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.optuna = import_optuna()
        self.distributions: dict[str, Any] = {}
        self._inverse: Inverter | None = None  # compiled on first use
        self._index(space.root)

    # distributions ------------------------------------------------------------------
    def _index(self, node: Any) -> None:
        match node:
            case dict():
                for v in node.values():
                    self._index(v)
            case list():
                for v in node:
                    self._index(v)
            case Dist():
                self.distributions[node.label] = self._dist(node)
            case Choice():
                self.distributions[node.label] = self._categorical(len(node.options))
                for option in node.options:
                    self._index(option)
            case GridAxis():
                self.distributions[node.label] = self._categorical(max(1, len(node.values)))
            case Union():
                self.distributions[UNION_LABEL] = self._categorical(len(node.spaces))
                for member in node.spaces:
                    self._index(member)

    def _categorical(self, n: int) -> Any:
        return self.optuna.distributions.CategoricalDistribution(list(range(n)))

    def _dist(self, node: Dist) -> Any:
        d = self.optuna.distributions
        a = node.named_args
        kind = node.kind
        if kind == "uniform":
            return d.FloatDistribution(a["low"], a["high"])
        if kind == "loguniform":
            return d.FloatDistribution(math.exp(a["low"]), math.exp(a["high"]), log=True)
        if kind == "randint":
            return d.IntDistribution(int(a["low"]), int(a["high"]) - 1)
        if kind in ("normal", "qnormal", "lognormal", "qlognormal"):
            log.warning(
                "parameter %r: %s is unbounded; adaptive samplers search it within mu ± %g sigma",
                node.label,
                kind,
                SIGMAS,
            )
            low, high = a["mu"] - SIGMAS * a["sigma"], a["mu"] + SIGMAS * a["sigma"]
            if kind.endswith("lognormal"):
                low, high = math.exp(low), math.exp(high)
            if kind == "normal":
                return d.FloatDistribution(low, high)
            if kind == "lognormal":
                return d.FloatDistribution(low, high, log=True)
            return self._steps_dist(low, high, a["q"], log=kind == "qlognormal")
        if kind in ("quniform", "uniformint"):
            return self._steps_dist(a["low"], a["high"], a["q"], log=False)
        if kind == "qloguniform":
            return self._steps_dist(math.exp(a["low"]), math.exp(a["high"]), a["q"], log=True)
        raise ConfigError(f"parameter {node.label!r}: {kind} has no optuna form")

    def _steps_dist(self, low: float, high: float, q: float, *, log: bool) -> Any:
        ks, _ = _steps(low, high, q)
        k_low, k_high = ks.start, max(ks.start, ks.stop - 1)
        return self.optuna.distributions.IntDistribution(k_low, k_high, log=log and k_low >= 1)

    # walking ------------------------------------------------------------------------
    def build(self, pick: Pick) -> dict[str, Any]:
        """The parameters, each node's value coming from ``pick(label, distribution)``."""
        out = self._build(self.space.root, pick)
        assert isinstance(out, dict)
        return out

    def _build(self, node: Any, pick: Pick) -> Any:
        match node:
            case dict():
                return {k: self._build(v, pick) for k, v in node.items()}
            case list():
                return [self._build(v, pick) for v in node]
            case Dist():
                raw = pick(node.label, self.distributions[node.label])
                return self._value(node, raw)
            case Choice():
                i = int(pick(node.label, self.distributions[node.label]))
                return self._build(node.options[i], pick)
            case GridAxis():
                i = int(pick(node.label, self.distributions[node.label]))
                return self._build(node.values[i], pick)
            case Union():
                i = int(pick(UNION_LABEL, self.distributions[UNION_LABEL]))
                return self._build(node.spaces[i], pick)
        return node

    @staticmethod
    def _value(node: Dist, raw: Any) -> Any:
        a = node.named_args
        if "q" in a:
            from hyperdock.space import _multiple

            value = _multiple(int(raw), a["q"])
            return int(value) if node.kind == "uniformint" else value
        if node.kind == "randint":
            return int(raw)
        return float(raw)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Parameters for an optuna trial (``study.ask()``), define-by-run."""

        def pick(label: str, dist: Any) -> Any:
            d = self.optuna.distributions
            if isinstance(dist, d.CategoricalDistribution):
                return trial.suggest_categorical(label, dist.choices)
            if isinstance(dist, d.IntDistribution):
                return trial.suggest_int(label, dist.low, dist.high, log=dist.log)
            return trial.suggest_float(label, dist.low, dist.high, log=dist.log)

        return self.build(pick)

    def internal(self, params: Any) -> dict[str, Any] | None:
        """The optuna parameter values that give ``params``; None when ``params`` do not
        fit the space (then the trial cannot be mirrored)."""
        if self._inverse is None:
            self._inverse = compile_inverse(self.space.root, self.distributions)
        out: dict[str, Any] = {}
        return out if self._inverse(params, out) else None


# -- the mirror ---------------------------------------------------------------------------
class StudyMirror:
    """The experiment's trials as adaptive samplers (and pruners) need them.

    Samplers learn from a compact :class:`~hyperdock.history.TrialHistory` (parameters,
    values, states as arrays); each suggestion builds a throwaway optuna study from a
    bounded window of it (see :mod:`hyperdock.history`), so the cost of a suggestion and
    the memory held do not grow with the number of trials. With a pruner
    (:meth:`track_curves`) a :class:`~hyperdock.curves.CurveStudy` also keeps every
    trial's intermediate losses for it.

    Not thread-safe: one supervisor owns it.

    Args:
        space: The experiment's space.
        objectives: What is optimised.
    """

    def __init__(self, space: Space, objectives: Objectives) -> None:
        self.optuna = import_optuna()
        self.codec = OptunaSpace(space)
        self.objectives = objectives
        signs = [1.0 if d == "minimize" else -1.0 for d in objectives.directions]
        self.history = TrialHistory(list(self.codec.distributions), len(objectives.names), signs)
        self.curves: CurveStudy | None = None
        self._open: dict[int, int] = {}  # store id -> number of trials not final yet
        self._max_id: int | None = None  # the largest store id seen

    def track_curves(self) -> None:
        """Also keep every trial's intermediate losses, for :meth:`prune` (call before the
        first :meth:`sync`)."""
        if self.curves is None:
            self.curves = CurveStudy(self.optuna, self.codec, self.objectives)

    def settled_below(self) -> int | None:
        """A store id up to which every trial is settled (None: nothing mirrored yet):
        a sync needs only the trials after it."""
        if self._max_id is None:
            return None
        return min(self._open) - 1 if self._open else self._max_id

    def settled(self, number: int) -> bool:
        """Trial ``number`` is mirrored in its final state (nothing more to copy)."""
        r = self.history.row(number)
        return r is not None and int(self.history.state[r]) != RUNNING

    def wants_progress(self, trial: Trial | TrialSummary) -> bool:
        """Whether :meth:`sync` needs ``trial``'s intermediate losses: a pruner judges
        running trials by them, TPE ranks pruned trials by the last one."""
        if self.settled(trial.number):
            return False
        return self.curves is not None or trial.state is TrialState.PRUNED

    @property
    def pending_ids(self) -> list[int]:
        """Store ids of trials mirrored as running (progress is wanted for them)."""
        return list(self._open)

    def sync(
        self,
        trials: Iterable[Trial | TrialSummary],
        progress: Mapping[int, Sequence[tuple[int, float]]] | None = None,
    ) -> None:
        """Bring the mirror up to date with ``trials`` (and their intermediate losses)."""
        progress = progress or {}
        h = self.history
        trials = list(trials)
        for t in trials:
            self._max_id = t.id if self._max_id is None else max(self._max_id, t.id)
            r = h.row(t.number)
            if r is None:  # not asked here: a trial of another supervisor, or a restart
                internal = self.codec.internal(t.params)
                if internal is None:
                    log.debug("trial %d does not fit the space; not mirrored", t.number)
                r = h.add(t.number, internal)
            if int(h.state[r]) != RUNNING:
                continue
            points = [(s, v) for s, v in progress.get(t.id, ()) if math.isfinite(v)]
            if points:
                h.last_step[r], h.last_value[r] = points[-1]
            if t.state.finished:
                self._finish(t, r)
                self._open.pop(t.id, None)
            else:
                self._open[t.id] = t.number
        if self.curves is not None:
            self.curves.sync(trials, progress)

    def _finish(self, t: Trial | TrialSummary, r: int) -> None:
        h = self.history
        if t.state is TrialState.COMPLETED:
            values = self.objectives.values(t)
            if values is not None and all(map(math.isfinite, values)):
                h.values[r] = values
                h.state[r] = COMPLETE
                return
        h.state[r] = PRUNED if t.state is TrialState.PRUNED else FAIL

    def replace(self, number: int, params: dict[str, Any]) -> None:
        """Trial ``number`` gets ``params`` instead of what :meth:`ask` suggested (the
        supervisor replaced a duplicate): ``params`` are mirrored as pending instead."""
        self.history.attrs.pop(number, None)
        self.history.add(number, self.codec.internal(params))

    def ask(self, number: int, sampler: Any, kind: str = "tpe", seed: int = 0) -> dict[str, Any]:
        """Parameters for trial ``number`` from ``sampler`` (an optuna sampler of kind
        ``kind``), on the window of the history that ``kind`` and ``seed`` select.

        Asking again for a number whose trial never reached the store (the store was
        down) returns the same parameters.
        """
        h = self.history
        r = h.row(number)
        if r is not None and int(h.state[r]) != UNFIT:
            internal = h.internal(r)
            dists = self.codec.distributions
            return self.codec.build(lambda label, _d: external(dists[label], internal[label]))
        if hasattr(sampler, "completed_total"):  # TPE's bandwidths follow the whole history
            sampler.completed_total = h.completed()
        window = self._window_study(h.window(kind, seed))
        window.study.sampler = sampler
        trial = window.study.ask()
        params = self.codec.suggest(trial)
        h.add(number, window.save_attrs(trial._trial_id, number))
        if kind == "cmaes":
            h.trim_attrs()
        return params

    def _window_study(self, rows: Any) -> WindowStudy:
        ws = WindowStudy(
            self.optuna, self.history, self.codec.distributions, self.objectives.directions,
            NUMBER_ATTR,
        )  # fmt: skip
        ws.add(rows)
        return ws

    def prune(self, pruner: Pruner) -> list[int]:
        """Store ids of running trials that ``pruner`` would stop now (none unless
        :meth:`track_curves` was called).

        A trial whose last reported step has reached the curve length (see
        :func:`hyperdock.pruners.horizon`) is never among them: it has done its work.
        """
        if self.curves is None:
            return []
        return self.curves.prune(pruner, self.pending_ids)

    def importances(self) -> dict[str, float]:
        """Parameter importances (optuna's default evaluator) for the first objective,
        from every completed trial mirrored; empty with fewer than two of them or
        nothing to compare."""
        opt = self.optuna
        done = np.flatnonzero(self.history.state[: self.history.n] == COMPLETE)
        if len(done) < 2:
            return {}
        study = self._window_study(done).study
        target = None
        if self.objectives.multi:  # lower is better for the evaluator
            sign = -1.0 if self.objectives.maximize else 1.0
            target = lambda t: sign * t.values[0]  # noqa: E731
        try:
            with warnings.catch_warnings():  # "computes importances ... low target values"
                warnings.simplefilter("ignore", UserWarning)
                result: dict[str, float] = opt.importance.get_param_importances(
                    study, evaluator=_importance_evaluator(opt), target=target
                )
        except (RuntimeError, ValueError) as exc:
            log.debug("no importances: %s", exc)
            return {}
        return {k: float(v) for k, v in result.items()}


def _importance_evaluator(opt: Any) -> Any:
    """PED-ANOVA (optuna's default evaluator) measured against the whole search space:
    how much the best 10% of trials concentrate in each parameter's range. optuna's
    default compares them with the region the trials themselves cover, which an adaptive
    sampler has already narrowed around the best values of the parameters that matter,
    so those come out as mattering least."""
    return opt.importance.PedAnovaImportanceEvaluator(evaluate_on_local=False)


def importances(space: Space, objectives: Objectives, trials: Iterable[Trial]) -> dict[str, float]:
    """Parameter importances from an experiment's trials (for reports)."""
    mirror = StudyMirror(space, objectives)
    mirror.sync(trials)
    return mirror.importances()
