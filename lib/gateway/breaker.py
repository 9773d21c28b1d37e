"""The per-provider circuit breaker: after N failures in a row, calls to that provider fail fast for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from lib.gateway.errors import CircuitOpen


class CircuitBreaker:
    """Per-provider breaker: opens after N consecutive failures, half-opens after a cool-down."""

    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.cooldown_s, self.clock = threshold, cooldown_s, clock
        self._failures: dict[str, int] = {}
        self._opened_at: dict[str, float] = {}
        self._trial: set[str] = set()
        self._lock = threading.Lock()

    def state(self, provider: str) -> str:
        """closed, open or half-open."""
        with self._lock:
            return self._state(provider)

    def _state(self, provider: str) -> str:
        opened = self._opened_at.get(provider)
        if opened is None:
            return "closed"
        return "open" if self.clock() - opened < self.cooldown_s else "half-open"

    def before_call(self, provider: str) -> None:
        """Raise CircuitOpen while open; let one trial call through when half-open."""
        with self._lock:
            state = self._state(provider)
            if state == "closed":
                return
            if state == "half-open" and provider not in self._trial:
                self._trial.add(provider)
                return
            left = max(0.0, self.cooldown_s - (self.clock() - self._opened_at[provider]))
            raise CircuitOpen(
                f"{provider} failed {self.threshold} times in a row, so calls to it are paused "
                f"for {left:.0f} more seconds. Pick another model or try again then.",
                provider=provider,
            )

    def record(self, provider: str, ok: bool) -> None:
        """Count a success (closes) or a provider failure (may open)."""
        with self._lock:
            self._trial.discard(provider)
            if ok:
                self._failures.pop(provider, None)
                self._opened_at.pop(provider, None)
                return
            n = self._failures.get(provider, 0) + 1
            self._failures[provider] = n
            if n >= self.threshold or provider in self._opened_at:
                self._opened_at[provider] = self.clock()
