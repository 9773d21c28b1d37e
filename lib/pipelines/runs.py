"""Pipeline runs on the job queue: one job item per row; every (run, row, step) result is stored once.

A row's item walks the steps in order, skipping those whose result is stored, so a run resumed after a restart
(or a row delivered twice) never repeats a completed step. A call that would cross the run's hard budget is not
made: the run pauses (paused_budget) and its queued rows wait until the author raises the budget and resumes.
A gate whose rule matches stops the row in the review queue (lib.pipelines.review); a decision puts it back.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    DateTime,
    Engine,
    Exists,
    Table,
    bindparam,
    case,
    exists,
    func,
    insert,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from lib.core import spans
from lib.core.tables import JobItem, LlmCall, PipelineReview, PipelineRow, PipelineRun, PipelineStepResult, utcnow
from lib.gateway.client import CallContext, Gateway
from lib.jobs import items
from lib.jobs.commits import group_commit
from lib.jobs.items import ItemContext
from lib.jobs.limits import ProviderLimiter, provider_of
from lib.jobs.queue import WorkQueue
from lib.pipelines.conditions import parse_condition
from lib.pipelines.definition import GateStep, Pipeline, PipelineError
from lib.pipelines.inputs import ResolvedPipeline, check_rows, pinned_templates, resolve_pinned, resolve_templates
from lib.pipelines.steps import FEATURE, StepOutcome, flat_values, run_prompt_step, step_model
from lib.prompts.store import TemplateStore

KIND = "pipeline"  # job items of pipeline runs: one per input row (position = row index)
ROW_STATES = ("pending", "completed", "failed", "review", "rejected")
# Runs whose rows may run: a run waiting for review still runs the rows a reviewer sent on (and its budget holds for
# them); a row of a run in any other state ends cancelled
ACTIVE_RUN = ("queued", "running", "waiting_review")
OFFLINE_REFUSAL = (
    "No model is configured, and the offline answerer cannot answer in JSON, so step {step!r} (which has an output "
    "schema) would fail on every row. Set OPENAI_API_KEY or add an OpenAI-compatible provider (see the README)."
)


class RunError(PipelineError):
    """A run cannot be started, resumed, cancelled or retried as asked; the message says why."""


class BudgetPaused(Exception):
    """A call would cross the run's hard budget (or the run was paused meanwhile): the row stops before making it."""

    def __init__(self, message: str, amount: float = 0.0) -> None:
        super().__init__(message)
        self.amount = amount


@dataclass
class RunDeps:
    """What runs need: the gateway for calls, the template store, the queue, and the provider limits."""

    gateway: Gateway
    templates: TemplateStore
    queue: WorkQueue | None = None
    limiter: ProviderLimiter | None = None

    @property
    def engine(self) -> Engine:
        """The database."""
        return self.gateway.engine


@dataclass
class RunStatus:
    """Where a run stands, from the database (so every process shows the same)."""

    id: int
    pipeline_name: str
    pipeline_version: int
    state: str  # queued, running, paused_budget, waiting_review, completed, failed, cancelled
    total: int
    rows: dict[str, int]  # row state -> count (pending, completed, failed, review, rejected)
    steps: dict[str, dict[str, int]]  # step -> result status -> count (ok, skipped, passed, approved, …)
    failed_at: dict[str, int]  # step -> rows failed there
    cost_usd: float  # every call of the run so far (from the call log)
    unpriced_calls: int
    budget_usd: float | None
    waiting_review: int
    note: str | None
    created_by: str | None
    created_at: Any
    finished_at: Any
    source: str = ""

    @property
    def done(self) -> int:
        """Rows that reached an end (completed, failed or rejected)."""
        return sum(self.rows.get(s, 0) for s in ("completed", "failed", "rejected"))

    @property
    def label(self) -> str:
        """The state as a person reads it, e.g. `waiting for review (3)`."""
        if self.state == "waiting_review":
            return f"waiting for review ({self.waiting_review})"
        if self.state == "paused_budget":
            return f"paused: budget ${self.budget_usd or 0:.4f} reached"
        if self.state == "running" and self.waiting_review:
            return f"running, {self.waiting_review} waiting for review"
        if self.state == "failed":
            return f"finished, {self.rows.get('failed', 0)} row(s) failed"
        return self.state.replace("_", " ")

    @property
    def finished(self) -> bool:
        """No row will move again without a person (completed, failed, cancelled)."""
        return self.state in ("completed", "failed", "cancelled")


