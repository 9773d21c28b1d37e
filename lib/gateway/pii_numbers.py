"""Numbers that are personal data: phone numbers (libphonenumber), payment cards, IBANs (python-stdnum), US SSNs.

A bounded regular expression picks candidate spans; the libraries decide. Context words in the few characters
before a number settle the cases a checksum cannot: an order number that passes Luhn is not a card, a bare run
of nine digits is a phone number after "Tel." and an SSN after "SSN", and neither after "Invoice".
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from stdnum import ean, iban

from lib.core.settings import DEFAULT_PII_REGIONS

DEFAULT_REGIONS = DEFAULT_PII_REGIONS
CONTEXT = 48  # characters before a number that are read for labels ("Call <a long name> on ...")

# Candidates: digit groups joined by one separator ("089/123", "06.12", "0160 / 123", "(0221) 123", "+44 (0)20"),
# not inside a word, a decimal ("1.234,56"), an address or a path. Every repeat is bounded and groups and
# separators share no character, so each start reads at most ~150 characters: linear overall.
_SEP = r"(?:[ \u00a0]?[/-][ \u00a0]?|\.|[ \u00a0]|(?=\())"
_GROUP = r"(?:\(\d{1,5}\)[ \u00a0]?)?\d{1,15}"
PHONE_CANDIDATE = re.compile(
    rf"(?<![\w+@/-])(?<!\d[.,:])(?:\+|\(\+?\d{{1,4}}\)[ \u00a0]?)?{_GROUP}(?:{_SEP}{_GROUP}){{0,8}}"
    r"(?![\w@])(?![.,:/-]\d)"
)
CARD_CANDIDATE = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
SSN_CANDIDATE = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}(?P<sep>[- ]?)(?!00)\d{2}(?P=sep)(?!0000)\d{4}(?![\w-])")
IBAN_CANDIDATE = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?(?![\w-])")
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}(?: \d{1,2}[:.]\d{2})?")
_THOUSANDS = re.compile(r"\d{1,3}(?:\.\d{3})+|\d{1,3}\.\d{1,12}")  # 1.234.567, and decimals: 52.520008
_CURRENCY = re.compile(r"(?:[€$£¥]|\b(?:EUR|USD|GBP|CHF|SEK|DKK|PLN|kr|zł)\b)", re.IGNORECASE)

# Labels, several languages: a word before a number that starts with one of these; the nearest label wins.
_PHONE_WORDS = (
    "tel", "phone", "call", "ring", "mobile", "mob", "cell", "fax", "whatsapp", "sms", "hotline", "dial", "handy",
    "mobil", "ruf", "anruf", "erreich", "tél", "téléphone", "portable", "appel", "joindre", "rappel", "bel",
    "mobiel", "bereikbaar", "llam", "teléfono", "móvil", "movil", "chiam", "numero", "número", "contact",
)  # fmt: skip
_OTHER_WORDS = (
    "order", "invoice", "reference", "tracking", "track", "parcel", "shipment", "gtin", "isbn", "barcode", "article",
    "ticket", "customer", "bestell", "auftrag", "rechnung", "sendung", "artikel", "kunden", "commande", "facture",
    "colis", "bestelling", "factuur", "pakket", "pedido", "factura", "envío", "envio", "ordine", "fattura",
    "spedizione", "serial", "version", "postcode", "product", "produkt", "produit", "item",
)  # fmt: skip
_OTHER_EXACT = frozenset({"inv", "ref", "ean", "sku", "po", "zip"})
_CARD_WORDS = ("card", "karte", "carte", "kaart", "tarjeta", "carta", "visa", "mastercard", "amex", "credit",
               "kredit", "paid", "pay", "charg", "cb")  # fmt: skip
_SSN_WORDS = ("ssn", "social", "soc", "itin", "taxpayer")
_WORD = re.compile(r"[^\W\d_]{1,40}")


def _before(text: str, start: int) -> str:
    """The text before a position on the same line, at most CONTEXT characters, in lower case."""
    window = text[max(0, start - CONTEXT) : start]
    return window[window.rfind("\n") + 1 :].lower()


def labelled(text: str, start: int, wanted: tuple[str, ...]) -> bool | None:
    """True when the nearest label before `start` is a `wanted` one, False when it is an order/invoice/... one."""
    for word in reversed(_WORD.findall(_before(text, start))):
        if word.startswith(wanted):
            return True
        if word in _OTHER_EXACT or word.startswith(_OTHER_WORDS):
            return False
    return None


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum used by payment cards."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand_ok(digits: str) -> bool:
    """True when the number starts like a card scheme's (Visa, Mastercard, Amex, ...): no card starts with 0, 1,
    7, 8 or 9, as parcel numbers, EAN-13 barcodes and ISBN-13s do. Lengths are not checked (they vary between
    issuers and over time) except for 13 digits."""
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if len(digits) == 13:  # only old Visa cards are 13 digits, and so is every EAN-13 barcode and ISBN-13
        return digits[0] == "4" and not ean.is_valid(digits)
    return (
        digits[0] == "4"  # Visa
        or 51 <= p2 <= 55  # Mastercard
        or 2221 <= p4 <= 2720  # Mastercard 2-series
        or 2200 <= p4 <= 2204  # Mir
        or p2 in (34, 35, 36, 37, 38, 39)  # Amex, JCB, Diners
        or 300 <= p3 <= 305  # Diners
        or p2 == 50
        or 56 <= p2 <= 69  # Maestro, Discover, UnionPay, RuPay
    )


def card_at(text: str, start: int, value: str) -> bool:
    """A payment card: Luhn, a card scheme's prefix and length, and not labelled as an order or article number."""
    digits = value.replace(" ", "").replace("-", "")
    if not (13 <= len(digits) <= 19 and luhn_ok(digits) and card_brand_ok(digits)):
        return False
    return labelled(text, start, _CARD_WORDS) is not False


