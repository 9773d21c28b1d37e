"""A chat turn, question in and stored answer out: the question and answer stored in the conversation, the answer
streamed through the gateway (one call-log row); citations and the cost line for showing an answer."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from lib.chat.conversations import add_message, create_session, load_history
from lib.chat.prompt import PreparedTurn, prepare_turn
from lib.core import spans
from lib.core.tables import ChatMessage
from lib.documents.citations import Source, cited_sources
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.gateway.client import CallContext, CallResult, Gateway
from lib.gateway.errors import GatewayError
from lib.gateway.offline import OFFLINE_LABEL
from lib.gateway.tokens import PER_MESSAGE_OVERHEAD
from lib.prompts.store import TemplateStore


@dataclass(frozen=True)
class ChatSetup:
    """What every chat turn runs on. The retriever is asked for only when a question goes to a collection."""

    engine: Engine
    gateway: Gateway
    budget: int  # tokens of conversation history sent with a question
    store: TemplateStore | None = None  # None: the shipped prompts, no labels, no live A/B
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    retriever: Callable[[], Retriever] | None = None


class ChatTurn:
    """One question on its way to a stored answer: iterate it for the streamed text, then read the outcome.

    `result` is the logged call, `error` a failure to show the user (with its request id), `answer` the stored
    answer. A stopped (`close()`, or leaving `with turn:`) or failed answer is logged but not stored.
    """

    def __init__(
        self,
        setup: ChatSetup,
        session_id: str,
        prepared: PreparedTurn,
        model: str,
        ctx: CallContext,
        span: spans.Span = spans.NO_SPAN,
    ) -> None:
        self.setup, self.session_id, self.prepared, self.model, self.ctx = setup, session_id, prepared, model, ctx
        self.span = span  # the turn's root span (tracing): retrieval, prompt build, the call, the stored answer
        self.result: CallResult | None = None
        self.error: GatewayError | None = None
        self.answer: ChatMessage | None = None
        self._pieces: Generator[str, None, None] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._pieces is None:  # one call per turn, however often it is iterated
            self._pieces = self._run()
        return self._pieces

    @property
    def notices(self) -> list[str]:
        """Budget warnings for the user."""
        return self.result.notices if self.result else []

    @property
    def masked_note(self) -> str | None:
        """Says how many personal details were masked before the question left, if any were."""
        if self.result is None or not self.result.redacted:
            return None
        return f"{self.result.redacted} personal detail(s) were masked before the question left this network."

    def close(self) -> None:
        """Stop the answer where it is; the call is logged as aborted."""
        if self._pieces is not None:
            self._pieces.close()
        else:
            self._end_span()  # never asked for its answer

    def _end_span(self) -> None:
        """The turn's outcome on its root span, then end it (once)."""
        span, self.span = self.span, spans.NO_SPAN
        if self.result is not None:
            span.set_attributes({spans.STATUS: self.result.status, spans.REQUEST_ID: self.result.request_id})
        if self.error is not None:
            spans.mark_error(span, self.error.error_type)
        span.end()

    def __enter__(self) -> ChatTurn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # a page stopped mid-answer (Stop, a rerun) must still log the call

    def _run(self) -> Generator[str, None, None]:
        try:
            yield from self._answer()
        except Exception as exc:
            spans.mark_error(self.span, type(exc).__name__)
            raise
        finally:
            self._end_span()

    def _answer(self) -> Generator[str, None, None]:
        with spans.activate(self.span):  # the call's span is a child of the turn's (made current only here: no yield)
            stream = self.setup.gateway.stream(self.prepared.messages, self.model, self.ctx, **self.prepared.params)
        try:
            yield from stream
        except GatewayError as err:
            self.error = err
        finally:
            stream.close()  # logs an abandoned stream as aborted
            self.result = stream.result
        result = self.result
        if result is not None and result.status in ("ok", "cached"):
            with spans.activate(self.span):
                self.answer = self._store_answer(result)

    def _store_answer(self, result: CallResult) -> ChatMessage:
        with spans.span("chat.store_answer"):
            return add_message(
                self.setup.engine,
                self.session_id,
                "assistant",
                result.text,
                sources=[s.to_dict() for s in self.prepared.sources],
                request_id=result.request_id,
                summary=describe_result(result),
                offline=result.offline,
            )


