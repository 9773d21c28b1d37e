"""One app process for tests/test_budget_processes.py: its own Gateway on the shared database (settings from the
environment), calling until told how often. Prints "ready" once built, waits for a line on stdin (so every
process starts calling at once), then prints one JSON line: [[start, end, outcome, message], ...].

Usage: python tests/budget_worker.py CALLS PROMPT_WORDS
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.core.db import make_engine
from lib.core.settings import load_settings
from lib.gateway.client import CallContext, Gateway
from lib.gateway.errors import BudgetExceeded


def main() -> None:
    calls, words = int(sys.argv[1]), int(sys.argv[2])
    settings = load_settings()
    gateway = Gateway(settings, make_engine(settings.database_url))
    question = [("user", "word " * words)]
    print("ready", flush=True)
    sys.stdin.readline()
    outcomes = []
    for _ in range(calls):
        start = time.time()
        try:
            gateway.invoke(question, "openai/gpt-4o-mini", CallContext(feature="chat", user="worker"))
            outcomes.append([start, time.time(), "ok", ""])
        except BudgetExceeded as err:
            outcomes.append([start, time.time(), "blocked", str(err)])
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    main()
