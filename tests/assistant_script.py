"""A scripted LangChain chat model for assistant tests that need no HTTP server: it answers with queued
AIMessages (tool calls included) and records the messages and tools of every call."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult


def call(name: str, call_id: str, **args: Any) -> dict[str, Any]:
    """One tool call as a model would make it."""
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def calls(*tool_calls: dict[str, Any], text: str = "") -> AIMessage:
    """A model answer that calls tools."""
    return AIMessage(text, tool_calls=list(tool_calls))


class ScriptedChatModel(BaseChatModel):
    """Answers each call with the next queued message; `seen` holds each call's messages, `tools` its tool names."""

    script: list[AIMessage]
    seen: list[list[BaseMessage]]
    tools: list[list[str]]

    def __init__(self, script: Iterable[AIMessage], **kw: Any) -> None:
        super().__init__(script=list(script), seen=[], tools=[], **kw)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        names = [getattr(t, "name", None) or t.get("name", "?") for t in tools]
        return _Bound(self, names)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.seen.append(list(messages))
        if not self.script:
            raise AssertionError("the script has no answer left")
        return ChatResult(generations=[ChatGeneration(message=self.script.pop(0))])


class _Bound(BaseChatModel):
    inner: ScriptedChatModel
    names: list[str]

    def __init__(self, inner: ScriptedChatModel, names: list[str]) -> None:
        super().__init__(inner=inner, names=names)

    @property
    def _llm_type(self) -> str:
        return "scripted-bound"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.inner.tools.append(list(self.names))
        return self.inner._generate(messages, stop, run_manager, **kw)
