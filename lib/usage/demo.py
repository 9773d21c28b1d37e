"""Realistic synthetic call-log rows for the Usage dashboard, written only into a marked demo data dir."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, Engine, text

from lib.core.rollups import bulk_load
from lib.core.settings import PROJECT_ROOT
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


COLUMNS = (  # the call-log columns demo rows fill, in the order of generate_rows' tuples
    "created_at",
    "request_id",
    "session_id",
    "user",
    "feature",
    "provider",
    "model",
    "template_name",
    "template_version",
    "experiment_id",
    "variant",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_type",
    "error_message",
    "attempts",
    "prompt",
    "response",
    "metadata",
)
USERS = [f"{f}.{last}" for last in LAST for f in FIRST][:60]


def _day_rows(
    rng: np.random.Generator, n: int, day: int, days: int, start: datetime, seed: int, first: int, price_of: dict
) -> list[tuple]:
    """The `n` calls of day `day` (numbered from `first`), as tuples in COLUMNS order, built column-wise."""
    hour_w = np.array([0.2] * 7 + [0.8, 1.5, 2, 2, 1.8, 1.2, 1.8, 2, 1.8, 1.5, 1] + [0.5] * 3 + [0.3] * 3)
    secs = np.sort(day * 86400 + rng.choice(24, size=n, p=hour_w / hour_w.sum()) * 3600 + rng.integers(0, 3600, n))
    frac = secs / (days * 86400)
    zipf = 1 / np.arange(1, len(USERS) + 1) ** 0.9
    user = np.array(USERS, dtype=object)[rng.choice(len(USERS), size=n, p=zipf / zipf.sum())]
    feature = _pick(rng, {k: v[0] for k, v in FEATURES.items()}, n)
    status = _pick(rng, STATUSES, n)
    etype = _pick(rng, ERROR_TYPES, n)
    cached_share = np.where(rng.random(n) < 0.3, rng.uniform(0.3, 0.9, n), 0.0)
    noise = rng.lognormal(0, 0.5, size=(3, n))
    model = np.empty(n, dtype=object)
    template = np.full(n, None, dtype=object)
    mean_in, mean_out, versions = np.zeros(n), np.zeros(n), np.zeros(n)
    for f, (_, models, tmpl, m_in, m_out) in FEATURES.items():
        at = feature == f
        model[at] = _pick(rng, models, int(at.sum()))
        template[at], mean_in[at], mean_out[at] = tmpl, m_in, m_out
        versions[at] = TEMPLATE_VERSIONS.get(tmpl, 0) if tmpl else 0
    blocked, errored, aborted, cached = (status == s for s in ("blocked", "error", "aborted", "cached"))
    prompt_t = np.where(blocked, 0, (mean_in * noise[0]).astype(np.int64))
    out_t = np.where(errored | blocked, 0, (mean_out * noise[1] * np.where(aborted, 0.3, 1.0)).astype(np.int64))
    openai = np.array([m.startswith("openai/") for m in model])
    cached_t = np.where(openai & ~cached, (prompt_t * cached_share).astype(np.int64), 0)
    ms_per_token = np.array([MS_PER_TOKEN.get(m, 9) for m in model])
    latency = np.round(np.where(cached, 4 + 3 * noise[2], (250 + out_t * ms_per_token) * noise[2]), 1)
    ttft = np.round(np.minimum(latency, 150 + 200 * noise[1]), 1)
    version = np.minimum(versions, 1 + (frac * versions + noise[0] / 4).astype(np.int64)).astype(np.int64)
    free = blocked | errored | cached
    when = (np.datetime64(start.replace(tzinfo=None), "us") + secs.astype("timedelta64[s]")).astype("datetime64[us]")
    stamps = np.datetime_as_string(when, unit="us")
    rows = []
    for i in range(n):
        f, m, st, k = feature[i], model[i], status[i], first + i
        price = price_of[m]
        p_t, o_t, c_t = int(prompt_t[i]), int(out_t[i]), int(cached_t[i])
        cost = None if price is None else (0.0 if free[i] else price.cost(p_t, o_t, c_t))
        question = QUESTIONS[k % len(QUESTIONS)]
        error_type = error_message = None
        if st == "error":
            error_type, error_message = etype[i], f"{etype[i]} from {m}"
        elif st == "blocked":  # a budget refused the call, as BudgetGuard logs it
            error_type = BudgetExceeded.error_type
            error_message = f"The monthly budget for user {user[i]!r} is used up."
        rows.append(
            (
                stamps[i].replace("T", " "),
                f"demo-{seed}-{k:08d}",
                f"demo-{user[i]}-{secs[i] // 86400}",
                user[i],
                f,
                m.split("/", 1)[0],
                m,
                template[i],
                int(version[i]) if template[i] else None,
                "run:4" if f == "compare.run" else None,
                ("A" if k % 2 else "B") if f == "compare.run" else None,
                p_t,
                o_t,
                c_t,
                cost,
                float(latency[i]),
                float(ttft[i]),
                st,
                error_type,
                error_message,
                1,
                question if f != "embed" else None,
                f"(demo answer to: {question})" if f != "embed" and st in ("ok", "cached") else None,
                '{"demo": true}',
            )
        )
    return rows


def generate_rows(
    n: int, days: int, end: datetime, seed: int = 7, prices: PriceTable | None = None
) -> Iterator[list[tuple]]:
    """`n` call-log rows over the `days` before `end`, one list of COLUMNS tuples per day (oldest first):
    volume grows ~1% a day, weekends are quiet, working hours busy (UTC), users follow a Zipf law."""
    rng = np.random.default_rng(seed)
    prices = prices or load_price_table()
    start = end.astimezone(UTC) - timedelta(days=days)
    day_w = np.array([1.01**d * (0.35 if (start + timedelta(days=d)).weekday() >= 5 else 1.0) for d in range(days)])
    per_day = rng.multinomial(n, day_w / day_w.sum())
    price_of = {m: find_price(m, prices) for spec in FEATURES.values() for m in spec[1]}
    first = 0
    for day, count in enumerate(per_day):
        if count:
            yield _day_rows(rng, int(count), day, days, start, seed, first, price_of)
            first += int(count)


def generate_calls(n: int, days: int, end: datetime, seed: int = 7, prices: PriceTable | None = None) -> Iterator[dict]:
    """The rows of generate_rows as dicts of call-log columns (created_at a UTC datetime, metadata a dict)."""
    for day in generate_rows(n, days, end, seed, prices):
        for row in day:
            call = dict(zip(COLUMNS, row, strict=True))
            call["created_at"] = datetime.fromisoformat(call["created_at"]).replace(tzinfo=UTC)
            call["meta"] = {"demo": True}
            del call["metadata"]
            yield call


@contextmanager
def _indexes_built_after(conn: Connection) -> Iterator[None]:
    """Into an empty call log, insert without its secondary indexes and build them afterwards (one sort each
    instead of one random insert per row and index); their DDL is read from the database and run again as is."""
    if conn.execute(text("SELECT id FROM llm_calls LIMIT 1")).first() is not None:
        yield
        return
    if conn.dialect.name == "postgresql":
        found = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'llm_calls' AND indexname NOT IN "
                "(SELECT conname FROM pg_constraint WHERE conrelid = 'llm_calls'::regclass)"
            )
        ).all()
    else:
        found = conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'llm_calls' AND sql IS NOT NULL"
            )
        ).all()
    for name, _ in found:
        conn.execute(text(f'DROP INDEX "{name}"'))
    conn.commit()
    try:
        yield
    except BaseException:
        conn.rollback()  # keep what earlier chunks committed, and index it
        raise
    finally:
        for _, ddl in found:
            conn.execute(text(ddl))
            conn.commit()  # one at a time: SQLite's WAL holds one index, not all of them


def write_demo_calls(engine: Engine, n: int, days: int, end: datetime | None = None, seed: int = 7) -> int:
    """Insert `n` synthetic calls into `engine`'s call log (a migrated demo database); returns the count.

    Bulk load: the rollup triggers are dropped for it and the rollups rebuilt afterwards in one GROUP BY each
    (lib.core.rollups.bulk_load); rows go in with executemany (SQLite) or COPY (PostgreSQL), committed a day at a time.
    """
    end = end or datetime.now(UTC)
    written = 0
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    with engine.connect() as conn, bulk_load(conn), _indexes_built_after(conn):
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        for rows in generate_rows(n, days, end, seed):
            cur = dbapi.cursor()
            if engine.dialect.name == "postgresql":
                with cur.copy(f"COPY llm_calls ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row((f"{row[0]}+00:00", *row[1:]))
            else:
                cur.executemany(f"INSERT INTO llm_calls ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})", rows)
            cur.close()
            conn.commit()  # a day at a time: no transaction (or WAL) the size of the whole load
            written += len(rows)
    return written
