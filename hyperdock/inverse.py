"""The inverse of walking a space: the optuna parameter values (one per distribution
label) that give a trial's parameters.

A resumed supervisor inverts every stored trial's parameters to fill its sampler's
mirror, so the space is compiled once into nested closures (one per node) instead of
being matched node by node for each trial; a choice of plain strings or integers is one
dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hyperdock.jsonutil import dumps
from hyperdock.optunautil import import_optuna
from hyperdock.space import UNION_LABEL, Choice, Dist, GridAxis, Union

#: ``invert(value, out)``: whether ``value`` fits the node; its labels' values go in ``out``.
Inverter = Callable[[Any, dict[str, Any]], bool]


def compile_inverse(node: Any, distributions: Mapping[str, Any]) -> Inverter:
    """The inverter of ``node`` (a space's root or any node under it).

    Args:
        node: The space node.
        distributions: optuna distribution per label (an int distribution gets rounded
            values; every value is clipped to its distribution's range).
    """
    if isinstance(node, dict):
        return _mapping(node, distributions)
    if isinstance(node, list):
        return _sequence(node, distributions)
    if isinstance(node, Dist):
        return _dist(node, distributions[node.label])
    if isinstance(node, Choice):
        return _options(node.label, node.options, distributions)
    if isinstance(node, GridAxis):
        return _options(node.label, node.values, distributions)
    if isinstance(node, Union):
        return _options(UNION_LABEL, node.spaces, distributions)
    return _constant(node)


def _mapping(node: dict[str, Any], distributions: Mapping[str, Any]) -> Inverter:
    keys = node.keys()
    subs = [(k, compile_inverse(v, distributions)) for k, v in node.items()]

    def invert(value: Any, out: dict[str, Any]) -> bool:
        if not isinstance(value, dict) or value.keys() != keys:
            return False
        return all(sub(value[k], out) for k, sub in subs)

    return invert


def _sequence(node: list[Any], distributions: Mapping[str, Any]) -> Inverter:
    subs = [compile_inverse(v, distributions) for v in node]

    def invert(value: Any, out: dict[str, Any]) -> bool:
        if not isinstance(value, list) or len(value) != len(subs):
            return False
        return all(sub(v, out) for sub, v in zip(subs, value, strict=True))

    return invert


def _dist(node: Dist, dist: Any) -> Inverter:
    label, q = node.label, node.named_args.get("q")
    low, high = dist.low, dist.high
    integer = isinstance(dist, import_optuna().distributions.IntDistribution)

    def invert(value: Any, out: dict[str, Any]) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        raw = float(value) / q if q is not None else float(value)
        raw = min(max(raw, low), high)
        out[label] = round(raw) if integer else raw
        return True

    return invert


def _options(label: str, options: Sequence[Any], distributions: Mapping[str, Any]) -> Inverter:
    scalar = all(type(o) is str or type(o) is int for o in options)
    if scalar:  # plain constants: one lookup (the first of equal options wins)
        index: dict[tuple[type, Any], int] = {}
        for i, o in enumerate(options):
            index.setdefault((type(o), o), i)

        def lookup(value: Any, out: dict[str, Any]) -> bool:
            try:
                i = index.get((type(value), value))
            except TypeError:  # unhashable: a dict or a list
                return False
            if i is None:
                return False
            out[label] = i
            return True

        return lookup
    subs = [compile_inverse(o, distributions) for o in options]

    def invert(value: Any, out: dict[str, Any]) -> bool:
        for i, sub in enumerate(subs):
            tmp: dict[str, Any] = {}
            if sub(value, tmp):
                out[label] = i
                out.update(tmp)
                return True
        return False

    return invert


def _constant(node: Any) -> Inverter:
    scalar = isinstance(node, str | int)
    text: list[str] = []  # the node's JSON, made on first need

    def invert(value: Any, out: dict[str, Any]) -> bool:
        if type(node) is type(value) and node == value:  # the common case, without JSON
            return True
        if scalar and isinstance(value, str | int | float | None):
            return False  # a scalar equals only itself (1 and True, 1 and 1.0 differ in JSON)
        if not text:
            text.append(dumps(node))
        return text[0] == dumps(value)

    return invert