@dataclass
class RowResult:
    """One row of a run: its input, each step's stored output, the gates' decisions, where it stands."""

    position: int
    status: str
    step: str | None
    error: str | None
    input: dict[str, Any]
    outputs: dict[str, dict[str, Any] | None]
    step_status: dict[str, str]
    decisions: dict[str, dict[str, Any]]  # gate -> decision, decided_by, decided_at, reason
    values: dict[str, Any]  # input + step.field, edits applied (what the export writes)
    cost_usd: float | None = 0.0
    tokens: int = 0


@dataclass
class RunInfo:
    """A run's stored settings."""

    id: int
    pipeline: Pipeline
    pinned: dict[str, int]
    status: str
    budget_usd: float | None
    concurrency: int | None
    created_by: str | None
    extra: dict[str, Any] = field(default_factory=dict)


# ---- starting ---------------------------------------------------------------------------------------------------


def offline_refusal(gateway: Gateway, resolved: ResolvedPipeline) -> str | None:
    """Why the pipeline cannot run on the offline answerer (a step with a schema would), or None."""
    for step in resolved.pipeline.prompt_steps():
        if step.output_schema is None:
            continue
        model = step_model(gateway, step, resolved.templates[step.name])
        try:
            provider, _ = gateway.resolve(model)
        except Exception as exc:  # an unknown provider: say so rather than failing every row
            return f"Step {step.name!r} uses model {model!r}, which is not configured: {exc}"
        if provider.kind == "offline":
            return OFFLINE_REFUSAL.format(step=step.name)
    return None


def runnable_problem(deps: RunDeps, pipeline: Pipeline) -> str | None:
    """Why the pipeline cannot run here (a template missing, a bad reference, no model that follows a schema), or None.

    For a page's banner: checked without starting anything.
    """
    try:
        resolved = resolve_templates(pipeline, deps.templates)
    except PipelineError as exc:
        return str(exc)
    return offline_refusal(deps.gateway, resolved)


def unpriced_models(gateway: Gateway, resolved: ResolvedPipeline) -> list[str]:
    """Models of the pipeline with no known price (a hard budget cannot be kept on them)."""
    models = {step_model(gateway, s, resolved.templates[s.name]) for s in resolved.pipeline.prompt_steps()}
    return sorted(m for m in models if gateway.price_of(m) is None)


def start_run(
    deps: RunDeps,
    pipeline: Pipeline,
    rows: Sequence[Mapping[str, Any]],
    user: str | None,
    *,
    budget_usd: float | None = None,
    concurrency: int | None = None,
    source: str = "",
) -> int:
    """Check, record and queue a run of a saved pipeline version over `rows`; returns the run id.

    RunError/MissingColumns/PipelineError (nothing is stored) when the pipeline is unsaved, a template is missing,
    a column is missing, no model can follow its schema, or a budget is asked on a model without a price.
    """
    if deps.queue is None:
        raise RunError("Runs go on the job queue, and none is set up here.")
    if pipeline.version is None:
        raise RunError("Save the pipeline first: a run always runs a saved version.")
    if budget_usd is not None and not budget_usd > 0:
        raise RunError("A budget must be more than $0.")
    if concurrency is not None and not 1 <= concurrency <= 64:
        raise RunError("Rows at a time must be from 1 to 64.")
    resolved = resolve_templates(pipeline, deps.templates)
    check_rows(resolved, rows)
    refusal = offline_refusal(deps.gateway, resolved)
    if refusal:
        raise RunError(refusal)
    if budget_usd is not None and (unpriced := unpriced_models(deps.gateway, resolved)):
        raise RunError(
            f"No price is known for {', '.join(unpriced)}, so a budget cannot be kept. Add a price on the Usage page "
            "(admins) or run without a budget."
        )
    engine = deps.engine
    with Session(engine) as s, s.begin():
        run = PipelineRun(
            pipeline_name=pipeline.name,
            pipeline_version=pipeline.version,
            definition={"pipeline": pipeline.to_dict(), "templates": pinned_templates(resolved)},
            status="queued",
            total_rows=len(rows),
            budget_usd=budget_usd,
            concurrency=concurrency,
            source=source[:255],
            created_by=user,
            created_at=utcnow(),
        )
        s.add(run)
        s.flush()
        run_id = run.id
        now = utcnow()
        s.execute(
            insert(PipelineRow),
            [
                {"run_id": run_id, "position": i, "data": dict(r), "status": "pending", "updated_at": now}
                for i, r in enumerate(rows)
            ],
        )
    ids = items.add_items(engine, KIND, run_id, [(i, f"row {i + 1}", {}) for i in range(len(rows))])
    deps.queue.enqueue(KIND, ids)
    return run_id


# ---- the queue's task -----------------------------------------------------------------------------------------

_resolved: OrderedDict[tuple[int, int, int], ResolvedPipeline] = OrderedDict()
_resolved_lock = threading.Lock()


_definitions: OrderedDict[tuple[Any, ...], tuple[Pipeline, dict[str, int]]] = OrderedDict()