MAX_QUESTION_CHARS = 20_000  # one chat message; longer questions belong in a document


class QuestionTooLong(ValueError):
    """A question over MAX_QUESTION_CHARS: refused before anything is stored or sent."""


def start_turn(
    setup: ChatSetup,
    question: str,
    model: str,
    *,
    user: str | None,
    owner: str | None = None,
    session_id: str | None = None,
    collection: str | None = None,
) -> ChatTurn:
    """Continue (or open) a conversation, build the prompt and store the question; iterate the turn to answer.

    `user` is who the call log and budgets name; `owner` whose conversation it is (default: `user`).
    ChatStoreError when `session_id` is not one of `owner`'s conversations.
    """
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionTooLong(
            f"Your question is {len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,}. Shorten it, or "
            "upload the text on the Documents page and ask about it."
        )
    # One trace per turn: its root span is current while the prompt is built, and parents the gateway call later.
    root = spans.start_span("chat.turn", attributes={spans.FEATURE: "chat", "grounded": bool(collection)})
    try:
        with spans.activate(root):
            turn = _prepare(setup, question, model, user, owner, session_id, collection, root)
    except BaseException as exc:
        spans.mark_error(root, type(exc).__name__)
        root.end()
        raise
    return turn


def _prepare(
    setup: ChatSetup,
    question: str,
    model: str,
    user: str | None,
    owner: str | None,
    session_id: str | None,
    collection: str | None,
    root: spans.Span,
) -> ChatTurn:
    engine, owner = setup.engine, user if owner is None else owner
    if not session_id:
        session_id = create_session(engine, owner, collection=collection).id
    # Every message costs at least PER_MESSAGE_OVERHEAD tokens, so older ones could never fit the budget.
    history = load_history(engine, session_id, owner, last=setup.budget // PER_MESSAGE_OVERHEAD + 1)
    retriever = setup.retriever() if collection and setup.retriever else None
    with spans.span("chat.prompt", grounded=bool(collection)):
        prepared = prepare_turn(
            history, question, setup.budget, collection, retriever, setup.retrieval, setup.store, user
        )
    add_message(engine, session_id, "user", question, collection=collection)
    ctx = CallContext(
        feature="chat",
        user=user,
        session_id=session_id,
        template_name=prepared.template_name,
        template_version=prepared.template_version,
        experiment_id=prepared.experiment_id,
        variant=prepared.variant,
        metadata={"collection": collection} if collection else {},
    )
    root.set_attribute(spans.GEN_AI_CONVERSATION, session_id)
    if prepared.template_name:
        root.set_attribute(spans.TEMPLATE_NAME, prepared.template_name)
    return ChatTurn(setup, session_id, prepared, model, ctx, root)


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


def citations_for(answer: str, sources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored sources an answer cites ([n] → the source numbered n), in citation order."""
    objs = [Source(**s) for s in sources]
    return [s.to_dict() for s in cited_sources(answer, objs)]


def source_label(source: dict[str, Any]) -> str:
    """`[2] handbook.pdf, p. 3` for a stored source, marked when its text looks like an injected instruction."""
    return f"[{source['number']}] {Source(**source).label()}" + ("  ⚠ flagged" if source.get("flagged") else "")


def answer_caption(row: dict[str, Any]) -> str | None:
    """The line under a stored answer: its cost summary, saying when it is an offline extract."""
    if not row.get("summary"):
        return None
    return (f"{OFFLINE_LABEL} · " if row.get("offline") else "") + row["summary"]
