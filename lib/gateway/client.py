"""The one way the workbench calls a model: retries, circuit breaker, fallback, cost, and the call log."""

from __future__ import annotations

import contextvars
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.messages.tool import ToolCallChunk, tool_call_chunk
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import var_child_runnable_config
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from lib.core import spans
from lib.core.settings import ProviderConfig, Settings
from lib.core.tables import utcnow
from lib.gateway.breaker import CircuitBreaker
from lib.gateway.call_log import CallLogWriter, without_nul
from lib.gateway.cost_control import (
    DEFAULT_OUTPUT_TOKENS,
    Admission,
    BudgetGuard,
    CallEstimate,
    ResponseCache,
    cache_key,
    integrity_safe_put,
    reservation_ttl_s,
)
from lib.gateway.errors import (
    BudgetExceeded,
    CircuitOpen,
    GatewayError,
    InvalidOutput,
    PromptTooLarge,
    ProviderUnavailable,
    map_error,
)
from lib.gateway.metrics import GatewayMetrics, process_metrics
from lib.gateway.pricing import Price, PriceTable, find_price, load_price_table
from lib.gateway.redaction import Redaction, StreamRestorer, redact
from lib.gateway.retry import RetryPolicy
from lib.gateway.tokens import estimate_message_tokens, estimate_tokens, message_text, trim_history
from lib.gateway.tool_calls import (
    calls_for_result,
    calls_tokens,
    message_log_text,
    offline_tools_error,
    redact_message,
    render_calls,
    request_chars,
    restore_message,
    strict_tool_calls,
    tools_tokens,
    uses_tools,
)

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)
ModelFactory = Callable[[ProviderConfig, str, dict[str, Any]], BaseChatModel]
ChatModel = Runnable[LanguageModelInput, BaseMessage]  # a chat model, maybe with per-call parameters bound
OutputCheck = Callable[[str], str | None]  # a finished answer's text -> a problem, or None


def own_run() -> contextvars.Context:
    """A context in which the provider's LangChain model runs as its own run, not as a child of the caller's.

    A GatewayChatModel inside an agent runs the gateway under the agent's callbacks (LangChain passes them down in
    a context variable, and a bound model merges them back in whatever config it is given); inherited, the agent's
    stream handlers would hear every token twice: from the provider's model here and from the GatewayChatModel.
    """
    ctx = contextvars.copy_context()  # other context (the trace's span) stays
    ctx.run(var_child_runnable_config.set, None)
    return ctx


@dataclass
class CallContext:
    """Who and what a call is for; every field but `deferred_log`, `log_rows` and `hold` lands in the call log."""

    feature: str = "chat"
    user: str | None = None
    session_id: str | None = None
    template_name: str | None = None
    template_version: int | None = None
    experiment_id: str | None = None
    variant: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # a pipeline run or an assistant turn
    step: str | None = None  # the pipeline step's name, or the assistant turn's step number
    pipeline_name: str | None = None
    pipeline_version: int | None = None
    # True: the call returns as soon as its answer is in, and its call-log row is committed by a background
    # writer (with other rows) meanwhile; Gateway.flush_log() waits for it. For batch runs, so a worker's
    # next call does not wait on the database; interactive calls keep the default (committed on return).
    deferred_log: bool = False
    # A list (queued work): the call's call-log row is appended here instead of written, and the caller commits it
    # in the transaction that records its answer and its item's end (lib.gateway.call_log.insert_rows), so the row
    # costs no transaction of its own and is never missing beside a stored answer. The caller must commit the rows
    # it was handed, in that transaction or (when it fails) in one of their own.
    log_rows: list[dict[str, Any]] | None = None
    # Queued work: held around each try's request to the provider (a worker's call slot, ItemContext.calling), so
    # what the gateway does before and after the request, and the waits between retries, overlap other calls.
    hold: Callable[[], AbstractContextManager[Any]] | None = None


@dataclass
class CallResult:
    """The outcome of one call, as logged."""

    request_id: str
    model: str
    provider: str
    text: str = ""
    status: str = "ok"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    attempts: int = 0
    tokens_estimated: bool = False
    error: GatewayError | None = None
    saved_usd: float | None = None  # a cache hit: what the call would have cost
    notices: list[str] = field(default_factory=list)  # budget warnings to show the user
    redacted: int = 0  # personal-data items replaced before the prompt left
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # the answer's tool calls (see tool_calls.py)

    @property
    def offline(self) -> bool:
        """True when the offline extractive answerer produced this."""
        return self.provider == "offline"

    @property
    def unpriced(self) -> bool:
        """True when no price is known for the model (cost is unknown, not zero)."""
        return self.cost_usd is None and self.status in ("ok", "aborted", "error")


def import_model_stack() -> None:
    """Import what a process's first call to an OpenAI-compatible model would (LangChain's ChatOpenAI, the OpenAI
    SDK, its HTTP client): a worker process does it at start, so its first items do not wait for it."""
    import openai  # noqa: F401
    from langchain_openai import ChatOpenAI  # noqa: F401


