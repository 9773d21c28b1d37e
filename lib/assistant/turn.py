"""An assistant turn on LangChain's `create_agent`: start it, iterate its events, resume it after a confirmation.

Events are dicts with a "type":
- "step" {step}: a model call starts; "step_done" {step, tool_calls, prompt_tokens, completion_tokens, cost_usd,
  latency_ms}: it ended (figures from the answer's metadata, as the call-log row has them)
- "text" {text}: a piece of the answer as it streams
- "tool_call" {step, call_id, tool, args, mode}; "tool_result" {step, call_id, tool, args, status, decision,
  preview, chars, latency_ms, error}
- "confirm" {call_id, tool, args, interrupt_id}: the turn is paused until `resume` runs, edits or denies the call
- "guard" {guard, message}: step_cap, cost_cap or loop stopped the turn (the answer says so too)
- "error" {message}: the turn failed (or cannot run: no model is configured)
- "done" {answer, guard, status}
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from sqlalchemy import select

from lib.assistant.context import AssistantServices, TurnContext
from lib.assistant.guards import Confirmations, ToolRecorder, TurnGuards
from lib.assistant.policies import modes_for
from lib.assistant.records import create_turn, update_turn
from lib.assistant.tools import all_tools
from lib.assistant.usage_sql import dialect_of
from lib.core import spans
from lib.core.tables import Collection
from lib.documents.citations import Source, cited_sources
from lib.documents.indexing import list_collections
from lib.gateway.client import CallContext, messages_from_history
from lib.gateway.errors import GatewayError

OFFLINE_NOTICE = (
    "The offline answerer cannot call tools, so the assistant needs a model: configure a provider "
    "(OPENAI_API_KEY or WORKBENCH_PROVIDERS) and choose one of its models."
)
MAX_QUESTION_CHARS = 20_000
SYSTEM_PROMPT = """You are the workbench's assistant. Decide which tools you need, call them, check their results,
and continue until you can answer. Every figure in your answer must come from a tool result; do arithmetic with the
calculator. Cite document passages as [n], using only the numbers search_documents gave you; if the documents do not
say, say you don't know. query_usage takes one read-only SELECT in the {dialect} dialect. Today is {today} (UTC).
Document collections: {collections}."""


class ChatModelError(RuntimeError):
    """A placeholder model was asked to answer: the turn's context must supply the model of each step."""


def _no_model() -> BaseChatModel:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    class _Unset(FakeListChatModel):
        def _call(self, *args: Any, **kwargs: Any) -> str:
            raise ChatModelError("The assistant's chat model comes from the turn's context; none was given.")

    return _Unset(responses=[""])


def _confirm_wanted(request: Any) -> bool:
    ctx = request.runtime.context
    return isinstance(ctx, TurnContext) and ctx.modes.get(request.tool_call["name"]) == "confirm"


class Assistant:
    """The compiled agent (its tools, guards, records and confirmations) and the checkpointer that keeps paused
    turns; one per process, shared by every turn. Each turn is its own thread (its id)."""

    def __init__(self, checkpointer: Any | None = None) -> None:
        self.checkpointer = checkpointer or InMemorySaver()
        tools = all_tools()
        confirm = {"allowed_decisions": ["approve", "edit", "reject"], "when": _confirm_wanted}
        middleware: list[Any] = [
            TurnGuards(),
            ToolRecorder(),
            Confirmations({t.name: confirm for t in tools}, interrupt_mode="per_call"),  # type: ignore[misc]
        ]
        self.agent: Any = create_agent(
            model=_no_model(),
            tools=tools,
            middleware=middleware,
            context_schema=TurnContext,
            checkpointer=self.checkpointer,
        )

    def forget(self, turn_id: str) -> None:
        """Drop a finished turn's checkpoints."""
        self.checkpointer.delete_thread(turn_id)


@dataclass
class PendingCall:
    """A tool call waiting for the user: run it, run it with edited arguments, or deny it."""

    interrupt_id: str
    call_id: str
    tool: str
    args: dict[str, Any]