_RUN_SETTINGS = select(  # built once: load_run runs for every row (SQLAlchemy caches the SQL, not the building)
    PipelineRun.status,
    PipelineRun.budget_usd,
    PipelineRun.concurrency,
    PipelineRun.created_by,
    PipelineRun.pipeline_name,
    PipelineRun.pipeline_version,
    PipelineRun.created_at,
).where(PipelineRun.id == bindparam("b_run"))


def load_run(engine: Engine, run_id: int) -> RunInfo:
    """A run's settings; RunError when it does not exist (its steps are parsed once per process: they never change)."""
    with engine.connect() as s:  # plain rows, no ORM session: this runs once per row of every run
        row = s.execute(_RUN_SETTINGS, {"b_run": run_id}).one_or_none()
        if row is None:
            raise RunError(f"Run #{run_id} does not exist.")
        key = (str(engine.url), id(engine), run_id, row.pipeline_name, row.pipeline_version, str(row.created_at))
        with _resolved_lock:
            known = _definitions.get(key)
        if known is None:
            definition = s.scalar(select(PipelineRun.definition).where(PipelineRun.id == run_id)) or {}
            known = (
                Pipeline.from_dict(row.pipeline_name, definition["pipeline"], row.pipeline_version),
                dict(definition.get("templates") or {}),
            )
            with _resolved_lock:
                _definitions[key] = known
                while len(_definitions) > 64:
                    _definitions.popitem(last=False)
    return RunInfo(run_id, known[0], known[1], row.status, row.budget_usd, row.concurrency, row.created_by)


def resolved_run(deps: RunDeps, run: RunInfo) -> ResolvedPipeline:
    """The run's pipeline with its pinned template versions (kept per process: versions never change)."""
    key = (id(deps.engine), id(run.pipeline), run.id)  # the pipeline object is the one cached by load_run
    with _resolved_lock:
        hit = _resolved.get(key)
        if hit is not None:
            _resolved.move_to_end(key)
            return hit
    resolved = resolve_pinned(run.pipeline, deps.templates, run.pinned)
    with _resolved_lock:
        _resolved[key] = resolved
        while len(_resolved) > 64:
            _resolved.popitem(last=False)
    return resolved


def _rowcount(result: Any) -> int:
    """Rows an UPDATE changed."""
    return cast(CursorResult, result).rowcount


_statements: dict[tuple[str, Any], Any] = {}  # built once per dialect: SQLAlchemy caches the SQL, not the building


def _insert_ignore(engine: Engine, table: Any) -> Any:
    key = (engine.dialect.name, table)
    found = _statements.get(key)
    if found is None:
        insert_of = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        found = _statements[key] = insert_of(table).on_conflict_do_nothing()
    return found


# A row's state after a step, as one statement with parameters (built once; store_step runs for every row and step)
_ROW_UPDATE = (
    update(PipelineRow)
    .where(PipelineRow.run_id == bindparam("w_run"), PipelineRow.position == bindparam("w_position"))
    .values(
        status=bindparam("w_status"),
        step=bindparam("w_step"),
        error=bindparam("w_error"),
        updated_at=bindparam("w_updated_at"),
    )
)


def store_step(
    engine: Engine,
    run_id: int,
    position: int,
    outcome: StepOutcome,
    row_status: str | None = None,
    row_step: str | None = None,
    row_error: str | None = None,
    *,
    decided_by: str | None = None,
    reason: str | None = None,
) -> None:
    """Store one step's result (once: a second delivery of the same row keeps the first) and the row's state.

    Committed before it returns (shared with other rows' results finishing at the same moment: lib.jobs.commits).
    """
    values = {
        "run_id": run_id,
        "position": position,
        "step": outcome.step,
        "status": outcome.status,
        "output": outcome.output,
        "attempts": outcome.attempts,
        "tokens": outcome.tokens,
        "cost_usd": outcome.cost_usd,
        "latency_ms": outcome.latency_ms,
        "request_ids": outcome.request_ids,
        "decided_by": decided_by,
        "reason": reason,
        "created_at": utcnow(),
    }
    row_update = {
        "w_run": run_id,
        "w_position": position,
        "w_status": row_status,
        "w_step": row_step,
        "w_error": row_error,
        "w_updated_at": utcnow(),
    }

    def work(s: Connection) -> None:
        if outcome.status != "failed":
            s.execute(_insert_ignore(engine, PipelineStepResult), values)
        if row_status is not None:
            s.execute(_ROW_UPDATE, row_update)

    group_commit(engine).run(work)


