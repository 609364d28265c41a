"""Points a user queues by hand: reading them (:func:`read_points`, ``--params``),
completing them from the space (:func:`complete_points`) and whether they belong to it.

A sampler only proposes points of its space; a point typed in (``hyperdock enqueue``,
:meth:`hyperdock.Experiment.enqueue`, a warm start from another experiment) may not be
one. :func:`check_point` refuses it, naming the parameter and what it may hold, before
anything is stored: a value out of range would otherwise run, distort what an adaptive
sampler learns and could be reported as the best.

The rules follow hyperopt's semantics of each distribution (see :mod:`hyperdock.space`):
bounded kinds hold values within their bounds (quantised ones up to half a step beyond,
as ``round(x / q) * q`` can land there), quantised kinds hold multiples of ``q``,
integer kinds hold integers, log kinds hold positive values, choices and grid axes hold
one of their options.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hyperdock.errors import ConfigError, SpaceError
from hyperdock.jsonutil import dumps
from hyperdock.space import Choice, Dist, GridAxis, Space, Union
from hyperdock.trial import Experiment as ExperimentRecord

__all__ = ["check_point", "complete_points", "read_points"]

#: Relative slack for float comparisons (bounds, multiples of q).
_EPS = 1e-9


def check_point(space: Space, point: Mapping[str, Any]) -> None:
    """Refuse ``point`` unless the space could have produced it.

    Args:
        space: The experiment's space.
        point: A complete point (every top-level key of the space's points).

    Raises:
        SpaceError: naming the first value that does not fit and what it may be.
    """
    problem = _misfit(space.root, dict(point), "")
    if problem is not None:
        raise SpaceError(problem)


def _misfit(node: Any, value: Any, where: str) -> str | None:
    """Why ``value`` cannot come from ``node`` (None when it can)."""
    match node:
        case dict():
            if not isinstance(value, dict):
                return f"{_at(where)} must be an object, got {_show(value)}"
            if set(value) != set(node):
                missing = sorted(set(node) - set(value))
                extra = sorted(set(value) - set(node))
                parts = [f"missing {', '.join(missing)}"] if missing else []
                parts += [f"unknown {', '.join(extra)}"] if extra else []
                return f"{_at(where)} does not have the space's keys ({'; '.join(parts)})"
            for key in node:
                if (problem := _misfit(node[key], value[key], _join(where, key))) is not None:
                    return problem
            return None
        case list():
            if not isinstance(value, list) or len(value) != len(node):
                return f"{_at(where)} must be a list of {len(node)} values, got {_show(value)}"
            for i, (n, v) in enumerate(zip(node, value, strict=True)):
                if (problem := _misfit(n, v, f"{where}[{i}]")) is not None:
                    return problem
            return None
        case Dist():
            return _dist_misfit(node, value)
        case Choice():
            return _options_misfit(node.label, node.options, value, where)
        case GridAxis():
            return _options_misfit(node.label, node.values, value, where)
        case Union():
            for member in node.spaces:
                if _misfit(member, value, where) is None:
                    return None
            # Name the problem with the member the point is closest to: the first one
            # with the same keys, else the first.
            keys = set(value) if isinstance(value, dict) else set()
            best = next(
                (m for m in node.spaces if isinstance(m, dict) and set(m) == keys),
                node.spaces[0],
            )
            return _misfit(best, value, where)
    if _same(node, value):
        return None
    return f"{_at(where)} is the constant {_show(node)} in the space, got {_show(value)}"


def _options_misfit(label: str, options: tuple[Any, ...], value: Any, where: str) -> str | None:
    if any(_misfit(option, value, where) is None for option in options):
        return None
    # A choice between plain values: list them. Between sub-spaces: say where it failed
    # in the one option whose shape matches, if only one does.
    if all(not isinstance(o, (dict, list, Dist, Choice, GridAxis, Union)) for o in options):
        shown = ", ".join(_show(o) for o in options[:10]) + (", …" if len(options) > 10 else "")
        return f"parameter {label!r}: {_show(value)} is not one of its options ({shown})"
    shaped = [o for o in options if _same_shape(o, value)]
    if len(shaped) == 1:
        return _misfit(shaped[0], value, where)
    return f"parameter {label!r}: {_show(value)} matches none of its {len(options)} options"


def _same_shape(option: Any, value: Any) -> bool:
    if isinstance(option, dict):
        return isinstance(value, dict) and set(option) == set(value)
    if isinstance(option, list):
        return isinstance(value, list) and len(option) == len(value)
    return isinstance(option, Dist) and isinstance(value, (int, float))


def _dist_misfit(node: Dist, value: Any) -> str | None:
    label, kind, a = node.label, node.kind, node.named_args
    what = f"{kind}({', '.join(f'{k}={v:g}' for k, v in a.items())})"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"parameter {label!r}: {what} holds numbers, got {_show(value)}"
    x = float(value)
    if not math.isfinite(x):
        return f"parameter {label!r}: {_show(value)} is not a finite number"
    if kind in ("randint", "uniformint") and x != round(x):
        return f"parameter {label!r}: {what} holds integers, got {_show(value)}"
    q = a.get("q")
    if q is not None and kind != "uniformint" and not _multiple_of(x, q):
        return f"parameter {label!r}: {what} holds multiples of {q:g}, got {_show(value)}"
    low, high = _bounds(kind, a)
    if not (low - _slack(low) <= x <= high + _slack(high)):
        shown = f"[{low:g}, {high:g}]" if math.isfinite(high) else f"values ≥ {low:g}"
        if kind == "randint":
            shown = f"[{low:g}, {high + 1:g})"
        return f"parameter {label!r}: {_show(value)} is outside {what}, which holds {shown}"
    return None


def _bounds(kind: str, a: Mapping[str, float]) -> tuple[float, float]:
    """The closed interval a kind's values fall in (quantised: up to half a step out)."""
    half = a.get("q", 0.0) / 2
    match kind:
        case "uniform":
            return a["low"], a["high"]
        case "quniform" | "uniformint":
            return a["low"] - half, a["high"] + half
        case "loguniform":
            return math.exp(a["low"]), math.exp(a["high"])
        case "qloguniform":
            return max(math.exp(a["low"]) - half, 0.0), math.exp(a["high"]) + half
        case "randint":
            return a["low"], a["high"] - 1
        case "lognormal":
            return math.ulp(0.0), math.inf
        case "qlognormal":
            return 0.0, math.inf
    return -math.inf, math.inf  # normal, qnormal


def _same(constant: Any, value: Any) -> bool:
    numbers = (int, float)
    if isinstance(constant, numbers) and isinstance(value, numbers):  # 1 and 1.0 alike
        return isinstance(constant, bool) == isinstance(value, bool) and constant == value
    return dumps(constant) == dumps(value)


def _multiple_of(x: float, q: float) -> bool:
    k = round(x / q)
    return abs(k * q - x) <= _EPS * max(abs(x), abs(q), 1.0)


def _slack(bound: float) -> float:
    return _EPS * max(abs(bound), 1.0) if math.isfinite(bound) else 0.0


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _at(where: str) -> str:
    return f"parameter {where!r}" if where else "the point"


def _show(value: Any) -> str:
    text = dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def complete_points(
    space: Space, exp: ExperimentRecord, points: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Points given by hand (:meth:`~hyperdock.experiment.Experiment.enqueue`),
    completed by draws from ``space`` (the sampler's prior) and checked, all or none.

    Args:
        space: The space of experiment ``exp``.
        exp: The experiment they are queued in (its seed and, for messages, its name).
        points: Values of some or all of each point's parameters.

    Raises:
        ConfigError: a point has a key the space does not have.
        SpaceError: a value the space cannot hold.
    """
    filled: list[dict[str, Any]] = []
    for params in points:
        prior = space.sample(random.Random(f"hyperdock:{exp.seed}:enqueue:{uuid.uuid4()}"))
        unknown = sorted(set(params) - set(prior))
        if unknown:
            raise ConfigError(
                f"experiment {exp.name!r} has no parameter "
                f"{', '.join(map(repr, unknown))}; its parameters are "
                f"{', '.join(sorted(prior)) or '(none)'}"
            )
        point = json.loads(json.dumps({**prior, **dict(params)}))
        try:
            check_point(space, point)
        except SpaceError as exc:
            where = f"point {len(filled) + 1}: " if len(points) > 1 else ""
            raise SpaceError(
                f"{where}{exc}; nothing was queued (experiment {exp.name!r})"
            ) from None
        filled.append(point)
    return filled


def _cell(text: str) -> Any:
    """A CSV cell as a value: JSON when it parses (numbers, lists, true), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_points(source: str) -> list[dict[str, Any]]:
    """Parameter sets for :meth:`Experiment.enqueue` from ``--params``: a JSON object or
    list of objects, or the path of a file holding one (``.csv``: a header row of
    parameter names, one point per row; empty cells are left to the space).

    Raises:
        ConfigError: neither valid JSON nor a readable file, or not objects.
    """
    text = source
    where = "--params"
    path = Path(source)
    if not source.lstrip().startswith(("{", "[")):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"--params {source!r} is neither JSON nor a readable file ({exc.strerror})"
            ) from None
        where = source
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            if not rows:
                raise ConfigError(f"{where} holds no rows under its header of parameter names")
            return [
                {k: _cell(v) for k, v in row.items() if k and v not in ("", None)} for row in rows
            ]
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    points = data if isinstance(data, list) else [data]
    if not points or not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"{where} must hold a JSON object of parameter values or a list of them")
    return points
