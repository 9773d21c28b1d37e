"""The assistant's tools: typed (pydantic argument schemas), no code execution, each checking the caller's role.

A tool returns text for the model; what went wrong is raised as ToolFailure and goes back to the model as an
error result (and to the user in the timeline).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, Field

from lib.assistant.calculator import CalculatorError, calculate
from lib.assistant.context import TurnContext
from lib.assistant.policies import ALLOWED_ROLES
from lib.assistant.usage_sql import ROW_CAP, VIEWS, QueryRefused, dialect_of, run_query
from lib.documents.citations import format_context
from lib.documents.indexing import CollectionError, list_collections
from lib.gateway.client import CallContext
from lib.gateway.errors import GatewayError
from lib.prompts.language import TemplateError
from lib.prompts.runs import load_prompt
from lib.prompts.runs import run_template as run_prompt_template
from lib.prompts.store import TemplateNotFound

MAX_RESULT_CHARS = 12_000  # what one tool result may put into the conversation


class ToolFailure(Exception):
    """A tool call that could not be done; its message goes back to the model as the result."""


def _context(runtime: ToolRuntime) -> TurnContext:
    ctx = runtime.context
    if not isinstance(ctx, TurnContext):
        raise ToolFailure("This tool runs only inside an assistant turn.")
    return ctx


def _require_role(ctx: TurnContext, name: str) -> None:
    allowed = ALLOWED_ROLES.get(name)
    if allowed is not None and not (ctx.roles & allowed):
        raise ToolFailure(f"{name} is only for the roles {', '.join(sorted(allowed))}; this user has none of them.")


def _cap(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n… [cut: {len(text):,} characters in all]"


class SearchArgs(BaseModel):
    collection: str = Field(description="The document collection to search (its exact name).")
    query: str = Field(description="What to look for, in words.", max_length=2000)
    k: int = Field(default=5, ge=1, le=10, description="How many passages to return (1-10).")


@tool("search_documents", args_schema=SearchArgs)
def search_documents(collection: str, query: str, runtime: ToolRuntime, k: int = 5) -> str:
    """Search a document collection, as Chat does; returns numbered passages [n] with document and page. Cite
    them in the answer as [n]."""
    ctx = _context(runtime)
    services = ctx.services
    try:
        found = services.retriever.search(collection, query, services.retrieval(k=k))
    except CollectionError as exc:
        names = ", ".join(c.name for c in list_collections(services.engine)) or "none"
        raise ToolFailure(f"{exc} The collections are: {names}.") from None
    with ctx.lock:  # numbered across the turn, so [n] means one passage in the final answer
        first = len(ctx.sources) + 1
        numbered = [s.__class__(**{**s.to_dict(), "number": first + i}) for i, s in enumerate(found)]
        ctx.sources.extend(numbered)
    if not numbered:
        return f"No passages in {collection!r} match {query!r}."
    return _cap(format_context(numbered))


class QueryArgs(BaseModel):
    sql: str = Field(description="One read-only SELECT over the usage views.", max_length=5000)


USAGE_DOC = (
    "Run one read-only SQL SELECT over the call-log views and get columns and rows (at most "
    f"{ROW_CAP}). Views: {', '.join(VIEWS)}. usage_calls: one row per model call: id, created_at (UTC), "
    "request_id, session_id, user_name, feature, provider, model, template_name, template_version, experiment_id, "
    "variant, prompt_tokens, completion_tokens, cached_tokens, cost_usd (NULL = no price), saved_usd, latency_ms, "
    "ttft_ms, status (ok, error, aborted, cached, blocked, invalid), error_type, attempts, run_id, step, "
    "pipeline_name, pipeline_version. usage_tool_calls: id, created_at, turn_id, step, tool, status, decision, "
    "result_chars, latency_ms, user_name. No prompt or answer text is readable."
)


@tool("query_usage", args_schema=QueryArgs, description=USAGE_DOC)
def query_usage(sql: str, runtime: ToolRuntime) -> str:
    ctx = _context(runtime)
    _require_role(ctx, "query_usage")
    engine = ctx.services.engine
    try:
        result = run_query(engine, sql)
    except QueryRefused as exc:
        raise ToolFailure(f"{exc} (SQL dialect: {dialect_of(engine)})") from None
    out = result.to_dict()
    with ctx.lock:
        ctx.tables.append(out)
    return _cap(json.dumps(out, default=str))


class TemplateArgs(BaseModel):
    name: str = Field(description="The saved template's name.")
    variables: dict[str, str] = Field(default_factory=dict, description="Values for the template's variables.")


@tool("run_template", args_schema=TemplateArgs)
def run_template(name: str, runtime: ToolRuntime, variables: dict[str, str] | None = None) -> str:
    """Run a saved prompt template (the version labelled production) with the given variables; returns its answer."""
    ctx = _context(runtime)
    _require_role(ctx, "run_template")
    services = ctx.services
    try:
        version = load_prompt(services.templates, name)
    except TemplateNotFound:
        names = ", ".join(services.templates.names()[:30]) or "none"
        raise ToolFailure(f"No template {name!r} has a production version. Templates: {names}.") from None
    step = int(runtime.state.get("thread_model_call_count", 0))
    call = CallContext(feature="prompts", user=ctx.user, run_id=ctx.turn_id, step=f"{step}:run_template")
    try:
        run = run_prompt_template(services.gateway, version.template, variables or {}, call, version=version.version)
    except (TemplateError, ValueError) as exc:
        raise ToolFailure(f"The template could not be filled in: {exc}") from None
    except GatewayError as exc:
        raise ToolFailure(f"The template's model call failed: {exc}") from None
    with ctx.lock:  # counted for the cost cap like the turn's own model calls
        ctx.spent_usd += sum(c.cost_usd or 0.0 for c in run.calls)
    if run.result.status not in ("ok", "cached"):
        raise ToolFailure(f"The template's model call ended {run.result.status}: {run.result.error}")
    return _cap(run.result.text)


class CalculatorArgs(BaseModel):
    expression: str = Field(description="Arithmetic: numbers, + - * / // % ** ( ), abs, round, min, max, sqrt, log.")


@tool("calculator", args_schema=CalculatorArgs)
def calculator(expression: str) -> str:
    """Compute an arithmetic expression exactly (no variables, no code)."""
    try:
        value = calculate(expression)
    except CalculatorError as exc:
        raise ToolFailure(str(exc)) from None
    return repr(round(value, 10)) if isinstance(value, float) else str(value)


@tool("today")
def today() -> str:
    """Today's date and time in UTC, with the weekday."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%d} ({now:%A}), {now:%H:%M} UTC"


def all_tools() -> list[BaseTool]:
    """Every tool of the registry, in the order the Settings page lists them."""
    return [search_documents, query_usage, run_template, calculator, today]


def tool_names() -> tuple[str, ...]:
    """The registry's tool names."""
    return tuple(t.name for t in all_tools())


def preview(text: Any, limit: int = 300) -> str:
    """The first `limit` characters of a result, for the timeline."""
    s = text if isinstance(text, str) else json.dumps(text, default=str)
    return s if len(s) <= limit else s[:limit] + "…"
