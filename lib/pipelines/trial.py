"""Before a run: try one row step by step (each step's prompt, output, tokens and cost), and estimate a run's cost
by running the first few rows and extrapolating with the price table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib.gateway.client import CallContext
from lib.pipelines.conditions import parse_condition
from lib.pipelines.definition import GateStep, Pipeline
from lib.pipelines.inputs import check_rows, resolve_templates
from lib.pipelines.runs import RunDeps, RunError, offline_refusal
from lib.pipelines.steps import FEATURE, StepOutcome, flat_values, run_prompt_step

DEFAULT_SAMPLE = 3
MAX_SAMPLE = 10


@dataclass
class StepTrace:
    """One step of a tried row, as the author sees it."""

    step: str
    kind: str  # prompt or gate
    status: str  # ok, skipped, failed, passed, review (a gate that would stop the row)
    messages: list[tuple[str, str]] = field(default_factory=list)
    output: dict[str, Any] | None = None
    answers: list[str] = field(default_factory=list)
    error: str | None = None
    model: str | None = None
    attempts: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    latency_ms: float = 0.0


@dataclass
class RowTrace:
    """A tried row: every step in order, and the row's totals."""

    steps: list[StepTrace]
    values: dict[str, Any]

    @property
    def cost_usd(self) -> float | None:
        """Total cost (None when a call had no price)."""
        costs = [s.cost_usd for s in self.steps]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def tokens(self) -> int:
        """Total tokens."""
        return sum(s.tokens for s in self.steps)

    @property
    def failed(self) -> bool:
        """True when a step failed (the row would stop there)."""
        return any(s.status == "failed" for s in self.steps)


@dataclass
class CostEstimate:
    """What a run will cost, extrapolated from its first rows."""

    sample_rows: int
    sample_cost_usd: float | None
    per_row_usd: float | None  # None: a model has no price
    total_rows: int
    estimated_usd: float | None
    traces: list[RowTrace]
    note: str = ""


def _trace(outcome: StepOutcome, kind: str = "prompt") -> StepTrace:
    return StepTrace(
        outcome.step,
        kind,
        outcome.status,
        outcome.messages,
        outcome.output,
        outcome.answers,
        outcome.error,
        outcome.model,
        outcome.attempts,
        outcome.tokens,
        outcome.cost_usd,
        outcome.latency_ms,
    )


def try_row(deps: RunDeps, pipeline: Pipeline, row: Mapping[str, Any], user: str | None) -> RowTrace:
    """Run every step of one row now (a gate that matches is shown as `review` and the row goes on as approved).

    Calls are logged with feature `pipeline`, the pipeline's name and version (None for an unsaved draft), and
    metadata trial. RunError when no model can follow a step's schema; MissingColumns when the row lacks a field.
    """
    resolved = resolve_templates(pipeline, deps.templates)
    check_rows(resolved, [row])
    refusal = offline_refusal(deps.gateway, resolved)
    if refusal:
        raise RunError(refusal)
    base = CallContext(
        feature=FEATURE,
        user=user,
        pipeline_name=pipeline.name,
        pipeline_version=pipeline.version,
        metadata={"trial": True},
    )
    outputs: dict[str, dict[str, Any] | None] = {}
    traces: list[StepTrace] = []
    for step in pipeline.steps:
        values = flat_values(pipeline, row, outputs)
        if isinstance(step, GateStep):
            matched = parse_condition(step.rule).evaluate(values)
            traces.append(StepTrace(step.name, "gate", "review" if matched else "passed"))
            outputs[step.name] = {"decision": "approved (trial)" if matched else "passed", "decided_by": None}
            continue
        if step.condition and not parse_condition(step.condition).evaluate(values):
            traces.append(StepTrace(step.name, "prompt", "skipped"))
            outputs[step.name] = None
            continue
        outcome = run_prompt_step(deps.gateway, step, resolved.templates[step.name], values, base)
        traces.append(_trace(outcome))
        if outcome.status == "failed":
            break
        outputs[step.name] = outcome.output
    return RowTrace(traces, flat_values(pipeline, row, outputs))


def estimate_cost(
    deps: RunDeps,
    pipeline: Pipeline,
    rows: Sequence[Mapping[str, Any]],
    user: str | None,
    sample: int = DEFAULT_SAMPLE,
) -> CostEstimate:
    """Run the first `sample` rows (at most 10) and extrapolate their mean cost to every row."""
    if not rows:
        raise RunError("There are no rows to estimate.")
    resolved = resolve_templates(pipeline, deps.templates)
    check_rows(resolved, rows)
    n = max(1, min(sample, MAX_SAMPLE, len(rows)))
    traces = [try_row(deps, pipeline, row, user) for row in rows[:n]]
    costs = [t.cost_usd for t in traces]
    if any(c is None for c in costs):
        return CostEstimate(
            n, None, None, len(rows), None, traces, "A model has no price: the cost cannot be estimated."
        )
    total = sum(c or 0.0 for c in costs)
    per_row = total / n
    note = f"From {n} row(s); rows with other branches or retries may cost more or less."
    return CostEstimate(n, total, per_row, len(rows), per_row * len(rows), traces, note)