@dataclass
class AssistantTurn:
    """One question to the assistant: iterate it for events; when it pauses, `resume` and iterate again."""

    assistant: Assistant | None
    context: TurnContext | None
    question: str
    id: str
    status: str = "running"  # running, paused, done, stopped (by a guard), error, offline, interrupted
    answer: str = ""
    guard: dict[str, str] | None = None
    error: str | None = None
    pending: list[PendingCall] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # every event so far, to redraw the timeline
    _input: Any = None
    _trace_root: spans.Span | None = None  # tracing: the first leg's span; a resumed leg joins its trace

    @property
    def sources(self) -> list[Source]:
        """Every passage the turn's searches returned, numbered as the answer cites them."""
        return self.context.sources if self.context else []

    @property
    def tables(self) -> list[dict[str, Any]]:
        """Every query_usage result of the turn (sql, columns, rows, truncated)."""
        return self.context.tables if self.context else []

    def cited(self) -> list[Source]:
        """The passages the answer cites, in citation order."""
        return cited_sources(self.answer, self.sources)

    def __iter__(self) -> Generator[dict[str, Any], None, None]:  # close() ends a leg early (its records kept)
        if self._input is None:  # finished, paused without an answer yet, or never able to run
            yield from ()
            return
        run, self._input = self._input, None
        attributes = {spans.FEATURE: "assistant", spans.RUN_ID: self.id}
        leg = spans.start_span(
            "assistant.resume" if self._trace_root else "assistant.turn", self._trace_root, attributes
        )
        self._trace_root = self._trace_root or leg
        try:
            for event in spans.iterate_in(leg, self._run(run)):  # the agent's work under the leg's span
                self.events.append(event)
                yield event
        finally:
            leg.set_attribute(spans.STATUS, self.status)
            if self.status == "error":
                spans.mark_error(leg, "assistant_error")
            leg.end()

    def resume(self, action: str, args: dict[str, Any] | None = None, reason: str = "", call_id: str = "") -> None:
        """Answer the pending call (`call_id`, default the first): action "run", "edit" (with `args`) or "deny".

        Iterate the turn again for what follows. A denial goes back to the model as the tool's result.
        """
        if self.status != "paused" or not self.pending:
            raise ValueError("This turn is not waiting for a confirmation.")
        pending = next((p for p in self.pending if p.call_id == call_id), None) if call_id else self.pending[0]
        if pending is None:
            raise ValueError(f"No pending tool call {call_id!r}.")
        decision: dict[str, Any]
        if action == "run":
            decision = {"type": "approve"}
        elif action == "edit":
            decision = {"type": "edit", "edited_action": {"name": pending.tool, "args": dict(args or {})}}
        elif action == "deny":
            decision = {"type": "reject", **({"message": reason} if reason else {})}
        else:
            raise ValueError(f"A confirmation is run, edit or deny, not {action!r}.")
        self.pending.remove(pending)
        self.status = "running"
        self._input = Command(resume={pending.interrupt_id: decision})

    def _run(self, run: Any) -> Iterator[dict[str, Any]]:
        assert self.assistant is not None and self.context is not None
        ctx, config = self.context, {"configurable": {"thread_id": self.id}}
        engine = ctx.services.engine
        if self.events:  # a resumed turn (a new one was stored as running)
            update_turn(engine, self.id, status="running")
        self.pending = []  # calls still waiting after this leg are announced again by the graph
        streamed: set[str] = set()
        ended: dict[str, Any] = {}  # the status to store when the leg ends without storing its own
        try:
            yield from self._leg(run, config, streamed)
        except GeneratorExit:  # the reader stopped (a rerun of the page): nothing will finish or resume this leg
            if self.status == "running":
                self.status = "interrupted"
                ended = {"status": "interrupted"}
            raise
        except Exception as exc:  # an unexpected error: the turn is not left "running" in the table
            self.status, self.error = "error", f"{type(exc).__name__} in the assistant"
            ended = {"status": "error", "guard_message": self.error}
            raise
        finally:  # no tool-call record is lost
            if ctx.records or ended:
                self._write(**ended)

    def _write(self, **values: Any) -> None:
        """Store the turn's status (`values`) with the tool-call records kept since the last write, in one
        transaction."""
        assert self.context is not None
        ctx = self.context
        with ctx.lock:
            records, ctx.records = ctx.records, []
        update_turn(ctx.services.engine, self.id, records, **values)

    def _leg(self, run: Any, config: dict[str, Any], streamed: set[str]) -> Iterator[dict[str, Any]]:
        assert self.assistant is not None and self.context is not None
        ctx = self.context
        try:
            # durability="exit": the checkpoint is written when the turn ends or pauses for a confirmation (all
            # that resuming needs), not after every node
            stream = self.assistant.agent.stream(
                run, config, context=ctx, stream_mode=["messages", "custom"], durability="exit"
            )
            for mode, chunk in stream:
                if mode == "custom" and isinstance(chunk, dict):
                    if chunk.get("type") == "guard":
                        self.guard = {"guard": chunk["guard"], "message": chunk["message"]}
                    yield chunk
                elif mode == "messages":
                    message, meta = chunk
                    text = _text_of(message)
                    if isinstance(message, AIMessageChunk) and meta.get("langgraph_node") == "model":
                        streamed.add(message.id or "")
                        if text:
                            yield {"type": "text", "text": text}
                    elif isinstance(message, AIMessage) and message.id not in streamed and text:
                        streamed.add(message.id or "")  # a guard's closing message, written by a middleware node
                        yield {"type": "text", "text": text}
        except GatewayError as exc:
            self.status, self.error = "error", str(exc)
            self._write(status="error", answer=None, guard_message=str(exc))
            self.assistant.forget(self.id)
            yield {"type": "error", "message": str(exc)}
            return
        state = self.assistant.agent.get_state(config)
        steps = int(state.values.get("thread_model_call_count", 0))
        for item in state.interrupts:  # tool calls waiting for the user (HumanInTheLoopMiddleware, per call)
            value = item.value if isinstance(item.value, dict) else {}
            pending = PendingCall(item.id, value.get("tool_call_id", ""), value.get("name", ""), value.get("args", {}))
            self.pending.append(pending)
        if self.pending:
            self.status = "paused"
            self._write(status="paused", steps=steps)  # the records of the calls that ran, before the events end
            for pending in self.pending:
                yield {
                    "type": "confirm",
                    "interrupt_id": pending.interrupt_id,
                    "call_id": pending.call_id,
                    "tool": pending.tool,
                    "args": pending.args,
                }
            return
        self.answer = _final_text(state.values.get("messages", []))
        self.guard = self.guard or state.values.get("assistant_guard")
        self.status = "stopped" if self.guard else "done"
        self._write(
            status=self.status,
            answer=self.answer,
            steps=steps,
            guard=(self.guard or {}).get("guard"),
            guard_message=(self.guard or {}).get("message"),
        )
        self.assistant.forget(self.id)
        yield {"type": "done", "answer": self.answer, "guard": self.guard, "status": self.status}


