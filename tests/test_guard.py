"""Personal data and secrets: measured recall and false positives on a labelled set; round trips."""

import json
from collections import Counter
from pathlib import Path

import pytest

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
