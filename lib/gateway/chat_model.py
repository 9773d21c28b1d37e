"""The gateway as a LangChain chat model, so chains and agents (`create_agent`) call models through it.

Every model call `GatewayChatModel` makes is one `Gateway.stream` call: budgets (with their reservation),
prompt caps, redaction, retries, breaker, fallback, cache rules and exactly one call-log row. Its context comes
from the model: a `CallContext` (the step is numbered 1, 2, ... per model call, so make one model per assistant
turn, with `run_id` the turn's id) or a function that returns the context of each call.

Tools: `bind_tools` converts them with LangChain's `convert_to_openai_tool`; the provider gets them as OpenAI
`tools`/`tool_choice`, and the answer comes back with `tool_calls` (bad JSON arguments in `invalid_tool_calls`,
as LangChain's parsers sort them), streamed as `tool_call_chunks`. A tool-calling request is never served from
or stored in the response cache (see `Stream._cacheable`), and the offline answerer cannot call tools: asking it
to raises `ToolsUnavailable` (logged like any failed call); `can_call_tools` says so beforehand.

Streamed tool-call arguments are parsed strictly (see `tool_calls.strict_tool_calls`): LangChain's own stream
aggregation "repairs" cut-off JSON, so `invoke` (which an agent uses, streaming or not) returns the gateway's
parse. A reader of `stream()` who adds up the chunks gets LangChain's lenient one; the call-log row and
`response_metadata` (request_id, cost_usd, status, step, run_id) are the same either way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from lib.gateway.client import CallContext, CallResult, Gateway, Stream
from lib.gateway.errors import GatewayError
from lib.gateway.tool_calls import ToolsUnavailable, offline_tools_error

__all__ = ["GatewayChatModel", "ToolsUnavailable", "usage_of"]

ContextSource = CallContext | Callable[[], CallContext]


def usage_of(result: CallResult) -> UsageMetadata:
    """LangChain usage metadata for a logged call."""
    usage = UsageMetadata(
        input_tokens=result.prompt_tokens,
        output_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )
    if result.cached_tokens:
        usage["input_token_details"] = {"cache_read": result.cached_tokens}
    return usage


def _metadata(result: CallResult, stream: Stream) -> dict[str, Any]:
    """What the gateway knows about the call: enough for a step timeline (request id, cost, status)."""
    return {
        "model_name": result.model,
        "model_provider": result.provider,
        "finish_reason": "tool_calls" if result.tool_calls else "stop",
        "request_id": result.request_id,
        "cost_usd": result.cost_usd,
        "status": result.status,
        "latency_ms": result.latency_ms,
        "attempts": result.attempts,
        "step": stream.ctx.step,
        "run_id": stream.ctx.run_id,
        "notices": list(result.notices),
        **({"tokens_estimated": True} if result.tokens_estimated else {}),
    }


def _tool_choice(choice: Any, names: Sequence[str]) -> Any:
    """An OpenAI `tool_choice` from LangChain's spellings (a tool name, "any", True), as ChatOpenAI reads them."""
    if choice is None or choice is False:
        return None
    if choice is True or choice == "any":
        return "required"
    if isinstance(choice, str) and choice in names:
        return {"type": "function", "function": {"name": choice}}
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        return choice
    raise ValueError(f"tool_choice {choice!r} is not a tool name, 'auto', 'none', 'any', 'required' or a dict.")


