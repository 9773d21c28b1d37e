"""Token estimates that need no tokenizer download (tiktoken fetches its files on first use)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from langchain_core.messages import BaseMessage, SystemMessage

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
    """Drop the oldest non-system messages until the estimate fits `budget`; the last message always stays."""
    system = [m for m in messages if isinstance(m, SystemMessage)]
    rest = [m for m in messages if not isinstance(m, SystemMessage)]
    while len(rest) > 1 and estimate_message_tokens(system + rest) > budget:
        rest.pop(0)
    return system + rest
