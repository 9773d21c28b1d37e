"""Secrets in text: API keys, tokens, private-key blocks, credentials in URLs and labelled passwords.

The rules follow detect-secrets' plugins (AWS, Stripe, GitHub, GitLab, Slack, OpenAI, JWT, private keys, basic
auth in URLs, npm, PyPI, SendGrid, Telegram, Azure storage, keyword assignments) with the shapes it lacks added
(`github_pat_`, AWS secret access keys without quotes, whole PEM blocks, passwords after non-English labels).
detect-secrets itself is not called: its plugins report values, not positions; some of its patterns end early
(a Stripe key is flagged by its first 24 characters, a PEM block by its header line, a JWT's signature by none
of it), which would leave the rest of the secret in the prompt; several take quadratic time on long runs (1 MB
of "sk-" takes most of an hour in its OpenAI pattern); and a plugin's `analyze_line` posts the secret to the
vendor to verify it whenever detect-secrets' verification filter is switched on in the process. Each pattern
here is bounded like those in redaction.py; tests/test_guard.py checks that what detect-secrets finds in the
evaluation set is found here too.

A rule's secret is its named group `v` when it has one (the password in `postgresql://user:pass@host`), else the
whole match.
"""

from __future__ import annotations

import re

_B = r"(?<![A-Za-z0-9_-])"  # a token starts where its run of token characters starts
_E = r"(?![A-Za-z0-9_-])"

PASSWORD_LABELS = (
    "password|passwort|kennwort|passwd|pwd|passcode|mot de passe|mdp|contraseña|contrasena|clave|wachtwoord"
    "|parola d'ordine|senha|hasło|haslo|lösenord|losenord|adgangskode|salasana|heslo|jelszó"
)
_VERBS = r"is|ist|lautet|est|es|è|er|är|on|jest"

SECRET_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "private key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]{1,12} ){0,2}PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[A-Za-z0-9+/=:,.\s]|-(?!----)){0,20000}"  # a body stops at the next "-----": each is read once
            r"(?:-----END (?:[A-Z0-9]{1,12} ){0,2}PRIVATE KEY(?: BLOCK)?-----)?"
        ),
    ),
    (
        "url credentials",
        re.compile(
            r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@?#\[\]]{0,128}:(?P<v>[^\s/]{1,256})@(?=[\w\[])"
        ),
    ),
    ("slack webhook", re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]{10,200}")),
    ("openai", re.compile(_B + r"sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{16,512}")),
    ("stripe", re.compile(_B + r"(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{16,247}" + _E)),
    ("aws access key", re.compile(_B + r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}" + _E)),
    (
        "aws secret key",
        re.compile(
            r"(?i:aws[_ .-]?secret(?:[_ .-]?access)?[_ .-]?key|secretaccesskey)[\"']?[ \t]{0,3}(?::=|[:=]|is\b)"
            r"[ \t]{0,3}[\"']?(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
        ),
    ),
    ("github", re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})" + _E)),
    ("gitlab", re.compile(_B + r"gl(?:pat|dt|rt|ptt|cbt)-[A-Za-z0-9_-]{20,64}" + _E)),
    ("slack token", re.compile(_B + r"xox[abposr]-[A-Za-z0-9-]{10,255}")),
    ("jwt", re.compile(_B + r"eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{8,8192}")),
    ("google api key", re.compile(_B + r"AIza[0-9A-Za-z_-]{35}")),
    ("npm", re.compile(_B + r"npm_[A-Za-z0-9]{36}" + _E)),
    ("pypi", re.compile(_B + r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,512}")),
    ("sendgrid", re.compile(_B + r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}" + _E)),
    ("telegram", re.compile(r"(?<![\d:])\d{8,10}:AA[0-9A-Za-z_-]{33}" + _E)),
    ("azure storage", re.compile(r"AccountKey=(?P<v>[A-Za-z0-9+/=]{86,88})")),
    (
        "keyword",
        re.compile(
            r"(?i:(?<![A-Za-z])(?:api[_-]?key|secret|token|access[_-]?key)[\"']?[ \t]{0,3}[=:][ \t]{0,8}[\"']?)"
            r"(?P<v>[A-Za-z0-9_\-+/=.]{8,512})"
        ),
    ),
    (
        "password",
        re.compile(
            rf"(?i:(?<![A-Za-z])(?P<label>{PASSWORD_LABELS}|pass|pw)[\"']?[ \t]{{0,3}}(?P<how>:=|[:=]|\b(?:{_VERBS})\b)"
            r"[ \t]{0,3}:?[ \t]{0,3}[\"']?)"
            r"(?P<v>[^\s\"'<>]{3,128})"
        ),
    ),
]


def password_value(match: re.Match[str]) -> tuple[int, int] | None:
    """The span of a labelled password, or None when it reads like a word ("the password is required")."""
    start, end = match.span("v")
    while end - start > 3 and match.string[end - 1] in ".,;:":
        end -= 1
    value = match.string[start:end]
    assigned = match.group("how") in (":", "=", ":=")
    if not assigned and (value.isalpha() or match.group("label").lower() in ("pass", "pw")):
        return None
    return start, end
