"""Personal data and secrets: detect, replace with placeholders before a prompt leaves, put back after."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lib.gateway import pii_numbers
from lib.gateway.pii_numbers import DEFAULT_REGIONS, iban_ok, luhn_ok
from lib.gateway.secrets_rules import PASSWORD_LABELS, SECRET_RULES, password_value

__all__ = ["DEFAULT_REGIONS", "Redaction", "StreamRestorer", "find_pii", "iban_ok", "luhn_ok", "redact"]

KINDS = ("SECRET", "EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE")

# Every pattern is bounded: a token may only start where the run of its characters starts (a look-behind,
# not \b, which also fires after "-" and "."), and every repeat has an upper limit, so no input makes the
# engine try a long run again from each of its positions (1 MB of "1.2.3.4." took most of an hour before).
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_H4 = r"[0-9A-Fa-f]{1,4}"
_IPV6 = re.compile(  # full, or compressed with up to seven groups on either side of "::"
    rf"(?<![:\w])(?:(?:{_H4}:){{7}}{_H4}|(?:{_H4}(?::{_H4}){{0,6}})?::(?:{_H4}(?::{_H4}){{0,6}})?)(?![:\w])"
)
_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(KINDS) + r")_\d+\]")


# What a text must hold for a pattern to match at all (a literal every match contains, or a number of digits): a
# pattern whose condition fails is not run, with the same spans as a result. Most patterns start with a look-behind,
# which keeps the regex engine from skipping ahead to a literal, so each would otherwise be tried at every position
# (~10-40 us per pattern on a 300-character prompt, and find_pii runs on every prompt and answer the call log keeps).
Needs = Callable[[str, int], bool]  # (text, how many \d characters it has) -> a match is possible


def _any_of(*literals: str) -> Needs:
    return lambda text, digits: any(lit in text for lit in literals)


def _any_of_folded(literals: tuple[str, ...], text: str) -> bool:
    # A case-blind rule can match text outside ASCII in ways lower() does not show (the long s, the Kelvin sign):
    # such text is always scanned. In ASCII text, a case-blind match of an ASCII word is a match in text.lower().
    if not text.isascii():
        return True
    lowered = text.lower()
    return any(lit in lowered for lit in literals)


def _any_folded(*literals: str) -> Needs:
    return lambda text, digits: _any_of_folded(literals, text)


_SECRET_NEEDS: dict[str, Needs] = {
    "url credentials": _any_of("://"),
    "openai": _any_of("sk-"),
    "stripe": _any_of("_live_", "_test_"),
    "aws access key": _any_of("A3T", "ABIA", "ACCA", "AKIA", "ASIA"),
    "github": _any_of("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "gitlab": _any_of("glpat-", "gldt-", "glrt-", "glptt-", "glcbt-"),
    "slack token": _any_of("xox"),
    "jwt": _any_of("eyJ"),
    "google api key": _any_of("AIza"),
    "npm": _any_of("npm_"),
    "pypi": _any_of("pypi-AgEIcHlwaS5vcmc"),
    "sendgrid": _any_of("SG."),
    "telegram": lambda text, digits: digits >= 8 and ":AA" in text,
    "aws secret key": _any_folded("aws", "secretaccesskey"),
    "keyword": lambda text, digits: (
        ("=" in text or ":" in text) and _any_of_folded(("api", "secret", "token", "access"), text)
    ),
    "password": _any_folded(*(label for label in (*PASSWORD_LABELS.split("|"), "pass", "pw") if label.isascii())),
}
_ALWAYS: Needs = lambda text, digits: True  # noqa: E731
_HEX_COLON = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]")  # in every full (uncompressed) IPv6 address
_DIGIT = re.compile(r"\d")  # the digits the patterns' \d match (any Unicode decimal digit)


def _ip_ok(value: str) -> bool:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    if ip.version == 6:
        return any(len(group) >= 3 for group in value.split(":"))  # not "::", "a::b" or "std::x"
    return not str(ip).startswith("0.")


def _spans(
    kind: str, m: re.Match[str], text: str, regions: tuple[str, ...], budget: pii_numbers.CheckBudget
) -> list[tuple[int, int]]:
    """The personal data in one pattern match: none, the match, part of it, or (phones) several parts."""
    value = m.group()
    if kind == "SECRET":
        if "label" in m.re.groupindex:
            span = password_value(m)
            return [span] if span else []
        return [m.span("v") if "v" in m.re.groupindex else m.span()]
    if kind == "IBAN":
        length = pii_numbers.iban_span(value)
        return [(m.start(), m.start() + length)] if length else []
    if kind == "IP":
        return [m.span()] if _ip_ok(value) else []
    if kind == "CARD":
        length = pii_numbers.card_span(text, m.start(), value)
        return [(m.start(), m.start() + length)] if length else []
    if kind == "SSN":
        return [m.span()] if pii_numbers.ssn_at(text, m.start(), m.group("sep")) else []
    if kind == "PHONE":
        return pii_numbers.phones_at(text, m.start(), value, regions, budget)
    return [m.span()]


@dataclass
class Redaction:
    """Text with placeholders, and the originals behind them."""

    text: str
    originals: dict[str, str] = field(default_factory=dict)

    def restore(self, text: str, before: str = "") -> str:
        """Put the originals back into `text` (an answer that repeats placeholders), except inside URLs.

        A placeholder inside a link or image address stays a placeholder: restored, a masked address would
        travel to whatever server the URL names when a browser renders it. `before`: the text that came
        just before `text` (for streams), so a URL split across pieces is still recognised.
        """

        def put_back(m: re.Match[str]) -> str:
            if in_url((before + text[: m.start()])[-URL_CONTEXT:]):
                return m.group()
            return self.originals.get(m.group(), m.group())

        return _PLACEHOLDER.sub(put_back, text)


URL_CONTEXT = 2048  # how far back a placeholder's URL may start
_URL_START = re.compile(r"://|\]\(|(?<![\w.])www\.|(?i:mailto:|data:)")


def in_url(prefix: str) -> bool:
    """True when the text right before a position is inside a URL: its last run of non-space characters
    holds a scheme, `www.` or a markdown link target `](`."""
    cut = max(prefix.rfind(" "), prefix.rfind("\n"), prefix.rfind("\t"))
    return _URL_START.search(prefix, cut + 1) is not None


# (kind, pattern) in the order they claim text; every regular expression that sees the text is listed here.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    *(("SECRET", pattern) for _, pattern in SECRET_RULES),
    ("EMAIL", _EMAIL),
    ("IBAN", pii_numbers.IBAN_CANDIDATE),
    ("IP", _IPV4),
    ("IP", _IPV6),
    ("CARD", pii_numbers.CARD_CANDIDATE),
    ("SSN", pii_numbers.SSN_CANDIDATE),
    ("PHONE", pii_numbers.PHONE_CANDIDATE),
]
# What each needs: phones six digits (pii_numbers.phones_at), cards 13, SSNs 9, IPv4 addresses 4 and a dot.
_NEEDS: dict[re.Pattern[str], Needs] = {
    **{pattern: _SECRET_NEEDS.get(name, _ALWAYS) for name, pattern in SECRET_RULES},
    _EMAIL: _any_of("@"),
    pii_numbers.IBAN_CANDIDATE: lambda text, digits: digits >= 2,
    _IPV4: lambda text, digits: digits >= 4 and "." in text,
    _IPV6: lambda text, digits: "::" in text or (text.count(":") >= 7 and _HEX_COLON.search(text) is not None),
    pii_numbers.CARD_CANDIDATE: lambda text, digits: digits >= 13,
    pii_numbers.SSN_CANDIDATE: lambda text, digits: digits >= 9,
    pii_numbers.PHONE_CANDIDATE: lambda text, digits: digits >= 6,
}


def find_pii(text: str, regions: tuple[str, ...] = DEFAULT_REGIONS) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every personal-data or secret span, non-overlapping, in order.

    `regions`: the countries (ISO 3166 codes) whose national phone formats are recognised; numbers written
    with "+" or "00" and a country code are found whatever the list.
    """
    spans: list[tuple[int, int, str]] = []
    taken = bytearray(len(text) + 1)
    budget = pii_numbers.CheckBudget(len(text))
    digits = len(text) - len(_DIGIT.sub("", text))
    for kind, pattern in _PATTERNS:
        if not _NEEDS[pattern](text, digits):
            continue
        for m in pattern.finditer(text):
            if taken[m.start()] and taken[m.end() - 1]:  # already claimed (a card, an IP): no library call
                continue
            for start, end in _spans(kind, m, text, regions, budget):
                if start >= end or any(taken[start:end]):
                    continue
                spans.append((start, end, kind))
                taken[start:end] = b"\x01" * (end - start)
    return sorted(spans)


