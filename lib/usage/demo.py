"""Realistic synthetic call-log rows for the Usage dashboard, written only into a marked demo data dir."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, insert

from lib.core.settings import PROJECT_ROOT
from lib.core.tables import LlmCall
from lib.gateway.errors import BudgetExceeded, ContextTooLong, ProviderUnavailable, RateLimited, TimedOut
from lib.gateway.pricing import PriceTable, find_price, load_price_table
from lib.prompts.builtin import RAG_ANSWER

DEMO_DIR = PROJECT_ROOT / "data" / "demo"
DEMO_MARKER = "DEMO_DATA"  # a file in the data dir: the page shows a demo banner whenever it exists
UNPRICED_MODEL = "acme/private-llm"  # a self-hosted model nobody priced: shows up as unpriced, never $0

USER_TEMPLATE = "meeting-summary"  # a template someone wrote and runs from the Prompts page
# The features, template names and error types real calls log (a test checks them against their sources):
# feature: (share of calls, {model: share}, template name or None, mean prompt tokens, mean output tokens)
FEATURES = {
    "chat": (
        0.55,
        {
            "openai/gpt-4.1-mini": 0.45,
            "openai/gpt-4.1": 0.15,
            "openai/gpt-5-mini": 0.2,
            "deepseek/deepseek-chat": 0.1,
            "ollama/llama3.1": 0.07,
            UNPRICED_MODEL: 0.03,
        },
        RAG_ANSWER,
        2200,
        350,
    ),
    "embed": (0.2, {"openai/text-embedding-3-small": 1.0}, None, 900, 0),
    "prompts": (0.1, {"openai/gpt-5-nano": 0.6, "openai/gpt-4o-mini": 0.4}, USER_TEMPLATE, 4000, 250),
    "compare.run": (0.08, {"openai/gpt-4.1": 0.5, "openai/gpt-5": 0.5}, RAG_ANSWER, 2400, 400),  # A/B test runs
    "compare": (0.07, {"openai/gpt-4.1": 0.7, "openai/o4-mini": 0.3}, None, 1800, 120),  # the judge of a run
}
TEMPLATE_VERSIONS = {RAG_ANSWER: 4, USER_TEMPLATE: 2}  # versions roll out over the period
STATUSES = {"ok": 0.935, "error": 0.03, "cached": 0.025, "aborted": 0.005, "blocked": 0.005}
ERROR_TYPES = {
    RateLimited.error_type: 0.5,
    TimedOut.error_type: 0.3,
    ProviderUnavailable.error_type: 0.15,
    ContextTooLong.error_type: 0.05,
}
MS_PER_TOKEN = {"openai/gpt-4.1": 18, "openai/gpt-5": 25, "openai/o4-mini": 20, "ollama/llama3.1": 30}
FIRST = [
    "ana",
    "ben",
    "chloe",
    "dev",
    "emma",
    "farid",
    "greta",
    "hiro",
    "ines",
    "jon",
    "kemal",
    "lena",
    "marco",
    "nora",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sam",
    "tariq",
    "uma",
    "viktor",
    "wen",
    "yusuf",
]
LAST = ["ng", "silva", "berg", "khan", "muller", "rossi", "tanaka", "olsen"]
QUESTIONS = [
    "What is our travel expense limit for conference trips?",
    "Summarise the Q3 board report.",
    "Which suppliers are on the approved list for laptops?",
    "How many days of parental leave apply?",
    "Draft a reply to the customer about the delayed shipment.",
    "Compare the two SLA drafts.",
]


class DemoDirError(ValueError):
    """The target directory holds a real database, so demo data will not be written there."""


def is_demo_dir(path: Path) -> bool:
    """True when `path` was created by demo-usage (it holds the marker file)."""
    return (Path(path) / DEMO_MARKER).exists()


def prepare_demo_dir(path: Path) -> Path:
    """Create (or reuse) a demo data dir and mark it; refuse a dir that already holds real data."""
    path = Path(path).resolve()
    if path.exists() and any(path.iterdir()) and not is_demo_dir(path):
        raise DemoDirError(
            f"{path} already holds data that is not demo data; choose another --data-dir (the default is {DEMO_DIR})."
        )
    path.mkdir(parents=True, exist_ok=True)
    (path / DEMO_MARKER).write_text(
        "Synthetic calls written by `python -m lib.cli demo-usage`; not real usage.\n", encoding="utf-8"
    )
    return path


def _pick(rng: np.random.Generator, weights: dict, n: int) -> np.ndarray:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=n, p=p / p.sum())]


def generate_calls(n: int, days: int, end: datetime, seed: int = 7, prices: PriceTable | None = None) -> Iterator[dict]:
    """`n` call-log rows spread over the `days` before `end`: growing, weekly and daily rhythms, Zipf users."""
    rng = np.random.default_rng(seed)
    prices = prices or load_price_table()
    start = end - timedelta(days=days)
    # Volume grows ~1% a day, weekends are quiet, working hours busy (UTC).
    day_w = np.array([1.01**d * (0.35 if (start + timedelta(days=d)).weekday() >= 5 else 1.0) for d in range(days)])
    hour_w = np.array([0.2] * 7 + [0.8, 1.5, 2, 2, 1.8, 1.2, 1.8, 2, 1.8, 1.5, 1] + [0.5] * 3 + [0.3] * 3)
    day = rng.choice(days, size=n, p=day_w / day_w.sum())
    hour = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    secs = day * 86400 + hour * 3600 + rng.integers(0, 3600, size=n)
    order = np.argsort(secs, kind="stable")
    secs, frac = secs[order], secs[order] / (days * 86400)
    users = [f"{f}.{last}" for last in LAST for f in FIRST][:60]
    zipf = 1 / np.arange(1, len(users) + 1) ** 0.9
    user = np.array(users, dtype=object)[rng.choice(len(users), size=n, p=zipf / zipf.sum())]
    feature = _pick(rng, {k: v[0] for k, v in FEATURES.items()}, n)
    status = _pick(rng, STATUSES, n)
    etype = _pick(rng, ERROR_TYPES, n)
    cached_share = np.where(rng.random(n) < 0.3, rng.uniform(0.3, 0.9, n), 0.0)
    noise = rng.lognormal(0, 0.5, size=(3, n))
    models = {f: _pick(rng, spec[1], n) for f, spec in FEATURES.items()}
    price_of = {m: find_price(m, prices) for spec in FEATURES.values() for m in spec[1]}
    for i in range(n):
        f = feature[i]
        _, _, template, mean_in, mean_out = FEATURES[f]
        model, st = models[f][i], status[i]
        prompt_t = 0 if st == "blocked" else int(mean_in * noise[0, i])
        out_t = 0 if st in ("error", "blocked") else int(mean_out * noise[1, i] * (0.3 if st == "aborted" else 1))
        cached_t = int(prompt_t * cached_share[i]) if model.startswith("openai/") and st != "cached" else 0
        price = price_of[model]
        cost = (
            None
            if price is None
            else (0.0 if st in ("cached", "blocked", "error") else price.cost(prompt_t, out_t, cached_t))
        )
        latency = 4 + 3 * noise[2, i] if st == "cached" else (250 + out_t * MS_PER_TOKEN.get(model, 9)) * noise[2, i]
        version = (
            min(TEMPLATE_VERSIONS[template], 1 + int(frac[i] * TEMPLATE_VERSIONS[template] + noise[0, i] / 4))
            if template
            else None
        )
        question = QUESTIONS[i % len(QUESTIONS)]
        error_type, error_message = None, None
        if st == "error":
            error_type, error_message = etype[i], f"{etype[i]} from {model}"
        elif st == "blocked":  # a budget refused the call, as BudgetGuard logs it
            error_type, error_message = (
                BudgetExceeded.error_type,
                f"The monthly budget for user {user[i]!r} is used up.",
            )
        yield {
            "created_at": start + timedelta(seconds=int(secs[i])),
            "request_id": f"demo-{seed}-{i:08d}",
            "session_id": f"demo-{user[i]}-{secs[i] // 86400}",
            "user": user[i],
            "feature": f,
            "provider": model.split("/", 1)[0],
            "model": model,
            "template_name": template,
            "template_version": version,
            "experiment_id": "run:4" if f == "compare.run" else None,
            "variant": ("A" if i % 2 else "B") if f == "compare.run" else None,
            "prompt_tokens": prompt_t,
            "completion_tokens": out_t,
            "cached_tokens": cached_t,
            "cost_usd": cost,
            "latency_ms": round(float(latency), 1),
            "ttft_ms": round(float(min(latency, 150 + 200 * noise[1, i])), 1),
            "status": st,
            "error_type": error_type,
            "error_message": error_message,
            "attempts": 1,
            "prompt": question if f != "embed" else None,
            "response": (f"(demo answer to: {question})" if f != "embed" and st in ("ok", "cached") else None),
            "meta": {"demo": True},
        }


def write_demo_calls(
    engine: Engine, n: int, days: int, end: datetime | None = None, seed: int = 7, batch: int = 20_000
) -> int:
    """Insert `n` synthetic calls into `engine`'s call log (a migrated demo database); returns the count."""
    end = end or datetime.now(UTC)
    rows, written = [], 0
    with engine.begin() as conn:
        for row in generate_calls(n, days, end, seed):
            row["metadata"] = row.pop("meta")
            rows.append(row)
            if len(rows) >= batch:
                conn.execute(insert(LlmCall), rows)
                written, rows = written + len(rows), []
        if rows:
            conn.execute(insert(LlmCall), rows)
            written += len(rows)
    return written