class _Budget:
    """The run's hard budget, kept in its row so every worker shares it: a call reserves its predicted cost.

    A call that does not fit while other calls of the run are in flight waits for them to settle (their actual cost
    is usually below the prediction) and tries again; it pauses the run only when it cannot fit with nothing in
    flight (or after SETTLE_WAIT_S, should a dead worker have left a reservation behind).
    """

    SETTLE_WAIT_S = 120.0

    def __init__(
        self, engine: Engine, run_id: int, budget: float | None, cancelled: Callable[[], bool] = lambda: False
    ):
        self.engine, self.run_id, self.budget, self.cancelled = engine, run_id, budget, cancelled
        self._wait = threading.Event()  # never set: waits need no sleep

    def _take(self, amount: float) -> tuple[bool, float, str | None]:
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(PipelineRun)
                .where(
                    PipelineRun.id == self.run_id,
                    PipelineRun.status.in_(ACTIVE_RUN),
                    PipelineRun.budget_usd.is_not(None),
                    PipelineRun.spent_usd + PipelineRun.reserved_usd + amount <= PipelineRun.budget_usd,
                )
                .values(reserved_usd=PipelineRun.reserved_usd + amount)
            ).rowcount
            if taken == 1:
                return True, 0.0, None
            reserved, status = conn.execute(
                select(PipelineRun.reserved_usd, PipelineRun.status).where(PipelineRun.id == self.run_id)
            ).one()
        return False, float(reserved or 0.0), status

    def reserve(self, predicted: float | None) -> None:
        if self.budget is None:
            return
        amount = predicted or 0.0
        deadline, step = time.monotonic() + self.SETTLE_WAIT_S, 0.01
        while True:
            taken, in_flight, status = self._take(amount)
            if taken:
                return
            if status not in ACTIVE_RUN or in_flight <= 1e-12 or time.monotonic() > deadline:
                raise BudgetPaused(f"the next call (up to ${amount:.4f}) would cross the budget", amount)
            self.cancelled()  # raises Cancelled when the row was cancelled meanwhile
            self._wait.wait(step)
            step = min(step * 2, 0.2)

    def settle(self, predicted: float | None, actual: float | None) -> None:
        if self.budget is None:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(PipelineRun)
                .where(PipelineRun.id == self.run_id)
                .values(
                    reserved_usd=func.max(PipelineRun.reserved_usd - (predicted or 0.0), 0.0)
                    if self.engine.dialect.name == "sqlite"
                    else func.greatest(PipelineRun.reserved_usd - (predicted or 0.0), 0.0),
                    spent_usd=PipelineRun.spent_usd + (actual if actual is not None else predicted or 0.0),
                )
            )


def pause_for_budget(engine: Engine, run_id: int, why: str, held: tuple[int, str], amount: float = 0.0) -> bool:
    """A row found its next call does not fit: pause the run (its queued rows wait) if the call still does not fit,
    and end the row's own item as cancelled if the run is not active; False when the run is active and the call fits
    now (a resume raised the budget meanwhile): the row tries the call again.

    One transaction, whose first statement writes: it and `resume_run` (which also starts by writing the run's row)
    run one after the other (SQLite's write lock; on PostgreSQL the run's row lock, taken FOR UPDATE below). So the
    row's item is cancelled before a resume, which then queues it again, or not at all; never cancelled after a resume
    that passed it over (the run would wait for that row forever). `held` is (item id, worker).
    """
    runs, items_t = cast(Table, PipelineRun.__table__), cast(Table, JobItem.__table__)
    with engine.begin() as conn:
        paused = conn.execute(
            update(runs)
            .where(
                runs.c.id == run_id,
                runs.c.status.in_(ACTIVE_RUN),
                runs.c.budget_usd.is_not(None),
                runs.c.spent_usd + runs.c.reserved_usd + amount > runs.c.budget_usd,
            )
            .values(status="paused_budget", note=f"Paused before a call: {why}. Raise the budget and resume.")
        ).rowcount
        if paused:
            conn.execute(
                update(items_t)
                .where(items_t.c.kind == KIND, items_t.c.job_id == run_id, items_t.c.status == "queued")
                .values(status="cancelled", error="paused: budget", finished_at=utcnow())
            )
        stopped = select(runs.c.id).where(runs.c.id == run_id, runs.c.status.not_in(ACTIVE_RUN)).with_for_update()
        ended = conn.execute(
            update(items_t)
            .where(
                items_t.c.id == held[0],
                items_t.c.worker == held[1],
                items_t.c.status == "running",
                stopped.exists(),
            )
            .values(status="cancelled", error="paused: budget", finished_at=utcnow())
        ).rowcount
    return ended == 1


