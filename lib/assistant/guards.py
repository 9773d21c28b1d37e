"""The middleware around the agent loop: the guards (step cap, cost cap, loop detection), each visible when it
stops a turn; the chat model of each step; and the record of every tool call.

Guards end a turn with a final message saying which guard stopped it and why, and put {"guard", "message"} in the
state and in the event stream. A tool error goes back to the model as an error result, and into the timeline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, NotRequired, cast

from langchain.agents.middleware import (
    AgentMiddleware,
    HumanInTheLoopMiddleware,
    ModelRequest,
    ModelResponse,
)
from langchain.agents.middleware.model_call_limit import ModelCallLimitState
from langchain.agents.middleware.types import ExtendedModelResponse, PrivateStateAttr, ToolCallRequest
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.types import Command

from lib.assistant.context import TurnContext
from lib.assistant.records import PREVIEW_CHARS, StepUsage, step_usage, tool_call_record
from lib.assistant.tools import ToolFailure, preview
from lib.core import spans

LOOP_REPEATS = 3  # the same tool with the same arguments this often ends the turn


class AssistantState(ModelCallLimitState):
    """The agent state plus the guard that stopped the turn, if one did."""

    assistant_guard: NotRequired[Annotated[dict[str, str], PrivateStateAttr]]


def _emit(runtime: Any, event: dict[str, Any]) -> None:
    writer = getattr(runtime, "stream_writer", None)
    if writer is not None:
        writer(event)


def _state(request: Any) -> dict[str, Any]:
    state = request.state
    return cast(dict[str, Any], state) if isinstance(state, dict) else {}


def _ctx(runtime: Any) -> TurnContext:
    return cast(TurnContext, runtime.context)


def _stop(guard: str, message: str) -> dict[str, Any]:
    return {"guard": guard, "message": message}


def _usage_of(answers: list[AIMessage]) -> StepUsage | None:
    """A step's tokens, cost and latency as GatewayChatModel reports them with its answer (from the call it just
    logged); None for a model that does not (then the call log is read)."""
    meta = answers[-1].response_metadata if answers else {}
    if "request_id" not in meta:
        return None
    usage: dict[str, Any] = dict(answers[-1].usage_metadata or {})
    return StepUsage(
        1, int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)), meta.get("cost_usd"),
        float(meta.get("latency_ms") or 0.0),
    )  # fmt: skip


def _record(ctx: TurnContext, **values: Any) -> None:
    """Keep a tool call's record for the turn to write when this leg ends (AssistantTurn writes them with the
    turn's status, before its last event, and also when a leg is abandoned or fails)."""
    record = tool_call_record(**values)
    with ctx.lock:
        ctx.records.append(record)


def _call_key(call: Any) -> str:
    return call["name"] + json.dumps(call.get("args") or {}, sort_keys=True, default=str)


