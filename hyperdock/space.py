"""The search-space model: distributions, grid axes and nested choices.

A space is a tree of plain dicts, lists and JSON constants in which *nodes* stand for
the values a sampler picks:

* :class:`Dist`: one of hyperopt's numeric distributions (``uniform``, ``quniform``,
  ``loguniform``, ``qloguniform``, ``normal``, ``qnormal``, ``lognormal``,
  ``qlognormal``, ``randint``, ``uniformint``) with hyperopt's exact semantics;
* :class:`Choice`: ``choice``/``pchoice`` over options that are sub-spaces themselves
  (conditional parameters);
* :class:`GridAxis`: a list of constants (the v0.4 data format);
* :class:`Union`: alternative sub-spaces whose expansions are concatenated (the v0.4
  "list of specs"); allowed at the top of a space only.

:class:`Space` validates such a tree and samples it, enumerates its grid, describes it
and converts it to and from JSON. Build nodes with :mod:`hyperdock.hp`; hyperopt's
``hp.*`` expressions are translated into them (:func:`from_hyperopt`).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias, cast

from hyperdock.errors import SpaceError
from hyperdock.jsonutil import dumps, is_finite_number, to_jsonable

__all__ = [
    "DIST_KINDS",
    "LOG_KINDS",
    "MAX_DEPTH",
    "MAX_NODES",
    "UNION_LABEL",
    "Choice",
    "Dist",
    "GridAxis",
    "Node",
    "Param",
    "ParamView",
    "Space",
    "Union",
    "check_shape",
    "from_hyperopt",
]

#: Distributions whose values spread on a log scale (a plot of them wants a log axis).
LOG_KINDS = frozenset({"loguniform", "qloguniform", "lognormal", "qlognormal"})

#: The label :meth:`Space.parameters` gives the pick between the members of a Union.
UNION_LABEL = "$union"

_PCHOICE_TOLERANCE = 1e-6
_MAX_LOG = 700.0  # exp(709.8) overflows a float

#: Deepest nesting of containers and nodes a space may have: every walk over a space
#: recurses once per level, and Python's stack holds about a thousand.
MAX_DEPTH = 200
#: Most values a space may hold, counting shared parts (YAML aliases, a list put in
#: twice) once per place they appear, so an exponential document is refused early.
MAX_NODES = 1_000_000
#: A choice, union or quantised range with at most this many grid values has its
#: values listed once and identical ones dropped; larger ones are decoded by index.
_SMALL_AXIS = 4096

Args: TypeAlias = tuple[float, ...]


def _multiple(k: int, q: float) -> float:
    """``k * q`` without float noise: 6 * 0.05 is 0.3, not 0.30000000000000004."""
    return float(f"{k * q:.12g}")


def _quantise(x: float, q: float) -> float:
    """hyperopt's quantisation ``round(x / q) * q`` (round half to even, like numpy)."""
    return _multiple(round(x / q), q)


def _steps(low: float, high: float, q: float) -> tuple[range, float]:
    """Every ``k`` with ``k * q`` a possible value of ``round(U(low, high) / q) * q``."""
    return range(round(low / q), round(high / q) + 1), q


@dataclass(frozen=True)
class _Kind:
    """One distribution kind: argument names, how to draw, how to enumerate."""

    arg_names: tuple[str, ...]
    draw: Callable[[random.Random, Args], float]
    # Grid: (range of k, q) such that the values are k * q; None if not enumerable.
    steps: Callable[[Args], tuple[range, float]] | None = None
    integer: bool = False  # values are Python ints
    whole: tuple[str, ...] = ()  # arguments that must be whole numbers


_KINDS: dict[str, _Kind] = {
    "uniform": _Kind(("low", "high"), lambda r, a: r.uniform(a[0], a[1])),
    "quniform": _Kind(
        ("low", "high", "q"),
        lambda r, a: _quantise(r.uniform(a[0], a[1]), a[2]),
        lambda a: _steps(a[0], a[1], a[2]),
    ),
    "loguniform": _Kind(("low", "high"), lambda r, a: math.exp(r.uniform(a[0], a[1]))),
    "qloguniform": _Kind(
        ("low", "high", "q"),
        lambda r, a: _quantise(math.exp(r.uniform(a[0], a[1])), a[2]),
        lambda a: _steps(math.exp(a[0]), math.exp(a[1]), a[2]),
    ),
    "normal": _Kind(("mu", "sigma"), lambda r, a: r.normalvariate(a[0], a[1])),
    "qnormal": _Kind(
        ("mu", "sigma", "q"), lambda r, a: _quantise(r.normalvariate(a[0], a[1]), a[2])
    ),
    "lognormal": _Kind(("mu", "sigma"), lambda r, a: math.exp(r.normalvariate(a[0], a[1]))),
    "qlognormal": _Kind(
        ("mu", "sigma", "q"),
        lambda r, a: _quantise(math.exp(r.normalvariate(a[0], a[1])), a[2]),
    ),
    "randint": _Kind(
        ("low", "high"),
        lambda r, a: r.randrange(int(a[0]), int(a[1])),
        lambda a: (range(int(a[0]), int(a[1])), 1),
        integer=True,
        whole=("low", "high"),
    ),
    "uniformint": _Kind(
        ("low", "high", "q"),
        lambda r, a: _quantise(r.uniform(a[0], a[1]), a[2]),
        lambda a: _steps(a[0], a[1], a[2]),
        integer=True,
        whole=("q",),
    ),
}

#: The numeric distribution kinds (hyperopt's order) and their argument names.
DIST_KINDS: dict[str, tuple[str, ...]] = {name: k.arg_names for name, k in _KINDS.items()}


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _plain(value: Any) -> Any:
    """``value`` as plain JSON if it converts (numpy scalars), else unchanged."""
    try:
        return to_jsonable(value)
    except TypeError:
        return value


def _check_label(label: Any) -> None:
    if not isinstance(label, str) or not label:
        raise SpaceError(f"parameter label must be a non-empty string, got {label!r}")


