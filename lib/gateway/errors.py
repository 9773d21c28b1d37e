"""The gateway's error hierarchy: each error carries a message a person can act on."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Protocol

import httpx
import openai


class GatewayError(Exception):
    """A model call failed; `str(err)` is safe to show (no keys, no tracebacks)."""

    error_type = "error"
    retryable = False

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.provider = provider
        self.retry_after = retry_after
        self.request_id: str | None = None  # set by the gateway once the call is logged


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


def _retry_after(response: _Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def map_error(exc: BaseException, provider: str, timeout_s: float) -> GatewayError:
    """Translate an SDK/transport exception into the gateway hierarchy with an actionable message."""
    for e in _chain(exc):
        if isinstance(e, GatewayError):
            return e
        if isinstance(e, openai.RateLimitError):
            ra = _retry_after(e.response)
            wait = f" It asked us to wait {ra:g} s." if ra is not None else ""
            return RateLimited(
                f"{provider} is rate-limiting requests (HTTP 429).{wait} Try again in a minute, or pick another model.",
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
                return ProviderUnavailable(
                    f"{provider} had a server error (HTTP {e.status_code}). It is usually brief: try again shortly.",
                    provider=provider,
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