class TurnGuards(AgentMiddleware):
    """The guards around each model call, all inside the model node (no graph node of their own, ~1 ms per step
    less than before/after-model hooks): before the call the step cap and the cost cap, after it loop detection
    and answers to tool calls whose arguments are not JSON; around it the step's chat model (logged with its step)
    and the tools its user may have. The model calls of a turn (a thread) are counted in the state as LangChain's
    model-call limit counts them (`thread_model_call_count`); a guard's state goes back with the answer as a
    Command (ExtendedModelResponse)."""

    state_schema = AssistantState

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        ctx, state = _ctx(request.runtime), _state(request)
        done = int(state.get("thread_model_call_count", 0))
        stop = self._cap(ctx, done)
        if stop is not None:  # an answer without tool calls ends the turn; the call is not made (nor counted)
            _emit(request.runtime, {"type": "guard", **stop})
            return _with_state(ModelResponse(result=[AIMessage(stop["message"])]), {"assistant_guard": stop})
        step = done + 1
        guard = state.get("assistant_guard") or {}
        overrides: dict[str, Any] = {"model": ctx.model_for_step(step)}
        overrides["tools"] = [t for t in request.tools if ctx.modes.get(str(getattr(t, "name", "")), "off") != "off"]
        if guard.get("guard") == "loop":
            overrides["tools"] = []
            note = "Loop detection stopped the tool calls. Answer now from the tool results above, citing [n]."
            system = request.system_message.content if request.system_message else ""
            overrides["system_message"] = SystemMessage(f"{system}\n\n{note}".strip())
        _emit(request.runtime, {"type": "step", "step": step})
        response = handler(request.override(**overrides))
        answers = [m for m in response.result if isinstance(m, AIMessage)]
        usage = _usage_of(answers) or step_usage(ctx.services.engine, ctx.turn_id, step)
        with ctx.lock:
            ctx.spent_usd += usage.cost_usd or 0.0
        _emit(
            request.runtime,
            {
                "type": "step_done",
                "step": step,
                "tool_calls": sum(len(m.tool_calls) + len(m.invalid_tool_calls) for m in answers),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cost_usd": usage.cost_usd,
                "latency_ms": usage.latency_ms,
            },
        )
        update: dict[str, Any] = {"thread_model_call_count": step}
        last = response.result[-1] if response.result else None
        if isinstance(last, AIMessage):
            checked = self._check_calls(list(request.state["messages"]), last, guard, step, request.runtime)
            if checked is not None:
                messages, stop = checked
                response = ModelResponse(
                    result=[*response.result[:-1], *messages], structured_response=response.structured_response
                )
                if stop is not None:
                    update["assistant_guard"] = stop
        return _with_state(response, update)

    @staticmethod
    def _cap(ctx: TurnContext, done: int) -> dict[str, str] | None:
        """The step cap or the cost cap, when the turn has reached it."""
        if done >= ctx.max_steps:
            return _stop(
                "step_cap",
                f"Stopped by the step cap: this turn made {done} model calls, the most one turn may make "
                f"(WORKBENCH_ASSISTANT_MAX_STEPS={ctx.max_steps}). The tool results above are what was found so "
                "far; ask a narrower question or continue in a new turn.",
            )
        if ctx.max_cost_usd is not None and ctx.spent_usd >= ctx.max_cost_usd:
            return _stop(
                "cost_cap",
                f"Stopped by the cost cap: this turn has cost ${ctx.spent_usd:.4f} so far, and one turn may cost at "
                f"most ${ctx.max_cost_usd:.4f} (WORKBENCH_ASSISTANT_MAX_COST_USD). The tool results above are what "
                "was found.",
            )
        return None

    def _check_calls(
        self, history: list[Any], last: AIMessage, guard: dict[str, str], step: int, runtime: Any
    ) -> tuple[list[BaseMessage], dict[str, str] | None] | None:
        """The messages that replace the model's answer `last` (and the guard that stopped the turn, if one did),
        or None to keep it: answers to calls with bad JSON arguments, or loop detection."""
        if last.invalid_tool_calls:
            return self._answer_invalid_calls(last, step, runtime), None
        if not last.tool_calls:
            return None
        if guard.get("guard") == "loop":  # told to answer, it called tools again: the guard's message answers
            content = last.content or guard.get("message", "")
            return [last.model_copy(update={"tool_calls": [], "content": content})], None
        seen = Counter(_call_key(c) for m in history if isinstance(m, AIMessage) for c in m.tool_calls)
        repeated = [c for c in last.tool_calls if seen[_call_key(c)] + 1 >= LOOP_REPEATS]
        if not repeated:
            return None
        call = repeated[0]
        args = json.dumps(call.get("args") or {}, sort_keys=True, default=str)
        message = (
            f"Stopped by loop detection: {call['name']} was called {LOOP_REPEATS} times with the same arguments "
            f"({preview(args, 200)}), so the turn ends with an answer from what was found."
        )
        stop = _stop("loop", message)
        _emit(runtime, {"type": "guard", **stop})
        # every call answered "not run": the agent goes back to the model (no pending tool call), told to answer
        not_run = [
            ToolMessage(
                f"Not run: {message} Do not call any more tools; answer the question now from the results above.",
                tool_call_id=c["id"],
                name=c["name"],
                status="error",
            )
            for c in last.tool_calls
        ]
        return [last, *not_run], stop

    @staticmethod
    def _answer_invalid_calls(last: AIMessage, step: int, runtime: Any) -> list[BaseMessage]:
        """Tool calls whose arguments are not valid JSON: an error result each, so the model can try again (left
        alone, the agent would end the turn without a word). Recorded like any failed tool call."""
        ctx = _ctx(runtime)
        calls, results = list(last.tool_calls), []
        for bad in last.invalid_tool_calls:
            call_id, name = bad.get("id") or f"invalid_{len(calls)}", bad.get("name") or "?"
            error = f"The arguments of this {name} call are not valid JSON: {preview(bad.get('args') or '', 200)}"
            calls.append({"name": name, "args": {}, "id": call_id, "type": "tool_call"})
            results.append(
                ToolMessage(
                    f"Error: {error}. Call it again with valid arguments.",
                    tool_call_id=call_id,
                    name=name,
                    status="error",
                )
            )
            _record(
                ctx, turn_id=ctx.turn_id, step=step, call_id=call_id, tool=name, arguments={"raw": bad.get("args")},
                status="error", decision="auto", result_chars=0, error=error, latency_ms=0.0, user=ctx.user,
            )  # fmt: skip
            _emit(
                runtime, {"type": "tool_call", "step": step, "call_id": call_id, "tool": name, "args": {}, "mode": ""}
            )
            _emit(
                runtime,
                {"type": "tool_result", "step": step, "call_id": call_id, "tool": name, "args": {}, "status": "error",
                 "decision": "auto", "preview": error, "chars": 0, "latency_ms": 0.0, "error": error},
            )  # fmt: skip
        fixed = last.model_copy(update={"tool_calls": calls, "invalid_tool_calls": []})
        return [fixed, *results]


def _with_state(response: ModelResponse, update: dict[str, Any]) -> ExtendedModelResponse:
    """The model node's answer with state updates of the guards (applied with the graph's reducers)."""
    return ExtendedModelResponse(model_response=response, command=Command(update=update))