def _has_non_finite(value: Any) -> bool:
    """Whether JSON-native ``value`` holds a NaN or an infinity anywhere."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _children(
    obj: Any,
) -> list[tuple[Callable[[], str], Any]] | Iterator[tuple[Callable[[], str], Any]]:
    """The parts of ``obj`` a walk over a space visits, each with a function that names
    its location (named only when needed: a list of millions of values must not cost
    millions of strings); empty (a list) for a leaf."""
    match obj:
        case dict():
            return ((functools.partial(_key_name, k), v) for k, v in obj.items()) if obj else []
        case list() | tuple():
            return (
                ((functools.partial(_index_name, i), v) for i, v in enumerate(obj)) if obj else []
            )
        case Choice():
            return [
                (functools.partial(_option_name_of, obj.label, i), o)
                for i, o in enumerate(obj.options)
            ]
        case Union():
            return [(functools.partial(_index_name, i), m) for i, m in enumerate(obj.spaces)]
        case GridAxis():
            values = obj.values
            return (
                ((functools.partial(_index_name, i), v) for i, v in enumerate(values))
                if values
                else []
            )
    if type(obj).__module__.startswith("hyperopt.") and hasattr(obj, "named_args"):
        # A hyperopt expression: its arguments, and a literal's value.
        parts = [*obj.pos_args, *(v for _, v in obj.named_args)]
        if getattr(obj, "name", None) == "literal":
            parts.append(obj.obj)
        return [(_no_name, p) for p in parts]
    return []


def _key_name(key: Any) -> str:
    return f"[{key!r}]"


def _index_name(i: int) -> str:
    return f"[{i}]"


def _option_name_of(label: str, i: int) -> str:
    return f"(option {i} of {label!r})"


def _no_name() -> str:
    return ""


def check_shape(obj: Any, where: str = "space") -> None:
    """Refuse a space that contains itself, is nested deeper than :data:`MAX_DEPTH` or
    holds more than :data:`MAX_NODES` values, in time and memory bounded by those limits
    (without recursion: the walks that follow recurse once per level).

    Raises:
        SpaceError: naming where the problem is.
    """
    count = 0
    on_path: set[int] = set()
    # A stack of (location, node, remaining children) per level: the path from the top.
    path: list[tuple[str, Any, Iterator[tuple[Callable[[], str], Any]]]] = [
        (where, obj, iter(_children(obj)))
    ]
    on_path.add(id(obj))
    while path:
        location, node, pending = path[-1]
        step = next(pending, None)
        if step is None:
            on_path.discard(id(node))
            path.pop()
            continue
        name, child = step
        count += 1
        if count > MAX_NODES:
            raise SpaceError(
                f"the space holds more than {MAX_NODES:,} values (counting a shared part, "
                f"e.g. a YAML alias, once per place it appears); make it smaller"
            )
        parts = _children(child)
        if isinstance(parts, list) and not parts:
            continue
        inner = f"{location}{name()}"
        if id(child) in on_path:
            raise SpaceError(
                f"{inner} contains itself (a recursive space); a space must be a tree: "
                f"build that part without a reference to the space around it"
            )
        if len(path) >= MAX_DEPTH:
            raise SpaceError(
                f"the space is nested more than {MAX_DEPTH} levels deep (at {inner[:200]}); "
                f"flatten it"
            )
        on_path.add(id(child))
        path.append((inner, child, iter(parts)))


def _check_dist(kind_name: str, label: str, raw: Args) -> Args:
    _check_label(label)
    kind = _KINDS.get(kind_name)
    if kind is None:
        raise SpaceError(
            f"parameter {label!r}: unknown distribution {kind_name!r}; "
            f"use one of {', '.join(_KINDS)}"
        )
    if len(raw) != len(kind.arg_names):
        raise SpaceError(
            f"parameter {label!r}: {kind_name} takes {', '.join(kind.arg_names)}, "
            f"got {len(raw)} value(s): {list(raw)!r}"
        )
    args: dict[str, float] = {}
    for name, given in zip(kind.arg_names, raw, strict=True):
        value = _plain(given)
        if not is_finite_number(value):
            raise SpaceError(
                f"parameter {label!r}: {kind_name} {name} must be a finite number, got {given!r}"
            )
        if name in kind.whole:
            if value != int(value):
                raise SpaceError(
                    f"parameter {label!r}: {kind_name} {name} must be a whole number, "
                    f"got {name}={value!r}"
                    + ("; use quniform for fractional steps" if name == "q" else "")
                )
            value = int(value)
        args[name] = value
    if "high" in args and not args["low"] < args["high"]:
        raise SpaceError(
            f"parameter {label!r}: {kind_name} needs low < high, "
            f"got low={_fmt(args['low'])}, high={_fmt(args['high'])}"
        )
    for name in ("q", "sigma"):
        if name in args and args[name] <= 0:
            raise SpaceError(
                f"parameter {label!r}: {kind_name} needs {name} > 0, got {name}={_fmt(args[name])}"
            )
    if kind_name.endswith("loguniform") and args["high"] > _MAX_LOG:
        raise SpaceError(
            f"parameter {label!r}: {kind_name} takes low and high in log space (values "
            f"lie between exp(low) and exp(high)); high={_fmt(args['high'])} overflows: "
            f"pass math.log of the bounds"
        )
    return tuple(args.values())


@dataclass(frozen=True)
class Dist:
    """A numeric distribution node (hyperopt semantics).

    Attributes:
        kind: One of :data:`DIST_KINDS`.
        label: The parameter's unique label.
        args: The kind's arguments in order (``randint`` always holds ``low, high``).
    """

    kind: str
    label: str
    args: Args

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", _check_dist(self.kind, self.label, tuple(self.args)))

    @property
    def named_args(self) -> dict[str, float]:
        """The arguments by name, e.g. ``{"low": 0, "high": 1}``."""
        return dict(zip(_KINDS[self.kind].arg_names, self.args, strict=True))


@dataclass(frozen=True)
class Choice:
    """``choice`` (``p`` is None, options equally likely) or ``pchoice`` node.

    Attributes:
        label: The parameter's unique label.
        options: The options; each is a sub-space (dict, list, constant or node).
        p: Probability of each option (``pchoice``), summing to 1; None for ``choice``.
    """

    label: str
    options: tuple[Any, ...]
    p: tuple[float, ...] | None = None

    @property
    def kind(self) -> str:
        """``"choice"`` or ``"pchoice"``."""
        return "choice" if self.p is None else "pchoice"

    def __post_init__(self) -> None:
        _check_label(self.label)
        object.__setattr__(self, "options", tuple(self.options))
        if not self.options:
            raise SpaceError(
                f"parameter {self.label!r}: {self.kind} needs at least one option, got none"
            )
        if self.p is None:
            return
        p = tuple(_plain(x) for x in self.p)
        object.__setattr__(self, "p", p)
        if len(p) != len(self.options):
            raise SpaceError(
                f"parameter {self.label!r}: pchoice needs one probability per option, "
                f"got {len(p)} for {len(self.options)} options"
            )
        if not all(is_finite_number(x) and 0 <= x <= 1 for x in p):
            raise SpaceError(
                f"parameter {self.label!r}: pchoice probabilities must be numbers "
                f"between 0 and 1, got {list(p)!r}"
            )
        total = math.fsum(p)
        if abs(total - 1) > _PCHOICE_TOLERANCE:
            raise SpaceError(
                f"parameter {self.label!r}: pchoice probabilities must sum to 1, got "
                f"{list(p)!r} (sum {total:.6g}); fix the weights"
            )


@dataclass(frozen=True)
class GridAxis:
    """A list of constant values (v0.4 format).

    The grid sampler enumerates every value; the random sampler picks one uniformly.

    Raises:
        SpaceError: the axis is empty, or a value is not a JSON constant (NaN and
            infinity included).
    """

    label: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        _check_label(self.label)
        values = []
        for value in self.values:
            try:
                plain = to_jsonable(value)
            except TypeError:
                raise SpaceError(
                    f"parameter {self.label!r}: grid values must be JSON constants, got {value!r}"
                ) from None
            if _has_non_finite(plain):
                raise SpaceError(
                    f"parameter {self.label!r}: grid value {value!r} is not a finite number "
                    f"(JSON has no NaN or infinity); remove it or use a number"
                )
            values.append(plain)
        # An empty axis is allowed here: a member of a v0.4 space list may have one
        # (hdock_samples: 0 turns that member off). Space.from_obj refuses a space
        # that has no points at all, or an empty axis where it would be sampled.
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Union:
    """Alternative sub-spaces whose grid expansions are concatenated (v0.4 spec list).

    Only allowed at the top of a space. Labels must be unique within each member but
    may repeat across members. Random sampling first picks a member: weighted by the
    members' grid sizes when all are finite (so every grid point is equally likely),
    uniformly otherwise. :meth:`Space.parameters` reports that pick as a choice-like
    parameter labelled :data:`UNION_LABEL`.
    """

    spaces: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "spaces", tuple(self.spaces))
        if not self.spaces:
            raise SpaceError("a union of spaces (list of specs) needs at least one member")


Node: TypeAlias = Dist | Choice | GridAxis | Union


@dataclass(frozen=True)
class Param:
    """One node of a space, flattened (see :meth:`Space.parameters`).

    Attributes:
        label: The node's label (:data:`UNION_LABEL` for the pick of a Union member).
        kind: A :data:`DIST_KINDS` name, ``"choice"``, ``"pchoice"``, ``"grid"`` or
            ``"union"``.
        args: Distribution arguments by name (``{"low": 0, "high": 1}``);
            ``{"n_options": n}`` for choice and union, plus ``"p"`` for pchoice;
            ``{"values": [...]}`` for grid.
        condition: ``(choice_label, option_index)`` pairs that must all hold for the
            node to be active; empty for unconditional parameters.
    """

    label: str
    kind: str
    args: dict[str, Any] = field(hash=False)
    condition: tuple[tuple[str, int], ...] = ()


# -- hyperopt translation ---------------------------------------------------------------

_SUPPORTED = (
    "Hyperdock understands hyperopt's hp.* parameters (uniform, quniform, loguniform, "
    "qloguniform, normal, qnormal, lognormal, qlognormal, randint, uniformint, choice, "
    "pchoice), scope.int() around hp.quniform, and dicts, lists, tuples and constants "
    "around them; compute derived values in the target instead"
)


def _is_apply(obj: Any) -> bool:
    return type(obj).__module__.startswith("hyperopt.") and hasattr(obj, "named_args")


def from_hyperopt(obj: Any, *, where: str = "space") -> Any:
    """Translate hyperopt ``hp.*`` expressions inside ``obj`` into hyperdock nodes.

    Plain containers are walked (tuples become lists); hyperdock nodes and constants
    are returned as they are. hyperopt is not imported.

    Args:
        obj: A space, or part of one, possibly holding hyperopt expressions.
        where: How error messages name ``obj``'s position.

    Raises:
        SpaceError: An expression has no hyperdock equivalent (e.g. arithmetic on
            parameters); the message names the parameter(s) involved.
    """
    return _walk(obj, where)


def _walk(obj: Any, where: str) -> Any:
    match obj:
        case _ if _is_apply(obj):
            return _translate(obj, where)
        case dict():
            return {k: _walk(v, f"{where}[{k!r}]") for k, v in obj.items()}
        case list() | tuple():
            return [_walk(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        case Choice():
            options = (
                _walk(o, f"{where}(option {i} of {obj.label!r})") for i, o in enumerate(obj.options)
            )
            return Choice(obj.label, tuple(options), obj.p)
        case Union():
            return Union(tuple(_walk(s, f"{where}[{i}]") for i, s in enumerate(obj.spaces)))
    return obj


def _translate(expr: Any, where: str) -> Any:
    name, pos = expr.name, expr.pos_args
    if name == "literal":
        return _walk(expr.obj, where)
    if name == "pos_args":
        return [_translate(a, f"{where}[{i}]") for i, a in enumerate(pos)]
    if name == "dict":
        if not pos:
            return {k: _translate(v, f"{where}[{k!r}]") for k, v in expr.named_args}
        return {k: v for k, v in _translate(pos[0], where)}  # non-string keys: pairs
    if name == "hyperopt_param":
        return _param(expr, where)
    if name == "switch" and pos and getattr(pos[0], "name", None) == "hyperopt_param":
        label, index = _label_and_dist(pos[0], where)
        options = tuple(
            _translate(o, f"{where}(option {i} of {label!r})") for i, o in enumerate(pos[1:])
        )
        where = f"{where}, parameter {label!r}"
        if index.name == "randint":
            return Choice(label, options)
        if index.name == "categorical":
            p = _const(_bind(index, ("p", "upper"), where)["p"], where)
            return Choice(label, options, tuple(p))
    if name in ("float", "int") and len(pos) == 1 and not expr.named_args:
        inner = _translate(pos[0], where)
        if isinstance(inner, Dist):
            integer = inner.kind in ("randint", "uniformint")
            if integer == (name == "int"):
                return inner
            if name == "int" and inner.kind == "quniform":
                return Dist("uniformint", inner.label, inner.args)
        elif isinstance(inner, int | float) and not isinstance(inner, bool):
            return int(inner) if name == "int" else float(inner)
    raise _unsupported(expr, where)


def _param(expr: Any, where: str) -> Dist:
    label, dist = _label_and_dist(expr, where)
    where = f"{where}, parameter {label!r}"
    if dist.name == "randint":
        args = _bind(dist, ("low", "high"), where)
        bounds = [_const(args[k], where) for k in ("low", "high") if k in args]
        return Dist("randint", label, tuple([0, *bounds][-2:]))
    if dist.name not in DIST_KINDS or dist.name == "uniformint":
        raise _unsupported(expr, where)
    names = DIST_KINDS[dist.name]
    args = _bind(dist, names, where)
    if set(args) != set(names):
        raise _unsupported(expr, where)
    return Dist(dist.name, label, tuple(_const(args[n], where) for n in names))


def _label_and_dist(expr: Any, where: str) -> tuple[str, Any]:
    args = _bind(expr, ("label", "obj"), where)
    if set(args) != {"label", "obj"}:
        raise _unsupported(expr, where)
    label = _const(args["label"], where)
    if not isinstance(label, str):
        raise SpaceError(f"{where}: hyperopt parameter label must be a string, got {label!r}")
    return label, args["obj"]


def _bind(expr: Any, names: tuple[str, ...], where: str) -> dict[str, Any]:
    """The arguments of ``expr`` by name (positional ones take ``names`` in order)."""
    args = dict(zip(names, expr.pos_args, strict=False))
    args.update((k, v) for k, v in expr.named_args)
    if len(expr.pos_args) > len(names) or not set(args) <= set(names):
        raise _unsupported(expr, where)
    return args


def _const(expr: Any, where: str) -> Any:
    """The value of a constant sub-expression (literals and lists of them)."""
    if expr.name == "literal":
        return expr.obj
    if expr.name == "pos_args":
        return [_const(a, where) for a in expr.pos_args]
    raise SpaceError(
        f"{where}: the argument {_show(expr)} must be a constant; parameters that depend "
        f"on other parameters are not supported. {_SUPPORTED}"
    )


def _show(expr: Any) -> str:
    labels = _labels_in(expr)
    involving = f" involving parameter(s) {', '.join(map(repr, labels))}" if labels else ""
    return f"'{expr.name}(...)'{involving}"


def _labels_in(expr: Any) -> list[str]:
    labels: dict[str, None] = {}
    stack, seen = [expr], set()
    while stack:
        node = stack.pop()
        if id(node) in seen or not _is_apply(node):
            continue
        seen.add(id(node))
        if node.name == "hyperopt_param" and node.pos_args and node.pos_args[0].name == "literal":
            labels[str(node.pos_args[0].obj)] = None
        stack += [*reversed(node.pos_args), *(v for _, v in node.named_args)]
    return list(labels)


def _unsupported(expr: Any, where: str) -> SpaceError:
    return SpaceError(
        f"{where}: cannot translate the hyperopt expression {_show(expr)}. {_SUPPORTED}"
    )


def _is_hyperopt(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "hyperopt"


def _normalise(obj: Any, where: str, seen: dict[str, str]) -> Any:
    """Validate ``obj`` as a space tree: JSON constants, unique labels, no inner Union."""
    if _is_hyperopt(obj):
        obj = from_hyperopt(obj, where=where)
    if isinstance(obj, (Dist, Choice, GridAxis)):
        if obj.label in seen:
            raise SpaceError(
                f"parameter {obj.label!r} is defined twice (at {seen[obj.label]} and at "
                f"{where}); give every parameter its own label"
            )
        seen[obj.label] = where
    match obj:
        case dict():
            return {str(k): _normalise(v, f"{where}[{k!r}]", seen) for k, v in obj.items()}
        case list() | tuple():
            return [_normalise(v, f"{where}[{i}]", seen) for i, v in enumerate(obj)]
        case Choice():
            options = (
                _normalise(o, f"{where}(option {i} of {obj.label!r})", seen)
                for i, o in enumerate(obj.options)
            )
            return replace(obj, options=tuple(options))
        case Dist() | GridAxis():
            return obj
        case Union():
            raise SpaceError(
                f"{where}: a union of spaces (list of specs) is only allowed at the top of a space"
            )
    try:
        value = to_jsonable(obj)
    except TypeError:
        raise SpaceError(
            f"{where}: {type(obj).__name__} value {obj!r} is not a JSON value; parameter "
            f"values must be numbers, strings, booleans, None, lists or dicts"
        ) from None
    if _has_non_finite(value):
        raise SpaceError(
            f"{where}: {obj!r} is not a finite number (JSON has no NaN or infinity); give a number"
        )
    return value


def _makes_object(node: Any) -> bool:
    match node:
        case dict():
            return True
        case Choice():
            return all(_makes_object(o) for o in node.options)
        case Union():
            return all(_makes_object(s) for s in node.spaces)
    return False


def _union_weights(node: Union) -> list[int] | None:
    try:
        return [_size(s) for s in node.spaces]
    except SpaceError:
        return None


def _pick(rng: random.Random, p: tuple[float, ...]) -> int:
    u = rng.random()
    for i, acc in enumerate(itertools.accumulate(p)):
        if u < acc:
            return i
    return max(i for i, x in enumerate(p) if x > 0)  # u landed in the rounding slack


def _sample(node: Any, rng: random.Random) -> Any:
    match node:
        case dict():
            return {k: _sample(v, rng) for k, v in node.items()}
        case list():
            return [_sample(v, rng) for v in node]
        case Dist():
            kind = _KINDS[node.kind]
            value = kind.draw(rng, node.args)
            return int(value) if kind.integer else float(value)
        case Choice():
            i = rng.randrange(len(node.options)) if node.p is None else _pick(rng, node.p)
            return _sample(node.options[i], rng)
        case GridAxis():
            if not node.values:
                raise SpaceError(
                    f"parameter {node.label!r} has no values (empty grid axis); "
                    f"give it at least one value"
                )
            return _sample(node.values[rng.randrange(len(node.values))], rng)
        case Union():
            weights = _union_weights(node)
            if weights is None:
                members = [m for m in node.spaces if _empty_axis(m) is None]
                return _sample(members[rng.randrange(len(members))], rng)
            if sum(weights) == 0:
                raise SpaceError("the space has no points: every member has an empty axis")
            ends = list(itertools.accumulate(weights))
            return _sample(node.spaces[bisect.bisect_right(ends, rng.randrange(ends[-1]))], rng)
    return node


def _empty_axis(node: Any) -> str | None:
    """The label of an empty grid axis that leaves ``node`` without points (every
    option of a choice must have points; a union needs one member that has), or None."""
    match node:
        case dict():
            children: Any = node.values()
        case list():
            children = node
        case GridAxis():
            if not node.values:
                return node.label
            children = node.values
        case Choice():
            children = node.options
        case Union():
            found = [_empty_axis(m) for m in node.spaces]
            return found[0] if all(found) else None
        case _:
            return None
    for child in children:
        if (label := _empty_axis(child)) is not None:
            return label
    return None


def _size(node: Any) -> int:
    """Number of grid points below ``node``; SpaceError naming a non-finite parameter."""
    match node:
        case dict():
            return math.prod(_size(v) for v in node.values())
        case list():
            return math.prod(_size(v) for v in node)
        case Dist():
            kind = _KINDS[node.kind]
            if kind.steps is None:
                what = "unbounded" if "q" in kind.arg_names else "continuous"
                raise SpaceError(
                    f"parameter {node.label!r} is {what} ({node.kind}); the grid sampler "
                    f"needs a finite space: use --sampler random (or tpe), or make it "
                    f"quniform/choice"
                )
            steps, _ = kind.steps(node.args)
            return max(0, steps.stop - steps.start)
        case Choice():
            return sum(_size(o) for o in node.options)
        case GridAxis():
            return len(node.values)
        case Union():
            return sum(_size(s) for s in node.spaces)
    return 1


class _Lazy:
    """The grid values of one part of a space, decoded by index (nothing enumerated)."""

    size: int

    def at(self, k: int) -> Any:
        """Value ``k`` (``0 <= k < size``); containers may be shared between values."""
        raise NotImplementedError


class _Values(_Lazy):
    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.size = len(values)

    def at(self, k: int) -> Any:
        return self.values[k]


class _Steps(_Lazy):
    """``k * q`` for ``k`` in a range (a quantised or integer distribution)."""

    def __init__(self, steps: range, q: float, integer: bool) -> None:
        self.steps, self.q, self.integer = steps, q, integer
        self.size = len(steps)

    def at(self, k: int) -> Any:
        value = _multiple(self.steps[k], self.q)
        return int(value) if self.integer else float(value)


class _Product(_Lazy):
    """A dict's or list's values: mixed-radix decoding, the last part fastest (the
    order of ``itertools.product``)."""

    def __init__(self, keys: list[str] | None, parts: list[_Lazy]) -> None:
        self.keys, self.parts = keys, parts
        self.size = math.prod(p.size for p in parts)

    def at(self, k: int) -> Any:
        values = []
        for part in reversed(self.parts):
            k, digit = divmod(k, part.size)
            values.append(part.at(digit))
        values.reverse()
        return values if self.keys is None else dict(zip(self.keys, values, strict=True))


class _Concat(_Lazy):
    """A choice's options or a union's members, one after the other."""

    def __init__(self, parts: list[_Lazy]) -> None:
        self.parts = [p for p in parts if p.size]
        self.ends = list(itertools.accumulate(p.size for p in self.parts))
        self.size = self.ends[-1] if self.ends else 0

    def at(self, k: int) -> Any:
        i = bisect.bisect_right(self.ends, k)
        return self.parts[i].at(k - (self.ends[i - 1] if i else 0))


def _distinct(values: Iterator[Any]) -> list[Any]:
    """``values`` without repeats (as JSON: 1 and 1.0 differ), first ones kept."""
    first: dict[str, Any] = {}
    for value in values:
        first.setdefault(dumps(value), value)
    return list(first.values())


def _lazy(node: Any) -> _Lazy:
    """``node``'s grid, decoded by index; _size() has checked it is finite. Parts that
    can repeat a value (choices, unions, ranges) are listed and deduplicated when small,
    so identical points are rare in a large grid."""
    lazy: _Lazy
    match node:
        case dict():
            return _Product(list(node), [_lazy(v) for v in node.values()])
        case list():
            return _Product(None, [_lazy(v) for v in node])
        case GridAxis():
            return _Values(_distinct(iter(node.values)))
        case Dist():
            kind = _KINDS[node.kind]
            assert kind.steps is not None
            steps, q = kind.steps(node.args)
            lazy = _Steps(steps if steps.stop > steps.start else range(0), q, kind.integer)
        case Choice():
            lazy = _Concat([_lazy(o) for o in node.options])
        case Union():
            lazy = _Concat([_lazy(m) for m in node.spaces])
        case _:
            return _Values([node])
    if lazy.size <= _SMALL_AXIS:
        return _Values(_distinct(lazy.at(k) for k in range(lazy.size)))
    return lazy


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _params(node: Any, condition: tuple[tuple[str, int], ...], out: list[Param]) -> None:
    match node:
        case dict():
            for value in node.values():
                _params(value, condition, out)
        case list():
            for value in node:
                _params(value, condition, out)
        case Dist():
            out.append(Param(node.label, node.kind, node.named_args, condition))
        case GridAxis():
            out.append(Param(node.label, "grid", {"values": list(node.values)}, condition))
        case Choice():
            args: dict[str, Any] = {"n_options": len(node.options)}
            if node.p is not None:
                args["p"] = list(node.p)
            _branches(Param(node.label, node.kind, args, condition), node.options, out)
        case Union():
            param = Param(UNION_LABEL, "union", {"n_options": len(node.spaces)}, condition)
            _branches(param, node.spaces, out)


def _branches(param: Param, members: tuple[Any, ...], out: list[Param]) -> None:
    out.append(param)
    for i, member in enumerate(members):
        _params(member, (*param.condition, (param.label, i)), out)


def _encode(node: Any) -> Any:
    match node:
        case dict():
            items = {k: _encode(v) for k, v in node.items()}
            return {"$hp": "dict", "items": items} if "$hp" in node else items
        case list():
            return [_encode(v) for v in node]
        case Dist():
            return {"$hp": node.kind, "label": node.label, **node.named_args}
        case Choice():
            data: dict[str, Any] = {"$hp": node.kind, "label": node.label}
            if node.p is not None:
                data["p"] = list(node.p)
            return {**data, "options": [_encode(o) for o in node.options]}
        case GridAxis():
            return {"$hp": "grid", "label": node.label, "values": _encode(list(node.values))}
        case Union():
            return {"$hp": "union", "spaces": [_encode(s) for s in node.spaces]}
    return node


def _decode(data: Any) -> Any:
    if isinstance(data, list):
        return [_decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$hp" not in data:
        return {k: _decode(v) for k, v in data.items()}
    tag = data["$hp"]
    try:
        if tag == "dict":
            return {k: _decode(v) for k, v in data["items"].items()}
        if tag in _KINDS:
            return Dist(tag, data["label"], tuple(data[n] for n in _KINDS[tag].arg_names))
        if tag in ("choice", "pchoice"):
            options = tuple(_decode(o) for o in data["options"])
            p = tuple(data["p"]) if tag == "pchoice" else None
            return Choice(data["label"], options, p)
        if tag == "grid":
            return GridAxis(data["label"], tuple(_decode(data["values"])))
        if tag == "union":
            return Union(tuple(_decode(s) for s in data["spaces"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise SpaceError(f"invalid space JSON: {tag!r} node {data!r} lacks {exc}") from None
    raise SpaceError(f"invalid space JSON: unknown node type {tag!r} in {data!r}")


def _describe_args(param: Param) -> str:
    if param.kind in _KINDS:
        return f"{param.kind}({', '.join(_fmt(v) for v in param.args.values())})"
    if param.kind == "grid":
        values = param.args["values"]
        shown = ", ".join(_fmt(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        return f"grid[{shown}] ({len(values)} values)"
    if param.kind == "pchoice":
        return f"pchoice(p={', '.join(_fmt(p) for p in param.args['p'])})"
    return f"{param.kind}({param.args['n_options']} options)"


@dataclass(frozen=True)
class ParamView:
    """One parameter as a person reads it (see :meth:`Space.views`).

    Attributes:
        label: The node's label.
        kind: As in :attr:`Param.kind`.
        text: Its values in real units, e.g. ``"log-uniform 0.01-1"``,
            ``"one of sgd, adam"``, ``"integer 1-4"``.
        log: Values spread on a log scale (a plot wants a log axis).
        condition: When it is active, by option name (``"optimizer = sgd"``); empty
            when always.
        paths: Keys of the flattened parameter values (``"opt.momentum"``) it sets.
    """

    label: str
    kind: str
    text: str
    log: bool
    condition: str
    paths: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the dashboard's API)."""
        return {
            "label": self.label,
            "kind": self.kind,
            "text": self.text,
            "log": self.log,
            "condition": self.condition,
            "paths": list(self.paths),
        }


