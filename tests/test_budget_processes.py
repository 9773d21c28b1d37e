"""A hard budget holds across app processes: 4 OS processes, each with its own Gateway, share one database (a
SQLite file, then a real PostgreSQL) and call the loopback server under one small dollar budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_openai import Reply
from test_gateway import SECRET, rows

from lib.gateway.cost_control import budget_table, set_budget

WORKER = Path(__file__).resolve().parent / "budget_worker.py"
LIMIT = 0.01
PROCESSES, CALLS = 4, 20


def run_workers(url: str, base_url: str, caps: list[str | None]) -> list[list[list]]:
    """Start one worker per cap (the chat feature's output cap, None: none), release them at once, collect."""
    providers = {"openai": {"kind": "openai", "base_url": base_url, "api_key": SECRET, "models": ["gpt-4o-mini"]}}
    base = {**os.environ, "DATABASE_URL": url, "WORKBENCH_PROVIDERS": json.dumps(providers)}
    base |= {"WORKBENCH_CACHE_FEATURES": "", "WORKBENCH_LOG_CONTENT": "none"}
    procs = []
    for cap in caps:
        env = base | ({"WORKBENCH_MAX_OUTPUT_TOKENS": json.dumps({"chat": int(cap)})} if cap else {})
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(CALLS), "2000"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # every process is built: they start calling together
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs)
    return results


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_four_processes_together_spend_no_more_than_the_hard_limit_plus_one_call(backend, fake, tmp_path, request):
    from lib.core.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    migrate(engine)
    set_budget(engine, "global", "*", limit_usd=LIMIT)
    # ~2,003 prompt tokens ($0.0003) and 20 answer tokens a call: about 32 calls fit, 80 are attempted
    fake.default_reply = Reply("ok " * 20, delay=0.02)
    results = run_workers(url, fake.base_url, ["100", "100", None, None])  # two with no output cap of their own

    calls = rows(engine)
    spent = sum(c.cost_usd or 0 for c in calls if c.status == "ok")
    one_call = max(c.cost_usd or 0 for c in calls)
    assert len(calls) == PROCESSES * CALLS
    assert spent <= LIMIT + one_call  # before: each process spent up to the limit on its own (4x)
    assert spent >= LIMIT * 0.8  # the budget was used, not refused early
    blocked = [c for c in calls if c.status == "blocked"]
    assert blocked and all("monthly budget for everyone ($0.01)" in c.error_message for c in blocked)
    assert {c.error_type for c in blocked} == {"budget_exceeded"}
    # the processes really called at the same time: each one's calls overlap every other's
    windows = [(min(o[0] for o in r), max(o[1] for o in r)) for r in results]
    assert max(w[0] for w in windows) < min(w[1] for w in windows)
    # every uncapped call was sent with the cap its budget could pay for
    sent_caps = [r["json"].get("max_completion_tokens", r["json"].get("max_tokens")) for r in fake.requests]
    assert all(cap is not None and cap <= 4096 for cap in sent_caps)
    [b] = budget_table(engine)
    assert b["reserved_usd"] == 0 and b["reserved_tokens"] == 0  # every reservation was settled
    assert b["spent_usd"] == pytest.approx(spent, abs=1e-6)
    engine.dispose()
