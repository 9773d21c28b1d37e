"""One step of one row: render the template with the row's values, call the model, validate, retry with the error.

Shared by queued runs and by "try one row step by step"; nothing here touches the run's tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.messages import convert_to_messages

from lib.gateway.client import CallContext, Gateway
from lib.gateway.cost_control import DEFAULT_OUTPUT_TOKENS
from lib.gateway.errors import GatewayError
from lib.gateway.tokens import estimate_message_tokens
from lib.pipelines.definition import GateStep, Pipeline, PromptStep
from lib.pipelines.output import OutputInvalid, parse_structured
from lib.prompts.language import TemplateError, render, template_variables
from lib.prompts.runs import schema_instruction
from lib.prompts.store import Version

FEATURE = "pipeline"
Reserve = Callable[[float | None], None]  # before a call: its predicted cost (raises to stop the row)
Settle = Callable[[float | None, float | None], None]  # after a call: predicted, actual cost
Slot = Callable[[str], AbstractContextManager[Any]]  # a provider slot around a call (queued work)


@dataclass
class StepOutcome:
    """What one step did for one row."""

    step: str
    status: str  # ok, skipped, failed (prompt steps); passed, review (gates)
    output: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    latency_ms: float = 0.0
    request_ids: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)  # the prompt as sent (first attempt)
    answers: list[str] = field(default_factory=list)  # each attempt's raw answer
    model: str | None = None


def template_value(value: Any) -> str | int | float:
    """A row or output value as a template takes it: text and numbers as they are, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return value
    return json.dumps(value, ensure_ascii=False)


def step_model(gateway: Gateway, step: PromptStep, version: Version) -> str:
    """The model a step calls: its own, else its template's, else the app's default."""
    return step.model or version.template.model or gateway.settings.default_model


def step_messages(step: PromptStep, version: Version, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rendered messages, with the output schema's instruction in the system message when there is one."""
    template = version.template
    names = template_variables(template)
    messages = render(template, {n: template_value(values.get(n)) for n in names})
    if step.output_schema is None:
        return messages
    instruction = _instruction(step.output_schema)
    if messages and messages[0][0] == "system":
        return [("system", messages[0][1] + "\n\n" + instruction), *messages[1:]]
    return [("system", instruction), *messages]


_instructions: dict[int, tuple[dict[str, Any], str]] = {}  # by the schema object's id (kept, so the id stays its)


def _instruction(schema: dict[str, Any]) -> str:
    """schema_instruction(schema), made once per schema object (a step's schema is fixed once loaded)."""
    known = _instructions.get(id(schema))
    if known is None or known[0] is not schema or len(_instructions) > 256:
        if len(_instructions) > 256:
            _instructions.clear()
        known = _instructions[id(schema)] = (schema, schema_instruction(schema))
    return known[1]


def predict_cost(gateway: Gateway, model: str, messages: list[tuple[str, str]], max_tokens: int | None) -> float | None:
    """What a call may cost at most: its prompt's estimated tokens and its output cap at the model's price."""
    price = gateway.price_of(model)
    if price is None:
        return None
    prompt = estimate_message_tokens(convert_to_messages(messages))
    return price.cost(prompt, max_tokens or DEFAULT_OUTPUT_TOKENS)


def run_prompt_step(
    gateway: Gateway,
    step: PromptStep,
    version: Version,
    values: Mapping[str, Any],
    ctx: CallContext,
    *,
    reserve: Reserve | None = None,
    settle: Settle | None = None,
    slot: Slot | None = None,
) -> StepOutcome:
    """Run one prompt step: an answer that misses the schema is sent back with the error, up to max_attempts calls.

    Never raises for the model's or the template's faults: they come back as status failed with the reason.
    `reserve` may raise (a run's budget) to stop before a call; nothing is called then.
    """
    out = StepOutcome(step.name, "failed")
    try:
        messages = step_messages(step, version, values)
    except TemplateError as exc:
        out.error = f"The template {version.name} v{version.version} cannot be filled in: {exc}"
        return out
    model = step_model(gateway, step, version)
    out.messages, out.model = messages, model
    params = version.template.params()
    ctx = replace(ctx, step=step.name, template_name=version.name, template_version=version.version)
    schema = step.output_schema

    checked: dict[str, dict[str, Any]] = {}  # the answer the gateway's check parsed, so it is not parsed twice

    def problem_of(text: str) -> str | None:
        try:
            checked.clear()
            checked[text] = parse_structured(text, schema or {})
        except OutputInvalid as exc:
            return exc.reason
        return None

    sent, problem = list(messages), None
    for attempt in range(1, step.max_attempts + 1):
        predicted = predict_cost(gateway, model, sent, params.get("max_tokens"))
        if reserve is not None:
            reserve(predicted)
        actual: float | None = 0.0
        try:
            call_ctx = ctx if attempt == 1 else replace(ctx, metadata={**ctx.metadata, "attempt": attempt})
            with slot(model) if slot is not None else nullcontext():
                result = gateway.invoke(
                    sent, model, call_ctx, check_output=problem_of if schema is not None else None, **params
                )
            actual = result.cost_usd
        except GatewayError as exc:
            actual = 0.0
            out.attempts = attempt
            if exc.request_id:
                out.request_ids.append(exc.request_id)
            out.error = f"The model call failed: {exc}"
            return out
        finally:
            if settle is not None:
                settle(predicted, actual)
        out.attempts = attempt
        out.request_ids.append(result.request_id)
        out.answers.append(result.text)
        out.tokens += result.prompt_tokens + result.completion_tokens
        out.cost_usd = None if out.cost_usd is None or result.cost_usd is None else out.cost_usd + result.cost_usd
        out.latency_ms += result.latency_ms or 0.0
        if schema is None:
            out.status, out.output = "ok", {"text": result.text}
            return out
        if result.status != "invalid":
            try:
                parsed = checked.get(result.text)
                out.status, out.output = "ok", parsed if parsed is not None else parse_structured(result.text, schema)
                return out
            except OutputInvalid as exc:  # the check and the parse agree; kept so a string never passes
                problem = exc.reason
        else:
            problem = str(result.error) if result.error else "The answer does not match the schema."
        sent = [
            *messages,
            ("assistant", result.text),
            ("user", f"That answer is invalid: {problem}\n{schema_instruction(schema)}"),
        ]
    out.status, out.error = "failed", f"No valid answer after {step.max_attempts} attempt(s): {problem}"
    return out


def flat_values(
    pipeline: Pipeline, row: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, Any]:
    """The row's fields plus `step.field` for every step output so far (a gate's edit replaces its step's fields)."""
    values = dict(row)
    for step in pipeline.steps:
        if step.name not in outputs:
            continue
        output = outputs[step.name] or {}
        if isinstance(step, GateStep):
            values[f"{step.name}.decision"] = output.get("decision")
            values[f"{step.name}.decided_by"] = output.get("decided_by")
            edited = output.get("edited_output")
            if step.edits_step and isinstance(edited, dict):
                for key in list(values):
                    if key.startswith(step.edits_step + "."):
                        values[key] = None
                values.update({f"{step.edits_step}.{k}": v for k, v in edited.items()})
            continue
        for f in step.fields():
            values[f"{step.name}.{f}"] = output.get(f)
        for k, v in output.items():  # fields an open schema allowed
            values.setdefault(f"{step.name}.{k}", v)
    return values
