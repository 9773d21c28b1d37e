"""A small, safe expression language for step conditions and gate rules.

`classify.category == "complaint" and triage.urgency in ["high", "critical"]`: comparisons (== != < <= > >=),
`and`/`or`/`not`, `in`/`not in`, string, number, true/false/null literals, lists, and names (dotted names such as
`classify.sentiment` are one plain key). Python's own parser reads the text (`ast.parse(mode="eval")`) and only a
short list of node types is accepted; nothing is ever evaluated as Python, so calls, attribute access on objects,
subscripts, lambdas and dunder names are refused before anything runs. A missing field is null, not an error.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_CONDITION_CHARS = 1_000
MAX_DEPTH = 32  # nesting of the parsed expression
NAME_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
LITERAL_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_SYMBOL = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in"}


class ConditionError(ValueError):
    """A condition cannot be used; the message says where and why."""

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message + (f" (at character {position})" if position is not None else ""))
        self.position = position


@dataclass(frozen=True)
class Condition:
    """A parsed condition: evaluate it against a row's values."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, values: Mapping[str, Any]) -> bool:
        """True or False for these values (missing names are null; mismatched comparisons are false)."""
        return bool(_eval(self.tree.body, values))


def _where(node: ast.AST) -> int:
    return getattr(node, "col_offset", 0) + 1


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` as the key "a.b.c"; None if the node is not a plain dotted name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _check(node: ast.AST, depth: int, names: set[str]) -> None:
    if depth > MAX_DEPTH:
        raise ConditionError("The condition is nested too deeply", _where(node))
    if isinstance(node, ast.BoolOp) and isinstance(node.op, (ast.And, ast.Or)):
        for value in node.values:
            _check(value, depth + 1, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        if isinstance(node.op, ast.USub) and not (
            isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)
        ):
            raise ConditionError("A minus sign may only stand before a number", _where(node))
        _check(node.operand, depth + 1, names)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE and not isinstance(op, (ast.In, ast.NotIn)):
                raise ConditionError("Only == != < <= > >= in and not in compare values", _where(node))
        for part in (node.left, *node.comparators):
            _check(part, depth + 1, names)
    elif isinstance(node, (ast.List, ast.Tuple)):
        if len(node.elts) > 200:
            raise ConditionError("A list in a condition holds at most 200 values", _where(node))
        for elt in node.elts:
            if not isinstance(elt, ast.Constant) and not (
                isinstance(elt, ast.UnaryOp) and isinstance(elt.op, ast.USub)
            ):
                raise ConditionError("A list in a condition holds only literal values", _where(elt))
            _check(elt, depth + 1, names)
    elif isinstance(node, ast.Constant):
        if node.value is not None and type(node.value) not in (str, int, float, bool):
            raise ConditionError(f"{type(node.value).__name__} values are not allowed", _where(node))
    elif isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        if name is None:
            raise ConditionError("Only field names like classify.sentiment may use a dot", _where(node))
        if name in LITERAL_NAMES:
            return
        for piece in name.split("."):
            if not NAME_PART.fullmatch(piece):
                raise ConditionError(
                    f"{name!r} is not a field name (letters, digits and _, starting with a letter)", _where(node)
                )
        names.add(name)
    else:
        what = type(node).__name__
        hint = {"Call": "calls", "Subscript": "brackets", "Lambda": "lambdas", "BinOp": "arithmetic"}.get(what, what)
        raise ConditionError(f"{hint} are not allowed in a condition", _where(node))


def parse_condition(text: str) -> Condition:
    """Parse and check a condition; ConditionError (with the position) when it cannot be used."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("The condition is empty")
    if len(text) > MAX_CONDITION_CHARS:
        raise ConditionError(f"The condition is {len(text):,} characters; the limit is {MAX_CONDITION_CHARS:,}")
    source = " ".join(text.split())  # one line: newlines would change Python's parsing
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"The condition cannot be read: {exc.msg}", exc.offset) from exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ConditionError("The condition cannot be read: it is nested too deeply") from exc
    names: set[str] = set()
    _check(tree.body, 0, names)
    return Condition(text, tree, frozenset(names))


def _eval(node: ast.AST, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, values) for v in node.values)
        return any(_eval(v, values) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        return (not operand) if isinstance(node.op, ast.Not) else -operand
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, values)
            if not _compare(op, left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, values) for e in node.elts]
    if isinstance(node, ast.Constant):
        return node.value
    name = _dotted(node)
    assert name is not None  # _check accepted only dotted names here
    return LITERAL_NAMES[name] if name in LITERAL_NAMES else values.get(name)


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, (ast.In, ast.NotIn)):
        try:
            found = left in right if isinstance(right, (list, tuple, str, dict)) else False
        except TypeError:  # e.g. a number "in" a string
            found = False
        return found if isinstance(op, ast.In) else not found
    left, right = _numbers(left, right)
    try:
        return bool(_COMPARE[type(op)](left, right))
    except TypeError:  # null < 0.7, "a" < 1: not true
        return False


def _number(value: Any) -> Any:
    """A number written as text (a CSV cell such as "2"), else the value unchanged."""
    if isinstance(value, str) and len(value) < 40:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _numbers(left: Any, right: Any) -> tuple[Any, Any]:
    """Compare a number with a numeric string as numbers (CSV cells are text): `rating <= 2` with rating "2"."""
    is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if is_num(left) and isinstance(right, str):
        return left, _number(right)
    if is_num(right) and isinstance(left, str):
        return _number(left), right
    return left, right