def run_row_item(deps: RunDeps, ctx: ItemContext) -> tuple[str, str | None] | None:
    """The queue's task for one row: run each step not yet stored, in order, until the row ends or waits at a gate."""
    # one trace per row (tracing on): its steps and their gateway calls
    with spans.span("pipeline.row", run_id=str(ctx.item.job_id), row=ctx.item.position) as row_span:
        try:
            ended = _run_row_item(deps, ctx)
        except items.Cancelled:
            raise
        except Exception as exc:  # the item fails (WorkQueue.run_item); its row fails with it, in its end's transaction
            ctx.at_end.append(partial(_row_failed, ctx.item.job_id, ctx.item.position, items.describe_error(exc)))
            raise
        row_span.set_attribute(spans.STATUS, ended[0] if ended else "ok")
        return ended


def _row_failed(run_id: int, position: int, error: str, conn: Connection) -> None:
    """A row whose item failed outside its steps (a template deleted, the database away) fails too, unless it got
    further: left pending, it would keep its run from ever settling."""
    conn.execute(
        update(PipelineRow)
        .where(PipelineRow.run_id == run_id, PipelineRow.position == position, PipelineRow.status == "pending")
        .values(status="failed", error=error, updated_at=utcnow())
    )


def _run_row_item(deps: RunDeps, ctx: ItemContext) -> tuple[str, str | None] | None:
    engine, run_id, position = deps.engine, ctx.item.job_id, ctx.item.position
    run = load_run(engine, run_id)
    if run.status not in ACTIVE_RUN:
        return "cancelled", f"run {run.status}"
    if run.status == "queued":
        with engine.begin() as conn:
            conn.execute(
                update(PipelineRun)
                .where(PipelineRun.id == run_id, PipelineRun.status == "queued")
                .values(status="running")
            )
    if run.concurrency:
        key = f"pipeline-run-{run_id}"
        cap = ProviderLimiter(engine, {key: {"concurrency": run.concurrency}})
        with cap.slot(key, cancelled=ctx.cancelled):
            return _run_row(deps, ctx, run, position)
    return _run_row(deps, ctx, run, position)


# A row's input and its stored steps, in statements built once (SQLAlchemy caches the SQL, not the building)
_ROW_INPUT = select(PipelineRow.data, PipelineRow.status).where(
    PipelineRow.run_id == bindparam("b_run"), PipelineRow.position == bindparam("b_position")
)
_ROW_STEPS = select(PipelineStepResult.step, PipelineStepResult.status, PipelineStepResult.output).where(
    PipelineStepResult.run_id == bindparam("b_run"), PipelineStepResult.position == bindparam("b_position")
)


def _run_row(deps: RunDeps, ctx: ItemContext, run: RunInfo, position: int) -> tuple[str, str | None] | None:
    engine, run_id, started = deps.engine, run.id, time.monotonic()
    resolved = resolved_run(deps, run)
    pipeline = resolved.pipeline
    with engine.connect() as conn:  # plain rows, no ORM objects: this runs once per row of every run
        where = {"b_run": run_id, "b_position": position}
        row = conn.execute(_ROW_INPUT, where).one_or_none()
        if row is None:
            return "failed", "This row is not stored."
        data, row_status = dict(row.data), row.status
        stored = {r.step: r for r in conn.execute(_ROW_STEPS, where)}
    if row_status in ("completed", "rejected"):
        return None
    outputs: dict[str, dict[str, Any] | None] = {}
    budget = _Budget(engine, run_id, run.budget_usd, ctx.cancelled)
    base = CallContext(
        feature=FEATURE,
        user=run.created_by,
        run_id=str(run_id),
        pipeline_name=pipeline.name,
        pipeline_version=pipeline.version,
        metadata={"row": position},
        hold=ctx.calling,  # a worker's call slot, only while a request is at the provider
    )
    last = len(pipeline.steps) - 1
    for index, step in enumerate(pipeline.steps):
        done = stored.get(step.name)
        if done is not None:
            if done.status == "rejected":
                return None
            outputs[step.name] = done.output
            continue
        if time.monotonic() - started > items.REPORT_EVERY_S:  # a long row notices a cancel between its steps
            ctx.check()
        values = flat_values(pipeline, data, outputs)
        final = "completed" if index == last else None
        if isinstance(step, GateStep):
            if not parse_condition(step.rule).evaluate(values):
                outcome = StepOutcome(step.name, "passed", {"decision": "passed", "decided_by": None})
                store_step(engine, run_id, position, outcome, final)
                outputs[step.name] = outcome.output
                continue
            ctx.at_end.append(partial(_send_to_review, engine, run_id, position, pipeline, step))
            return None
        if step.condition and not parse_condition(step.condition).evaluate(values):
            outcome = StepOutcome(step.name, "skipped", None)
        else:
            try:
                with spans.span("pipeline.step", step=step.name):
                    outcome = run_prompt_step(
                        deps.gateway,
                        step,
                        resolved.templates[step.name],
                        values,
                        base,
                        reserve=budget.reserve,
                        settle=budget.settle,
                        slot=_slot(deps, ctx),
                    )
            except BudgetPaused as exc:
                if pause_for_budget(engine, run_id, str(exc), (ctx.item.id, ctx.worker), exc.amount):
                    return "cancelled", "paused: budget"
                return _run_row(deps, ctx, run, position)  # resumed meanwhile: go on from the stored steps
        if outcome.status == "failed":
            store_step(engine, run_id, position, outcome, "failed", step.name, outcome.error)
            return "failed", f"step {step.name}: {outcome.error}"
        store_step(engine, run_id, position, outcome, final)
        outputs[step.name] = outcome.output
    if all(s.name in stored for s in pipeline.steps):  # every step was stored before (a decision, a redelivery)
        set_row_status(engine, run_id, position, "completed")
    return None


