"""Redaction of obvious personal data and secrets before text is stored in the call log."""

from __future__ import annotations

import re

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("SECRET", re.compile(r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,})\b")),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("CARD", re.compile(r"\b(?:\d[ -]?){13,19}\b")),
    ("PHONE", re.compile(r"(?<![\w.])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?![\w.])")),
]


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact_text(text: str | None) -> str | None:
    """Replace secrets, emails, Luhn-valid card numbers and phone numbers with [KIND] placeholders."""
    if not text:
        return text
    for kind, pattern in _PATTERNS:
        if kind == "CARD":
            text = pattern.sub(
                lambda m: "[CARD]" if _luhn_ok(re.sub(r"\D", "", m.group())) else m.group(), text)
        else:
            text = pattern.sub(f"[{kind}]", text)
    return text
