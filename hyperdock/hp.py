"""hyperopt-style constructors for search-space nodes.

Same names, signatures and semantics as ``hyperopt.hp``, so a config module can write::

    from hyperdock import hp

    SPACE = {
        "lr": hp.loguniform("lr", -9, -2),          # exp(uniform(-9, -2))
        "layers": hp.randint("layers", 1, 5),       # int in [1, 5)
        "optimizer": hp.choice("optimizer", [
            {"name": "sgd", "momentum": hp.uniform("momentum", 0, 0.99)},
            {"name": "adam"},
        ]),
        "epochs": 50,                                # constant
    }

Arguments are validated at once: a bad one raises :class:`~hyperdock.errors.SpaceError`
naming the parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hyperdock.errors import SpaceError
from hyperdock.space import Choice, Dist

__all__ = [
    "choice",
    "lognormal",
    "loguniform",
    "normal",
    "pchoice",
    "qlognormal",
    "qloguniform",
    "qnormal",
    "quniform",
    "randint",
    "uniform",
    "uniformint",
]


def uniform(label: str, low: float, high: float) -> Dist:
    """A float uniformly distributed between ``low`` and ``high``."""
    return Dist("uniform", label, (low, high))


def quniform(label: str, low: float, high: float, q: float) -> Dist:
    """``round(uniform(low, high) / q) * q``, a float."""
    return Dist("quniform", label, (low, high, q))


def loguniform(label: str, low: float, high: float) -> Dist:
    """``exp(uniform(low, high))``: ``low`` and ``high`` are in log space."""
    return Dist("loguniform", label, (low, high))


def qloguniform(label: str, low: float, high: float, q: float) -> Dist:
    """``round(exp(uniform(low, high)) / q) * q``, a float."""
    return Dist("qloguniform", label, (low, high, q))


def normal(label: str, mu: float, sigma: float) -> Dist:
    """A float normally distributed with mean ``mu`` and standard deviation ``sigma``."""
    return Dist("normal", label, (mu, sigma))


def qnormal(label: str, mu: float, sigma: float, q: float) -> Dist:
    """``round(normal(mu, sigma) / q) * q``, a float."""
    return Dist("qnormal", label, (mu, sigma, q))


def lognormal(label: str, mu: float, sigma: float) -> Dist:
    """``exp(normal(mu, sigma))``."""
    return Dist("lognormal", label, (mu, sigma))


def qlognormal(label: str, mu: float, sigma: float, q: float) -> Dist:
    """``round(exp(normal(mu, sigma)) / q) * q``, a float."""
    return Dist("qlognormal", label, (mu, sigma, q))


def randint(label: str, *args: int) -> Dist:
    """An int in ``[0, upper)`` (``randint(label, upper)``) or ``[low, high)``.

    Raises:
        SpaceError: Not one or two bounds, or an empty range.
    """
    if len(args) not in (1, 2):
        raise SpaceError(
            f"parameter {label!r}: randint takes (upper) or (low, high), got {list(args)!r}"
        )
    return Dist("randint", label, (0, args[0]) if len(args) == 1 else args)


def uniformint(label: str, low: float, high: float, q: int = 1) -> Dist:
    """``int(round(uniform(low, high) / q) * q)``: an int between ``low`` and ``high``.

    ``q`` must be a whole number (hyperopt itself always uses ``q=1``).
    """
    return Dist("uniformint", label, (low, high, q))


def choice(label: str, options: Sequence[Any]) -> Choice:
    """One of ``options``, each equally likely; options may be sub-spaces."""
    return Choice(label, tuple(options))


def pchoice(label: str, p_options: Sequence[tuple[float, Any]]) -> Choice:
    """One of the options of ``[(probability, option), ...]``; probabilities sum to 1.

    Raises:
        SpaceError: An entry is not a ``(probability, option)`` pair, or the
            probabilities are invalid.
    """
    pairs = list(p_options)
    if not all(isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in pairs):
        raise SpaceError(
            f"parameter {label!r}: pchoice takes a list of (probability, option) pairs, "
            f"got {pairs!r}"
        )
    return Choice(label, tuple(o for _, o in pairs), tuple(p for p, _ in pairs))
