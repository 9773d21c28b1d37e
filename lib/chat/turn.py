"""Chat turns: the prompt (plain or grounded in a collection), citations, and an answer's cost line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from lib.documents.citations import Source, cited_sources, context_values
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.gateway.client import CallResult, messages_from_history
from lib.gateway.tokens import trim_history
from lib.prompts.builtin import BUILTINS, CHAT_SYSTEM, DEFAULT_SYSTEM_PROMPT, RAG_ANSWER
from lib.prompts.live import live_variant_for
from lib.prompts.runs import build_messages, load_prompt
from lib.prompts.store import TemplateNotFound


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


def describe_result(result: CallResult) -> str:
    """One line under an answer: model, tokens, cost, latency."""
    est = "~" if result.tokens_estimated else ""
    if result.cost_usd is None:
        cost = "cost unknown (no price for this model)"
    else:
        cost = f"${result.cost_usd:.6f}".rstrip("0").rstrip(".") if result.cost_usd else "$0"
    parts = [result.model, f"{est}{result.prompt_tokens} in / {est}{result.completion_tokens} out tokens"]
    if result.cached_tokens:
        parts.append(f"{result.cached_tokens} cached")
    parts.append(cost)
    if result.latency_ms is not None:
        parts.append(f"{result.latency_ms / 1000:.2f} s")
    if result.status == "aborted":
        parts.append("stopped")
    return " · ".join(parts)


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
    store: Any | None = None,
    user: str | None = None,
) -> PreparedTurn:
    """Plain chat without a collection; with one, retrieve and build the grounded, cited prompt.

    With a TemplateStore, the prompts are the versions labelled production (chat.system, rag.answer),
    unless a live A/B experiment on the template assigns this user to a version of its own.
    """
    name = RAG_ANSWER if collection else CHAT_SYSTEM
    live = None
    if store is not None:
        live = live_variant_for(store.engine, name, user)
    try:
        if live is not None:
            version = store.get_version(name, live[2])
        else:
            version = load_prompt(store, name) if store is not None else None
    except TemplateNotFound:  # the label was removed: run the shipped text rather than fail the user
        version, live = None, None
    template = version.template if version else BUILTINS[name][0]
    meta = {
        "template_name": name if version else None,
        "template_version": version.version if version else None,
        "params": template.params(),
        "experiment_id": live[0] if live else None,
        "variant": live[1] if live else None,
    }
    if not collection:
        system = dict(build_messages(template, {})).get("system", DEFAULT_SYSTEM_PROMPT)
        turns = [*history, {"role": "user", "content": question}]
        return PreparedTurn(build_chat_messages(turns, budget, system), **meta)
    if retriever is None:
        raise ValueError("A retriever is needed to answer from a collection.")
    sources = retriever.search(collection, question, retrieval or RetrievalSettings())
    rendered = build_messages(template, context_values(question, sources))
    return PreparedTurn(grounded_messages(history, rendered, budget), sources, **meta)


def citations_for(answer: str, sources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored sources an answer cites ([n] → the source numbered n), in citation order."""
    objs = [Source(**s) for s in sources]
    return [s.to_dict() for s in cited_sources(answer, objs)]


def source_label(source: dict[str, Any]) -> str:
    """`[2] handbook.pdf, p. 3` for a stored source."""
    return f"[{source['number']}] {Source(**source).label()}"