def set_row_status(engine: Engine, run_id: int, position: int, status: str, step: str | None = None) -> None:
    """Record where a row stands."""
    with engine.begin() as conn:
        conn.execute(
            update(PipelineRow)
            .where(PipelineRow.run_id == run_id, PipelineRow.position == position)
            .values(status=status, step=step, error=None, updated_at=utcnow())
        )


def _slot(deps: RunDeps, ctx: ItemContext):
    """Around each model call of a row: one of its provider's slots (WORKBENCH_PROVIDER_LIMITS), if limited."""
    limiter = deps.limiter
    if limiter is None:
        return None

    @contextmanager
    def slot(model: str) -> Iterator[None]:
        with limiter.slot(provider_of(model), cancelled=ctx.cancelled):
            yield

    return slot


def _send_to_review(
    engine: Engine, run_id: int, position: int, pipeline: Pipeline, gate: GateStep, conn: Connection
) -> None:
    """In the transaction of the row's item's end (ItemContext.at_end): its review, and the row waiting for it.

    So a reviewer can only decide a row whose item has ended: a decision puts the ended item back on the queue, and
    one taken while the item was still ending found nothing to put back (the row then stayed pending for good).
    """
    now = utcnow()
    due = now + timedelta(seconds=gate.timeout_s) if gate.timeout_s else None
    conn.execute(
        _insert_ignore(engine, PipelineReview),
        {
            "run_id": run_id,
            "position": position,
            "step": gate.name,
            "pipeline_name": pipeline.name,
            "status": "waiting",
            "due_at": due,
            "created_at": now,
        },
    )
    conn.execute(
        update(PipelineRow)
        .where(PipelineRow.run_id == run_id, PipelineRow.position == position)
        .values(status="review", step=gate.name, error=None, updated_at=now)
    )


_ACTIVE_ITEM = (  # one is enough (a count would read them all), in a statement built once
    select(JobItem.id)
    .where(JobItem.kind == KIND, JobItem.job_id == bindparam("b_run"), JobItem.status.in_(items.ACTIVE))
    .limit(1)
)


def settle_run(engine: Engine, run_id: int) -> None:
    """Record a run's state once none of its rows is queued or running: waiting_review, failed or completed.

    The state is worked out and written by one UPDATE, whose conditions (no active item, no pending row) hold when it
    writes: counted first and written after, a settle could record "waiting_review" from counts read just before a
    reviewer sent a row on, and the run would then show a review while that row ran.
    """
    with engine.connect() as conn:  # plain rows: settle_run runs after every row
        if conn.scalar(_ACTIVE_ITEM, {"b_run": run_id}):
            return
    with engine.begin() as conn:
        conn.execute(_SETTLE, {"b_run": run_id, "b_now": utcnow()})


def _rows_in(status: str) -> Exists:
    return exists().where(PipelineRow.run_id == bindparam("b_run"), PipelineRow.status == status)


_SETTLE = (  # built once; "pending": a decision just put a row back, and its item is queued again
    update(PipelineRun)
    .where(
        PipelineRun.id == bindparam("b_run"),
        PipelineRun.status.in_(ACTIVE_RUN),  # paused or cancelled: a person moves it on
        items.none_active(KIND, bindparam("b_run")),
        ~_rows_in("pending"),
    )
    .values(
        status=case((_rows_in("review"), "waiting_review"), (_rows_in("failed"), "failed"), else_="completed"),
        finished_at=case((_rows_in("review"), null()), else_=bindparam("b_now", type_=DateTime(timezone=True))),
    )
)


# ---- watching and steering -----------------------------------------------------------------------------------