def _text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)


def _final_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return _text_of(message)
    return ""


def system_prompt(services: AssistantServices, collections: Sequence[str] | None = None) -> str:
    """The assistant's instructions, with today's date, the SQL dialect and the collections (read when not given)."""
    if collections is None:
        collections = [c.name for c in list_collections(services.engine)]
    names = ", ".join(collections[:50]) or "none yet"
    today = datetime.now(UTC).strftime("%Y-%m-%d (%A)")
    return SYSTEM_PROMPT.format(dialect=dialect_of(services.engine), today=today, collections=names)


def start_turn(
    assistant: Assistant,
    services: AssistantServices,
    user: str | None,
    roles: Sequence[str] | frozenset[str] | str,
    question: str,
    history: Sequence[dict[str, str]] = (),
    *,
    model: str | None = None,
    chat_model: Callable[[int], BaseChatModel] | None = None,
    max_steps: int | None = None,
    max_cost_usd: float | None = None,
) -> AssistantTurn:
    """A new turn for `question` (after `history`, [{"role", "content"}]); iterate it for its events.

    `chat_model(step)` gives the model of each step (default: the gateway's chat model for `model`, logged with
    feature "assistant", the turn id as run id and the step). With no model configured (the offline answerer) the
    turn yields one error event saying the assistant needs one.
    """
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"Your question is {len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,}.")
    settings = services.settings
    model = model or settings.default_model
    turn_id = uuid.uuid4().hex
    role_set = frozenset([roles] if isinstance(roles, str) else roles)
    if chat_model is None:
        if model.split("/", 1)[0] == "offline" or settings.provider(model.split("/", 1)[0]).kind == "offline":
            turn = AssistantTurn(None, None, question, turn_id, status="offline", error=OFFLINE_NOTICE)
            turn.events.append({"type": "error", "message": OFFLINE_NOTICE})
            return turn
        chat_model = gateway_models(services, model, user, turn_id)
    with services.engine.begin() as conn:  # the turn's row, its user's tool modes and the collections: one trip
        create_turn(conn, turn_id, user, role_set, model, question)
        modes = modes_for(conn, role_set)
        collections = list(conn.scalars(select(Collection.name).order_by(Collection.name).limit(50)))
    ctx = TurnContext(
        turn_id=turn_id,
        user=user,
        roles=role_set,
        modes=modes,
        services=services,
        model_for_step=chat_model,
        max_steps=max_steps or settings.assistant_max_steps,
        max_cost_usd=max_cost_usd if max_cost_usd is not None else settings.assistant_max_cost_usd,
    )
    messages = [
        ("system", system_prompt(services, collections)),
        *[(m.type, m.content) for m in messages_from_history(history)],
    ]
    turn = AssistantTurn(assistant, ctx, question, turn_id)
    turn._input = {"messages": [*messages, HumanMessage(question)]}
    return turn


def gateway_models(
    services: AssistantServices, model: str, user: str | None, turn_id: str
) -> Callable[[int], BaseChatModel]:
    """The gateway's LangChain chat model for each step of a turn: one call-log row per model call, with feature
    "assistant", the turn id as run id and the step number."""
    from lib.gateway.chat_model import GatewayChatModel

    def for_step(step: int) -> BaseChatModel:
        ctx = CallContext(feature="assistant", user=user, run_id=turn_id, step=str(step))
        return GatewayChatModel(gateway=services.gateway, model=model, context=lambda: ctx)

    return for_step
