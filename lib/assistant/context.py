"""What a turn's tools and guards run with: the user, their tool modes, the caps, and the workbench's services."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from sqlalchemy import Engine

from lib.core.settings import Settings
from lib.documents.citations import Source
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.gateway.client import Gateway
from lib.prompts.store import TemplateStore


class AssistantServices(Protocol):
    """The part of lib.services.Services the assistant uses (passed in; the assistant sits below services)."""

    settings: Settings

    @property
    def engine(self) -> Engine: ...

    @property
    def gateway(self) -> Gateway: ...

    @property
    def retriever(self) -> Retriever: ...

    @property
    def templates(self) -> TemplateStore: ...

    def retrieval(self, k: int | None = None, mode: str | None = None) -> RetrievalSettings: ...


@dataclass
class TurnContext:
    """The runtime context of one assistant turn (LangGraph passes it to every middleware hook and tool)."""

    turn_id: str
    user: str | None
    roles: frozenset[str]
    modes: dict[str, str]  # tool -> auto, confirm or off for this user
    services: AssistantServices
    model_for_step: Callable[[int], BaseChatModel]  # the chat model whose calls are logged with this step
    max_steps: int = 8
    max_cost_usd: float | None = None
    sources: list[Source] = field(default_factory=list)  # every passage search_documents returned, numbered 1..n
    tables: list[dict[str, Any]] = field(default_factory=list)  # every query_usage result (for the UI's table)
    spent_usd: float = 0.0  # the turn's call-log cost so far (its model calls and its tools' calls)
    ran: dict[str, dict[str, Any]] = field(default_factory=dict)  # tool-call id -> the arguments the tool ran with
    # tool-call records not yet written: the turn writes them with its status when a leg ends (done, paused,
    # stopped, error, or abandoned), one transaction instead of one per tool call
    records: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # tools of one step may run in parallel
