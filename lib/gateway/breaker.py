"""The per-provider circuit breaker: after N failures in a row, calls to that provider fail fast for a while."""

from __future__ import annotations

import math
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

    def before_call(self, provider: str) -> bool:
        """Raise CircuitOpen while open; let one trial call through when half-open.

        True when this call holds the half-open trial: its caller must end it with `record` or `release`.
        """
        with self._lock:
            state = self._state(provider)
            if state == "closed":
                return False
            if state == "half-open" and provider not in self._trial:
                self._trial.add(provider)
                return True
            raise CircuitOpen(
                f"{provider} failed {self.threshold} times in a row, so calls to it are {self._paused(provider)}. "
                "Pick another model or try again then.",
                provider=provider,
            )

    def release(self, provider: str) -> None:
        """End a half-open trial that says nothing about the provider's health (a 401, an abandoned stream):
        the next call may try again, and no failure is counted."""
        with self._lock:
            self._trial.discard(provider)

    def pause_note(self, provider: str) -> str | None:
        """While open: the sentence that says calls to `provider` are now paused, and for how long; else None."""
        with self._lock:
            if self._state(provider) != "open":
                return None
            return f"After {self.threshold} failures in a row, calls to {provider} are {self._paused(provider)}."

    def _paused(self, provider: str) -> str:
        left = self.cooldown_s - (self.clock() - self._opened_at[provider])
        if left <= 0:  # half-open, with its one trial call under way
            return "paused until the trial call under way succeeds"
        return f"paused for {math.ceil(left)} more seconds"

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