def run_status(engine: Engine, run_id: int) -> RunStatus:
    """State, row and step counts, and the cost so far of a run."""
    with Session(engine) as s:
        run = s.get(PipelineRun, run_id)
        if run is None:
            raise RunError(f"Run #{run_id} does not exist.")
        rows = dict(
            s.execute(
                select(PipelineRow.status, func.count())
                .where(PipelineRow.run_id == run_id)
                .group_by(PipelineRow.status)
            )
            .tuples()
            .all()
        )
        failed_at = dict(
            s.execute(
                select(PipelineRow.step, func.count())
                .where(PipelineRow.run_id == run_id, PipelineRow.status == "failed")
                .group_by(PipelineRow.step)
            )
            .tuples()
            .all()
        )
        steps: dict[str, dict[str, int]] = {}
        for name, result_status, n in s.execute(
            select(PipelineStepResult.step, PipelineStepResult.status, func.count())
            .where(PipelineStepResult.run_id == run_id)
            .group_by(PipelineStepResult.step, PipelineStepResult.status)
        ).tuples():
            steps.setdefault(name, {})[result_status] = n
        for failed_step, n in failed_at.items():
            if failed_step:
                steps.setdefault(failed_step, {})["failed"] = n
        cost, unpriced = s.execute(
            select(
                func.coalesce(func.sum(LlmCall.cost_usd), 0.0), func.count(LlmCall.id) - func.count(LlmCall.cost_usd)
            ).where(LlmCall.run_id == str(run_id), LlmCall.feature == FEATURE)
        ).one()
        return RunStatus(
            run.id,
            run.pipeline_name,
            run.pipeline_version,
            run.status,
            run.total_rows,
            {k: rows.get(k, 0) for k in ROW_STATES},
            steps,
            {k: v for k, v in failed_at.items() if k},
            float(cost or 0.0),
            int(unpriced or 0),
            run.budget_usd,
            rows.get("review", 0),
            run.note,
            run.created_by,
            run.created_at,
            run.finished_at,
            run.source,
        )


def list_runs(engine: Engine, pipeline_name: str | None = None, limit: int = 50) -> list[RunStatus]:
    """Recent runs, newest first (optionally of one pipeline)."""
    query = select(PipelineRun.id).order_by(PipelineRun.id.desc()).limit(limit)
    if pipeline_name:
        query = query.where(PipelineRun.pipeline_name == pipeline_name)
    with Session(engine) as s:
        ids = list(s.scalars(query))
    return [run_status(engine, i) for i in ids]


def _enqueue_rows(
    engine: Engine, queue: WorkQueue, run_id: int, positions: Sequence[int] | None, statuses: Sequence[str]
) -> int:
    """Put the items of these rows (all when None) back on the queue, if they are in `statuses`; returns how many."""
    with Session(engine) as s, s.begin():
        ids = _requeue_items(s, run_id, statuses, None if positions is None else list(positions))
    if ids:
        queue.enqueue(KIND, ids)
    return len(ids)


def _requeue_items(s: Session, run_id: int, statuses: Sequence[str], positions: Any = None) -> list[int]:
    """In `s`'s transaction: mark the run's items in `statuses` (at `positions`, a list or a SELECT of them, or all)
    queued again; returns their ids, for the queue once the transaction is committed."""
    query = select(JobItem.id).where(JobItem.kind == KIND, JobItem.job_id == run_id, JobItem.status.in_(list(statuses)))
    if positions is not None:
        query = query.where(JobItem.position.in_(positions))
    ids = list(s.scalars(query))
    if ids:
        s.execute(
            update(JobItem)
            .where(JobItem.id.in_(ids))
            .values(status="queued", cancel_requested=False, error=None, enqueued_at=utcnow(), finished_at=None)
        )
    return ids


def cancel_run(engine: Engine, run_id: int) -> None:
    """Cancel a run: queued rows never start, reviews leave the queue; a row in hand finishes its current step (and,
    when it has run longer than half a second, stops before its next one)."""
    with Session(engine) as s, s.begin():
        s.execute(
            update(PipelineRun)
            .where(PipelineRun.id == run_id, PipelineRun.status.not_in(("completed", "failed", "cancelled")))
            .values(status="cancelled", finished_at=utcnow())
        )
        s.execute(
            update(PipelineReview)
            .where(PipelineReview.run_id == run_id, PipelineReview.status == "waiting")
            .values(status="cancelled")
        )
    items.cancel(engine, KIND, run_id)