class GatewayChatModel(BaseChatModel):
    """A LangChain chat model whose every call is a gateway call (one call-log row each)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    gateway: Gateway = Field(exclude=True)
    model_name: str | None = Field(default=None, alias="model")  # provider/model; None: the default model
    context: ContextSource = Field(default_factory=lambda: CallContext(feature="assistant"), exclude=True)
    params: dict[str, Any] = Field(default_factory=dict)  # sent with every call (temperature, max_tokens...)
    streaming: bool = False  # True: invoke streams too (as ChatOpenAI's `streaming`); an agent's stream() does anyway
    _steps: Iterator[int] = PrivateAttr(default_factory=lambda: itertools.count(1))
    # streamed answers with a tool call whose arguments are not valid JSON, by LangChain message id (see invoke)
    _checked: dict[str, AIMessage] = PrivateAttr(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "workbench-gateway"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, **self.params}

    @property
    def model(self) -> str:
        """The provider/model this chat model calls first."""
        return self.model_name or self.gateway.settings.default_model

    @property
    def can_call_tools(self) -> bool:
        """False when the model is the offline answerer (or unknown), which cannot call tools."""
        try:
            provider, _ = self.gateway.resolve(self.model)
        except GatewayError:
            return False
        return provider.kind != "offline"

    def call_context(self) -> CallContext:
        """The context of the next model call: the model's own, with the next step number; or the factory's."""
        if callable(self.context):
            return self.context()
        return replace(self.context, step=str(next(self._steps)))

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: Any = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """This model with OpenAI tool definitions (and a tool_choice) sent on every call."""
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        names = [t["function"]["name"] for t in formatted if "function" in t]
        choice = _tool_choice(tool_choice, names)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return self.bind(tools=formatted, **kwargs)

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """As BaseChatModel.invoke, but a streamed answer's tool calls are the gateway's strictly parsed ones."""
        return self._strict(super().invoke(input, config, stop=stop, **kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """As BaseChatModel.ainvoke, with the same strict tool calls as invoke."""
        return self._strict(await super().ainvoke(input, config, stop=stop, **kwargs))

    def _strict(self, message: AIMessage) -> AIMessage:
        """`message` with the gateway's tool calls when LangChain's stream aggregation "repaired" a bad one.

        An agent streaming its turn (stream_mode="messages") gets each model answer from `invoke`, which adds up
        the streamed chunks; LangChain parses their arguments leniently, so `{"expression": "6*` would run as
        `{"expression": "6*"}`. The gateway kept the strict parse (invalid_tool_calls) under the run's id.
        """
        checked = self._checked.pop(message.id, None) if message.id else None
        if checked is None:
            return message
        return message.model_copy(
            update={"tool_calls": checked.tool_calls, "invalid_tool_calls": checked.invalid_tool_calls}
        )

    def _open(self, messages: list[BaseMessage], stop: list[str] | None, streaming: bool, kwargs: Any) -> Stream:
        kwargs.pop("stream", None)  # LangChain's "stream this call" flag, not a provider parameter
        params = {**self.params, **kwargs, **({"stop": stop} if stop else {})}
        if params.get("tools") and not self.can_call_tools:
            raise offline_tools_error(self.model)
        return self.gateway.stream(messages, self.model, self.call_context(), _stream=streaming, **params)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        stream = self._open(messages, stop, False, kwargs)
        for _ in stream:
            pass
        result = stream.result
        assert result is not None  # set whenever the stream ends without raising
        answer = stream.message
        message = AIMessage(
            content=result.text,
            tool_calls=answer.tool_calls if answer else [],
            invalid_tool_calls=answer.invalid_tool_calls if answer else [],
            usage_metadata=usage_of(result),
            response_metadata=_metadata(result, stream),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream = self._open(messages, stop, True, kwargs)
        first: AIMessageChunk | None = None
        try:
            for text in stream:
                # the callbacks hear of each chunk from BaseChatModel, which calls on_llm_new_token for us
                chunk = AIMessageChunk(content=text, tool_call_chunks=stream.take_tool_chunks())
                first = first or chunk
                yield ChatGenerationChunk(message=chunk)
        finally:
            stream.close()  # a consumer that stops early: the call is logged as aborted
        result = stream.result
        assert result is not None
        last = AIMessageChunk(
            content="",
            tool_call_chunks=stream.take_tool_chunks(),
            usage_metadata=usage_of(result),
            response_metadata=_metadata(result, stream),
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)
        # BaseChatModel gave the yielded chunks the run's message id; invoke finds the strict tool calls by it
        key = (first or last).id
        if key and stream.message is not None and stream.message.invalid_tool_calls:
            while len(self._checked) >= 64:  # left by stream() consumers, who add up chunks themselves
                self._checked.pop(next(iter(self._checked)))
            self._checked[key] = stream.message
