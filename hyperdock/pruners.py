"""Early stopping: the ``--pruner`` rules, their settings, and how they scale.

A pruner is given as ``NAME[:key=value,...]``, e.g. ``median``, ``median:warmup=10``,
``asha:min_resource=5%,reduction_factor=2``. The spec is stored in the experiment
(``meta["pruner"]``), so a restarted supervisor prunes with the same settings.

Step amounts (``warmup``, ``min_resource``, ``max_resource``) are either a number of
steps (``10``) or a share of the *curve length* (``10%``): the last step of the longest
completed trial that reported progress. The supervisor does not know how long curves
are before one has completed, so a relative setting prunes nothing until then; after
that it is recomputed as longer curves complete. The defaults are relative:

* ``median`` (optuna's :class:`~optuna.pruners.MedianPruner`): stop a trial whose best
  loss so far is worse than the median of the completed trials' losses at the same
  step, once ``startup`` trials (default 4) have completed and the trial is past
  ``warmup`` steps (default :data:`MEDIAN_WARMUP`, 20% of the curve);
* ``asha``: asynchronous successive halving. Rungs at ``min_resource * rf**k`` steps
  (default ``min_resource`` :data:`ASHA_MIN_RESOURCE`, 10% of the curve;
  ``reduction_factor`` rf default 3); a trial reaching a rung goes on only if its loss
  there is in the best ``1/rf`` of the losses of all trials that reached the rung;
* ``hyperband``: several ASHA brackets, the ``s``-th starting its rungs ``rf**s`` times
  later (``min_resource`` default :data:`HYPERBAND_MIN_RESOURCE`, ``max_resource``
  default the curve length, ``reduction_factor`` default 3); each trial is assigned a
  bracket from its trial number, and competes with its bracket only.

The relative defaults were picked with ``bench/quality.py`` (part 2: a synthetic
100-step learning curve whose curves cross, tpe, 4 workers) on tuning seeds the bench
does not report (``--seed-offset 100 --seeds 5``), by the best loss reached with 40% of
no pruning's steps (median over seeds, relative to no pruning with all its steps):

* median warm-up 10% +1.27%, 20% -0.21% (chosen);
* ASHA first rung 5% with rf 2 +0.82%, 10% with rf 2 +0.80%, 10% with rf 3 +0.31%
  (chosen);
* Hyperband first rung 5% with rf 3 +0.71%, 10% with rf 3 +0.68% (chosen);
* no pruning on the same 40% of the steps: +1.75%.

Earlier rungs or a shorter warm-up judge trials while their curves still cross (slow
learners look bad early and end best), which costs best loss; later ones save less.
The README has the figures on the reported seeds.

ASHA and Hyperband here are Hyperdock's own, not optuna's: optuna's successive halving
keeps each trial's rung losses in the trial's system attributes, which live only in the
supervisor's in-memory study, so a restarted supervisor had an empty competition at
every rung and promoted every running trial. Here a trial's loss at a rung is read from
its stored curve (the first reported step at or past the rung), so every supervisor
sees the same rungs. Each supervisor judges a trial at a rung once, when it first sees
the trial there; a trial already past several rungs when a supervisor first sees it
(just after a restart, say) is judged at the highest of them only.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hyperdock.errors import ConfigError
from hyperdock.optunautil import import_optuna

#: Pruner names accepted by ``--pruner``.
PRUNERS = ("none", "median", "asha", "hyperband")
#: Attribute of the mirror's optuna trials holding the store's trial number.
NUMBER_ATTR = "hyperdock:number"

#: Default median warm-up: 20% of the curve length.
MEDIAN_WARMUP = "20%"
#: Default completed trials before the median pruner prunes.
MEDIAN_STARTUP = 4
#: Default ASHA first rung: 10% of the curve length.
ASHA_MIN_RESOURCE = "10%"
#: Default ASHA reduction factor.
ASHA_REDUCTION_FACTOR = 3
#: Default Hyperband first rung (of the most aggressive bracket): 10% of the curve.
HYPERBAND_MIN_RESOURCE = "10%"
#: Default Hyperband reduction factor.
HYPERBAND_REDUCTION_FACTOR = 3


# -- settings -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Steps:
    """An amount of steps: absolute, or a share of the curve length.

    Attributes:
        value: Steps, or a percentage when ``relative``.
        relative: ``value`` is a percentage of the curve length.
    """

    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str, *, minimum: int) -> Steps:
        """From ``"10"`` (steps) or ``"10%"`` (of the curve length).

        Raises:
            ValueError: neither form, or below ``minimum`` steps / not above 0%.
        """
        text = text.strip()
        if text.endswith("%"):
            try:
                pct = float(text[:-1])
            except ValueError:
                raise ValueError(
                    "must be a whole number of steps or a percentage like 10%"
                ) from None
            if not 0 < pct <= 100:
                raise ValueError("a percentage must be above 0% and at most 100%")
            return cls(pct, True)
        if not re.fullmatch(r"\d+", text):
            raise ValueError("must be a whole number of steps or a percentage like 10%")
        n = int(text)
        if n < minimum:
            raise ValueError(f"must be at least {minimum}")
        return cls(n, False)

    def resolve(self, length: int | None) -> int | None:
        """Steps for curves of ``length`` (None: relative and the length is unknown)."""
        if not self.relative:
            return int(self.value)
        if length is None:
            return None
        return max(1, round(self.value / 100 * length))

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.relative else str(int(self.value))


def _int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"\d+", text.strip()):
            raise ValueError("must be a whole number")
        n = int(text)
        if n < minimum:
            raise ValueError(f"must be at least {minimum}")
        return n

    return parse


def _steps(minimum: int) -> Callable[[str], Steps]:
    return lambda text: Steps.parse(text, minimum=minimum)


def _steps_or_auto(text: str) -> Steps | None:
    return None if text.strip() == "auto" else Steps.parse(text, minimum=1)


#: Settings each pruner takes: key -> (parser, default as text).
OPTIONS: dict[str, dict[str, tuple[Callable[[str], Any], str]]] = {
    "none": {},
    "median": {
        "warmup": (_steps(0), MEDIAN_WARMUP),
        "startup": (_int(0), str(MEDIAN_STARTUP)),
    },
    "asha": {
        "min_resource": (_steps(1), ASHA_MIN_RESOURCE),
        "reduction_factor": (_int(2), str(ASHA_REDUCTION_FACTOR)),
    },
    "hyperband": {
        "min_resource": (_steps(1), HYPERBAND_MIN_RESOURCE),
        "max_resource": (_steps_or_auto, "auto"),
        "reduction_factor": (_int(2), str(HYPERBAND_REDUCTION_FACTOR)),
    },
}


@dataclass(frozen=True)
class PrunerSpec:
    """A ``--pruner`` value: a name and the settings given for it.

    Attributes:
        name: One of :data:`PRUNERS`.
        given: The ``key=value`` settings given (normalised text), in key order.
    """

    name: str
    given: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> PrunerSpec:
        """From ``NAME[:key=value,...]`` (None or ``""``: no pruner).

        Raises:
            ConfigError: unknown name or key, or a bad value; the message lists what
                is allowed.
        """
        text = (text or "none").strip()
        name, _, rest = text.partition(":")
        name = name.strip().lower()
        if name not in OPTIONS:
            raise ConfigError(
                f"--pruner: unknown pruner {name!r}; choose one of {', '.join(PRUNERS)} "
                "(settings after a colon, e.g. asha:min_resource=10%,reduction_factor=2)"
            )
        allowed = OPTIONS[name]
        given: dict[str, str] = {}
        for item in (part.strip() for part in rest.split(",")) if rest.strip() else ():
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if key not in allowed:
                takes = f"takes: {', '.join(allowed)}" if allowed else "takes no settings"
                raise ConfigError(f"--pruner {name}: unknown setting {key!r}; {name} {takes}")
            if not eq or not value:
                raise ConfigError(f"--pruner {name}: give {key}=VALUE, got {item!r}")
            if key in given:
                raise ConfigError(f"--pruner {name}: {key} is given twice")
            try:
                parsed = allowed[key][0](value)
            except ValueError as exc:
                raise ConfigError(f"--pruner {name}: {key}={value}: {exc}") from None
            given[key] = "auto" if parsed is None else str(parsed)
        spec = cls(name, tuple(sorted(given.items())))
        spec.settings()  # checks combinations
        return spec

    def settings(self) -> dict[str, Any]:
        """Every setting (defaults filled in), parsed.

        Raises:
            ConfigError: settings that contradict each other.
        """
        allowed = OPTIONS[self.name]
        given = dict(self.given)
        out = {key: parse(given.get(key, default)) for key, (parse, default) in allowed.items()}
        if self.name == "hyperband":
            low, high = out["min_resource"], out["max_resource"]
            if high is not None and low.relative == high.relative and high.value < low.value:
                raise ConfigError(
                    f"--pruner hyperband: max_resource ({high}) is below min_resource ({low})"
                )
        return out

    def __str__(self) -> str:
        if not self.given:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.given)


# -- pruners ------------------------------------------------------------------------------
class Pruner(Protocol):
    """What :meth:`hyperdock.study.StudyMirror.prune` calls (optuna's pruner interface)."""

    def prune(self, study: Any, trial: Any) -> bool:
        """Whether running ``trial`` (an optuna ``FrozenTrial``) should stop now."""


def curve_length(study: Any) -> int | None:
    """The last step of the longest completed trial with progress (None: none yet)."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    steps = [t.last_step for t in done if t.last_step is not None]
    return max(steps) if steps else None


def horizon(pruner: Any, study: Any) -> int | None:
    """The step at which a trial has run its whole course, as far as ``pruner`` knows:
    the curve length, or an absolute ``max_resource`` when that comes first (None:
    unknown). A trial that has reached it is not pruned: its work is done, and stopping
    it would throw away the result it is about to write."""
    own = getattr(pruner, "horizon", None)
    if own is None:
        return curve_length(study)
    steps: int | None = own(study)
    return steps


def _number(trial: Any) -> int:
    return int(trial.system_attrs.get(NUMBER_ATTR, trial.number))


class MedianRule:
    """optuna's MedianPruner with a warm-up that may be a share of the curve length.

    Args:
        warmup: Steps before a trial may be pruned.
        startup: Completed trials needed before any pruning.
    """

    def __init__(self, warmup: Steps, startup: int) -> None:
        self.warmup = warmup
        self.startup = startup
        self._built: tuple[int, Any] | None = None

    def prune(self, study: Any, trial: Any) -> bool:
        """See :class:`Pruner`."""
        warmup = self.warmup.resolve(curve_length(study) if self.warmup.relative else None)
        if warmup is None:
            return False
        if self._built is None or self._built[0] != warmup:
            pruner = import_optuna().pruners.MedianPruner(
                n_startup_trials=self.startup, n_warmup_steps=warmup
            )
            self._built = (warmup, pruner)
        return bool(self._built[1].prune(study, trial))


def _rung_value(points: dict[int, float], step: int, cache: dict[int, float] | None) -> float:
    """The loss at the first reported step at or past ``step`` (inf: never reached)."""
    if cache is not None and step in cache:
        return cache[step]
    value = points.get(step)
    if value is None:
        later = [s for s in points if s >= step]
        value = points[min(later)] if later else math.inf
    if cache is not None:
        cache[step] = value
    return value


def promotable(value: float, others: Sequence[float], reduction_factor: int) -> bool:
    """Whether ``value`` (lower is better) is in the best ``1/reduction_factor`` of
    itself and ``others``; the best one goes on while there are fewer than
    ``reduction_factor`` (as in optuna's successive halving)."""
    values = sorted([*others, value])
    k = max(len(values) // reduction_factor - 1, 0)
    return value <= values[k]


class Halving:
    """Asynchronous successive halving over the mirror's curves (ASHA; one Hyperband
    bracket). State-free but for which rungs this process has judged each trial at.

    Args:
        min_resource: Steps of the first rung (before ``rate``).
        reduction_factor: The best ``1/reduction_factor`` go on at each rung.
    """

    def __init__(self, min_resource: Steps, reduction_factor: int) -> None:
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        #: trial number -> the step of the last rung it passed (0: none).
        self._judged: dict[int, int] = {}
        #: Rung losses of finished trials: optuna trial id -> {step: loss}.
        self._cache: dict[int, dict[int, float]] = {}

    def rungs(self, first: int, last_step: int) -> list[int]:
        """Rung steps from ``first`` up to ``last_step``."""
        out, step = [], first
        while step <= last_step:
            out.append(step)
            step *= self.reduction_factor
        return out

    def judge(self, study: Any, trial: Any, first: int, members: Callable[[Any], bool]) -> bool:
        """Whether ``trial`` stops: it fails a rung it reached since it was last judged.

        Args:
            study: The mirror's study.
            trial: The running trial.
            first: Step of the first rung.
            members: Which trials compete (its bracket).
        """
        import optuna

        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        number = _number(trial)
        step = trial.last_step
        if step is None:
            return False
        reached = self.rungs(first, step)
        seen = self._judged.get(number)
        if seen is None:
            # First sight (a new trial, or a supervisor just started): judge it at the
            # highest rung it has reached only; the lower ones are behind it.
            self._judged[number] = 0
            todo = reached[-1:]
        else:
            todo = [r for r in reached if r > seen]
        if not todo:
            return False
        others = [
            t
            for t in study.get_trials(deepcopy=False)
            if t._trial_id != trial._trial_id and t.intermediate_values and members(t)
        ]
        running = optuna.trial.TrialState.RUNNING
        for rung in todo:
            value = sign * _rung_value(trial.intermediate_values, rung, None)
            if math.isnan(value):
                return True
            competing = []
            for t in others:
                cache = None if t.state == running else self._cache.setdefault(t._trial_id, {})
                v = _rung_value(t.intermediate_values, rung, cache)
                if math.isfinite(v):
                    competing.append(sign * v)
            if not promotable(value, competing, self.reduction_factor):
                # Not recorded: asked again, it fails again (until the worker stops it).
                return True
            self._judged[number] = rung
        return False


class AshaRule:
    """ASHA: successive halving with every trial in one bracket.

    Args:
        min_resource: Steps of the first rung.
        reduction_factor: The best ``1/reduction_factor`` go on at each rung.
    """

    def __init__(self, min_resource: Steps, reduction_factor: int) -> None:
        self.halving = Halving(min_resource, reduction_factor)

    def prune(self, study: Any, trial: Any) -> bool:
        """See :class:`Pruner`."""
        mr = self.halving.min_resource
        first = mr.resolve(curve_length(study) if mr.relative else None)
        if first is None:
            return False
        return self.halving.judge(study, trial, first, lambda _t: True)


class HyperbandRule:
    """Hyperband: ASHA brackets with later and later first rungs.

    Bracket ``s`` (0 .. n-1, ``n = floor(log_rf(max_resource / min_resource)) + 1``)
    starts its rungs at ``min_resource * rf**s``; trials are spread over brackets in
    proportion to optuna's allocation (``ceil(n * rf**(n-1-s) / (n-s))``) by a hash of
    their trial number, so the same trial lands in the same bracket after a restart.

    Args:
        min_resource: Steps of the first rung of bracket 0.
        max_resource: The longest a trial runs (None: the curve length).
        reduction_factor: The best ``1/reduction_factor`` go on at each rung.
    """

    def __init__(
        self, min_resource: Steps, max_resource: Steps | None, reduction_factor: int
    ) -> None:
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.halving = Halving(min_resource, reduction_factor)

    def horizon(self, study: Any) -> int | None:
        """See :func:`horizon`: the curve length, or ``max_resource`` when it is absolute
        and shorter."""
        steps = [curve_length(study)]
        if self.max_resource is not None and not self.max_resource.relative:
            steps.append(int(self.max_resource.value))
        known = [s for s in steps if s is not None]
        return min(known) if known else None

    def brackets(self, low: int, high: int) -> list[int]:
        """Trial allocation per bracket for resources ``low`` .. ``high``."""
        rf = self.halving.reduction_factor
        n = math.floor(math.log(max(high, low) / low, rf) + 1e-9) + 1
        return [math.ceil(n * rf ** (n - 1 - s) / (n - s)) for s in range(n)]

    @staticmethod
    def bracket(number: int, budgets: Sequence[int]) -> int:
        """The bracket of trial ``number``."""
        n = binascii.crc32(f"hyperdock_{number}".encode()) % sum(budgets)
        for s, budget in enumerate(budgets):
            n -= budget
            if n < 0:
                return s
        raise AssertionError("unreachable")

    def prune(self, study: Any, trial: Any) -> bool:
        """See :class:`Pruner`."""
        relative = self.min_resource.relative or (
            self.max_resource is None or self.max_resource.relative
        )
        length = curve_length(study) if relative else None
        low = self.min_resource.resolve(length)
        high = length if self.max_resource is None else self.max_resource.resolve(length)
        if low is None or high is None:
            return False
        budgets = self.brackets(low, high)
        s = self.bracket(_number(trial), budgets)
        first = low * self.halving.reduction_factor**s
        return self.halving.judge(
            study, trial, first, lambda t: self.bracket(_number(t), budgets) == s
        )


def make_pruner(spec: str | PrunerSpec | None) -> Pruner | None:
    """The pruner for a ``--pruner`` spec (None for ``none``).

    Raises:
        ConfigError: a bad spec (see :meth:`PrunerSpec.parse`).
    """
    if not isinstance(spec, PrunerSpec):
        spec = PrunerSpec.parse(spec)
    s = spec.settings()
    if spec.name == "median":
        return MedianRule(s["warmup"], s["startup"])
    if spec.name == "asha":
        return AshaRule(s["min_resource"], s["reduction_factor"])
    if spec.name == "hyperband":
        return HyperbandRule(s["min_resource"], s["max_resource"], s["reduction_factor"])
    return None
