"""Load a search space: a Python config module (v0.1) or a JSON/YAML file (v0.4).

* ``*.py``: a module defining ``SPACE`` with :mod:`hyperdock.hp` nodes or hyperopt
  ``hp.*`` expressions (translated; hyperopt itself is never imported here).
* ``*.json``, ``*.yaml``, ``*.yml``: the v0.4 data format (see :func:`space_from_v04`).
* anything else: a module name, looked up as ``<name>.py`` in the config directories,
  then in the current directory (v0.1's ``--config_module example``).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import itertools
import json
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hyperdock.errors import ConfigError, SpaceError
from hyperdock.space import (
    MAX_DEPTH,
    MAX_NODES,
    GridAxis,
    Space,
    Union,
    check_shape,
    from_hyperopt,
)

__all__ = ["from_hyperopt", "load_space", "space_from_python_source", "space_from_v04"]

_DATA_SUFFIXES = (".json", ".yaml", ".yml")
_V04_KEYS = ("hdock_distr", "hdock_samples", "hdock_seed", "hdock_distr_kwargs")
_module_ids = itertools.count()
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def load_space(
    source: str | os.PathLike[str], *, config_dirs: Sequence[str | os.PathLike[str]] = ()
) -> Space:
    """The search space of a config (see :func:`load_config`)."""
    return load_config(source, config_dirs=config_dirs)[0]


def load_config(
    source: str | os.PathLike[str], *, config_dirs: Sequence[str | os.PathLike[str]] = ()
) -> tuple[Space, dict[str, str] | None]:
    """Load the search space named by ``source``, and its objectives if it names them.

    A config module may define ``OBJECTIVES = {"err": "minimize", "latency":
    "minimize"}``: the target then writes ``{"losses": {"err": ..., "latency": ...}}``.

    Args:
        source: Path of a ``.py``, ``.json``, ``.yaml`` or ``.yml`` file, or the name of
            a config module (``example`` finds ``example.py``).
        config_dirs: Directories searched, in order, for module names and relative paths
            (module names: before the current directory; paths: after it).

    Raises:
        ConfigError: The file is missing or unreadable, the module fails to import or
            defines no ``SPACE``, or the JSON/YAML is malformed.
        SpaceError: The space itself is invalid (the message names the parameter).
    """
    text = os.fspath(source)
    suffix = Path(text).suffix.lower()
    dirs = [Path(d) for d in config_dirs]
    if suffix == ".py" or suffix in _DATA_SUFFIXES:
        path = Path(text)
        search = [path.parent] if path.is_absolute() else [Path.cwd(), *dirs]
        path = _find(Path(path.name) if path.is_absolute() else path, search, text)
        loader = _module_space if suffix == ".py" else _data_space
    elif all(part.isidentifier() for part in text.split(".")):
        path = _find(Path(*text.split(".")).with_suffix(".py"), [*dirs, Path.cwd()], text)
        loader = _module_space
    else:
        raise ConfigError(
            f"{text!r} is neither a .py, .json, .yaml or .yml file nor a config module name"
        )
    try:
        if loader is _module_space:
            return _module_config(path)
        return _data_space(path), None
    except SpaceError as exc:
        raise SpaceError(f"{path}: {exc}") from None


def _find(relative: Path, dirs: list[Path], source: str) -> Path:
    for folder in dirs:
        if (folder / relative).is_file():
            return folder / relative
    where = ", ".join(str(d) for d in dict.fromkeys(dirs))
    raise ConfigError(
        f"config {source!r} not found: looked for {relative} in {where}; pass the path of "
        f"the file or the directory that holds it"
    )


def _module_space(path: Path) -> Space:
    return _module_config(path)[0]


def _module_config(path: Path) -> tuple[Space, dict[str, str] | None]:
    name = f"_hyperdock_config_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config module {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent.resolve())
    sys.modules[name] = module
    sys.path.insert(0, folder)  # so the module can import its neighbours
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        error = SpaceError if isinstance(exc, SpaceError) else ConfigError
        raise error(_import_failure(path, exc)) from exc
    finally:
        sys.modules.pop(name, None)
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    if not hasattr(module, "SPACE"):
        raise ConfigError(
            f"config module {path} defines no SPACE; add a module-level SPACE, e.g. "
            f"SPACE = {{'lr': hp.loguniform('lr', -9, -2), 'epochs': 50}}"
        )
    objectives = getattr(module, "OBJECTIVES", None)
    if objectives is not None and (
        not isinstance(objectives, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in objectives.items())
    ):
        raise ConfigError(
            f"config module {path}: OBJECTIVES must map names to directions, e.g. "
            "OBJECTIVES = {'err': 'minimize', 'latency': 'minimize'}"
        )
    check_shape(module.SPACE)  # before anything recurses into it
    return Space.from_obj(from_hyperopt(module.SPACE)), objectives


def _import_failure(path: Path, exc: BaseException) -> str:
    if isinstance(exc, SpaceError):  # load_space() puts the path in front
        lines = [str(exc)]
    else:
        lines = [f"config module {path} failed to import: {type(exc).__name__}: {exc}"]
    if isinstance(exc, SyntaxError):
        lines.append(f"  line {exc.lineno}: {(exc.text or '').strip()}")
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(("<", _PACKAGE_DIR))  # importlib, hyperdock
    ]
    lines += [f"  {f.filename}, line {f.lineno}: {f.line}" for f in frames[-5:]]
    if isinstance(exc, ModuleNotFoundError) and exc.name == "hyperopt":
        lines.append(
            "  hint: install hyperopt (pip install 'hyperdock[hyperopt]'), or write "
            "'from hyperdock import hp' instead: it takes the same calls"
        )
    return "\n".join(lines)


def _data_space(path: Path) -> Space:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read space file {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
            ) from None
        except RecursionError:  # the decoder gives up at about a thousand levels
            raise SpaceError(_too_deep()) from None
    else:
        try:
            data = load_yaml(text)
        except RecursionError:  # yaml composes nested collections recursively
            raise SpaceError(_too_deep()) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or exc
            raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    return space_from_v04(data)


def _too_deep() -> str:
    return f"the space is nested more than {MAX_DEPTH} levels deep; flatten it"


def load_yaml(text: str) -> Any:
    """Parse YAML ``text`` with the safe loader, refusing a document whose aliases expand
    it beyond :data:`~hyperdock.space.MAX_NODES` values (a "billion laughs") or into
    itself, before anything is built: the check walks each distinct node once.

    Raises:
        yaml.YAMLError: malformed YAML.
        SpaceError: the document is too large once expanded, or recursive.
        RecursionError: the document is nested too deeply to parse.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a composed YAML graph whose expansion exceeds MAX_NODES or is infinite."""
    size: dict[int, int] = {}  # id(node) -> values below it once expanded, itself included
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in size:
            continue
        children = _yaml_children(node)
        if done:
            active.discard(id(node))
            total = 1 + sum(size[id(c)] for c in children)
            if total > MAX_NODES:
                raise SpaceError(
                    f"the YAML document holds more than {MAX_NODES:,} values once its "
                    f"aliases (*name) are expanded; make it smaller"
                )
            size[id(node)] = total
            continue
        if id(node) in active:
            raise SpaceError(
                f"the YAML document contains itself (an alias inside the collection it "
                f"names, line {node.start_mark.line + 1}); a space must be a tree"
            )
        active.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


# -- the v0.4 data format ---------------------------------------------------------------


def space_from_v04(data: Any) -> Space:
    """Build a space from the v0.4 data format.

    A top-level object maps names to values: a list is a grid axis; an object with
    ``hdock_distr`` (a ``scipy.stats`` distribution name) and ``hdock_samples`` is
    drawn once, ``scipy.stats.<distr>(**hdock_distr_kwargs).rvs(size=hdock_samples,
    random_state=hdock_seed)`` (seed default 0), and the draws form a grid axis; any
    other value is fixed. A top-level list of such objects is a :class:`Union`.

    Raises:
        SpaceError: Malformed data, an unknown ``hdock_*`` key or distribution, or a
            distribution that cannot draw with the given arguments.
    """
    check_shape(data)  # bounded: a huge axis is refused before it is built
    if isinstance(data, list):
        if not data:
            raise SpaceError("the space is an empty list; give at least one object")
        return Space.from_obj(
            Union(tuple(_v04_object(d, f"item {i} of the space list") for i, d in enumerate(data)))
        )
    return Space.from_obj(_v04_object(data, "the space"))


def _v04_object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpaceError(
            f"{where} must be an object of parameter names to values, "
            f"got {type(data).__name__} {data!r}"
        )
    return {str(k): _v04_value(str(k), v) for k, v in data.items()}


def _v04_value(label: str, value: Any) -> Any:
    if isinstance(value, list):
        return GridAxis(label, tuple(value))
    if isinstance(value, dict) and any(str(k).startswith("hdock_") for k in value):
        return GridAxis(label, _v04_draws(label, value))
    return value


def _v04_draws(label: str, spec: dict[str, Any]) -> tuple[Any, ...]:
    unknown = [k for k in spec if k not in _V04_KEYS]
    if unknown:
        raise SpaceError(
            f"parameter {label!r}: unknown key(s) {', '.join(map(repr, unknown))}; a "
            f"sampled parameter takes only {', '.join(_V04_KEYS)}"
        )
    name, n = spec.get("hdock_distr"), spec.get("hdock_samples")
    seed, kwargs = spec.get("hdock_seed", 0), spec.get("hdock_distr_kwargs", {})
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise SpaceError(
            f"parameter {label!r}: hdock_samples (how many values to draw) must be a "
            f"whole number >= 0, got {n!r}"
        )
    if n > MAX_NODES:
        raise SpaceError(
            f"parameter {label!r}: hdock_samples={n} draws more than {MAX_NODES:,} values; "
            f"draw fewer"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise SpaceError(
            f"parameter {label!r}: hdock_seed must be a whole number in [0, 2**32), got {seed!r}"
        )
    if not isinstance(kwargs, dict):
        raise SpaceError(
            f"parameter {label!r}: hdock_distr_kwargs must be an object of keyword "
            f"arguments, got {kwargs!r}"
        )
    import scipy.stats  # slow to import: only when needed

    kinds = (scipy.stats.rv_continuous, scipy.stats.rv_discrete)
    distributions = {k: v for k, v in vars(scipy.stats).items() if isinstance(v, kinds)}
    if name not in distributions:
        close = difflib.get_close_matches(str(name), distributions, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise SpaceError(
            f"parameter {label!r}: unknown distribution hdock_distr={name!r}; {hint}"
            f"use the name of a scipy.stats distribution, e.g. norm, uniform, expon"
        )
    try:
        draws = distributions[name](**kwargs).rvs(size=n, random_state=seed)
    except Exception as exc:
        raise SpaceError(
            f"parameter {label!r}: scipy.stats.{name}(**{kwargs!r}) cannot draw {n} values: {exc}"
        ) from None
    return tuple(draws.ravel().tolist())


# -- a Python config read without running it ---------------------------------------
#: Modules a config may import: hp (ours or hyperopt's) and math/numpy for ``log``.
_HP_MODULES = ("hyperdock", "hyperopt")
#: Pure numeric functions a config may call on literals, as ``math.log(1e-4)`` etc.
_NUMERIC = {"log": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
            "sqrt": math.sqrt}  # fmt: skip
_NUMERIC_MODULES = ("math", "np", "numpy")


def space_from_python_source(text: str, *, filename: str = "config") -> Space:
    """The ``SPACE`` of a Python config given as text, read from its syntax tree: no
    code of it runs (for servers that take configs from people, like the dashboard).

    Allowed: ``from hyperdock import hp`` / ``from hyperopt import hp``, ``import
    math`` / ``import numpy as np``, a docstring, and ``SPACE = ...`` whose value is
    built from literals (numbers, strings, True/False/None), dicts, lists, tuples,
    ``hp.<name>(...)`` calls with such arguments, and ``math.log(...)``-style calls of
    log, log10, log2, exp, sqrt on numbers.

    Raises:
        ConfigError: The text is not Python, defines no SPACE, or holds something not
            allowed (the message gives the line and what it is).
        SpaceError: The space itself is invalid.
    """
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as exc:
        raise ConfigError(f"{filename} line {exc.lineno}: not valid Python: {exc.msg}") from None
    space: Any = None
    found = False
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module in _HP_MODULES and stmt.level == 0:
            if all(a.name == "hp" and a.asname in (None, "hp") for a in stmt.names):
                continue
        elif isinstance(stmt, ast.Import) and all(
            a.name in ("math", "numpy") and a.asname in (None, "np") for a in stmt.names
        ):
            continue
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring
        elif (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == "SPACE"
        ):
            space, found = _literal(stmt.value, filename), True
            continue
        raise ConfigError(
            f"{filename} line {stmt.lineno}: {_shown(stmt)} is not allowed here; the "
            "dashboard reads a config without running it: only `from hyperdock import hp`, "
            "`import math` and `SPACE = {...}` (literals and hp.* calls)"
        )
    if not found:
        raise ConfigError(
            f"{filename} defines no SPACE; add e.g. "
            "SPACE = {'lr': hp.loguniform('lr', -9, -2), 'epochs': 50}"
        )
    return Space.from_obj(space)


def _shown(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node).splitlines()[0] if not isinstance(node, ast.Module) else "?"
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"


def _literal(node: ast.expr, filename: str) -> Any:
    """The value of ``node``: a literal, container, hp.* call or numeric call."""
    where = f"{filename} line {node.lineno}"
    match node:
        case ast.Constant(value=value) if value is None or isinstance(
            value, (bool, int, float, str)
        ):
            return value
        case ast.UnaryOp(op=ast.USub() | ast.UAdd(), operand=operand):
            number = _literal(operand, filename)
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                return -number if isinstance(node.op, ast.USub) else number
        case ast.Dict(keys=keys, values=values):
            out: dict[Any, Any] = {}
            for key, item in zip(keys, values, strict=True):
                if key is None:
                    raise ConfigError(f"{where}: `**` in a dict is not allowed; write the keys out")
                out[_literal(key, filename)] = _literal(item, filename)
            return out
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            items = [_literal(e, filename) for e in elts]
            return items if isinstance(node, ast.List) else tuple(items)
        case ast.Call(func=ast.Attribute(value=ast.Name(id=owner), attr=name)):
            return _call(node, owner, name, where, filename)
    raise ConfigError(
        f"{where}: {_shown(node)} is not allowed; use literals (numbers, strings, "
        "True/False/None), dicts, lists and hp.* calls (the config is not run)"
    )


def _call(node: ast.Call, owner: str, name: str, where: str, filename: str) -> Any:
    from hyperdock import hp

    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        raise ConfigError(f"{where}: `*args`/`**kwargs` in {_shown(node)} are not allowed")
    args = [_literal(a, filename) for a in node.args]
    kwargs = {str(k.arg): _literal(k.value, filename) for k in node.keywords}
    if owner == "hp" and name in hp.__all__:
        try:
            return getattr(hp, name)(*args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: {_shown(node)}: {exc}") from None
    if owner in _NUMERIC_MODULES and name in _NUMERIC and not kwargs and len(args) == 1:
        value = args[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return _NUMERIC[name](value)
            except (ValueError, OverflowError) as exc:
                raise ConfigError(f"{where}: {_shown(node)}: {exc}") from None
    known = ", ".join(f"hp.{n}" for n in hp.__all__)
    raise ConfigError(
        f"{where}: the call {_shown(node)} is not allowed; only {known} and "
        f"math.log/log10/log2/exp/sqrt of a number (the config is not run)"
    )