def _num(value: float, digits: int = 6) -> str:
    """A number for people: 0.01, 1, 2.5e-05 (no float noise)."""
    return f"{value:.{digits}g}"


def _round(value: float) -> str:
    """A computed value (``exp`` of a bound) with the fewest digits within 1% of it:
    ``log(0.01)`` given as -4.6 reads 0.01, not 0.01005."""
    for digits in (1, 2):
        text = f"{value:.{digits}g}"
        if abs(float(text) - value) <= 0.01 * abs(value):
            return text
    return f"{value:.3g}"


def _range(low: float, high: float, computed: bool = False) -> str:
    show = _round if computed else _num
    return f"{show(low)}\u2013{show(high)}"  # an en dash


def _view_text(node: Dist | Choice | GridAxis, names: list[str]) -> str:
    """What ``node`` draws, in the units its values have."""
    if isinstance(node, GridAxis):
        shown = ", ".join(_show_value(v) for v in node.values[:6])
        more = f", … ({len(node.values)} values)" if len(node.values) > 6 else ""
        return f"grid {shown}{more}" if node.values else "grid (no values)"
    if isinstance(node, Choice):
        if node.p is None:
            return "one of " + ", ".join(names)
        return "one of " + ", ".join(f"{n} (p={p:g})" for n, p in zip(names, node.p, strict=True))
    a = node.named_args
    step = f" step {_num(a['q'])}" if "q" in a else ""
    match node.kind:
        case "uniform" | "quniform":
            return f"uniform {_range(a['low'], a['high'])}{step}"
        case "loguniform" | "qloguniform":
            # hyperopt's bounds are logarithms: show exp(low)-exp(high)
            return f"log-uniform {_range(math.exp(a['low']), math.exp(a['high']), True)}{step}"
        case "normal" | "qnormal":
            return f"normal mean {_num(a['mu'])} sd {_num(a['sigma'])}{step}"
        case "lognormal" | "qlognormal":
            # exp(normal): the median is exp(mu); 95% lie within exp(mu ± 2 sigma)
            lo, hi = math.exp(a["mu"] - 2 * a["sigma"]), math.exp(a["mu"] + 2 * a["sigma"])
            median = _round(math.exp(a["mu"]))
            return f"log-normal median {median} (95%: {_range(lo, hi, True)}){step}"
        case "randint":
            return f"integer {_range(a['low'], a['high'] - 1)}"
    return f"integer {_range(a['low'], a['high'])}" + (f" step {a['q']}" if a["q"] != 1 else "")


