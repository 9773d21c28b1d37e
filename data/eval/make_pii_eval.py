"""Writes pii_eval.json: business sentences in seven locales, labelled with the personal data and secrets in them.

Run once (`.venv/bin/python data/eval/make_pii_eval.py`); the output is committed and read by bench/pii.py and
tests/test_guard.py. Names, companies, cities, dates and prices come from Faker; the values to find are written
the way people write them in each country (national phone formats, grouped IBANs and cards, PEM blocks, ...).
About half the strings also carry look-alikes that are not personal data (EAN-13, ISBN-13, order, invoice and
customer numbers, dates, prices, parcel tracking numbers, versions); a third carry nothing to find at all.

Phone numbers are drawn digit by digit inside each country's number plan and kept only when libphonenumber
calls them valid for that country: Faker alone writes numbers nobody can have (de_DE "00008063608", US area
code 591), and a detector that leaves those alone is right to.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
from pathlib import Path
from typing import Any
from urllib.parse import quote

import phonenumbers
from faker import Faker

SEED = 20261201
OUT = Path(__file__).with_name("pii_eval.json")
LOCALES = ("en_GB", "en_US", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT")
REGION = {"en_GB": "GB", "en_US": "US", "de_DE": "DE", "fr_FR": "FR", "nl_NL": "NL", "es_ES": "ES", "it_IT": "IT"}
rng = random.Random(SEED)


# A character of each key shape is written as a JSON escape, so no key-shaped string is stored in the repo (secret
# scanners) while json.loads still reads the real value; tests/data/make_pii_set.py does the same.
KEY_SHAPES = {
    "sk-": "s\\u006b-",
    "sk_live_": "s\\u006b_live_",
    "rk_live_": "r\\u006b_live_",
    "ghp_": "gh\\u0070_",
    "github_pat_": "github\\u005fpat_",
    "xoxb-": "xo\\u0078b-",
    "AKIA": "A\\u004bIA",
    "ASIA": "A\\u0053IA",
    "PRIVATE KEY": "PRIVATE\\u0020KEY",
    "hooks.slack.com": "hooks.slack\\u002ecom",
    "aws_secret_access_key": "aws_secret\\u005faccess_key",
    "eyJ": "ey\\u004a",
}


def hide_key_shapes(text: str) -> str:
    """`text` (JSON) with one character of every key prefix escaped."""
    for shape, hidden in KEY_SHAPES.items():
        text = text.replace(shape, hidden)
    return text


def digits(n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def alnum(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# National formats as people type them; "#" is a random digit. The leading digits keep the number in its plan.
PHONE_FORMATS = {
    "GB": [
        "(020) 7### ####",
        "020 7### ####",
        "07### ######",
        "07### ### ###",
        "+44 (0)20 7### ####",
        "+44 7### ######",
        "0161 ### ####",
        "(0161) ### ####",
        "0117 ### ####",
        "+44 117 ### ####",
        "01632 ######",
    ],
    "US": [
        "(415) 2##-####",
        "415-3##-####",
        "212.6##.####",
        "+1 617 4##-####",
        "1-312-5##-####",
        "(206) 7## ####",
        "+1 (512) 8##-####",
        "303-2##-####",
    ],
    "DE": [
        "089/#######",
        "(0221) ######",
        "0160 / #######",
        "030 ########",
        "+49 (0)30 #######",
        "0151 ########",
        "0171-#######",
        "+49 171 #######",
        "06221 ######",
        "040 - #### ###",
        "+49 89 #######",
    ],
    "FR": [
        "06 ## ## ## ##",
        "07.##.##.##.##",
        "01 ## ## ## ##",
        "0033 1 ## ## ## ##",
        "+33 6 ## ## ## ##",
        "+33 (0)1 ## ## ## ##",
        "04-##-##-##-##",
        "+33 7 ## ## ## ##",
    ],
    "NL": [
        "06-########",
        "(010) #######",
        "020 ### ####",
        "+31 6 ########",
        "+31 (0)20 ### ####",
        "06 #### ####",
        "030-#######",
        "0031 6 ########",
    ],
    "ES": [
        "912 ### ###",
        "6## ## ## ##",
        "6########",
        "+34 6## ### ###",
        "93 ### ## ##",
        "0034 91 ### ## ##",
        "7## ### ###",
    ],
    "IT": [
        "338 ### ####",
        "02 #### ####",
        "06 ########",
        "+39 338 #######",
        "347 #######",
        "0039 02 #######",
        "+39 06 ########",
        "333-#######",
    ],
}


def phone(region: str) -> str:
    while True:
        fmt = rng.choice(PHONE_FORMATS[region])
        text = "".join(rng.choice(string.digits) if ch == "#" else ch for ch in fmt)
        try:
            parsed = phonenumbers.parse(text.replace("(0)", ""), region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return text


def luhn_check_digit(body: str) -> str:
    for check in string.digits:
        total = 0
        for i, ch in enumerate(reversed(body + check)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return check
    raise AssertionError


def ean13_check(body: str) -> str:
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body))
    return str((10 - total % 10) % 10)


def grouped(value: str, size: int = 4, sep: str = " ") -> str:
    return sep.join(value[i : i + size] for i in range(0, len(value), size))


def card(fake: Faker) -> str:
    number = fake.credit_card_number(
        rng.choice(["visa16", "visa16", "mastercard", "mastercard", "amex", "discover", "jcb16", "diners", "visa19"])
    )
    style = rng.random()
    if style < 0.4:
        return number
    if len(number) == 15 and number[0] == "3" and number[1] in "47":  # Amex: 4-6-5
        sep = rng.choice([" ", "-"])
        return f"{number[:4]}{sep}{number[4:10]}{sep}{number[10:]}"
    return grouped(number, 4, " " if style < 0.8 else "-")


def iban(fake: Faker) -> str:
    value = fake.iban()
    return grouped(value) if rng.random() < 0.6 else value


def ssn() -> str:
    while True:
        area, group, serial = rng.randint(1, 899), rng.randint(1, 99), rng.randint(1, 9999)
        if area != 666:
            break
    sep = rng.choice(["-", "-", "", " "])
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


def ip(fake: Faker) -> str:
    kind = rng.random()
    if kind < 0.3:
        return fake.ipv4_public()
    if kind < 0.5:
        return fake.ipv4_private()
    if kind < 0.65:
        return fake.ipv6()
    if kind < 0.9:  # compressed, several groups after "::"
        prefix = rng.choice(["fe80", "2001:db8", "2a02:8108", "fd12:3456"])
        tail = ":".join(f"{rng.randint(1, 0xFFFF):x}" for _ in range(rng.randint(2, 4)))
        return str(ipaddress.IPv6Address(f"{prefix}::{tail}"))
    return str(ipaddress.IPv6Address(fake.ipv6()).compressed)


def pem_block() -> str:
    kind = rng.choice(["RSA ", "EC ", "", "OPENSSH ", "ENCRYPTED "])
    body = base64.b64encode(rng.randbytes(rng.choice([121, 240, 600]))).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"


def secret(fake: Faker, locale: str) -> tuple[str, str]:
    """(sentence with {} for the secret, the secret) in one of the shapes leaked into prompts."""
    b64 = string.ascii_letters + string.digits + "/+"
    pw = fake.password(length=rng.randint(10, 16), special_chars=rng.random() < 0.7)
    options: list[tuple[str, str]] = [
        ("Use the live key {} for the Stripe webhook.", "sk_live_" + alnum(rng.choice([24, 99]))),
        ("Restricted key for reporting: {}", "rk_live_" + alnum(rng.choice([24, 99]))),
        (
            "AWS access key id {} was rotated yesterday.",
            rng.choice(["AKIA", "ASIA"]) + alnum(16, string.ascii_uppercase + string.digits),
        ),
        ("aws_secret_access_key = {}", alnum(40, b64)),
        ("The AWS secret access key is {} - please rotate it.", alnum(40, b64)),
        ("Token for CI: {}", "github_pat_" + alnum(22) + "_" + alnum(59)),
        ("git clone with {} as the password", "ghp_" + alnum(36)),
        (
            "Post alerts to {} please",
            f"https://hooks.slack.com/services/T{alnum(8, string.ascii_uppercase + string.digits)}/B{alnum(10, string.ascii_uppercase + string.digits)}/{alnum(24)}",
        ),
        ("Bot token: {}", f"xoxb-{digits(11)}-{digits(12)}-{alnum(24)}"),
        ("Here is the deploy key:\n{}\nDo not share it.", pem_block()),
        ("OpenAI key {} for the pilot", "sk-proj-" + alnum(48, string.ascii_letters + string.digits + "_-")),
        (
            "Authorization: Bearer {}",
            "eyJhbGciOiJIUzI1NiJ9."
            + alnum(40, string.ascii_letters + string.digits + "_-")
            + "."
            + alnum(43, string.ascii_letters + string.digits + "_-"),
        ),
    ]
    user = fake.user_name()
    host = fake.domain_name()
    in_url = quote(pw, safe="") if rng.random() < 0.5 else pw  # a working URL encodes "@#/"; a pasted one may not
    for scheme in ("postgresql", "mysql", "mongodb+srv", "redis", "amqp"):
        options.append((f"DATABASE_URL={scheme}://{user}:{{}}@{host}:5432/app", in_url))
    labelled = {
        "en_GB": ["The password is {} for the shared mailbox.", "Password: {}", "pwd={}"],
        "en_US": ["Your temporary password is {}.", "password: {}", "Login: admin / pwd: {}"],
        "de_DE": ["Das Passwort lautet {}.", "Passwort: {}", "Kennwort: {} (bitte ändern)"],
        "fr_FR": ["Le mot de passe est {} pour le VPN.", "mot de passe : {}", "MDP : {}"],
        "nl_NL": ["Het wachtwoord is {} voor de server.", "Wachtwoord: {}", "wachtwoord = {}"],
        "es_ES": ["La contraseña es {} para el correo.", "Contraseña: {}", "clave: {}"],
        "it_IT": ["La password è {} per il gestionale.", "Password: {}", "parola d'ordine: {}"],
    }[locale]
    for template in labelled:
        options.append((template, pw))
    return rng.choice(options)


TEMPLATES = {
    "PHONE": {
        "en_GB": [
            "Please ring {name} at {co} on {v} before noon.",
            "Call me on {v} if the delivery is late.",
            "Tel: {v}",
        ],
        "en_US": ["Reach {name} at {co} on {v}.", "Phone: {v} (cell)", "You can call our {city} office at {v}."],
        "de_DE": ["Rufen Sie {name} unter {v} an.", "Tel.: {v}", "Für Rückfragen: {name}, {co}, Telefon {v}"],
        "fr_FR": ["Merci de rappeler {name} au {v}.", "Tél. : {v}", "Vous pouvez joindre {co} au {v}."],
        "nl_NL": ["Bel {name} op {v} voor een afspraak.", "Tel: {v}", "{co} is bereikbaar via {v}."],
        "es_ES": ["Llame a {name} al {v} antes de las 14h.", "Tel.: {v}", "Teléfono de contacto: {v}"],
        "it_IT": ["Chiamate {name} al {v} per conferma.", "Cell. {v}", "Il numero di {co} è {v}."],
    },
    "EMAIL": {
        "*": ["Please write to {v} about the order.", "Contact: {name} <{v}>", "{name} ({v}) approved the quote."],
    },
    "IBAN": {
        "*": ["Please transfer the amount to IBAN {v}.", "IBAN: {v}", "Bankverbindung / bank details: {v} ({co})"],
    },
    "CARD": {
        "*": ["Charge card {v}, expiry 09/28.", "Card number: {v}", "{name} paid with {v} yesterday."],
    },
    "SSN": {
        "en_US": ["SSN: {v}", "Employee {name}, social security number {v}.", "Her SSN is {v} per the W-2."],
    },
    "IP": {
        "*": ["The login came from {v} at 03:12.", "Server address: {v}", "Block {v} on the firewall, please."],
    },
}

LOOKALIKES = [
    "EAN {ean}",
    "Barcode {ean} on the carton",
    "ISBN {isbn}",
    "ISBN {isbn_plain}",
    "Order {order}",
    "Order no. {order16}",
    "Invoice {invoice} dated {date}",
    "Rechnung Nr. {invoice2} vom {date}",
    "Facture n° {invoice2} du {date}",
    "Tracking: {ups}",
    "DHL Sendungsnummer {dhl}",
    "USPS tracking {usps}",
    "Royal Mail {royal}",
    "DPD parcel {dpd}",
    "Customer number {cust}",
    "Total {price}",
    "Amount due: {price} by {date}",
    "Meeting on {date} at 14:30",
    "Release v{version} shipped on {date}",
    "Artikel {ean} zu {price}",
    "Postcode {postcode}",
    "Ticket #{ticket} was closed",
    "{qty} units at {price} each",
]


def lookalike(fake: Faker) -> str:
    ean_body = rng.choice(["40", "50", "76", "80", "87", "84", "30"]) + digits(10)
    isbn_body = rng.choice(["978", "979"]) + digits(9)
    isbn = isbn_body + ean13_check(isbn_body)
    order16 = rng.choice("456") + digits(15)
    dhl_body = "0034043" + digits(12)
    values = {
        "ean": ean_body + ean13_check(ean_body),
        "isbn": f"{isbn[:3]}-{isbn[3]}-{isbn[4:9]}-{isbn[9:12]}-{isbn[12]}",
        "isbn_plain": isbn,
        "order": rng.choice([f"#{digits(6)}", f"{digits(4)}-{digits(6)}", f"A-{digits(8)}", digits(9)]),
        "order16": order16,
        "invoice": f"INV-{rng.randint(2019, 2026)}-{digits(5)}",
        "invoice2": f"{rng.randint(2019, 2026)}/{digits(5)}",
        "date": fake.date(pattern=rng.choice(["%d.%m.%Y", "%d/%m/%Y", "%Y-%m-%d", "%m/%d/%Y", "%d-%m-%Y"])),
        "ups": f"1Z{alnum(6, string.ascii_uppercase + string.digits)}{digits(10)}",
        "dhl": dhl_body + luhn_check_digit(dhl_body),
        "usps": "9400 " + " ".join(digits(4) for _ in range(4)) + " " + digits(2),
        "royal": f"{alnum(2, string.ascii_uppercase)}{digits(9)}GB",
        "dpd": "0" + digits(13),
        "cust": digits(rng.choice([6, 7, 8, 10])),
        "price": fake.pricetag() if rng.random() < 0.5 else f"€{rng.randint(1, 99)}.{digits(3)},{digits(2)}",
        "version": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        "postcode": fake.postcode(),
        "ticket": digits(rng.choice([5, 7, 9])),
        "qty": str(rng.randint(2, 5000)),
    }
    return rng.choice(LOOKALIKES).format(**values)


def value_for(kind: str, fake: Faker, locale: str) -> str:
    if kind == "PHONE":
        if rng.random() < 0.2 and locale in ("en_GB", "fr_FR", "es_ES", "it_IT"):
            number = fake.phone_number()  # Faker's own formats, kept only if a real number could look like that
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(number.replace("(0)", ""), REGION[locale])):
                    return number
            except phonenumbers.NumberParseException:
                pass
        return phone(REGION[locale])
    if kind == "EMAIL":
        return rng.choice([fake.email(), fake.company_email(), fake.free_email()])
    if kind == "IBAN":
        return iban(fake)
    if kind == "CARD":
        return card(fake)
    if kind == "SSN":
        return ssn()
    if kind == "IP":
        return ip(fake)
    raise ValueError(kind)


def sentence(kind: str, fake: Faker, locale: str) -> tuple[str, list[list[str]]]:
    if kind == "SECRET":
        template, value = secret(fake, locale)
        return template.format(value), [[value, kind]]
    templates = TEMPLATES[kind].get(locale) or TEMPLATES[kind]["*"]
    value = value_for(kind, fake, locale)
    text = rng.choice(templates).format(v=value, name=fake.name(), co=fake.company(), city=fake.city())
    return text, [[value, kind]]


def build() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(SEED + LOCALES.index(locale))
        kinds = ["PHONE"] * 30 + ["EMAIL"] * 8 + ["IBAN"] * 8 + ["CARD"] * 10 + ["IP"] * 8 + ["SECRET"] * 16
        if locale == "en_US":
            kinds += ["SSN"] * 60
        for kind in kinds:
            text, pii = sentence(kind, fake, locale)
            if rng.random() < 0.5:  # a look-alike in the same string: it must stay
                text = f"{text} {lookalike(fake)}." if rng.random() < 0.5 else f"{lookalike(fake)}: {text}"
            if rng.random() < 0.25:  # two items in one string
                more, more_pii = sentence(rng.choice(["PHONE", "EMAIL", "IBAN", "IP"]), fake, locale)
                text, pii = f"{text} {more}", pii + more_pii
            cases.append({"locale": locale, "text": text, "pii": pii})
        for _ in range(60):  # nothing to find: business text with look-alike numbers
            parts = [lookalike(fake), fake.sentence(nb_words=8)]
            if rng.random() < 0.5:
                parts.append(lookalike(fake))
            rng.shuffle(parts)
            cases.append({"locale": locale, "text": ". ".join(p.rstrip(".") for p in parts) + ".", "pii": []})
    rng.shuffle(cases)
    return cases


if __name__ == "__main__":
    cases = build()
    OUT.write_text(hide_key_shapes(json.dumps(cases, ensure_ascii=False, indent=0)) + "\n", encoding="utf-8")
    print(f"{len(cases)} strings, {sum(len(c['pii']) for c in cases)} labelled values -> {OUT}")
