"""A workbench process for the metrics tests: serves its metrics port as the app does (Services.start_metrics,
settings from the environment), makes CALLS model calls for FEATURE, prints "done", and stays up until stdin closes.

Usage: python tests/metrics_process.py CALLS FEATURE MODEL
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.core.settings import load_settings
from lib.gateway.client import CallContext
from lib.services import Services
from lib.telemetry.metrics import MetricsPortInUse


def main() -> int:
    calls, feature, model = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    services = Services(load_settings())
    try:
        endpoint = services.start_metrics()
    except MetricsPortInUse as exc:
        print(f"error: {exc}", flush=True)
        return 2
    assert endpoint is not None, "WORKBENCH_METRICS_PORT is not set"
    for i in range(calls):  # a distinct user, session and question each time: none of them may become a label
        ctx = CallContext(feature=feature, user=f"user-{i}@example.com", session_id=f"session-{i}")
        services.gateway.invoke([("user", f"Question number {i}?")], model, ctx)
    print("done", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    return 0


if __name__ == "__main__":
    sys.exit(main())