def default_model_factory(embeddings: Callable[[], Embeddings] | None = None) -> ModelFactory:
    """Build LangChain chat models: ChatOpenAI for OpenAI(-compatible), the extractive model offline."""

    def factory(provider: ProviderConfig, model: str, params: dict[str, Any]) -> BaseChatModel:
        if provider.kind == "offline":
            from lib.gateway.offline import OfflineExtractiveChat

            if embeddings is None:
                raise GatewayError("The offline answerer needs the local embedding model, which is not loaded.")
            return OfflineExtractiveChat(embeddings=embeddings())
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=model,
            base_url=provider.base_url,
            api_key=SecretStr(provider.api_key or "not-needed"),  # local servers ignore it; the SDK insists on one
            timeout=provider.timeout_s,
            max_retries=0,  # the gateway retries, with its own policy and logging
            stream_usage=True,  # without it OpenAI-compatible base URLs send no usage in streams
            **params,
        )

    return factory


def call_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The per-call parameters `model` takes: gpt-5 reasoning models refuse any temperature but the default.

    ChatOpenAI drops such a temperature when it is built with one; bound per call, it would be sent and refused.
    """
    name = model.lower()
    reasoning = name.startswith("gpt-5") and "chat" not in name and params.get("reasoning_effort") != "none"
    if reasoning and params.get("temperature") not in (None, 1):
        return {k: v for k, v in params.items() if k != "temperature"}
    return params


class Gateway:
    """Calls models through LangChain with retries, breaker, fallback and one call-log row per call."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        model_factory: ModelFactory | None = None,
        price_table: PriceTable | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        metrics: GatewayMetrics | None = None,
    ):
        self.settings, self.engine = settings, engine
        self.model_factory = model_factory or default_model_factory()
        self.price_table = price_table or load_price_table()
        self.clock = clock
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_s, clock)
        self.retry = RetryPolicy.from_settings(settings, self.breaker, sleep, rng)
        self.cache = ResponseCache(engine, settings.cache_ttl_s)
        self.budgets = BudgetGuard(
            engine,
            clock=clock,
            unpriced_policy=settings.unpriced_policy,
            reservation_ttl_s=reservation_ttl_s(settings),
        )
        self._chat_models: dict[tuple[str, str], BaseChatModel] = {}  # one per provider and model
        self._embedding_clients: dict[str, openai.OpenAI] = {}  # one per provider
        self._prices: dict[str, tuple[Price | None, float]] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._log = CallLogWriter(engine)
        self.metrics = (metrics or process_metrics()).allow_models(settings.model_names())  # Prometheus, per process

    # ---- public API -------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Configured models, default first."""
        return self.settings.model_names()

    def invoke(
        self,
        messages: Sequence[Any],
        model: str | None = None,
        ctx: CallContext | None = None,
        *,
        check_output: OutputCheck | None = None,
        **params: Any,
    ) -> CallResult:
        """Call a model and wait for the whole answer; raises GatewayError (with request_id) on failure.

        `check_output(text)` returns a problem (or None); an answer with a problem is logged and
        returned with status "invalid" and an InvalidOutput error, not raised.
        """
        stream = self.stream(messages, model, ctx, _stream=False, check_output=check_output, **params)
        for _ in stream:
            pass
        assert stream.result is not None  # set whenever the stream ends without raising
        return stream.result

    def stream(
        self,
        messages: Sequence[Any],
        model: str | None = None,
        ctx: CallContext | None = None,
        *,
        _stream: bool = True,
        check_output: OutputCheck | None = None,
        **params: Any,
    ) -> Stream:
        """A Stream to iterate for text pieces; its `.result` holds the logged outcome at the end."""
        msgs = convert_to_messages(list(messages))
        model = model or self.settings.default_model
        return Stream(self, msgs, model, ctx or CallContext(), params, _stream, check_output)

    def embed(self, texts: Sequence[str], model: str, ctx: CallContext | None = None) -> list[list[float]]:
        """Embed texts with an OpenAI-compatible embedding model; logged and priced like any call."""
        ctx = ctx or CallContext(feature="embed")
        bare = model.split("/", 1)[-1]
        attributes = {
            spans.GEN_AI_OPERATION: "embeddings",
            spans.GEN_AI_REQUEST_MODEL: bare,
            spans.FEATURE: ctx.feature,
        }
        with spans.span(f"embeddings {bare}", attributes):
            return self._embed(texts, model, ctx)

    def _embed(self, texts: Sequence[str], model: str, ctx: CallContext) -> list[list[float]]:
        result = CallResult(uuid.uuid4().hex, model, model.split("/", 1)[0])
        start, vectors = self.clock(), []
        try:
            provider, bare = self.resolve(model)
            if provider.kind == "offline":
                raise GatewayError("The offline provider has no embedding model; use the local one.")
            client = self._embedding_client(provider)
            response = self.retry.call(
                provider,
                lambda: client.embeddings.create(
                    model=bare, input=list(texts), extra_headers=spans.traceparent(spans.current_span()) or None
                ),
                result,
            )
            vectors = [d.embedding for d in sorted(response.data, key=lambda d: d.index)]
            result.prompt_tokens = response.usage.prompt_tokens if response.usage else 0
            if not response.usage:
                result.prompt_tokens, result.tokens_estimated = sum(estimate_tokens(t) for t in texts), True
            result.cost_usd = self.price(model, result)
        except GatewayError as err:
            result.status, result.error, result.cost_usd = "error", err, 0.0
            err.request_id = result.request_id
        result.latency_ms = (self.clock() - start) * 1000
        describe_call(spans.current_span(), result)
        meta = {"texts": len(texts), **({"tokens_estimated": True} if result.tokens_estimated else {})}
        self.write_row(result, ctx, f"[embed {len(texts)} texts]", meta)
        if result.error is not None:
            raise result.error
        return vectors

    def _embedding_client(self, provider: ProviderConfig) -> openai.OpenAI:
        import openai

        with self._lock:
            if provider.name not in self._embedding_clients:
                self._embedding_clients[provider.name] = openai.OpenAI(
                    base_url=provider.base_url,
                    api_key=provider.api_key or "not-needed",
                    timeout=provider.timeout_s,
                    max_retries=0,
                )
            return self._embedding_clients[provider.name]

    # ---- internals ----------------------------------------------------------------------------

    def resolve(self, model: str) -> tuple[ProviderConfig, str]:
        """Split `provider/model` and find its provider; GatewayError if unknown."""
        if "/" not in model:
            raise GatewayError(f"Model names look like provider/model; {model!r} has no provider.")
        name, bare = model.split("/", 1)
        try:
            return self.settings.provider(name), bare
        except ValueError as exc:
            raise GatewayError(f"{exc} Configured models: {', '.join(self.model_names())}.") from exc

    def chat_model(self, provider: ProviderConfig, bare: str, params: dict[str, Any]) -> ChatModel:
        """This provider's and model's one cached LangChain chat model, with this call's parameters bound.

        One client per model, not per parameter set: every temperature or output cap a template sets would
        otherwise add a client that lives as long as the process. Built under its own lock, not the gateway's:
        the first ChatOpenAI of a process imports the HTTP stack (~0.3 s), and price look-ups and calls to
        models already built must not wait for that.
        """
        key = (provider.name, bare)
        model = self._chat_models.get(key)
        if model is None:
            with self._build_lock:
                model = self._chat_models.get(key)
                if model is None:
                    model = self._chat_models[key] = self.model_factory(provider, bare, {})
        params = call_params(bare, params)
        return model.bind(**params) if params else model

    PRICE_TTL_S = 30.0  # price overrides are re-read at most this often (and at once after invalidate_prices)

    def invalidate_prices(self) -> None:
        """Forget remembered prices (after an admin saves an override)."""
        with self._lock:
            self._prices.clear()

    def price_of(self, model: str) -> Price | None:
        """The price in force for `model` (re-read at most every PRICE_TTL_S), or None when it has none."""
        with self._lock:
            remembered = self._prices.get(model)
        if remembered is None or self.clock() - remembered[1] > self.PRICE_TTL_S:
            remembered = (find_price(model, self.price_table, self.engine), self.clock())
            with self._lock:
                self._prices[model] = remembered
        return remembered[0]

    def price(self, model: str, result: CallResult) -> float | None:
        """Cost in USD of the tokens in `result`, or None when the model has no price."""
        price = self.price_of(model)
        if price is None:
            return None
        return price.cost(result.prompt_tokens, result.completion_tokens, result.cached_tokens)

    def content_for_log(self, text: str | None) -> str | None:
        """Prompt/response text as the log_content setting allows."""
        mode = self.settings.log_content
        if mode == "none" or text is None:
            return None
        return redact(text, regions=self.settings.pii_regions).text if mode == "redacted" else text

    def write_row(self, result: CallResult, ctx: CallContext, prompt: str, meta: dict[str, Any]) -> None:
        """Insert the call-log row for `result` (one per call); it is committed when this returns (unless deferred, or
        handed to the caller: CallContext)."""
        err = result.error
        row = {
            "created_at": utcnow(),
            "request_id": result.request_id,
            "session_id": ctx.session_id,
            "user": ctx.user,
            "feature": ctx.feature,
            "provider": result.provider,
            "model": result.model,
            "template_name": ctx.template_name,
            "template_version": ctx.template_version,
            "experiment_id": ctx.experiment_id,
            "variant": ctx.variant,
            "run_id": ctx.run_id,
            "step": ctx.step,
            "pipeline_name": ctx.pipeline_name,
            "pipeline_version": ctx.pipeline_version,
            "trace_id": spans.current_trace_id(),  # the call's span is current while its row is written
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cached_tokens": result.cached_tokens,
            "cost_usd": result.cost_usd,
            "saved_usd": result.saved_usd,
            "latency_ms": result.latency_ms,
            "ttft_ms": result.ttft_ms,
            "status": result.status,
            "error_type": err.error_type if err else None,
            "error_message": str(err) if err else None,
            "attempts": result.attempts,
            "prompt": self.content_for_log(prompt),
            "response": self.content_for_log(
                f"{result.text}\n{render_calls(result.tool_calls)}".lstrip("\n") if result.tool_calls else result.text
            ),
            "meta": {**ctx.metadata, **meta} or None,
        }
        if ctx.log_rows is not None:
            ctx.log_rows.append(without_nul(row))
        else:
            self._log.write(without_nul(row), wait=not ctx.deferred_log)
        self.metrics.record(result, ctx)  # counted as logged: the same figures as the call log

    def flush_log(self, timeout: float | None = None) -> bool:
        """Wait until every call-log row written so far (deferred ones too) is committed; False on time-out."""
        return self._log.flush(timeout)


