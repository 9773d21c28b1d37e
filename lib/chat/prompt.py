"""A chat turn's prompt: plain chat or grounded in a collection, the template version that runs (production or a
live A/B side), and the conversation trimmed to the history budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from lib.documents.citations import Source, context_values
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.gateway.client import messages_from_history
from lib.gateway.tokens import trim_history
from lib.prompts.builtin import BUILTINS, CHAT_SYSTEM, DEFAULT_SYSTEM_PROMPT, RAG_ANSWER
from lib.prompts.live import live_variant_for
from lib.prompts.runs import build_messages, load_prompt
from lib.prompts.store import TemplateNotFound, TemplateStore, Version


def build_chat_messages(
    history: Sequence[dict[str, str]], budget: int, system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> list[BaseMessage]:
    """System prompt + the conversation, oldest turns dropped to fit `budget` tokens."""
    turns = [{"role": h["role"], "content": h["content"]} for h in history if h["role"] in ("user", "assistant")]
    return trim_history([SystemMessage(system_prompt), *messages_from_history(turns)], budget)


def grounded_messages(
    history: Sequence[dict[str, str]], rendered: Sequence[tuple[str, str]], budget: int
) -> list[BaseMessage]:
    """The rendered answer prompt's system message, earlier turns (trimmed to fit), then its user message."""
    turns = [{"role": h["role"], "content": h["content"]} for h in history if h["role"] in ("user", "assistant")]
    system = [SystemMessage(text) for role, text in rendered if role == "system"]
    final = [HumanMessage(text) for role, text in rendered if role != "system"]
    return trim_history([*system, *messages_from_history(turns), *final], budget)


@dataclass
class PreparedTurn:
    """What to send for one question, the numbered sources it was given, and the template that built it."""

    messages: list[BaseMessage]
    sources: list[Source] = field(default_factory=list)
    template_name: str | None = None
    template_version: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    experiment_id: str | None = None  # a live A/B experiment on the answer template
    variant: str | None = None


def prepare_turn(
    history: Sequence[dict[str, Any]],
    question: str,
    budget: int,
    collection: str | None = None,
    retriever: Retriever | None = None,
    retrieval: RetrievalSettings | None = None,
    store: TemplateStore | None = None,
    user: str | None = None,
) -> PreparedTurn:
    """Plain chat without a collection; with one, retrieve and build the grounded, cited prompt.

    With a TemplateStore, the prompts are the versions labelled production (chat.system, rag.answer),
    unless a live A/B experiment on the template assigns this user to a version of its own.
    """
    name = RAG_ANSWER if collection else CHAT_SYSTEM
    live = live_variant_for(store.engine, name, user) if store is not None else None
    version: Version | None = None
    try:
        if store is not None:
            version = store.get_version(name, live.version) if live else load_prompt(store, name)
    except TemplateNotFound:  # the label was removed: run the shipped text rather than fail the user
        version, live = None, None
    template = version.template if version else BUILTINS[name][0]
    prepared = PreparedTurn(
        messages=[],
        template_name=name if version else None,
        template_version=version.version if version else None,
        params=template.params(),
        experiment_id=live.experiment_id if live else None,
        variant=live.variant if live else None,
    )
    if not collection:
        system = dict(build_messages(template, {})).get("system", DEFAULT_SYSTEM_PROMPT)
        turns = [*history, {"role": "user", "content": question}]
        return replace(prepared, messages=build_chat_messages(turns, budget, system))
    if retriever is None:
        raise ValueError("A retriever is needed to answer from a collection.")
    sources = retriever.search(collection, question, retrieval or RetrievalSettings())
    rendered = build_messages(template, context_values(question, sources))
    return replace(prepared, messages=grounded_messages(history, rendered, budget), sources=sources)
