"""Drill: 20 simulated users × 200 gateway calls at once, on a SQLite file (WAL) and on PostgreSQL.

Every call must come back ok to its caller, and the call log must hold exactly one row per call: 4,000
rows, every (user, call number) once, every request id once, nothing lost to "database is locked".

Reproduce the figures: .venv/bin/python -m pytest tests/test_drill_concurrency.py -s
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter

from fake_openai import Reply
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib.core.settings import load_settings
from lib.core.tables import LlmCall
from lib.gateway.client import CallContext, Gateway

USERS = 20
CALLS_PER_USER = 200
ASKED = re.compile(r"drill-user-\d\d call \d\d\d")
MODEL = "openai/gpt-4o-mini"  # priced, so every row also goes through the price lookup


def make_gateway(engine, server) -> Gateway:
    providers = {
        "openai": {
            "kind": "openai",
            "base_url": server.base_url,
            "api_key": "test-key",
            "models": ["gpt-4o-mini"],
            "timeout_s": 30,
        }
    }
    settings = load_settings(
        env={
            "WORKBENCH_PROVIDERS": json.dumps(providers),
            "WORKBENCH_LOG_CONTENT": "full",
            "WORKBENCH_MAX_RETRIES": "0",  # a retry would hide a failure from the count
            "WORKBENCH_CACHE_FEATURES": "",
        }
    )  # every call reaches the server
    return Gateway(settings, engine)


def test_twenty_users_making_two_hundred_calls_each_lose_and_duplicate_nothing(any_engine, fake, caplog):
    fake.default_reply = Reply("Drill answer in a few words.")
    gw = make_gateway(any_engine, fake)
    if any_engine.dialect.name == "sqlite":  # a file in WAL mode, as the app runs it
        with any_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert any_engine.url.database and conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    caplog.set_level(logging.WARNING)
    start = threading.Barrier(USERS)
    failures: list[str] = []
    request_ids: dict[str, list[str]] = {}

    def user(u: int) -> None:
        name = f"drill-user-{u:02d}"
        ids: list[str] = []
        request_ids[name] = ids
        start.wait()
        for i in range(CALLS_PER_USER):
            ctx = CallContext(feature="drill", user=name, session_id=f"{name}-session")
            question = [("user", f"[{name} call {i:03d}] What is the answer?")]
            try:
                if i % 2:
                    result = gw.invoke(question, MODEL, ctx)
                else:
                    stream = gw.stream(question, MODEL, ctx)
                    text = "".join(stream)
                    result = stream.result
                    assert text == result.text
                if result.status != "ok" or result.text != "Drill answer in a few words.":
                    failures.append(f"{name} call {i}: {result.status} {result.text!r}")
                ids.append(result.request_id)
            except Exception as exc:  # anything that reaches a caller is a failure of the drill
                chain, e = [], exc
                while e is not None and len(chain) < 6:
                    chain.append(f"{type(e).__name__}: {e}")
                    e = e.__cause__ or e.__context__
                failures.append(f"{name} call {i} ({'stream' if i % 2 == 0 else 'invoke'}): " + " <- ".join(chain))

    threads = [threading.Thread(target=user, args=(u,), name=f"drill-{u}") for u in range(USERS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    elapsed = time.perf_counter() - began
    assert not any(t.is_alive() for t in threads), "a simulated user never finished"
    assert failures == [], failures[:5]

    total = USERS * CALLS_PER_USER
    with Session(any_engine) as s:
        rows = s.execute(
            select(LlmCall.request_id, LlmCall.user, LlmCall.status, LlmCall.prompt, LlmCall.attempts, LlmCall.response)
        ).all()
        per_user = dict(s.execute(select(LlmCall.user, func.count()).group_by(LlmCall.user)).all())
    assert len(rows) == total
    assert per_user == {f"drill-user-{u:02d}": CALLS_PER_USER for u in range(USERS)}
    assert Counter(r.status for r in rows) == {"ok": total}
    assert all(r.attempts == 1 and r.response == "Drill answer in a few words." for r in rows)
    # every request id once, and exactly the ids the callers were given
    logged_ids = Counter(r.request_id for r in rows)
    assert len(logged_ids) == total and max(logged_ids.values()) == 1
    assert set(logged_ids) == {rid for ids in request_ids.values() for rid in ids}
    # every (user, call number) once: the prompts say who asked which question
    asked = Counter(m.group(0) for r in rows for m in [ASKED.search(r.prompt or "")] if m)
    assert asked == Counter(f"drill-user-{u:02d} call {i:03d}" for u in range(USERS) for i in range(CALLS_PER_USER))
    # the gateway swallows a failed log write (the answer must reach the user) and logs it: none may happen
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == [], problems[:5]
    assert not any("database is locked" in p for p in problems)
    backend = any_engine.dialect.name
    print(
        f"\nDRILL concurrency [{backend}]: {total:,} calls from {USERS} users in {elapsed:.1f} s "
        f"({total / elapsed:.0f} calls/s), {len(rows):,} rows, 0 lost, 0 duplicated, 0 errors surfaced"
    )