def resume_run(deps: RunDeps, run_id: int, raise_budget_to: float | None = None) -> int:
    """Resume a run paused by its budget (raising the budget first, if given); returns the rows queued again.

    One transaction that starts by writing the run's row, so it and a row stopping for the budget
    (`pause_for_budget`) happen one after the other: every item of a pending row is either still running (its row
    goes on under the resumed run) or ended, and then queued again here.
    """
    if deps.queue is None:
        raise RunError("Runs go on the job queue, and none is set up here.")
    engine = deps.engine
    with Session(engine) as s:
        run = s.get(PipelineRun, run_id)
        if run is None:
            raise RunError(f"Run #{run_id} does not exist.")
        if run.status != "paused_budget":
            raise RunError(f"Run #{run_id} is {run.status.replace('_', ' ')}, not paused; there is nothing to resume.")
        if raise_budget_to is not None and raise_budget_to <= (run.budget_usd or 0):
            raise RunError(f"The new budget must be above the current ${run.budget_usd or 0:.4f}.")
    values: dict[str, Any] = {"status": "running", "note": None}
    if raise_budget_to is not None:
        values["budget_usd"] = raise_budget_to
    with Session(engine) as s, s.begin():
        resumed = _rowcount(
            s.execute(
                update(PipelineRun)
                .where(PipelineRun.id == run_id, PipelineRun.status == "paused_budget")
                .values(values)
            )
        )
        if not resumed:
            raise RunError(f"Run #{run_id} is no longer paused; there is nothing to resume.")
        in_hand = s.scalar(
            select(func.count()).where(JobItem.kind == KIND, JobItem.job_id == run_id, JobItem.status == "running")
        )
        if not in_hand:  # a reservation left by a worker that died mid-call would otherwise hold budget forever
            s.execute(update(PipelineRun).where(PipelineRun.id == run_id).values(reserved_usd=0.0))
        pending = select(PipelineRow.position).where(PipelineRow.run_id == run_id, PipelineRow.status == "pending")
        ids = _requeue_items(s, run_id, ("cancelled", "failed", "done"), pending)
    if ids:
        deps.queue.enqueue(KIND, ids)
    return len(ids)


def retry_failed(deps: RunDeps, run_id: int) -> int:
    """Run the failed rows again from the step they failed at (completed steps are kept); returns how many."""
    if deps.queue is None:
        raise RunError("Runs go on the job queue, and none is set up here.")
    engine = deps.engine
    with Session(engine) as s, s.begin():
        run = s.get(PipelineRun, run_id)
        if run is None:
            raise RunError(f"Run #{run_id} does not exist.")
        if run.status in ("paused_budget", "cancelled"):
            raise RunError(f"Run #{run_id} is {run.status.replace('_', ' ')}; resume it instead.")
        failed = list(
            s.scalars(select(PipelineRow.position).where(PipelineRow.run_id == run_id, PipelineRow.status == "failed"))
        )
        if not failed:
            raise RunError(f"Run #{run_id} has no failed rows.")
        s.execute(
            update(PipelineRow)
            .where(PipelineRow.run_id == run_id, PipelineRow.position.in_(failed))
            .values(status="pending", error=None, step=None, updated_at=utcnow())
        )
        run.status, run.finished_at = "running", None
    return _enqueue_rows(engine, deps.queue, run_id, failed, ("failed", "done", "cancelled"))


def results(engine: Engine, run_id: int, positions: Sequence[int] | None = None) -> list[RowResult]:
    """Every row (or those at `positions`) with its stored step outputs and decisions, in input order."""
    run = load_run(engine, run_id)
    pipeline = run.pipeline
    with Session(engine) as s:
        query = select(PipelineRow).where(PipelineRow.run_id == run_id).order_by(PipelineRow.position)
        rquery = select(PipelineStepResult).where(PipelineStepResult.run_id == run_id)
        if positions is not None:
            query = query.where(PipelineRow.position.in_(list(positions)))
            rquery = rquery.where(PipelineStepResult.position.in_(list(positions)))
        rows = list(s.scalars(query))
        by_row: dict[int, list[PipelineStepResult]] = {}
        for r in s.scalars(rquery):
            by_row.setdefault(r.position, []).append(r)
        reviews = {
            (r.position, r.step): r for r in s.scalars(select(PipelineReview).where(PipelineReview.run_id == run_id))
        }
    out = []
    for row in rows:
        stored = {r.step: r for r in by_row.get(row.position, [])}
        outputs = {name: r.output for name, r in stored.items()}
        decisions = {}
        for gate in pipeline.gates():
            review = reviews.get((row.position, gate.name))
            if review is not None:
                decisions[gate.name] = {
                    "decision": review.status,
                    "decided_by": review.decided_by,
                    "decided_at": review.decided_at,
                    "reason": review.reason,
                }
        costs = [r.cost_usd for r in stored.values()]
        out.append(
            RowResult(
                row.position,
                row.status,
                row.step,
                row.error,
                dict(row.data),
                outputs,
                {name: r.status for name, r in stored.items()},
                decisions,
                flat_values(pipeline, row.data, outputs),
                None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
                sum(r.tokens for r in stored.values()),
            )
        )
    return out
