"""The gateway's error hierarchy: each error carries a message a person can act on."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Protocol


class GatewayError(Exception):
    """A model call failed; `str(err)` is safe to show (no keys, no tracebacks)."""

    error_type = "error"
    retryable = False

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.provider = provider
        self.retry_after = retry_after
        self.request_id: str | None = None  # set by the gateway once the call is logged

    def add_sentence(self, sentence: str) -> None:
        """Append a sentence to the message (what the retry loop did about it, what follows from it)."""
        self.args = (f"{self.args[0]} {sentence}", *self.args[1:])


class RateLimited(GatewayError):
    """HTTP 429 from the provider."""

    error_type = "rate_limited"
    retryable = True


class TimedOut(GatewayError):
    """The provider did not answer within the provider's timeout."""

    error_type = "timed_out"
    retryable = True


class ProviderUnavailable(GatewayError):
    """5xx, refused or dropped connection, or a malformed response."""

    error_type = "provider_unavailable"
    retryable = True


class CircuitOpen(ProviderUnavailable):
    """The provider failed repeatedly; calls fail fast until its cool-down ends."""

    error_type = "circuit_open"
    retryable = False


class ContextTooLong(GatewayError):
    """The prompt exceeds the model's context window."""

    error_type = "context_too_long"


class AuthenticationFailed(GatewayError):
    """HTTP 401/403: the key is missing, wrong or lacks access."""

    error_type = "authentication_failed"


class BadRequest(GatewayError):
    """Any other 4xx: the request itself is wrong (unknown model, bad parameter)."""

    error_type = "bad_request"


class InvalidOutput(GatewayError):
    """The answer arrived but does not pass the caller's check (e.g. a JSON schema); logged as invalid."""

    error_type = "invalid_output"


class BudgetExceeded(GatewayError):
    """A hard budget limit refuses the call."""

    error_type = "budget_exceeded"


class UnpricedModel(BudgetExceeded):
    """No price is known for the model while a dollar budget applies (WORKBENCH_UNPRICED_POLICY=block)."""

    error_type = "unpriced_model"


class PromptTooLarge(GatewayError):
    """One call's messages are longer than WORKBENCH_MAX_PROMPT_CHARS; refused before anything else."""

    error_type = "prompt_too_large"


class _Response(Protocol):
    """An HTTP response (the openai SDK's are httpx2's, not httpx's)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def retry_after_s(headers: Mapping[str, str] | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds a response asks to wait before a retry: `retry-after-ms`, else `Retry-After` in seconds or as an
    HTTP-date; None when it asks nothing (or says something unreadable)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        try:
            seconds = float(value) / scale if value is not None else math.nan
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def _retry_after(response: _Response | None) -> float | None:
    return retry_after_s(response.headers if response is not None else None)


def format_seconds(seconds: float) -> str:
    """`1 s`, `2.5 s`, `0.19 s`: a wait as a person reads it."""
    return f"{round(seconds, 2):g} s" if seconds < 10 else f"{seconds:.0f} s"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def map_error(exc: BaseException, provider: str, timeout_s: float) -> GatewayError:
    """Translate an SDK/transport exception into the gateway hierarchy with an actionable message."""
    import httpx  # here, not at the top: the openai SDK costs a fresh app ~0.5 s before its first page is drawn
    import openai

    for e in _chain(exc):
        if isinstance(e, GatewayError):
            return e
        if isinstance(e, openai.RateLimitError):
            ra = _retry_after(e.response)
            wait = f" It asked us to wait {format_seconds(ra)}." if ra is not None else ""
            return RateLimited(
                f"{provider} is rate-limiting requests (HTTP 429).{wait} Try again shortly, or pick another model.",
                provider=provider,
                retry_after=ra,
            )
        if isinstance(e, (openai.APITimeoutError, httpx.TimeoutException, TimeoutError)):
            return TimedOut(
                f"{provider} did not answer within {timeout_s:g} s. Try again, ask a shorter "
                "question, or raise this provider's timeout_s.",
                provider=provider,
            )
        if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return AuthenticationFailed(
                f"{provider} rejected the API key (HTTP {e.status_code}). Check the "
                "key in the environment or .streamlit/secrets.toml.",
                provider=provider,
            )
        if isinstance(e, openai.BadRequestError):
            code = (e.body or {}).get("code") if isinstance(e.body, dict) else None
            text = str(getattr(e, "message", "")) or ""
            if code == "context_length_exceeded" or "maximum context length" in text:
                return ContextTooLong(
                    "The conversation is too long for this model's context window. Start "
                    "a new conversation, shorten the question, or pick a model with a "
                    "larger context.",
                    provider=provider,
                )
            return BadRequest(f"{provider} refused the request (HTTP 400): {_short(text)}", provider=provider)
        if isinstance(e, openai.NotFoundError):
            return BadRequest(
                f"{provider} does not know this model or endpoint (HTTP 404). Check the model "
                "name and base_url in the provider settings.",
                provider=provider,
            )
        if isinstance(e, openai.APIStatusError):
            if e.status_code >= 500:
                ra = _retry_after(e.response)
                wait = f" It asked us to wait {format_seconds(ra)}." if ra is not None else ""
                return ProviderUnavailable(
                    f"{provider} had a server error (HTTP {e.status_code}).{wait} It is usually brief: try again "
                    "shortly.",
                    provider=provider,
                    retry_after=ra,
                )
            return BadRequest(
                f"{provider} refused the request (HTTP {e.status_code}): {_short(e.message)}", provider=provider
            )
        if isinstance(e, (openai.APIConnectionError, httpx.TransportError, ConnectionError)):
            return ProviderUnavailable(
                f"Could not reach {provider}, or it dropped the connection. Check that "
                "the server is running and its base_url, then try again.",
                provider=provider,
            )
        if isinstance(e, json.JSONDecodeError):
            return ProviderUnavailable(
                f"{provider} sent a malformed response. Try again; if it repeats, the "
                "endpoint is not OpenAI-compatible.",
                provider=provider,
            )
    return ProviderUnavailable(f"{provider} failed unexpectedly ({type(exc).__name__}). Try again.", provider=provider)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
