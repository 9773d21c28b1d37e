"""The one retry loop of the gateway, for chat and embedding calls: backoff, Retry-After, breaker, attempts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from lib.core.settings import ProviderConfig, Settings
from lib.gateway.breaker import CircuitBreaker
from lib.gateway.errors import CircuitOpen, GatewayError, format_seconds, map_error

T = TypeVar("T")


class Tally(Protocol):
    """Where a call counts its attempts (a CallResult)."""

    attempts: int


@dataclass
class RetryPolicy:
    """Retries a provider call on retryable errors, with exponential backoff, feeding the circuit breaker."""

    breaker: CircuitBreaker
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    sleep: Callable[[float], None]
    rng: Callable[[], float]

    @classmethod
    def from_settings(
        cls, settings: Settings, breaker: CircuitBreaker, sleep: Callable[[float], None], rng: Callable[[], float]
    ) -> RetryPolicy:
        """The policy the settings ask for."""
        return cls(breaker, settings.max_retries, settings.backoff_base_s, settings.backoff_max_s, sleep, rng)

    def backoff(self, attempt: int, err: GatewayError) -> float:
        """Exponential backoff with jitter; a Retry-After is honoured (up to the cap)."""
        base = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        delay = base * (0.5 + self.rng() / 2)
        if err.retry_after is not None:
            delay = max(delay, err.retry_after)
        return min(delay, self.backoff_max_s)

    def run(
        self,
        provider: ProviderConfig,
        attempt: Callable[[], Iterator[T]],
        tally: Tally,
        may_retry: Callable[[], bool] = lambda: True,
        waits: list[float] | None = None,
    ) -> Iterator[T]:
        """Yield what `attempt()` yields; on a retryable failure (and while `may_retry()`), back off and try again.

        Each try passes the breaker first and counts on `tally.attempts`; failures are raised as GatewayError,
        the one that happened, saying how long it was retried after and whether the breaker has paused the provider.
        A half-open trial is ended by any outcome: a success or provider failure is recorded; anything else (a
        client error, an abandoned stream, any exception) releases it without counting. `waits`, when given, gets
        each back-off delay before the try that follows it (so a try's span can say how long it waited).
        """
        waits = [] if waits is None else waits
        last: GatewayError | None = None
        while True:
            try:
                trial = self.breaker.before_call(provider.name)
            except CircuitOpen as circuit:
                if last is None:
                    raise
                self._explain(last, waits, provider.name)  # another call opened it while this one backed off
                raise last from circuit
            tally.attempts += 1
            counted = False
            try:
                yield from attempt()
                self.breaker.record(provider.name, ok=True)
                counted = True
                return
            except GeneratorExit:  # the caller abandoned the stream: not the provider's failure
                raise
            except Exception as exc:
                err = map_error(exc, provider.name, provider.timeout_s)
                if err.retryable:
                    self.breaker.record(provider.name, ok=False)
                    counted = True
                paused = err.retryable and self.breaker.state(provider.name) == "open"
                if paused or not (err.retryable and len(waits) < self.max_retries and may_retry()):
                    self._explain(err, waits, provider.name)
                    raise err from exc
                waits.append(self.backoff(len(waits) + 1, err))
                last = err
            finally:
                if trial and not counted:
                    self.breaker.release(provider.name)
            self.sleep(waits[-1])

    def _explain(self, err: GatewayError, waits: list[float], provider: str) -> None:
        """Add to the final error how long it was retried after, and the breaker's pause that follows from it."""
        if waits:
            times = [format_seconds(w) for w in waits]
            if len(times) == 1:
                err.add_sentence(f"It was retried after {times[0]} and failed again.")
            else:
                err.add_sentence(
                    f"It was retried {len(times)} times, after {', then '.join(times)}, and failed each time."
                )
        if note := self.breaker.pause_note(provider):
            err.add_sentence(note)

    def call(self, provider: ProviderConfig, fn: Callable[[], T], tally: Tally) -> T:
        """`fn()`'s value, retried like `run`."""
        [value] = self.run(provider, lambda: iter((fn(),)), tally)  # unpacking runs the loop to its end
        return value
