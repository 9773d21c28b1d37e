"""The Pipelines page without Streamlit: the definition editor's text, row sources, previews, run panels, costs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lib.core.tables import LlmCall, PipelineRow
from lib.pipelines.definition import Pipeline, PipelineError
from lib.pipelines.inputs import ResolvedPipeline, read_rows, resolve_templates
from lib.pipelines.runs import RunDeps, RunStatus, load_run, results, runnable_problem
from lib.pipelines.steps import FEATURE
from lib.pipelines.store import PipelineStore
from lib.pipelines.trial import CostEstimate, RowTrace
from lib.prompts.language import template_variables
from lib.prompts.store import TemplateStore

NEW = "(new pipeline)"
TABS = ["Build", "Try and run", "Runs and results", "Cost"]
SOURCES = ("Upload a CSV or JSONL file", "A test set", "Type rows")
MAX_DEFINITION_CHARS = 200_000
OFFLINE_GENERAL = (
    "No model is configured: the offline answerer cannot answer in JSON, so pipelines whose steps have an output "
    "schema need a model. Set OPENAI_API_KEY or add an OpenAI-compatible provider (see the README)."
)


class NothingToRun(Exception):
    """No saved pipeline is chosen yet (said as information, not as an error)."""


def starter_text(template_names: Sequence[str]) -> str:
    """A two-step definition to start from: a prompt step with a schema, then a review gate that edits it."""
    template = template_names[0] if template_names else "my.template"
    steps = [
        {
            "kind": "prompt",
            "name": "classify",
            "template": template,
            "template_ref": "production",
            "model": None,
            "output_schema": {
                "type": "object",
                "properties": {"label": {"type": "string"}, "confidence": {"type": "number"}},
                "required": ["label", "confidence"],
            },
            "condition": None,
            "max_attempts": 3,
        },
        {
            "kind": "gate",
            "name": "check",
            "rule": "classify.confidence < 0.7",
            "edits_step": "classify",
            "timeout_s": None,
            "timeout_decision": "reject",
        },
    ]
    return json.dumps({"description": "", "steps": steps}, indent=2)


def templates_line(templates: TemplateStore, limit: int = 30) -> str:
    """The templates a step may run, each with the variables of its newest version (a name the row or an earlier
    step must supply), e.g. `desk.reply (ticket, classify.label)`."""
    names = templates.names()
    parts = [f"{n} ({', '.join(template_variables(templates.latest(n).template)) or 'no variables'})" for n in names]
    more = f", and {len(names) - limit} more" if len(names) > limit else ""
    return "Templates: " + ("; ".join(parts[:limit]) + more if parts else "none yet (write one on the Prompts page)")


def definition_text(pipeline: Pipeline) -> str:
    """A stored version as the editor shows it."""
    return json.dumps(pipeline.to_dict(), indent=2, ensure_ascii=False)


def parse_definition(name: str, text: str) -> Pipeline:
    """The pipeline the editor's JSON describes, validated; PipelineError naming the line or the step otherwise."""
    if len(text) > MAX_DEFINITION_CHARS:
        raise PipelineError(f"The definition is {len(text):,} characters; the limit is {MAX_DEFINITION_CHARS:,}.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"The definition is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from exc
    pipeline = Pipeline.from_dict(name.strip(), data)
    pipeline.validate()
    return pipeline


def save_definition(deps: RunDeps, store: PipelineStore, name: str, text: str, user: str, note: str) -> tuple[int, str]:
    """Check the editor's pipeline (templates included) and save it as a new version: (version, what to say)."""
    pipeline = parse_definition(name, text)
    resolve_templates(pipeline, deps.templates)  # a missing template or variable is an error before saving
    before = {p.version for p in store.history(pipeline.name)} if pipeline.name in store.names() else set()
    version = store.save(pipeline, user, note)
    if version in before:
        return version, f"Nothing changed since v{version}, so no version was saved."
    return version, f"Saved {pipeline.name} v{version}. Labels did not move unless this is the first version."


def version_label(pipeline: Pipeline, labels: Mapping[str, int]) -> str:
    """`v3 · production, staging` for the version picker."""
    names = [label for label, v in sorted(labels.items()) if v == pipeline.version]
    return f"v{pipeline.version}" + (f" · {', '.join(names)}" if names else "")


def offline_message(deps: RunDeps, pipeline: Pipeline | None) -> str | None:
    """Why the chosen pipeline cannot run here (a missing template, no model for a step with a schema), or the
    general note when offline and none is chosen."""
    if pipeline is None:
        return OFFLINE_GENERAL if deps.gateway.settings.default_model.startswith("offline/") else None
    return runnable_problem(deps, pipeline)


def rows_from_editor(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows typed in the editor, blank rows dropped, every cell as text."""
    rows = []
    for record in frame.to_dict("records"):
        row = {str(k): "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) for k, v in record.items()}
        if any(v.strip() for v in row.values()):
            rows.append(row)
    if not rows:
        raise NothingToRun("Type at least one row in the table.")
    return rows


def rows_from_upload(data: bytes | None, filename: str) -> list[dict[str, Any]]:
    """Rows of an uploaded file; InputError when none is chosen or it cannot be read."""
    if data is None:
        raise NothingToRun("Choose a .csv or .jsonl file with one row per item (a header row first in a CSV).")
    return read_rows(data, filename)


def editor_frame(resolved: ResolvedPipeline) -> pd.DataFrame:
    """An empty table with the columns the pipeline reads, for typing rows."""
    return pd.DataFrame({c: pd.Series(dtype="string") for c in resolved.columns()})


def text_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records as a table of text cells (objects as JSON), for st.dataframe."""
    return pd.DataFrame([{k: _cell(v) for k, v in r.items()} for r in records]).astype(str)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def money(value: float | None) -> str:
    """A cost as shown: `$0.00123`, or `unpriced` (never a silent $0)."""
    return "unpriced" if value is None else f"${value:.5f}"


def trace_table(trace: RowTrace) -> list[dict[str, Any]]:
    """One line per step of a tried row: status, model, attempts, tokens, cost, latency."""
    return [
        {
            "step": s.step,
            "kind": s.kind,
            "status": s.status,
            "model": s.model or "",
            "attempts": s.attempts,
            "tokens": s.tokens,
            "cost": money(s.cost_usd),
            "ms": round(s.latency_ms),
        }
        for s in trace.steps
    ]


def prompt_text(messages: Sequence[tuple[str, str]]) -> str:
    """The prompt as sent, role by role, for a code block."""
    return "\n\n".join(f"[{role}]\n{text}" for role, text in messages)


def estimate_line(est: CostEstimate) -> str:
    """What the estimate says, e.g. `About $0.0123 for 20 rows ($0.00062 a row, from 3 rows)`."""
    if est.estimated_usd is None:
        return f"No estimate: {est.note}"
    return (
        f"About ${est.estimated_usd:.4f} for {est.total_rows} rows (${est.per_row_usd or 0:.5f} a row, "
        f"from {est.sample_rows} tried). {est.note}"
    )


@dataclass(frozen=True)
class RunPanel:
    """A run's progress line, per-step counts and the buttons it offers."""

    fraction: float
    text: str
    steps: list[dict[str, Any]]
    active: bool  # the page keeps polling
    cancel: bool
    retry: bool
    resume: bool


def run_panel(status: RunStatus, step_names: Sequence[str]) -> RunPanel:
    """The panel of a run from its status (read from the database by any process)."""
    rows = ", ".join(f"{n} {k}" for k, n in status.rows.items() if n)
    text = f"Run #{status.id} · {status.label} · {status.done}/{status.total} rows done ({rows}) · {money(status.cost_usd)}"
    if status.unpriced_calls:
        text += f" · {status.unpriced_calls} unpriced call(s)"
    if status.budget_usd is not None:
        text += f" · budget ${status.budget_usd:.4f}"
    kinds = ("ok", "skipped", "passed", "approved", "edited", "rejected", "failed")
    steps = [{"step": n, **{k: status.steps.get(n, {}).get(k, 0) for k in kinds}} for n in step_names]
    active = status.state in ("queued", "running")
    return RunPanel(
        status.done / max(status.total, 1),
        text,
        steps,
        active or status.state == "waiting_review",
        active or status.state in ("paused_budget", "waiting_review"),
        status.rows.get("failed", 0) > 0 and status.state not in ("paused_budget", "cancelled"),
        status.state == "paused_budget",
    )


def run_title(status: RunStatus) -> str:
    """`#12 · v3 · completed · 20 rows` for the run picker."""
    return f"#{status.id} · v{status.pipeline_version} · {status.label} · {status.total} rows"


PAGE_ROWS = 100
ROW_FILTERS = ("all", "completed", "failed", "review", "rejected", "pending")


def result_positions(engine: Engine, run_id: int, status: str = "all") -> list[int]:
    """Positions of a run's rows (in input order), optionally only those in one state."""
    query = select(PipelineRow.position).where(PipelineRow.run_id == run_id).order_by(PipelineRow.position)
    if status != "all":
        query = query.where(PipelineRow.status == status)
    with Session(engine) as s:
        return list(s.scalars(query))


def results_frame(engine: Engine, run_id: int, positions: Sequence[int]) -> pd.DataFrame:
    """Those rows of a run as the export writes them (inputs, `step.field` outputs, each gate's decision with who,
    when and why), cells as text; reads only those rows, so a page of a 20,000-row run stays quick."""
    pipeline = load_run(engine, run_id).pipeline
    rows = results(engine, run_id, list(positions))
    inputs: dict[str, None] = {}
    for r in rows:
        inputs.update(dict.fromkeys(r.input))
    gate_cols = [f"{g.name}.{k}" for g in pipeline.gates() for k in ("decided_at", "reason")]
    columns = ["row", "status", "step", "error", *inputs, *pipeline.output_columns(), *gate_cols]
    records = []
    for r in rows:
        record = {"row": r.position + 1, "status": r.status, "step": r.step, "error": r.error, **r.values}
        for gate, d in r.decisions.items():
            record[f"{gate}.decided_by"] = d["decided_by"]
            record[f"{gate}.decided_at"] = f"{d['decided_at']:%Y-%m-%d %H:%M:%S}" if d["decided_at"] else None
            record[f"{gate}.reason"] = d["reason"]
        records.append({c: _cell(record.get(c)) for c in columns})
    return pd.DataFrame(records, columns=columns)


def cost_by_step(engine: Engine, pipeline_name: str) -> pd.DataFrame:
    """Cost, tokens and calls per version and step of a pipeline, from the call log (feature `pipeline`)."""
    query = (
        select(
            LlmCall.pipeline_version,
            LlmCall.step,
            func.count(LlmCall.id),
            func.coalesce(func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens), 0),
            func.coalesce(func.sum(LlmCall.cost_usd), 0.0),
            func.count(LlmCall.id) - func.count(LlmCall.cost_usd),
        )
        .where(LlmCall.feature == FEATURE, LlmCall.pipeline_name == pipeline_name)
        .group_by(LlmCall.pipeline_version, LlmCall.step)
        .order_by(LlmCall.pipeline_version.desc(), LlmCall.step)
    )
    with Session(engine) as s:
        records = [
            {
                "version": "draft" if v is None else f"v{v}",
                "step": step or "",
                "calls": calls,
                "tokens": int(tokens),
                "cost": f"${float(cost or 0.0):.5f}",
                "unpriced calls": unpriced,
            }
            for v, step, calls, tokens, cost, unpriced in s.execute(query).tuples()
        ]
    return pd.DataFrame(records, columns=["version", "step", "calls", "tokens", "cost", "unpriced calls"])
