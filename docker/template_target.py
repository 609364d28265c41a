"""Hyperdock's template target: the loss is the expression in FUNCTION over the parameters.

Reads the trial's parameters from /hyperdock/params.json, evaluates the arithmetic
expression in the environment variable FUNCTION with the parameters as variables, and
writes {"loss": <value>, "state": "ok"} to /hyperdock/loss.json (plus a one-point
/hyperdock/graphs.json). Run as a local command target, it reads HYPERDOCK_PARAMS and
writes HYPERDOCK_LOSS instead.

    FUNCTION='(x - 1)**2 + y'                  params.json {"x": 3, "y": 0.5} -> loss 4.5
    FUNCTION='sqrt(abs(x)) + (0 if opt == "adam" else 1)'
    FUNCTION='params["lr"] * 100 + model["depth"]'   (nested or non-identifier names)

The expression is evaluated safely, without eval(): numbers, strings, parameters,
arithmetic (+ - * / // % **), comparisons, and/or/not, `a if c else b`, subscripts,
and the functions and constants of Python's math module (sqrt, exp, log, sin, pi, e, …,
also as math.sqrt) plus abs, min, max and round. Anything else is refused with a
message. When FUNCTION is missing or invalid, or cannot be evaluated for these
parameters, the error goes to the log and the exit code is 2 (no loss.json is written),
so the trial fails with that message.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import os
import sys
from collections.abc import Callable
from typing import Any

#: Exit code for a missing/invalid FUNCTION or unreadable params.json.
EXIT_ERROR = 2

FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: getattr(math, name)
    for name in dir(math)
    if not name.startswith("_") and callable(getattr(math, name))
}
FUNCTIONS.update(abs=abs, min=min, max=max, round=round)
CONSTANTS: dict[str, float] = {
    name: getattr(math, name) for name in ("pi", "e", "tau", "inf", "nan")
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Not: operator.not_,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
#: Integer powers with more bits than this are computed in floating point, and these
#: functions take integers up to _MAX_INT_ARGUMENT only (no endless big-integer maths).
_MAX_INT_BITS = 4096
_BIG_INT_FUNCTIONS = {"factorial", "comb", "perm"}
_MAX_INT_ARGUMENT = 10_000


class FunctionError(Exception):
    """FUNCTION is invalid, or cannot be evaluated for these parameters."""


def _is_number(value: Any) -> bool:
    """Numbers, bools included: ``(x > 1) * 3`` is a handy idiom."""
    return isinstance(value, (int, float))


class _Evaluator:
    def __init__(self, expression: str, params: dict[str, Any]) -> None:
        self.expression = expression
        self.params = params

    def fail(self, node: ast.AST, message: str) -> FunctionError:
        column = getattr(node, "col_offset", None)
        where = ""
        if column is not None and "\n" not in self.expression:
            where = f"\n  {self.expression}\n  {' ' * column}^"
        return FunctionError(f"{message}{where}")

    def names(self) -> str:
        shown = ", ".join(sorted(self.params)) or "(none)"
        return f"parameters: {shown}; math: sqrt, exp, log, sin, cos, pi, e, … abs, min, max"

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"FUNCTION may not use {_describe(node)}")
        return method(node)

    def number(self, node: ast.AST) -> Any:
        value = self.eval(node)
        if not _is_number(value):
            raise self.fail(node, f"expected a number here, got {value!r}")
        return value

    def _Expression(self, node: ast.Expression) -> Any:
        return self.eval(node.body)

    def _Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, (int, float, str, bool)):
            return node.value
        raise self.fail(node, f"FUNCTION may not use the constant {node.value!r}")

    def _Name(self, node: ast.Name) -> Any:
        if node.id in self.params:
            return self.params[node.id]
        if node.id == "params":
            return self.params
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise self.fail(node, f"{node.id} is a function: call it, e.g. {node.id}(x)")
        raise self.fail(node, f"unknown name {node.id!r} ({self.names()})")

    def _Attribute(self, node: ast.Attribute) -> Any:
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            if node.attr in CONSTANTS:
                return CONSTANTS[node.attr]
            if node.attr in FUNCTIONS and hasattr(math, node.attr):
                return FUNCTIONS[node.attr]
        raise self.fail(node, "FUNCTION may only use attributes of math (math.sqrt, math.pi)")

    def _BinOp(self, node: ast.BinOp) -> Any:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise self.fail(node, f"FUNCTION may not use the operator {_describe(node.op)}")
        left, right = self.number(node.left), self.number(node.right)
        try:
            if (
                isinstance(node.op, ast.Pow)
                and isinstance(left, int)
                and isinstance(right, int)
                and max(left.bit_length(), 1) * abs(right) > _MAX_INT_BITS
            ):
                left = float(left)
            return op(left, right)
        except (ArithmeticError, ValueError) as exc:
            raise self.fail(node, _math_error(exc)) from None

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        op = _UNARY.get(type(node.op))
        if op is None:
            raise self.fail(node, f"FUNCTION may not use the operator {_describe(node.op)}")
        operand = (
            self.eval(node.operand) if isinstance(node.op, ast.Not) else self.number(node.operand)
        )
        return op(operand)

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for item in node.values:
            value = self.eval(item)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _Compare(self, node: ast.Compare) -> Any:
        left = self.eval(node.left)
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.eval(right_node)
            try:
                ok = _COMPARE[type(op_node)](left, right)
            except TypeError as exc:
                raise self.fail(node, f"cannot compare: {exc}") from None
            if not ok:
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def _Subscript(self, node: ast.Subscript) -> Any:
        value, key = self.eval(node.value), self.eval(node.slice)
        if not isinstance(value, (dict, list)):
            raise self.fail(node, f"cannot index {value!r}")
        try:
            return value[key]
        except (KeyError, IndexError, TypeError) as exc:
            message = f"no item {key!r} in {_short(value)} ({type(exc).__name__})"
            raise self.fail(node, message) from None

    def _List(self, node: ast.List) -> Any:
        return [self.eval(item) for item in node.elts]

    def _Tuple(self, node: ast.Tuple) -> Any:
        return [self.eval(item) for item in node.elts]

    def _Call(self, node: ast.Call) -> Any:
        func: Callable[..., Any] | None = None
        if isinstance(node.func, ast.Name) and node.func.id not in self.params:
            func = FUNCTIONS.get(node.func.id)
        elif isinstance(node.func, ast.Attribute):
            found = self._Attribute(node.func)
            func = found if callable(found) else None
        if func is None:
            allowed = "math functions and abs, min, max, round"
            raise self.fail(node, f"FUNCTION may only call {allowed} ({self.names()})")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, "call functions with plain positional arguments")
        args = [self.eval(a) for a in node.args]
        for arg in args:
            if not (_is_number(arg) or (isinstance(arg, list) and all(map(_is_number, arg)))):
                raise self.fail(node, f"functions take numbers, got {_short(arg)}")
        if getattr(func, "__name__", "") in _BIG_INT_FUNCTIONS and any(
            abs(a) > _MAX_INT_ARGUMENT for a in args if _is_number(a)
        ):
            raise self.fail(node, f"arguments above {_MAX_INT_ARGUMENT} are not allowed here")
        try:
            return func(*args)
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise self.fail(node, _math_error(exc)) from None


def _math_error(exc: Exception) -> str:
    if isinstance(exc, OverflowError):
        return "overflow: the result is too large for a floating-point number"
    return f"{type(exc).__name__}: {exc}"


def _describe(node: ast.AST) -> str:
    text = {
        "Lambda": "lambda",
        "ListComp": "comprehensions",
        "GeneratorExp": "comprehensions",
        "DictComp": "comprehensions",
        "SetComp": "comprehensions",
        "NamedExpr": ":=",
        "MatMult": "@",
        "BitAnd": "&",
        "BitOr": "|",
        "BitXor": "^ (use ** for powers)",
        "LShift": "<<",
        "RShift": ">>",
        "Invert": "~",
    }.get(type(node).__name__)
    return text or type(node).__name__


def _short(value: Any) -> str:
    try:
        text = json.dumps(value) if isinstance(value, (dict, list)) else repr(value)
    except ValueError:  # an integer with too many digits to print
        return "a huge integer"
    return text if len(text) <= 80 else text[:77] + "..."


def evaluate(expression: str, params: dict[str, Any]) -> float:
    """The value of ``expression`` with ``params`` as variables, as a finite float.

    Raises:
        FunctionError: the expression is invalid, uses something that is not allowed,
            cannot be evaluated, or does not give a finite number.
    """
    if not expression.strip():
        raise FunctionError("FUNCTION is empty")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        where = ""
        if exc.offset and "\n" not in expression.strip():
            where = f"\n  {expression.strip()}\n  {' ' * (exc.offset - 1)}^"
        raise FunctionError(f"FUNCTION is not a valid expression: {exc.msg}{where}") from None
    value = _Evaluator(expression.strip(), params).eval(tree)
    if isinstance(value, bool) or not _is_number(value):
        raise FunctionError(f"FUNCTION gave {_short(value)}, not a number")
    try:
        result = float(value)
    except OverflowError:
        raise FunctionError(f"FUNCTION gave {_short(value)}, too large for a loss") from None
    if not math.isfinite(result):
        raise FunctionError(f"FUNCTION gave {result}, not a finite number")
    return result


def _paths() -> tuple[str, str]:
    folder = os.environ.get("HYPERDOCK_DIR", "/hyperdock")
    params = os.environ.get("HYPERDOCK_PARAMS") or os.path.join(folder, "params.json")
    loss = os.environ.get("HYPERDOCK_LOSS") or os.path.join(folder, "loss.json")
    return params, loss


def main() -> int:
    expression = os.environ.get("FUNCTION", "")
    params_file, loss_file = _paths()
    if not expression.strip():
        print(
            "error: FUNCTION is not set. Set it to an expression over the parameters, "
            "e.g. docker run -e FUNCTION='(x - 1)**2 + y' …, "
            "or hyperdock run … --env FUNCTION='(x - 1)**2 + y'",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        with open(params_file, encoding="utf-8") as fh:
            params = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the parameters from {params_file}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not isinstance(params, dict):
        message = f"{params_file} must hold a JSON object, got {_short(params)}"
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    shown = f"FUNCTION={expression}\nparams={json.dumps(params, sort_keys=True)}"
    try:
        loss = evaluate(expression, params)
    except FunctionError as exc:
        print(f"error: {exc}\n{shown}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{shown}\nloss={loss!r}")
    folder = os.path.dirname(loss_file)
    graph = [
        {
            "name": "Template target",
            "x_axis": "step",
            "y_axis": "loss",
            "series": [{"label": expression, "x": [0], "y": [loss]}],
        }
    ]
    with open(os.path.join(folder, "graphs.json"), "w", encoding="utf-8") as fh:
        json.dump(graph, fh)
    with open(loss_file, "w", encoding="utf-8") as fh:
        json.dump({"loss": loss, "state": "ok"}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
