"""Personal data and secrets: detect, replace with placeholders before a prompt leaves, put back after."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

KINDS = ("SECRET", "EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE")

# Every pattern is bounded: a token may only start where the run of its characters starts (a look-behind,
# not \b, which also fires after "-" and "."), and every repeat has an upper limit, so no input makes the
# engine try a long run again from each of its positions (1 MB of "1.2.3.4." took most of an hour before).
_SECRET = re.compile(
    r"(?<![A-Za-z0-9_-])(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,512}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,255}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,255}|eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{8,8192}"
    r"|AIza[0-9A-Za-z_-]{35})"
    r"|(?i:(?<=api[_-]key[=:\s])|(?<=api[_-]key\"[=:\s])|(?<=password[=:\s])|(?<=secret[=:\s])|(?<=token[=:\s]))"
    r"[ \t]{0,8}[\"']?[A-Za-z0-9_\-+/=.]{8,512}[\"']?"
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(
    r"(?<![:\w])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}(?![:\w])|(?<![:\w])(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{0,4}(?![:\w])"
)
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}"  # +44 20 7946 0958
    r"|\(\d{3}\)[ ]?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555-123-4567
    r"|0\d{2,4}[ ]\d{3,4}[ ]?\d{3,4})(?![\w])"  # 020 7946 0958
)
_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(KINDS) + r")_\d+\]")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum used by payment cards."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN."""
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _valid(kind: str, value: str) -> bool:
    if kind == "CARD":
        digits = re.sub(r"\D", "", value)
        return 13 <= len(digits) <= 19 and luhn_ok(digits)
    if kind == "IBAN":
        return iban_ok(value)
    if kind == "IP":
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return False
        return not (ip.version == 4 and str(ip).startswith("0."))
    if kind == "PHONE":
        return 7 <= len(re.sub(r"\D", "", value)) <= 15
    return True


_PATTERNS = [
    ("SECRET", _SECRET),
    ("EMAIL", _EMAIL),
    ("IBAN", _IBAN),
    ("CARD", _CARD),
    ("SSN", _SSN),
    ("IP", _IPV4),
    ("IP", _IPV6),
    ("PHONE", _PHONE),
]


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


def find_pii(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every personal-data or secret span, non-overlapping, in order."""
    spans: list[tuple[int, int, str]] = []
    taken = [False] * (len(text) + 1)
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            value = m.group().strip().strip("\"'")
            start = m.start() + m.group().find(value)
            end = start + len(value)
            if not value or any(taken[start:end]) or not _valid(kind, value):
                continue
            spans.append((start, end, kind))
            for i in range(start, end):
                taken[i] = True
    return sorted(spans)


def redact(text: str, originals: dict[str, str] | None = None) -> Redaction:
    """Replace personal data and secrets with numbered placeholders like [EMAIL_1]; the same value keeps its number."""
    originals = {} if originals is None else originals
    by_value = {v: k for k, v in originals.items()}
    out, last = [], 0
    for start, end, kind in find_pii(text):
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
