"""Tool calls through the gateway: masking their arguments going out, restoring them coming back, logging them.

A tool-calling request is part of the prompt in three places: the tool definitions, the arguments of the tool
calls the model made earlier in the turn (on assistant messages), and the tool results (tool messages). The
prompt redaction masks the string values of those arguments and the tool results' text like any message text;
tool-call ids and tool names are left as they are (the provider pairs calls and results by id). A model's tool
call that repeats a placeholder gets the original back before the tool runs, as an answer's text does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.tool import InvalidToolCall, ToolCall, ToolCallChunk, invalid_tool_call, tool_call

from lib.gateway.errors import GatewayError
from lib.gateway.redaction import Redaction, redact
from lib.gateway.tokens import estimate_tokens, message_text

MAX_LOGGED_ARGUMENTS = 2000  # characters of one tool call's arguments kept in the call log


class ToolsUnavailable(GatewayError):
    """Tools were asked for but the model that would answer cannot call them (the offline answerer)."""

    error_type = "tools_unavailable"


def offline_tools_error(model: str) -> ToolsUnavailable:
    """The error for a tool-calling request that would go to the offline answerer."""
    return ToolsUnavailable(
        f"The offline answerer ({model}) cannot call tools: the assistant needs a real model. Ask an admin to "
        "configure one (WORKBENCH_PROVIDERS), or use plain chat.",
        provider="offline",
    )


def uses_tools(params: Mapping[str, Any], messages: Sequence[BaseMessage]) -> bool:
    """True when a request offers tools or carries earlier tool calls or results."""
    if params.get("tools"):
        return True
    return any(isinstance(m, ToolMessage) or (isinstance(m, AIMessage) and m.tool_calls) for m in messages)


def request_chars(messages: Sequence[BaseMessage], params: Mapping[str, Any]) -> int:
    """Characters a request sends: the messages' text, the arguments of earlier tool calls in them, and the tool
    definitions offered (each can be as large as a pasted document)."""
    size = sum(len(message_text(m)) for m in messages)
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            size += sum(len(json.dumps(c.get("args", {}), default=str)) for c in m.tool_calls)
    tools = params.get("tools")
    return size + (len(json.dumps(tools, default=str)) if tools else 0)


def tools_tokens(params: Mapping[str, Any]) -> int:
    """Estimated prompt tokens of the tool definitions a request sends."""
    tools = params.get("tools")
    return estimate_tokens(json.dumps(tools, default=str)) if tools else 0


def _map_strings(value: Any, change: Any) -> Any:
    """`value` with `change` applied to every string inside it (dict values, list items), keys left alone."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return value


def redact_message(message: BaseMessage, text: str, originals: dict[str, str], regions: tuple[str, ...]) -> BaseMessage:
    """`message` as sent: its text (already masked) and, on an assistant message, its tool-call arguments masked."""
    update: dict[str, Any] = {"content": text}
    if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):

        def mask(s: str) -> str:
            return redact(s, originals, regions).text

        update["tool_calls"] = [{**c, "args": _map_strings(c["args"], mask)} for c in message.tool_calls]
        update["invalid_tool_calls"] = [
            {**c, "args": mask(args) if (args := c.get("args")) else args} for c in message.invalid_tool_calls
        ]
    return message.model_copy(update=update)


def restore_message(message: AIMessage, text: str, redaction: Redaction | None) -> AIMessage:
    """The model's answer with its text (already restored) and its tool-call arguments restored."""
    update: dict[str, Any] = {"content": text}
    if redaction is not None and (message.tool_calls or message.invalid_tool_calls):
        update["tool_calls"] = [{**c, "args": _map_strings(c["args"], redaction.restore)} for c in message.tool_calls]
        update["invalid_tool_calls"] = [
            {**c, "args": redaction.restore(args) if (args := c.get("args")) else args}
            for c in message.invalid_tool_calls
        ]
    return message.model_copy(update=update)


def strict_tool_calls(chunks: Sequence[ToolCallChunk]) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """Tool calls from a finished stream's merged tool-call chunks, their arguments parsed as strict JSON.

    LangChain parses streamed arguments with `parse_partial_json`, which closes what a cut-off stream left open:
    `{"expression": "6*` becomes a valid call with `{"expression": "6*"}`. A call whose arguments are not a
    complete JSON object is invalid here, as it is in a non-streamed answer, so it is never run.
    """
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for chunk in chunks:
        raw = chunk.get("args") or ""
        try:
            args = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            invalid.append(invalid_tool_call(name=chunk.get("name"), args=raw, id=chunk.get("id"), error=str(exc)))
            continue
        if isinstance(args, dict):
            calls.append(tool_call(name=chunk.get("name") or "", args=args, id=chunk.get("id")))
        else:
            error = "the arguments are JSON but not an object"
            invalid.append(invalid_tool_call(name=chunk.get("name"), args=raw, id=chunk.get("id"), error=error))
    return calls, invalid


def calls_for_result(message: AIMessage) -> list[dict[str, Any]]:
    """The tool calls of an answer as the call result keeps them: name, id, arguments (or the bad JSON, and why)."""
    calls: list[dict[str, Any]] = [
        {"name": c["name"], "id": c.get("id"), "args": c["args"]} for c in message.tool_calls
    ]
    calls += [
        {"name": c.get("name"), "id": c.get("id"), "bad_args": c.get("args"), "error": c.get("error")}
        for c in message.invalid_tool_calls
    ]
    return calls


def render_calls(calls: Sequence[Mapping[str, Any]]) -> str:
    """Tool calls as text for the call log's response column (redacted with it)."""
    lines = []
    for c in calls:
        args = c["args"] if "args" in c else c.get("bad_args")
        shown = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False, default=str)
        if len(shown) > MAX_LOGGED_ARGUMENTS:
            shown = f"{shown[:MAX_LOGGED_ARGUMENTS]} … [{len(shown):,} characters]"
        bad = " (arguments are not valid JSON)" if "bad_args" in c else ""
        lines.append(f"[tool call {c.get('id') or '?'}] {c.get('name')}({shown}){bad}")
    return "\n".join(lines)


def message_log_text(message: BaseMessage, text: str) -> str:
    """A message's text for the logged prompt, with the tool calls it made or the call it answers."""
    if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
        calls = render_calls(calls_for_result(message))
        return f"{text}\n{calls}" if text else calls
    if isinstance(message, ToolMessage):
        return f"(result of {message.tool_call_id}) {text}"
    return text


def calls_tokens(calls: Sequence[Mapping[str, Any]]) -> int:
    """Estimated completion tokens of tool calls (name and arguments), for a provider that sent no usage."""
    return sum(estimate_tokens(render_calls([c])) for c in calls)