def iban_ok(value: str) -> bool:
    """An IBAN: country format, length and the ISO 13616 mod-97 check (python-stdnum)."""
    return iban.is_valid(value, check_country=False)


def iban_span(value: str) -> int:
    """Length of the IBAN at the start of a candidate (the last group may be the next word), or 0."""
    if iban_ok(value):
        return len(value)
    cut = value.rfind(" ")
    return cut if cut > 0 and iban_ok(value[:cut]) else 0


def ssn_at(text: str, start: int, sep: str) -> bool:
    """A US SSN: dashed, or spaced / bare when the nearest label is an SSN one (nine digits alone are not)."""
    label = labelled(text, start, _SSN_WORDS)
    return label is not False if sep == "-" else label is True


def card_span(text: str, start: int, value: str) -> int:
    """Length of the card number at the start of a candidate (its last groups may be another number), or 0."""
    for _ in range(3):
        if card_at(text, start, value):
            return len(value)
        cut = max(value.rfind(" "), value.rfind("-"))
        if cut <= 0:
            break
        value = value[:cut]
    return 0


class CheckBudget:
    """How many candidates one text may hand to libphonenumber (~0.3 ms each; its matcher ~2 ms).

    Real text stays far below it; past it (a megabyte of digits and spaces) a candidate with a phone number's
    length is taken as one unchecked, so the time stays linear and nothing is let through unexamined.
    """

    def __init__(self, text_length: int):
        self.checks = 50 + text_length // 200
        self.matcher_runs = 5 + text_length // 5000

    def take(self) -> bool:
        """One check, if any are left."""
        self.checks -= 1
        return self.checks >= 0


@lru_cache(maxsize=8192)
def phone_spans(candidate: str, regions: tuple[str, ...], matcher: bool = True) -> tuple[tuple[int, int], ...]:
    """Valid phone numbers inside a candidate, as (start, end) in it, for any of the regions.

    `matcher`: look for numbers inside a longer candidate ("030 1234567 2", two numbers in a row) too.
    """
    probe = candidate.replace("(0)", "   ")  # "+44 (0)20 ...": the trunk 0 that people write, same length
    digits = sum(ch.isdigit() for ch in probe)
    if digits < 6:
        return ()
    if _whole_number(probe, regions):
        return ((0, len(candidate)),)
    if digits <= 12 or not matcher:
        return ()
    found: set[tuple[int, int]] = set()  # room for more than one number: libphonenumber's matcher finds each
    for region in regions:
        for m in phonenumbers.PhoneNumberMatcher(probe, region, leniency=phonenumbers.Leniency.VALID):
            found.add((m.start, m.end))
    return tuple(sorted(found, key=lambda span: (span[0], -span[1])))


@lru_cache(maxsize=64)
def _regions_for(regions: tuple[str, ...], trunk_zero: bool) -> tuple[str, ...]:
    """The regions where a national number may start (or not start) with 0."""
    out = []
    for region in regions:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        prefix = meta.national_prefix if meta else None
        if (prefix == "0") == trunk_zero or prefix is None:
            out.append(region)
    return tuple(out)


def _whole_number(probe: str, regions: tuple[str, ...]) -> bool:
    """True when the whole candidate is one valid number in one of the regions."""
    head = probe.lstrip("( ")
    if head.startswith(("+", "00")):
        try:
            number = phonenumbers.parse("+" + head[2:] if head.startswith("00") else head, None)
        except phonenumbers.NumberParseException:
            return False
        # "+44 ..." is a phone number even in a range libphonenumber does not list as allocated
        return phonenumbers.is_possible_number(number)
    for region in _regions_for(regions, head.startswith("0")):  # a German number is written with its 0
        try:
            number = phonenumbers.parse(probe, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


def phones_at(
    text: str, start: int, candidate: str, regions: tuple[str, ...], budget: CheckBudget
) -> list[tuple[int, int]]:
    """Phone numbers in a candidate span starting at `start`, with context rules applied."""
    digits = sum(ch.isdigit() for ch in candidate)
    if digits < 6 or _DATE.fullmatch(candidate) or _THOUSANDS.fullmatch(candidate):
        return []
    end = start + len(candidate)
    if _CURRENCY.search(text, max(0, start - 4), start) or _CURRENCY.match(text, end) or _CURRENCY.match(text, end + 1):
        return []
    label = labelled(text, start, _PHONE_WORDS)
    if label is False:
        return []
    bare = candidate.isdigit() and not candidate.startswith("00")
    if bare and label is None:  # a run of digits is a phone number only when it is called one
        return []
    if not budget.take():
        return [(start, end)] if 7 <= digits <= 15 else []
    matcher = digits > 12 and budget.matcher_runs > 0
    budget.matcher_runs -= matcher
    return [(start + s, start + e) for s, e in phone_spans(candidate, regions, matcher)]
