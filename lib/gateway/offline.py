"""The offline answerer: a LangChain chat model that quotes the prompt's most relevant sentences."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from lib.gateway.tokens import estimate_message_tokens, estimate_tokens, message_text

OFFLINE_LABEL = "Offline extract"
HOW_TO_CONFIGURE = (
    "To get generated answers, set OPENAI_API_KEY or add an OpenAI-compatible provider "
    "(Ollama, vLLM, LM Studio, DeepSeek) in .streamlit/secrets.toml — see the README."
)
NOTHING_TO_QUOTE = (
    "I don't know. The offline answerer can only quote from documents or earlier messages, "
    "and nothing there answers this."
)
_BLOCK = re.compile(r"^\s*\[(\d+)\]", re.MULTILINE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*[-*•\d])")


def split_sentences(text: str) -> list[str]:
    """Sentences (and list items) of `text`, stripped, without empties."""
    return [s.strip() for s in _SENTENCE.split(text) if s and len(s.strip()) > 2]


def _question_and_context(messages: list[BaseMessage]) -> tuple[str, str]:
    humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if not humans:
        return "", ""
    last = message_text(messages[humans[-1]])
    marker = last.rfind("Question:")
    if marker >= 0:  # RAG prompts put the numbered context before "Question:"
        return last[marker + len("Question:") :].strip(), last[:marker]
    earlier = [message_text(m) for m in messages[: humans[-1]] if not isinstance(m, SystemMessage)]
    return last.strip(), "\n\n".join(earlier)


def _numbered(context: str) -> list[tuple[int | None, str]]:
    """(citation number or None, sentence) for every sentence of the context."""
    starts = list(_BLOCK.finditer(context))
    if not starts:
        return [(None, s) for s in split_sentences(context)]
    out: list[tuple[int | None, str]] = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(context)
        body = context[m.end() : end]
        body = re.sub(r"^\s*\([^)\n]*\)\s*", "", body)  # "(doc.pdf, p. 3)" source line after the number
        out += [(int(m.group(1)), s) for s in split_sentences(body)]
    return out


class OfflineExtractiveChat(BaseChatModel):
    """Answers by quoting the context sentences closest to the question (cosine, local embeddings)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    embeddings: Embeddings
    max_quotes: int = 3
    min_similarity: float = 0.3
    relative_window: float = 0.12

    @property
    def _llm_type(self) -> str:
        return "offline-extractive"

    def answer(self, messages: list[BaseMessage]) -> str:
        """The extractive answer text for `messages`."""
        question, context = _question_and_context(messages)
        sentences = _numbered(context)
        if not question or not sentences:
            return NOTHING_TO_QUOTE
        vectors = self.embeddings.embed_documents([question] + [s for _, s in sentences])
        q = vectors[0]
        scored = [(sum(a * b for a, b in zip(q, v)), i) for i, v in enumerate(vectors[1:])]
        top = max(scored)[0]
        floor = max(self.min_similarity, top - self.relative_window)  # only near-best sentences
        best = sorted((x for x in scored if x[0] >= floor), reverse=True)[: self.max_quotes]
        if not best:
            return NOTHING_TO_QUOTE
        lines = []
        for _, i in sorted(best, key=lambda x: x[1]):  # in reading order
            n, sentence = sentences[i]
            lines.append(f"> {sentence}" + (f" [{n}]" if n is not None else ""))
        return "From the provided text:\n\n" + "\n>\n".join(lines)

    def _usage(self, messages: list[BaseMessage], text: str) -> UsageMetadata:
        p, c = estimate_message_tokens(messages), estimate_tokens(text)
        return UsageMetadata(input_tokens=p, output_tokens=c, total_tokens=p + c)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self.answer(messages)
        msg = AIMessage(content=text, usage_metadata=self._usage(messages, text))
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self.answer(messages)
        for piece in re.findall(r"\S+\s*|\s+", text):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata=self._usage(messages, text), response_metadata={"finish_reason": "stop"}
            )
        )
