"""Plain chat: building the prompt from a conversation, and describing an answer's cost."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, SystemMessage

from lib.gateway import CallResult, messages_from_history
from lib.tokens import trim_history

DEFAULT_SYSTEM_PROMPT = ("You are a helpful assistant for the staff of this organisation. Answer clearly and "
                         "concisely. If you do not know, say so.")


def build_chat_messages(history: Sequence[dict[str, str]], budget: int,
                        system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[BaseMessage]:
    """System prompt + the conversation, oldest turns dropped to fit `budget` tokens."""
    turns = [{"role": h["role"], "content": h["content"]} for h in history if h["role"] in ("user", "assistant")]
    return trim_history([SystemMessage(system_prompt), *messages_from_history(turns)], budget)


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