class Stream:
    """Iterate for text pieces; the call is logged exactly once: finished, failed or abandoned."""

    def __init__(
        self,
        gw: Gateway,
        messages: list[BaseMessage],
        model: str,
        ctx: CallContext,
        params: dict[str, Any],
        streaming: bool,
        check_output: OutputCheck | None = None,
    ):
        settings = gw.settings
        size = request_chars(messages, params)  # tool definitions and earlier calls' arguments count too
        self._too_large: PromptTooLarge | None = None
        if size > settings.max_prompt_chars:  # refused before anything else looks at the text (trimming included)
            self._too_large = PromptTooLarge(
                f"This request is {size:,} characters long; one request may send at most "
                f"{settings.max_prompt_chars:,}. Shorten the question or the pasted text, or start a new "
                "conversation; an admin can change the limit (WORKBENCH_MAX_PROMPT_CHARS)."
            )
        cap_in, cap_out = settings.max_input_tokens.get(ctx.feature), settings.max_output_tokens.get(ctx.feature)
        if cap_in and self._too_large is None:  # oldest turns go first; the system prompt and the question stay
            messages = trim_history(messages, cap_in)
        if cap_out:
            params = {**params, "max_tokens": min(int(params.get("max_tokens") or cap_out), cap_out)}
        self.gw, self.messages, self.model, self.ctx = gw, messages, model, ctx
        self.params, self.streaming, self.check_output = params, streaming, check_output
        self._asked = params  # the caller's parameters, before a budget lowers the output cap (the cache's key)
        self._admission: Admission | None = None
        self.request_id = uuid.uuid4().hex
        self.result: CallResult | None = None
        self._iter: Iterator[str] | None = None
        self._usage: dict[str, Any] | None = None  # the provider's token counts for the current attempt
        self._sent: list[BaseMessage] = messages
        self._redaction: Redaction | None = None
        self._originals: dict[str, str] | None = None  # personal data in `messages` by placeholder, once looked for
        # Tracing: the caller's span when the stream is made (it may be iterated later, from another context)
        self._trace_parent = spans.parent_in(spans.current_context())
        self._span: spans.Span = spans.NO_SPAN  # the call's span, from the first iteration on
        self._call_kwargs: dict[str, Any] = {}  # per try: the W3C traceparent header for OpenAI-compatible servers
        self._finish_reason: str | None = None
        self._response_model: str | None = None
        self._tools = uses_tools(params, messages)  # a tool-calling request: never cached (see _cacheable)
        self.message: AIMessage | None = None  # the answer as a message (tool calls restored), once it is in
        self._tool_chunks: list[ToolCallChunk] = []  # streamed tool-call pieces not yet taken by take_tool_chunks

    def __iter__(self) -> Iterator[str]:
        if self._iter is None:
            self._iter = self._run()
        return self._iter

    def take_tool_chunks(self) -> list[ToolCallChunk]:
        """The tool-call pieces streamed since the last look (a piece of text "" is yielded for them)."""
        chunks, self._tool_chunks = self._tool_chunks, []
        return chunks

    def close(self) -> None:
        """Abandon the stream; logs it as aborted if it had not finished."""
        if self._iter is not None:
            self._iter.close()  # type: ignore[attr-defined]

    def _candidates(self) -> list[str]:
        fallback = self.gw.settings.fallback_models.get(self.ctx.feature)
        if fallback and self._admission and self._admission.blocks_unpriced and self.gw.price_of(fallback) is None:
            fallback = None  # a dollar budget applies and this fallback's cost could not be counted
        if fallback and self.params.get("tools") and fallback.split("/", 1)[0] == "offline":
            fallback = None  # it cannot call tools: the primary's error says more than ToolsUnavailable would
        return [self.model] + ([fallback] if fallback and fallback != self.model else [])

    def _prompt_for_log(self) -> str:
        text = "\n\n".join(f"[{m.type}] {message_log_text(m, message_text(m))}" for m in self.messages)
        if self._too_large is None:
            return text
        keep = min(1000, self.gw.settings.max_prompt_chars)  # redaction for the log must not see the rest either
        return f"{text[:keep]} … [{len(text):,} characters in all; the rest is not logged]"

    def _run(self) -> Iterator[str]:
        gw = self.gw
        start = gw.clock()
        prompt_text = self._prompt_for_log()
        meta: dict[str, Any] = {}
        provider_name = self.model.split("/", 1)[0]
        result = CallResult(self.request_id, self.model, provider_name)
        self._span = self._start_call_span()
        pieces: list[str] = []
        finished = False
        admission: Admission | None = None
        try:
            try:
                if self._too_large is not None:
                    raise self._too_large
                admission = gw.budgets.admit(self.ctx.user, self.ctx.feature, self.model, self._estimate)
            except (BudgetExceeded, PromptTooLarge) as err:
                result.status, result.error = "blocked", err
                self._child_span(
                    "gateway.refused", {"workbench.refusal": err.error_type, spans.ERROR_TYPE: err.error_type}
                )
                raise  # logged (and given its request id) on the way out
            self._admission = admission
            if admission.max_tokens is not None:  # what the budgets can pay for
                self.params = {**self.params, "max_tokens": admission.max_tokens}
            result.notices = admission.notices
            if admission.model != self.model:
                meta["degraded_from"] = self.model
                self.model = admission.model
                result = replace(result, model=self.model, provider=self.model.split("/", 1)[0])
            if self._serve_from_cache(result, pieces):
                yield from pieces
                return
            for i, model in enumerate(self._candidates()):
                if i > 0:
                    primary_error = result.error.error_type if result.error else None
                    meta.update(fallback_from=self.model, primary_error=primary_error)
                result = replace(result, model=model, provider=model.split("/", 1)[0], error=None)
                try:
                    yield from self._attempts(model, result, pieces, start)
                    finished = True
                    break
                except GatewayError as err:
                    result.error = err
                    if isinstance(err, CircuitOpen) or isinstance(err.__cause__, CircuitOpen):
                        attrs = {"workbench.refusal": "breaker", spans.ERROR_TYPE: "circuit_open", "model": model}
                        self._child_span("gateway.refused", attrs)
                    if pieces:  # text already reached the user: no fallback can replace it
                        break
            if not finished:
                result.status = "error"
        except GeneratorExit:
            result.status = "aborted"
            raise
        except BaseException as exc:  # e.g. Ctrl-C mid-answer, or a bug: never logged (or cached) as "ok"
            if result.status == "ok":
                result.status = "error" if isinstance(exc, Exception) else "aborted"
            raise
        finally:
            with spans.activate(self._span):  # the call-log write and its row's trace id belong to this call
                try:
                    self._finish(result, "".join(pieces), prompt_text, meta, admission, start)
                finally:
                    self._end_call_span(result)
        if result.status == "error" and result.error is not None:
            raise result.error

    def _finish(
        self,
        result: CallResult,
        text: str,
        prompt_text: str,
        meta: dict[str, Any],
        admission: Admission | None,
        start: float,
    ) -> None:
        """Complete `result` however the call ended, write its one log row, settle its budget, cache it."""
        gw = self.gw
        result.text = text
        self.result = result
        if result.error is not None:
            result.error.request_id = self.request_id
        if result.status == "cached":
            self._settle(admission, 0.0, 0)
            gw.write_row(result, self.ctx, prompt_text, meta)
            return
        if result.status == "blocked":
            result.latency_ms = (gw.clock() - start) * 1000
            gw.write_row(result, self.ctx, prompt_text, meta)
            return
        if result.status == "ok" and self.check_output is not None:
            problem = self.check_output(result.text)
            if problem:
                result.status, result.error = "invalid", InvalidOutput(problem, provider=result.provider)
                result.error.request_id = self.request_id
        result.latency_ms = (gw.clock() - start) * 1000
        self._fill_usage(result)
        if result.status != "error" or result.text:
            result.cost_usd = gw.price(result.model, result)
        else:
            result.cost_usd = 0.0  # nothing was answered, so nothing is billed
        if result.tokens_estimated:
            meta["tokens_estimated"] = True
        if result.redacted:
            meta["redacted_items"] = result.redacted
        # settled before the row is written, so a budget's counter never lags the call log (see sync_counter)
        self._settle(admission, result.cost_usd, result.prompt_tokens + result.completion_tokens)
        gw.write_row(result, self.ctx, prompt_text, meta)
        stored = self._for_cache(result.text) if result.status == "ok" and self._cacheable() else None
        if stored is not None and not self._cut_by_budget(result):
            integrity_safe_put(
                gw.cache,
                self._cache_key(result.model),
                result.model,
                stored,
                result.prompt_tokens,
                result.completion_tokens,
                result.cost_usd,
            )

    def _settle(self, admission: Admission | None, cost_usd: float | None, tokens: int) -> None:
        try:
            self.gw.budgets.settle(admission, cost_usd, tokens)
        except SQLAlchemyError:  # the answer is in; its reservation expires and the call log catches spend up
            log.warning("could not settle the budget reservation of %s", self.request_id, exc_info=True)

    def _estimate(self, model: str) -> CallEstimate:
        """What this call on `model` needs from its budgets: input tokens, output cap, and the costliest price.

        The price is `model`'s, or its fallback's when that is dearer, since the fallback may answer instead.
        """
        tokens, cap = estimate_message_tokens(self.messages) + tools_tokens(self.params), self.params.get("max_tokens")
        price = self.gw.price_of(model)
        fallback = self.gw.settings.fallback_models.get(self.ctx.feature)
        other = self.gw.price_of(fallback) if price is not None and fallback and fallback != model else None
        output = int(cap or DEFAULT_OUTPUT_TOKENS)
        if price is not None and other is not None and other.cost(tokens, output) > price.cost(tokens, output):
            price = other
        return CallEstimate(tokens, int(cap) if cap else None, price)

    def _cut_by_budget(self, result: CallResult) -> bool:
        """True when the answer may have been cut short by a budget's output cap (not worth serving again)."""
        cap = self._admission.max_tokens if self._admission else None
        asked = self._asked.get("max_tokens")
        return cap is not None and (not asked or cap < int(asked)) and result.completion_tokens >= cap

    def _cacheable(self) -> bool:
        # Tool-calling requests are never cached: the key covers message text only (not tool calls, call ids or
        # tool definitions), a cached answer holds text only (not tool calls), and tools read live data.
        return self.ctx.feature in self.gw.settings.cache_features and self.check_output is None and not self._tools

    def _cache_key(self, model: str) -> str:
        """The cache key: whose answer it is too, unless the feature's answers are shared between users."""
        shared = self.ctx.feature in self.gw.settings.cache_shared_features
        return cache_key(model, self._asked, self.messages, None if shared else self.ctx.user)

    def _serve_from_cache(self, result: CallResult, pieces: list[str]) -> bool:
        """Fill `result` from the cache when an unexpired answer to this exact request exists."""
        if not self._cacheable():
            return False
        hit = self.gw.cache.get(self._cache_key(self.model))
        if hit is None:
            return False
        text = Redaction("", self._prompt_originals()).restore(hit.response) if "[" in hit.response else hit.response
        pieces.append(text)
        result.status, result.cost_usd, result.saved_usd = "cached", 0.0, hit.cost_usd
        self._child_span("gateway.cache_hit", {spans.SAVED: hit.cost_usd})
        result.prompt_tokens, result.completion_tokens, result.latency_ms = (
            hit.prompt_tokens,
            hit.completion_tokens,
            0.0,
        )
        result.text = text
        return True

    def _prompt_originals(self) -> dict[str, str]:
        """The personal data in this request's messages, by placeholder, numbered as `_outgoing` numbers them."""
        if self._originals is None:
            originals: dict[str, str] = {}
            for m in self.messages:
                redact(message_text(m), originals, self.gw.settings.pii_regions)
            self._originals = originals
        return self._originals

    def _for_cache(self, text: str) -> str | None:
        """The answer as the cache may keep it, or None when it may not be kept.

        The cache holds no more personal data than the call log may: unless WORKBENCH_LOG_CONTENT is `full`, the
        answer is kept masked, with the placeholders of its request (for an external provider: the text as the
        provider wrote it), and a hit is restored from the same request's messages, which its key pins down. An
        answer with personal data its request did not hold, or one that would not come back exactly as given
        (a masked value inside a URL), is not kept: it could not be restored, and kept verbatim it would outlive
        a log that masks it.
        """
        if self.gw.settings.log_content == "full":
            return text
        originals = dict(self._prompt_originals())
        known = len(originals)
        masked = redact(text, originals, self.gw.settings.pii_regions).text
        if len(originals) > known or Redaction("", originals).restore(masked) != text:
            return None
        return masked

    def _outgoing(self, provider: ProviderConfig, result: CallResult) -> tuple[list[BaseMessage], Redaction | None]:
        """The messages to send: personal data replaced by placeholders when the provider is external."""
        if not (provider.external and self.gw.settings.redact_external):
            return self.messages, None
        red = Redaction("", {})
        regions = self.gw.settings.pii_regions
        sent = [
            redact_message(m, redact(message_text(m), red.originals, regions).text, red.originals, regions)
            for m in self.messages
        ]
        self._originals = dict(red.originals)
        result.redacted = len(red.originals)
        return sent, (red if red.originals else None)

    def _attempts(self, model: str, result: CallResult, pieces: list[str], start: float) -> Iterator[str]:
        provider, bare = self.gw.resolve(model)
        if provider.kind == "offline" and self.params.get("tools"):
            raise offline_tools_error(model)
        chat = self.gw.chat_model(provider, bare, self.params)
        self._sent, self._redaction = self._outgoing(provider, result)
        waits: list[float] = []  # the back-off before each retry, for the tries' spans
        takes_headers = type(getattr(chat, "bound", chat)).__module__.startswith("langchain_openai")

        def attempt() -> Iterator[str]:
            self._usage = None
            try_span = spans.start_span(
                "gateway.attempt",
                self._span,
                {
                    spans.GEN_AI_PROVIDER: provider.name,
                    spans.GEN_AI_REQUEST_MODEL: bare,
                    spans.ATTEMPT: result.attempts,
                    spans.RETRY_DELAY: round(waits[-1], 3) if waits else None,
                    spans.FALLBACK: model != self.model,
                },
                kind=spans.SpanKind.CLIENT,
            )
            headers = spans.traceparent(try_span) if takes_headers else {}
            self._call_kwargs = {"extra_headers": headers} if headers else {}
            return self._traced_attempt(try_span, provider, chat, result, pieces, start)

        # once text has reached the user, no retry can replace it
        yield from self.gw.retry.run(provider, attempt, result, may_retry=lambda: not pieces, waits=waits)

    def _traced_attempt(
        self,
        try_span: spans.Span,
        provider: ProviderConfig,
        chat: ChatModel,
        result: CallResult,
        pieces: list[str],
        start: float,
    ) -> Iterator[str]:
        """One try under its own span, ended with its outcome (its error type, or its finish reason)."""
        self._finish_reason = self._response_model = None
        try:
            with self.ctx.hold() if self.ctx.hold is not None else nullcontext():
                yield from self._one_attempt(chat, result, pieces, start)
        except GeneratorExit:
            try_span.set_attribute(spans.STATUS, "aborted")
            raise
        except Exception as exc:
            spans.mark_error(try_span, map_error(exc, provider.name, provider.timeout_s).error_type)
            raise
        else:
            if self._finish_reason:
                try_span.set_attribute(spans.GEN_AI_FINISH_REASONS, (self._finish_reason,))
        finally:
            try_span.end()

    def _start_call_span(self) -> spans.Span:
        """The call's span (what a call-log row is to the log): names only, no text, no user."""
        ctx, (provider, _, bare) = self.ctx, self.model.partition("/")
        attrs = {
            spans.GEN_AI_OPERATION: "chat",
            spans.GEN_AI_PROVIDER: provider,
            spans.GEN_AI_SYSTEM: provider,
            spans.GEN_AI_REQUEST_MODEL: bare,
            spans.GEN_AI_REQUEST_MAX_TOKENS: self.params.get("max_tokens"),
            spans.GEN_AI_REQUEST_TEMPERATURE: self.params.get("temperature"),
            spans.GEN_AI_CONVERSATION: ctx.session_id,
            spans.FEATURE: ctx.feature,
            spans.TEMPLATE_NAME: ctx.template_name,
            spans.TEMPLATE_VERSION: ctx.template_version,
            spans.EXPERIMENT: ctx.experiment_id,
            spans.VARIANT: ctx.variant,
            spans.RUN_ID: ctx.run_id,
            spans.STEP: ctx.step,
            "workbench.pipeline.name": ctx.pipeline_name,
            "workbench.pipeline.version": ctx.pipeline_version,
            spans.REQUEST_ID: self.request_id,
        }
        return spans.start_span(f"chat {bare}", self._trace_parent, attrs)

    def _child_span(self, name: str, attributes: dict[str, Any]) -> None:
        """A moment in the call (a refusal, a cache hit) as a child span of the call's."""
        if self._span.is_recording():
            spans.start_span(name, self._span, attributes).end()

    def _end_call_span(self, result: CallResult) -> None:
        """The call's outcome on its span (as in its call-log row), then end it."""
        span = self._span
        if span.is_recording():
            describe_call(span, result, self._response_model, self._finish_reason)
            if self.gw.settings.trace_content == "redacted":
                self._add_content(span, result)
        span.end()

    def _add_content(self, span: spans.Span, result: CallResult) -> None:
        """Prompt and answer on the span, personal data and keys masked first (WORKBENCH_TRACE_CONTENT=redacted)."""
        regions = self.gw.settings.pii_regions

        def masked(text: str) -> str:
            return redact(text[:TRACE_CONTENT_CHARS], regions=regions).text

        messages = [
            {"role": m.type, "parts": [{"type": "text", "content": masked(message_text(m))}]} for m in self.messages
        ]
        span.set_attribute(spans.GEN_AI_INPUT_MESSAGES, json.dumps(messages, ensure_ascii=False))
        if result.text:
            answer = [{"role": "assistant", "parts": [{"type": "text", "content": masked(result.text)}]}]
            span.set_attribute(spans.GEN_AI_OUTPUT_MESSAGES, json.dumps(answer, ensure_ascii=False))

    def _one_attempt(self, chat: ChatModel, result: CallResult, pieces: list[str], start: float) -> Iterator[str]:
        usage: dict[str, Any] | None = None
        if not self.streaming:
            msg = own_run().run(chat.invoke, self._sent, **self._call_kwargs)
            self._finish_reason = msg.response_metadata.get("finish_reason")
            self._response_model = msg.response_metadata.get("model_name")
            text = self._redaction.restore(message_text(msg)) if self._redaction else message_text(msg)
            result.ttft_ms = None
            if isinstance(msg, AIMessage):
                self.message = restore_message(msg, text, self._redaction)
                result.tool_calls = calls_for_result(self.message)
            pieces.append(text)
            self._usage = getattr(msg, "usage_metadata", None)
            yield text
            return
        finished = False
        restorer = StreamRestorer(self._redaction) if self._redaction else None
        tool_parts: list[AIMessageChunk] = []  # the chunks with tool-call pieces, merged into `self.message` at the end
        self._tool_chunks, self.message = [], None
        chunks, own = chat.stream(self._sent, **self._call_kwargs), own_run()
        while True:
            try:
                chunk = own.run(next, chunks)
            except StopIteration:
                break
            except Exception:
                if not finished:
                    raise
                # The answer and its finish reason are in; only the usage chunk or `[DONE]` was lost with the
                # connection. The user has the whole answer: complete (tokens are estimated if usage is missing).
                log.info("%s: the stream dropped after its finish reason; the answer is complete", self.request_id)
                break
            assert isinstance(chunk, AIMessageChunk)
            finished = finished or bool(chunk.response_metadata.get("finish_reason"))
            if chunk.response_metadata:
                self._finish_reason = chunk.response_metadata.get("finish_reason") or self._finish_reason
                self._response_model = chunk.response_metadata.get("model_name") or self._response_model
            if chunk.usage_metadata:
                usage = dict(chunk.usage_metadata)
                self._usage = usage
            text = restorer.feed(message_text(chunk)) if restorer else message_text(chunk)
            if finished and restorer:
                text += restorer.flush()
            if chunk.tool_call_chunks:
                tool_parts.append(chunk)
                if not self._redaction:  # masked arguments are restored whole, once complete (below)
                    self._tool_chunks.extend(chunk.tool_call_chunks)
            if finished and tool_parts and self.message is None:  # once, at the finish reason (usage may follow)
                yield from self._finish_tool_calls(tool_parts, result, pieces)
            if text or self._tool_chunks:
                if result.ttft_ms is None:
                    result.ttft_ms = (self.gw.clock() - start) * 1000
                pieces.append(text)  # "" for tool-call pieces alone: once they are out, no retry may replace them
                yield text
        if not finished:  # the SDK ends quietly when the server hangs up mid-stream
            raise ProviderUnavailable(
                "The provider closed the connection before finishing the answer. Try "
                "again; if it repeats, check the server's logs."
            )

    def _finish_tool_calls(self, parts: list[AIMessageChunk], result: CallResult, pieces: list[str]) -> Iterator[str]:
        """Keep a streamed answer's tool calls; with masked arguments, hand them on now, restored and whole."""
        calls, invalid = strict_tool_calls(add_ai_message_chunks(parts[0], *parts[1:]).tool_call_chunks)
        message = AIMessage(content="", tool_calls=calls, invalid_tool_calls=invalid)
        self.message = restore_message(message, "", self._redaction)
        result.tool_calls = calls_for_result(self.message)
        if not self._redaction:
            return
        for i, call in enumerate(self.message.tool_calls):
            args = json.dumps(call["args"])
            self._tool_chunks.append(tool_call_chunk(name=call["name"], args=args, id=call["id"], index=i))
        for j, bad in enumerate(self.message.invalid_tool_calls, len(self.message.tool_calls)):
            self._tool_chunks.append(tool_call_chunk(name=bad["name"], args=bad["args"], id=bad["id"], index=j))
        pieces.append("")
        yield ""

    def _fill_usage(self, result: CallResult) -> None:
        usage = getattr(self, "_usage", None)
        if usage and (usage.get("input_tokens") or usage.get("output_tokens")):
            result.prompt_tokens = int(usage.get("input_tokens") or 0)
            result.completion_tokens = int(usage.get("output_tokens") or 0)
            details = usage.get("input_token_details") or {}
            result.cached_tokens = int(details.get("cache_read") or 0)
            return
        if result.status == "error" and not result.text:
            return  # nothing answered: no tokens to count
        # No usage from the provider (aborted stream, dropped stream, or a server that sends none).
        result.prompt_tokens = estimate_message_tokens(self.messages) + tools_tokens(self.params)
        result.completion_tokens = estimate_tokens(result.text) + calls_tokens(result.tool_calls)
        result.tokens_estimated = True


