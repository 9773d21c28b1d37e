"""Running templates through the gateway: rendering, structured output with one retry, call-log tags."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from lib.gateway.client import CallContext, CallResult, Gateway
from lib.prompts.builtin import CHAT_SYSTEM, DEFAULT_SYSTEM_PROMPT
from lib.prompts.language import Template, parse_structured, render
from lib.prompts.store import PRODUCTION, TemplateNotFound, TemplateStore, Version


@dataclass
class TemplateRun:
    """The outcome of running a template: the final call, every call made, and parsed output."""

    result: CallResult
    calls: list[CallResult] = field(default_factory=list)
    data: Any = None  # the validated JSON value, with a schema
    problem: str | None = None  # why the final answer is invalid, with a schema

    @property
    def valid(self) -> bool:
        """True unless a JSON schema rejected the final answer."""
        return self.problem is None


def schema_instruction(schema: dict[str, Any]) -> str:
    """The sentence that tells a model what JSON to answer with."""
    return "Reply with only a JSON value (no prose, no code fences) that matches this JSON schema:\n" + json.dumps(
        schema, indent=2, sort_keys=True
    )


def build_messages(template: Template, values: dict[str, Any]) -> list[tuple[str, str]]:
    """Rendered messages, with the schema instruction added to the system message when there is one."""
    messages = render(template, values)
    if template.json_schema is None:
        return messages
    if messages and messages[0][0] == "system":
        return [("system", messages[0][1] + "\n\n" + schema_instruction(template.json_schema)), *messages[1:]]
    return [("system", schema_instruction(template.json_schema)), *messages]


def run_template(
    gateway: Gateway,
    template: Template,
    values: dict[str, Any],
    ctx: CallContext,
    version: int | None = None,
    model: str | None = None,
) -> TemplateRun:
    """Render and call; with a JSON schema, validate and retry once with the error, else report invalid.

    Every call is logged with the template's name and `version` (None for an unsaved draft).
    Gateway errors (rate limits, timeouts…) are raised as GatewayError.
    """
    messages = build_messages(template, values)
    ctx = replace(
        ctx,
        template_name=template.name,
        template_version=version,
        metadata={**ctx.metadata, **({} if version is not None else {"draft": True})},
    )
    model = model or template.model
    schema = template.json_schema
    if schema is None:
        result = gateway.invoke(messages, model, ctx, **template.params())
        return TemplateRun(result, [result])

    def problem_of(text: str) -> str | None:
        try:
            parse_structured(text, schema)
        except ValueError as exc:
            return str(exc)
        return None

    first = gateway.invoke(messages, model, ctx, check_output=problem_of, **template.params())
    calls = [first]
    if first.status == "invalid":
        retry = [
            *messages,
            ("assistant", first.text),
            ("user", f"That answer is invalid: {first.error}\n{schema_instruction(schema)}"),
        ]
        retry_ctx = replace(ctx, metadata={**ctx.metadata, "retry_of": first.request_id})
        calls.append(gateway.invoke(retry, model, retry_ctx, check_output=problem_of, **template.params()))
    final = calls[-1]
    if final.status == "invalid":
        return TemplateRun(final, calls, problem=str(final.error))
    return TemplateRun(final, calls, data=parse_structured(final.text, schema))


def load_prompt(store: TemplateStore, name: str, label: str = PRODUCTION) -> Version:
    """The version of `name` that `label` points at: how the app's features read their prompts."""
    return store.get_by_label(name, label)


def chat_system_prompt(store: TemplateStore) -> tuple[str, Version | None]:
    """The Chat system prompt from the version labelled production (the shipped text if there is none)."""
    try:
        version = load_prompt(store, CHAT_SYSTEM)
    except TemplateNotFound:  # a database seeded before the template existed, or the label was removed
        return DEFAULT_SYSTEM_PROMPT, None
    return dict(render(version.template, {})).get("system", ""), version