def redact(text: str, originals: dict[str, str] | None = None, regions: tuple[str, ...] = DEFAULT_REGIONS) -> Redaction:
    """Replace personal data and secrets with numbered placeholders like [EMAIL_1]; the same value keeps its number."""
    originals = {} if originals is None else originals
    by_value = {v: k for k, v in originals.items()}
    out, last = [], 0
    for start, end, kind in find_pii(text, regions):
        value = text[start:end]
        if value not in by_value:
            n = sum(1 for k in originals if k.startswith(f"[{kind}_")) + 1
            placeholder = f"[{kind}_{n}]"
            originals[placeholder], by_value[value] = value, placeholder
        out += [text[last:start], by_value[value]]
        last = end
    out.append(text[last:])
    return Redaction("".join(out), originals)


class StreamRestorer:
    """Restores placeholders in streamed text, holding back a piece that may be half a placeholder."""

    def __init__(self, redaction: Redaction):
        self.redaction, self.pending, self.seen = redaction, "", ""

    def _restore(self, text: str) -> str:
        out = self.redaction.restore(text, before=self.seen)
        self.seen = (self.seen + text)[-URL_CONTEXT:]
        return out

    def feed(self, piece: str) -> str:
        """Text safe to show now."""
        text = self.pending + piece
        cut = text.rfind("[")
        if cut >= 0 and "]" not in text[cut:] and len(text) - cut <= 16:
            self.pending, text = text[cut:], text[:cut]
        else:
            self.pending = ""
        return self._restore(text)

    def flush(self) -> str:
        """Whatever is still held back."""
        text, self.pending = self.pending, ""
        return self._restore(text)
