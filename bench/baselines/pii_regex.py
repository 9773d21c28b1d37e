"""The detector as it was before python-stdnum, phonenumbers and the secret rules (git 6cd85ce), for bench/pii.py.

Kept verbatim (detection only) so the bench compares against it in the same run; in a subfolder so that
`make bench`, which runs bench/*.py, does not run it as a bench."""

import ipaddress
import re

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
