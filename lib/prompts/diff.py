"""Side-by-side diff of two template versions: messages and parameters, line by line."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass

from lib.prompts.language import Template


@dataclass(frozen=True)
class DiffRow:
    """One aligned row: the left and right line (None where that side has none) and how they differ."""

    left: str | None
    right: str | None
    kind: str  # equal, changed, removed, added


@dataclass(frozen=True)
class SectionDiff:
    """The diff of one part of a template (system message, user message or parameters)."""

    title: str
    rows: list[DiffRow]

    @property
    def changed(self) -> bool:
        """True when any line differs."""
        return any(r.kind != "equal" for r in self.rows)

    def side(self, which: str) -> str:
        """One side as text for a `diff` code block: changed lines marked -/+, gaps left blank."""
        mark = "-" if which == "left" else "+"
        out = []
        for r in self.rows:
            line = r.left if which == "left" else r.right
            out.append("" if line is None else (f"  {line}" if r.kind == "equal" else f"{mark} {line}"))
        return "\n".join(out)


def parameter_lines(t: Template) -> list[str]:
    """The template's parameters as stable `key: value` lines (schema pretty-printed)."""
    lines = [
        f"description: {t.description}",
        f"model: {t.model or '(default)'}",
        f"temperature: {'(default)' if t.temperature is None else t.temperature}",
        f"max output tokens: {'(default)' if t.max_tokens is None else t.max_tokens}",
    ]
    if t.json_schema is None:
        return [*lines, "json schema: (none)"]
    return [*lines, "json schema:", *json.dumps(t.json_schema, indent=2, sort_keys=True).splitlines()]


def diff_lines(a: list[str], b: list[str]) -> list[DiffRow]:
    """Aligned rows for two lists of lines."""
    rows: list[DiffRow] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            rows += [DiffRow(x, x, "equal") for x in a[i1:i2]]
            continue
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            lx = left[k] if k < len(left) else None
            rx = right[k] if k < len(right) else None
            rows.append(
                DiffRow(
                    lx, rx, "changed" if lx is not None and rx is not None else ("removed" if rx is None else "added")
                )
            )
    return rows


def diff_templates(a: Template, b: Template) -> list[SectionDiff]:
    """Section by section diff of `a` (left) against `b` (right)."""
    return [
        SectionDiff("System message", diff_lines(a.system.splitlines(), b.system.splitlines())),
        SectionDiff("User message", diff_lines(a.user.splitlines(), b.user.splitlines())),
        SectionDiff("Parameters", diff_lines(parameter_lines(a), parameter_lines(b))),
    ]
