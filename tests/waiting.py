"""Waiting on a condition with a deadline (tests never sleep to pace themselves)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_never = threading.Event()


def wait_for(condition: Callable[[], object], timeout: float, step: float = 0.02) -> bool:
    """Poll `condition` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        _never.wait(step)  # polling another thread's or process's progress, not pacing the test
