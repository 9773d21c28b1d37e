"""find_pii skips a pattern when the text lacks what every match needs: the spans found stay exactly the same."""

import collections
import importlib.util
import json
from pathlib import Path

import pytest

from lib.gateway import redaction
from lib.gateway.redaction import find_pii
from lib.gateway.secrets_rules import SECRET_RULES

ROOT = Path(__file__).resolve().parent.parent


def load_eval() -> list[dict]:
    spec = importlib.util.spec_from_file_location("bench_pii_needs", ROOT / "bench" / "pii.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_cases()


LABELLED = [c["text"] for c in json.loads((ROOT / "tests" / "data" / "pii_labelled.json").read_text())]
TEXTS = [
    *LABELLED,
    *(c["text"] for c in load_eval()),
    'Reply with only a JSON value that matches this JSON schema:\n{\n  "type": "object"\n}\n\nticket 42',
    "Call 030 1234567 or +44 20 7946 0958; SSN 078-05-1120; card 4111 1111 1111 1111; ip 10.0.0.1 / fe80::1",
    "The password is required; token: abcdefgh12345678; bot 123456789:AA" + "x" * 33,
    "١٢٣٤٥٦٧٨٩٠ digits that are not ASCII, 0049 (0)30 1234 5678",
]

A32 = "a1B2c3D4" * 4
SHAPES = [  # one of each secret rule's shapes, built here (no key-shaped literal in the file)
    "see https://user:" + "pw123@host.example/x",
    "key sk" + "-proj-" + A32,
    "stripe rk" + "_test_" + A32,
    "aws AK" + "IA" + "ABCDEFGHIJKLMNOP",
    "gh" + "p_" + A32,
    "gl" + "pat-" + A32[:24],
    "xo" + "xb-" + A32[:12],
    "ey" + "JhbGciOiJI.ey" + "JzdWIiOiIx.SflKxwRJSMeKKF2Q",
    "AI" + "za" + (A32 + "abc")[:35],
    "np" + "m_" + (A32 + "abcd")[:36],
    "py" + "pi-AgEIcHlwaS5vcmc" + A32 * 2,
    "S" + "G." + A32[:22] + "." + (A32 + A32)[:43],
    "bot 123456789:A" + "A" + (A32 + "x")[:33],
    "api_key = " + A32,
    "TOKEN: " + A32,
    "\u017fecret: " + A32,  # a long s: a case-blind "secret" in text that is not ASCII
    "aws_secret_access_key = " + (A32 + A32)[:40],
    "AWS_SECRET_KEY=" + (A32 + A32)[:40],
    "Das Passwort lautet Xy7!kL9q.",
    "PWD=p4ssw0rd",
    "La contraseña: hunter2024",
]


def test_every_text_gives_the_same_spans_as_running_every_pattern(monkeypatch):
    expected = {}
    with monkeypatch.context() as m:
        m.setattr(redaction, "_NEEDS", collections.defaultdict(lambda: redaction._ALWAYS))
        for text in TEXTS:
            expected[text] = find_pii(text)
    assert sum(1 for spans in expected.values() if spans) > 500  # the sets hold plenty to find
    for text in TEXTS:
        assert find_pii(text) == expected[text], text


@pytest.mark.parametrize(("name", "pattern"), [(n, p) for n, p in SECRET_RULES if n in redaction._SECRET_NEEDS])
def test_a_secret_rule_is_skipped_only_where_it_cannot_match(name, pattern):
    """Where the rule matches, its condition holds: in every set text, and in each shape the guard tests find."""
    needs = redaction._NEEDS[pattern]
    matched = [t for t in [*TEXTS, *SHAPES] if pattern.search(t)]
    assert matched, name
    for text in matched:
        assert needs(text, len(text) - len(redaction._DIGIT.sub("", text))), (name, text)


def test_a_prompt_without_what_the_patterns_need_skips_them():
    text = "Summarise this ticket, please"
    skipped = [p for _, p in redaction._PATTERNS if not redaction._NEEDS[p](text, 0)]
    assert len(skipped) >= len(redaction._PATTERNS) - 5  # only the few patterns with no condition still run
