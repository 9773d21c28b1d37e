"""Token estimates that need no tokenizer download (tiktoken fetches its files on first use)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from langchain_core.messages import BaseMessage, SystemMessage, trim_messages

_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)
PER_MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """Rough BPE-like count: ~4 characters a token, never fewer than the word/punctuation pieces / 1.3."""
    if not text:
        return 0
    pieces = len(_WORDS.findall(text))
    return max(math.ceil(len(text) / 4), math.ceil(pieces / 1.3))


def message_text(message: BaseMessage) -> str:
    """The plain text of a message (multi-part content joined)."""
    content = message.content
    if isinstance(content, str):
        return content
    return "\n".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)


def estimate_message_tokens(messages: Sequence[BaseMessage]) -> int:
    """Estimated prompt tokens for a list of chat messages."""
    return sum(estimate_tokens(message_text(m)) + PER_MESSAGE_OVERHEAD for m in messages) + 3


def trim_history(messages: Sequence[BaseMessage], budget: int) -> list[BaseMessage]:
    """System messages, then the newest turns that fit `budget`, starting on a user turn; the last message stays.

    A trimmed history that opened on an answer would show the model a reply to a question it never saw.
    """
    system = [m for m in messages if isinstance(m, SystemMessage)]
    rest = [m for m in messages if not isinstance(m, SystemMessage)]
    if not rest or estimate_message_tokens(system + rest) <= budget:
        return system + rest

    def with_system(kept: list[BaseMessage]) -> int:
        return estimate_message_tokens(system + kept)

    kept = trim_messages(rest, max_tokens=budget, token_counter=with_system, strategy="last", start_on="human")
    if not kept or kept[-1] is not rest[-1]:  # not even the question fits: send it anyway, the model decides
        kept = [rest[-1]]
    return system + kept