class ToolRecorder(AgentMiddleware):
    """Every tool call: refused when its policy is off, timed, its errors returned to the model, and recorded.

    Listed before HumanInTheLoopMiddleware, so it wraps the confirmation: a denied call is recorded as denied (the
    tool never ran), an edited one with the arguments that ran. It writes nothing before the tool's outcome is
    known, since a call paused for confirmation passes through it again on resume.
    """

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command]
    ) -> ToolMessage | Command:
        ctx = _ctx(request.runtime)
        call = request.tool_call
        name, call_id = call["name"], call.get("id")
        step = int(_state(request).get("thread_model_call_count", 0))
        mode = ctx.modes.get(name, "off")
        _emit(
            request.runtime,
            {"type": "tool_call", "step": step, "call_id": call_id, "tool": name, "args": call["args"], "mode": mode},
        )
        start = time.perf_counter()
        tool_span = spans.start_span(  # tracing: the tool's arguments and result are user data, not on the span
            f"execute_tool {name}",
            attributes={spans.GEN_AI_OPERATION: "execute_tool", spans.GEN_AI_TOOL_NAME: name, spans.STEP: step},
        )
        tool_span.set_attribute(spans.GEN_AI_TOOL_CALL_ID, call_id or "")
        status, decision, error = "ok", "auto" if mode == "auto" else "approved", None
        if request.tool is None:
            status, decision, error = "error", "off", f"There is no tool called {name!r}."
            result: ToolMessage | Command = ToolMessage(error, tool_call_id=call_id, name=name, status="error")
        elif mode == "off":
            status, decision = "refused", "off"
            error = f"The tool {name} is off for this user's roles; answer without it."
            result = ToolMessage(error, tool_call_id=call_id, name=name, status="error")
        else:
            try:
                with spans.activate(tool_span):
                    result = handler(request)
            except GraphBubbleUp:  # a confirmation pause (or a cancel): nothing to record yet
                tool_span.set_attribute(spans.STATUS, "paused")
                tool_span.end()
                raise
            except ToolFailure as exc:
                status, error = "error", str(exc)
                result = ToolMessage(f"Error: {exc}", tool_call_id=call_id, name=name, status="error")
            except Exception as exc:  # a bug or an outage in a tool: the model and the user see it, the turn goes on
                status, error = "error", f"{type(exc).__name__}: {exc}"
                result = ToolMessage(f"Error: {error}", tool_call_id=call_id, name=name, status="error")
        latency = (time.perf_counter() - start) * 1000
        with ctx.lock:
            ran = ctx.ran.pop(call_id or "", None)  # set by Confirmations when the tool itself ran, with its arguments
        text = result.content if isinstance(result, ToolMessage) else str(result)
        text = text if isinstance(text, str) else json.dumps(text, default=str)
        if mode == "confirm" and status != "refused":
            if ran is None:
                status, decision = "denied", "denied"
            elif ran != call["args"]:
                decision = "edited"
        if isinstance(result, ToolMessage) and result.status == "error" and status == "ok":
            status, error = "error", text  # the tool's own error handling (bad arguments)
        args = ran if ran is not None else call["args"]
        tool_span.set_attributes({spans.STATUS: status, "workbench.decision": decision})
        if status == "error":
            spans.mark_error(tool_span, "tool_error")
        tool_span.end()
        gateway = ctx.services.gateway
        _record(
            ctx,
            turn_id=ctx.turn_id,
            step=step,
            call_id=call_id,
            tool=name,
            arguments=dict(args),
            status=status,
            decision=decision,
            result_chars=len(text),
            result_preview=gateway.content_for_log(text[:PREVIEW_CHARS]),
            error=error,
            latency_ms=latency,
            user=ctx.user,
        )
        _emit(
            request.runtime,
            {
                "type": "tool_result",
                "step": step,
                "call_id": call_id,
                "tool": name,
                "args": args,
                "status": status,
                "decision": decision,
                "preview": preview(text),
                "chars": len(text),
                "latency_ms": latency,
                "error": error,
            },
        )
        return result


class Confirmations(HumanInTheLoopMiddleware):
    """LangChain's human-in-the-loop middleware in `per_call` mode (one pause per gated tool call, answered by its
    id). Its after_model does nothing in that mode; hidden here so the graph has no node for it.

    It also notes that a tool really runs, and with which arguments (after a confirmation's edit), for
    ToolRecorder, which wraps the confirmation and so cannot tell a denial or an edit on its own (in the handler
    it passes on: no middleware layer of its own, each costs ~0.1 ms per tool call)."""

    after_model = AgentMiddleware.after_model
    aafter_model = AgentMiddleware.aafter_model

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command]
    ) -> ToolMessage | Command:
        def run(to_run: ToolCallRequest) -> ToolMessage | Command:
            ctx = _ctx(to_run.runtime)
            with ctx.lock:
                ctx.ran[to_run.tool_call.get("id") or ""] = dict(to_run.tool_call["args"])
            return handler(to_run)

        return super().wrap_tool_call(request, run)