TRACE_CONTENT_CHARS = 4000  # text per message put on a span (WORKBENCH_TRACE_CONTENT=redacted)


def describe_call(
    span: spans.Span, result: CallResult, response_model: str | None = None, finish_reason: str | None = None
) -> None:
    """A call's outcome as span attributes (GenAI conventions and the workbench's): never text, never a key."""
    if not span.is_recording():
        return
    attrs: dict[str, Any] = {
        spans.GEN_AI_RESPONSE_MODEL: response_model or result.model.partition("/")[2] or result.model,
        "workbench.model": result.model,
        spans.GEN_AI_INPUT_TOKENS: result.prompt_tokens,
        spans.GEN_AI_OUTPUT_TOKENS: result.completion_tokens,
        spans.GEN_AI_CACHED_TOKENS: result.cached_tokens,
        spans.STATUS: result.status,
        "workbench.attempts": result.attempts,
        "workbench.tokens_estimated": result.tokens_estimated,
        "workbench.redacted_items": result.redacted,
    }
    if result.cost_usd is not None:
        attrs[spans.COST] = result.cost_usd
    if result.saved_usd is not None:
        attrs[spans.SAVED] = result.saved_usd
    if finish_reason:
        attrs[spans.GEN_AI_FINISH_REASONS] = (finish_reason,)
    if result.ttft_ms is not None:
        attrs["workbench.ttft_ms"] = result.ttft_ms
    span.set_attributes(attrs)
    if result.status not in ("ok", "cached", "aborted"):
        spans.mark_error(span, result.error.error_type if result.error else result.status)


class GatewayEmbeddings(Embeddings):
    """A LangChain Embeddings over `Gateway.embed`, so paid embedding calls are logged and priced."""

    def __init__(self, gateway: Gateway, model: str, batch_size: int = 256, feature: str = "embed"):
        self.gateway, self.model, self.batch_size, self.feature = gateway, model, batch_size, feature

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors for texts, in batches."""
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            out += self.gateway.embed(texts[i : i + self.batch_size], self.model, CallContext(feature=self.feature))
        return out

    def embed_query(self, text: str) -> list[float]:
        """A query vector."""
        return self.gateway.embed([text], self.model, CallContext(feature=self.feature))[0]


def messages_from_history(history: Sequence[dict[str, str]]) -> list[BaseMessage]:
    """LangChain messages from [{"role": ..., "content": ...}] dicts."""
    return convert_to_messages([(h["role"], h["content"]) for h in history])
