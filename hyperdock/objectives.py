"""What an experiment optimises (:class:`Objectives`, the Pareto front) and which of
its parameters people want to see: light helpers (no numpy, no optuna) for the CLI, the
dashboard and the worker; :mod:`hyperdock.study` builds on them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hyperdock.errors import ConfigError
from hyperdock.space import Choice, Dist, GridAxis, Space, Union
from hyperdock.trial import Trial, TrialState, TrialSummary

__all__ = ["DIRECTIONS", "Objectives", "flat_params", "pareto_front", "varying_params"]

#: Directions an objective may have.
DIRECTIONS = ("minimize", "maximize")


# -- objectives ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Objectives:
    """What an experiment optimises.

    Attributes:
        names: One name per objective (``("loss",)`` for the usual single loss).
        directions: ``"minimize"`` or ``"maximize"`` per objective.
    """

    names: tuple[str, ...] = ("loss",)
    directions: tuple[str, ...] = ("minimize",)

    def __post_init__(self) -> None:
        if not self.names or len(self.names) != len(self.directions):
            raise ConfigError("give one direction per objective")
        for d in self.directions:
            if d not in DIRECTIONS:
                raise ConfigError(f"direction must be minimize or maximize, got {d!r}")
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"objective names must differ, got {list(self.names)}")

    def describe(self) -> str:
        """``loss minimize`` (``name direction`` per objective, comma-separated)."""
        return ", ".join(f"{n} {d}" for n, d in zip(self.names, self.directions, strict=True))

    @property
    def multi(self) -> bool:
        """Several objectives (the result is a Pareto front)."""
        return len(self.names) > 1

    @property
    def maximize(self) -> bool:
        """The (first) objective is maximised."""
        return self.directions[0] == "maximize"

    @classmethod
    def build(
        cls, directions: Sequence[str] = (), named: Mapping[str, str] | None = None
    ) -> Objectives:
        """From ``--direction`` values (unnamed objectives) or ``{name: direction}``."""
        if named:
            if directions:
                raise ConfigError("give either named objectives or --direction, not both")
            return cls(tuple(named), tuple(str(d).lower() for d in named.values()))
        dirs = tuple(d.lower() for d in directions) or ("minimize",)
        names = ("loss",) if len(dirs) == 1 else tuple(f"loss{i}" for i in range(len(dirs)))
        return cls(names, dirs)

    def to_meta(self) -> list[dict[str, str]]:
        """As stored in ``experiment.meta["objectives"]``."""
        return [
            {"name": n, "direction": d} for n, d in zip(self.names, self.directions, strict=True)
        ]

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Objectives:
        """Inverse of :meth:`to_meta` (the default when the experiment has none)."""
        items = meta.get("objectives")
        if not items:
            return cls()
        return cls(tuple(i["name"] for i in items), tuple(i["direction"] for i in items))

    def values(self, trial: Trial | TrialSummary) -> list[float] | None:
        """The objective values of a completed trial (None when it has none)."""
        if self.multi:
            raw = trial.result.get("values")
            if isinstance(raw, list) and len(raw) == len(self.names):
                return [float(v) for v in raw]
            return None
        return None if trial.loss is None else [float(trial.loss)]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere (minimising)."""
    pairs = list(zip(a, b, strict=True))
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def pareto_front(trials: Iterable[Trial], objectives: Objectives) -> list[Trial]:
    """The completed trials no other completed trial dominates, in trial order."""
    points = []
    for t in trials:
        if t.state is TrialState.COMPLETED and (v := objectives.values(t)) is not None:
            signs = [1.0 if d == "minimize" else -1.0 for d in objectives.directions]
            points.append((t, [s * x for s, x in zip(signs, v, strict=True)]))
    front = []
    for t, v in points:
        dominated = any(
            all(a <= b for a, b in zip(w, v, strict=True))
            and any(a < b for a, b in zip(w, v, strict=True))
            for _, w in points
        )
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: t.number)


# -- parameters people want to see --------------------------------------------------------
def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameter dicts flattened to dotted keys (``{"m": {"c": 1}}`` → ``m.c``);
    lists stay values."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flat_params(value, path))
        else:
            out[path] = value
    return out


def _has_node(node: Any) -> bool:
    if isinstance(node, (Dist, Choice, GridAxis, Union)):
        return True
    if isinstance(node, dict):
        return any(_has_node(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_node(v) for v in node)
    return False


def _constant_keys(node: Any, prefix: str, out: set[str]) -> None:
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            _constant_keys(value, path, out)
        elif not _has_node(value):
            out.add(path)


def varying_params(space: Space | None, trials: Sequence[Trial]) -> tuple[list[str], list[str]]:
    """Which (flattened) parameters differ between an experiment's trials.

    A parameter is constant when the space fixes it (a plain value, not a distribution,
    choice or grid axis) or, once there are two trials or more, when every trial has the
    same value for it. Conditional parameters that some trials lack vary.

    Args:
        space: The experiment's space (None when it cannot be read).
        trials: The experiment's trials (all of them, not a filtered subset).

    Returns:
        ``(varying, all)``: flattened keys in the order trials first show them.
    """
    flat = [flat_params(t.params) for t in trials]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    constants: set[str] = set()
    if space is not None and isinstance(space.root, dict):
        _constant_keys(space.root, "", constants)
    missing = object()

    def varies(key: str) -> bool:
        if len(flat) < 2:
            return True
        first = flat[0].get(key, missing)
        return any(f.get(key, missing) != first for f in flat[1:])

    return [k for k in keys if k not in constants and varies(k)], keys