def _show_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return _num(value)
    return dumps(value)


def _option_name(option: Any, index: int) -> str:
    """How a person calls a choice's option: the constant itself, else the option's
    ``name``/``type``/… constant when it is a dict, else ``option N`` (1-based)."""
    if isinstance(option, (str, int, float, bool)) or option is None:
        return _show_value(option)
    if isinstance(option, dict):
        for key in ("name", "type", "kind", "model", "algorithm", "optimizer"):
            value = option.get(key)
            if isinstance(value, (str, int, float, bool)):
                return f"{key} {_show_value(value)}" if key != "name" else _show_value(value)
    return f"option {index + 1}"


class _Leaves:
    """What each flattened parameter path holds across a space: the nodes that set
    it, and whether it is a constant (the same value wherever it appears)."""

    def __init__(self) -> None:
        self.nodes: dict[str, list[Any]] = {}
        self.values: dict[str, list[Any]] = {}

    def visit(self, node: Any, path: str) -> None:
        match node:
            case dict():
                for key, value in node.items():
                    self.visit(value, f"{path}.{key}" if path else str(key))
            case Choice() | Union():
                # an option is the value at the choice's path (options that are dicts
                # spread their keys below it: those keys tell the options apart)
                members = node.options if isinstance(node, Choice) else node.spaces
                if isinstance(node, Choice) and not all(isinstance(o, dict) for o in members):
                    self.nodes.setdefault(path, []).append(node)
                subs = []
                for member in members:
                    sub = _Leaves()
                    sub.visit(member, path)
                    subs.append(sub)
                    for key, nodes in sub.nodes.items():
                        self.nodes.setdefault(key, []).extend(nodes)
                # a constant of some members only, or not the same in all, varies
                for key in dict.fromkeys(k for sub in subs for k in sub.values):
                    found = [sub.values.get(key) for sub in subs]
                    if (
                        all(f is not None for f in found)
                        and len({dumps(v) for f in found if f is not None for v in f}) == 1
                    ):
                        self.values.setdefault(key, []).extend(found[0] or [])
                    else:
                        self.nodes.setdefault(key, []).append(node)
            case GridAxis() if len({dumps(v) for v in node.values}) == 1:
                self.values.setdefault(path, []).append(node.values[0])  # one value: fixed
            case Dist() | GridAxis():
                self.nodes.setdefault(path, []).append(node)
            case list() if _has_node(node):
                self.nodes.setdefault(path, []).append(node)
            case _:
                self.values.setdefault(path, []).append(node)

    def constants(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path, values in self.values.items():
            if path and not self._varies(path) and all(v == values[0] for v in values):
                out[path] = values[0]
        return out

    def _varies(self, path: str) -> bool:
        return path in self.nodes


def _has_node(value: Any) -> bool:
    match value:
        case Dist() | Choice() | GridAxis() | Union():
            return True
        case dict():
            return any(_has_node(v) for v in value.values())
        case list() | tuple():
            return any(_has_node(v) for v in value)
    return False


def _paths_of(leaves: _Leaves) -> dict[int, list[str]]:
    """Flattened paths per node (by ``id``)."""
    out: dict[int, list[str]] = {}
    for path, nodes in leaves.nodes.items():
        for node in nodes:
            out.setdefault(id(node), []).append(path)
    return out


def _walk_nodes(node: Any) -> Iterator[Dist | Choice | GridAxis]:
    match node:
        case dict():
            for value in node.values():
                yield from _walk_nodes(value)
        case list():
            for value in node:
                yield from _walk_nodes(value)
        case Choice():
            yield node
            for option in node.options:
                yield from _walk_nodes(option)
        case Union():
            for member in node.spaces:
                yield from _walk_nodes(member)
        case Dist() | GridAxis():
            yield node


class Space:
    """A validated search space.

    Build one with :meth:`from_obj` (a tree of dicts, lists, constants and nodes, as
    made with :mod:`hyperdock.hp`, or hyperopt ``hp.*`` expressions) or :meth:`from_json`.
    Spaces are immutable.
    """

    __slots__ = ("_root",)

    def __init__(self, root: Any) -> None:
        """Wrap an already validated tree; use :meth:`from_obj` instead."""
        self._root = root

    @property
    def root(self) -> Any:
        """The validated tree (dicts, lists, JSON constants and nodes)."""
        return self._root

    @classmethod
    def from_obj(cls, obj: Any) -> Space:
        """Validate ``obj`` and return it as a space.

        Args:
            obj: A dict (or a choice of dicts, or a :class:`Union`) whose values are
                constants, containers and nodes. hyperopt expressions are translated.
                Tuples become lists; numpy numbers become Python numbers.

        Raises:
            SpaceError: A label is used twice, a node's arguments are invalid, a
                constant is not JSON (or NaN, or infinite), an axis is empty, the space
                cannot produce a JSON object, contains itself, is nested more than
                :data:`MAX_DEPTH` levels deep or holds more than :data:`MAX_NODES`
                values.
        """
        if isinstance(obj, Space):
            return obj
        check_shape(obj)
        if _is_hyperopt(obj):
            obj = from_hyperopt(obj)
        if isinstance(obj, Union):
            spaces = (_normalise(s, f"space[{i}]", {}) for i, s in enumerate(obj.spaces))
            root: Any = Union(tuple(spaces))
        else:
            root = _normalise(obj, "space", {})
        if not _makes_object(root):
            raise SpaceError(
                f"the space must produce a JSON object of parameter values, but its top "
                f"level is {_describe_top(root)}; wrap it in a dict, e.g. {{'x': ...}}"
            )
        if (empty := _empty_axis(root)) is not None:
            raise SpaceError(
                f"parameter {empty!r} has no values (an empty grid axis), so the space has "
                "no points; give it at least one value, or make it a constant"
            )
        return cls(root)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """Draw one point using only ``rng`` (reproducible for a seeded ``rng``).

        Returns:
            Fresh JSON-native parameter values, constants included.
        """
        return cast(dict[str, Any], _sample(self._root, rng))

    def grid(self) -> Iterator[dict[str, Any]]:
        """Enumerate every point of the grid (identical points are yielded once),
        lazily: the grid is never held in memory.

        The first keys vary slowest; choice options, union members and axis values
        appear in their order.

        Raises:
            SpaceError: (at once) a parameter is continuous or unbounded.
        """
        lazy = self.lazy_grid()
        return self._points(lazy)

    def lazy_grid(self) -> _Lazy:
        """The grid, decoded by index: ``.size`` points (identical ones rare, but
        possible when choice options of a large choice overlap), point ``k`` by
        ``.at(k)`` (shares containers: copy before changing).

        Raises:
            SpaceError: a parameter is continuous or unbounded.
        """
        _size(self._root)
        return _lazy(self._root)

    @staticmethod
    def _points(lazy: _Lazy) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        for k in range(lazy.size):
            point = lazy.at(k)
            key = dumps(point)
            if key not in seen:
                seen.add(key)
                yield _copy(point)

    def grid_size(self) -> int | None:
        """Number of grid points (computed, not enumerated; identical points count
        each time), or None if not enumerable."""
        try:
            return _size(self._root)
        except SpaceError:
            return None

    def finite_points(self, limit: int) -> list[dict[str, Any]] | None:
        """Every distinct point of a finite space (each parameter discrete: choice, grid
        axis, quantised or integer range, conditions included), in grid order.

        Args:
            limit: Give up (None) when the space has more points than this; the size
                is computed first, so a huge space is never enumerated.

        Returns:
            The points, or None for a continuous or unbounded space or one larger than
            ``limit``.
        """
        size = self.grid_size()
        if size is None or size > limit:
            return None
        return list(self._points(_lazy(self._root)))

    def to_json(self) -> Any:
        """Lossless JSON form; nodes become ``{"$hp": kind, "label": ..., ...}``."""
        return _encode(self._root)

    @classmethod
    def from_json(cls, data: Any) -> Space:
        """Inverse of :meth:`to_json`.

        Raises:
            SpaceError: ``data`` is not a valid space.
        """
        check_shape(data)
        return cls.from_obj(_decode(data))

    def parameters(self) -> list[Param]:
        """Every node of the space in tree order, with its activation condition."""
        out: list[Param] = []
        _params(self._root, (), out)
        return out

    def labels(self) -> list[str]:
        """Every node label in tree order (each once; no :data:`UNION_LABEL`)."""
        return list(dict.fromkeys(p.label for p in self.parameters() if p.kind != "union"))

    def describe(self) -> str:
        """A short summary: one line per parameter, conditional ones indented."""
        lines = []
        for param in self.parameters():
            when = " and ".join(f"{label}={i}" for label, i in param.condition)
            indent = "  " * len(param.condition)
            suffix = f"  [if {when}]" if when else ""
            lines.append(f"{indent}{param.label}: {_describe_args(param)}{suffix}")
        return "\n".join(lines) or "(no parameters: every trial gets the same values)"

    def views(self) -> list[ParamView]:
        """Every parameter as a person reads it, in tree order: real ranges (a
        log-uniform's ``exp`` bounds), whether its axis is logarithmic, and its
        condition by option name. The pick between Union members is left out."""
        leaves = _Leaves()
        leaves.visit(self._root, "")
        paths = _paths_of(leaves)
        nodes = {n.label: n for n in _walk_nodes(self._root)}
        names: dict[str, list[str]] = {
            label: [_option_name(o, i) for i, o in enumerate(n.options)]
            for label, n in nodes.items()
            if isinstance(n, Choice)
        }
        out = []
        for param in self.parameters():
            node = nodes.get(param.label)
            if param.kind == "union" or node is None:
                continue
            when = " and ".join(
                f"{label} = {names[label][i]}" for label, i in param.condition if label in names
            )
            out.append(
                ParamView(
                    label=param.label,
                    kind=param.kind,
                    text=_view_text(node, names.get(param.label, [])),
                    log=param.kind in LOG_KINDS,
                    condition=when,
                    paths=tuple(paths.get(id(node), [])),
                )
            )
        return out

    def constants(self) -> dict[str, Any]:
        """The flattened parameter paths (``"a.b"``, as in a trial's params) that hold
        the same value in every trial, with that value: constants, one-value grid axes.
        A key set by some options of a choice and not others is not constant."""
        leaves = _Leaves()
        leaves.visit(self._root, "")
        return leaves.constants()

    def explain(self) -> str:
        """:meth:`views` as text, one line per parameter, e.g.
        ``lr: log-uniform 0.0001-1`` and ``momentum: uniform 0-0.99  (if optimizer = sgd)``."""
        lines = [
            f"{v.label}: {v.text}" + (f"  (if {v.condition})" if v.condition else "")
            for v in self.views()
        ]
        return "\n".join(lines) or "(no parameters: every trial gets the same values)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Space.from_json({self.to_json()!r})"


def _describe_top(root: Any) -> str:
    if isinstance(root, (Dist, Choice, GridAxis)):
        return f"the {getattr(root, 'kind', 'grid')} parameter {root.label!r}"
    return f"a {type(root).__name__}"
