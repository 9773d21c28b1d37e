"""Token estimates that need no tokenizer download (tiktoken fetches its files on first use)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

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
    """System messages, then the newest turns that fit `budget`, starting on a user turn; the last turn stays.

    A trimmed history that opened on an answer would show the model a reply to a question it never saw.
    Each message is measured once and the cut found with a running sum, so a 10,000-message conversation
    costs one pass (langchain's trim_messages re-counted the whole kept list at every step of its search).
    """
    system = [m for m in messages if isinstance(m, SystemMessage)]
    rest = [m for m in messages if not isinstance(m, SystemMessage)]
    sizes = [estimate_tokens(message_text(m)) + PER_MESSAGE_OVERHEAD for m in rest]
    used = sum(estimate_tokens(message_text(m)) + PER_MESSAGE_OVERHEAD for m in system) + 3
    if not rest or used + sum(sizes) <= budget:
        return system + rest
    start = len(rest)
    while start > 0 and used + sizes[start - 1] <= budget:
        start -= 1
        used += sizes[start]
    while start < len(rest) and not isinstance(rest[start], HumanMessage):
        start += 1  # open on a question
    if start >= len(rest):  # not even the newest question and what follows it fit: send them, the model decides
        asked = [i for i, m in enumerate(rest) if isinstance(m, HumanMessage)]
        # From the last question on, so a tool result is never sent without the call it answers (providers refuse it)
        return system + (rest[asked[-1] :] if asked else rest)
    return system + rest[start:]
