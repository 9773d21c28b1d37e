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


MODEL = "openai/gpt-4o-mini"  # priced in the shipped table, so call-log rows carry a cost


def loopback_services(database_url: str, server: Any, data_dir: Any = None, embeddings: Any = None, **env: str) -> Any:
    """Services whose provider "openai" is the loopback server, on `database_url` (retrieval: BM25 unless set)."""
    import json
    import os

    from langchain_core.embeddings import DeterministicFakeEmbedding

    from lib.core.settings import load_settings
    from lib.services import Services, open_engine

    key = "-".join(["sk", "test", "0123456789abcdef"])  # key-shaped, built at run time
    providers = {"openai": {"kind": "openai", "base_url": server.base_url, "api_key": key, "models": ["gpt-4o-mini"]}}
    settings = load_settings(
        env={
            "WORKBENCH_PROVIDERS": json.dumps(providers),
            "WORKBENCH_BACKOFF_BASE_S": "0.01",
            "WORKBENCH_SEARCH_MODE": "bm25",
            "WORKBENCH_PRELOAD_EMBEDDINGS": "0",
            "DATABASE_URL": database_url,
            "WORKBENCH_DATA_DIR": str(data_dir or os.environ["WORKBENCH_DATA_DIR"]),  # the test's (conftest's data_dir)
            **env,
        }
    )
    return Services(
        settings, engine=open_engine(database_url), local_embeddings=embeddings or DeterministicFakeEmbedding(size=32)
    )
