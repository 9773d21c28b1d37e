"""Arithmetic for the assistant: the expression is parsed with `ast` and only numbers, + - * / // % **, unary
signs, parentheses and a few named functions are evaluated. Nothing is ever passed to eval."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

MAX_CHARS = 500
MAX_NODES = 200
MAX_EXPONENT = 1000  # 10 ** 1000 is fine; 9 ** 9 ** 9 would take minutes and gigabytes
MAX_MAGNITUDE = 1e300

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
}


class CalculatorError(ValueError):
    """An expression that is not plain arithmetic, too big, or undefined (division by zero)."""


def calculate(expression: str) -> int | float:
    """The value of an arithmetic expression; CalculatorError for anything else."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise CalculatorError("The expression is empty.")
    if len(text) > MAX_CHARS:
        raise CalculatorError(f"The expression has {len(text):,} characters; the limit is {MAX_CHARS}.")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"Not an arithmetic expression: {exc.msg}.") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"The expression is too long (more than {MAX_NODES} parts).")
    try:
        value = _eval(tree.body)
    except CalculatorError:
        raise
    except ZeroDivisionError:
        raise CalculatorError("Division by zero.") from None
    except (OverflowError, ValueError, TypeError) as exc:
        raise CalculatorError(f"Cannot compute that: {exc}.") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("The result is not a finite number.")
    return value


def _check(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError("Only numbers are allowed.")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("The result is too large.")
    return value


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"Exponents are limited to {MAX_EXPONENT}.")
        return _check(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        func = FUNCTIONS.get(node.func.id)
        if func is None:
            raise CalculatorError(f"Unknown function {node.func.id!r}; allowed: {', '.join(FUNCTIONS)}.")
        args = [_eval(a) for a in node.args]
        if node.func.id == "round" and len(args) == 2:
            args[1] = int(args[1])
        return _check(func(*args))
    raise CalculatorError(f"Not allowed in an arithmetic expression: {type(node).__name__}.")
