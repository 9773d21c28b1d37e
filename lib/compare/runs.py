"""Compare A/B: run two variants (template version + model) side by side or over a test set, check, vote.

Batch runs go on the job queue (lib.jobs), one item per test case and side (A and B in flight at once), so any
worker runs them and a killed worker's items run again without duplicating a stored answer; `execute_run` still runs a whole run in this process.
Batch and side-by-side calls use the feature "compare.run", which the response cache does not serve:
A and B must really be called so their cost and latency are measured. The judge uses "compare", which
is cached, so judging the same pair again costs nothing.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, delete, exists, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from lib.compare.test_sets import Case, load_case, load_cases
from lib.core import spans
from lib.core.tables import CompareRun, CompareVote, JobItem, RunResult, TestCase, utcnow
from lib.gateway.client import CallContext, Gateway
from lib.gateway.errors import GatewayError
from lib.jobs import items
from lib.jobs.commits import group_commit
from lib.jobs.items import Cancelled, ItemContext
from lib.jobs.limits import ProviderLimiter, provider_of
from lib.jobs.queue import WorkQueue
from lib.prompts.language import Template, TemplateError
from lib.prompts.runs import build_messages, run_template
from lib.prompts.store import PRODUCTION, TemplateStore

log = logging.getLogger(__name__)
RUN_FEATURE, JUDGE_FEATURE = "compare.run", "compare"
VERDICTS = {"A": "A better", "B": "B better", "tie": "Tie", "both_bad": "Both bad"}
DEFAULT_CONCURRENCY = 8  # calls in flight in a batch run unless the author picks another number
RESULTS_FLUSH_S, RESULTS_FLUSH_ROWS = 0.1, 32  # a batch run stores answers this often, or this many at once


class CompareError(ValueError):
    """A comparison cannot be set up or saved as asked; the message says how to fix it."""


@dataclass(frozen=True)
class Variant:
    """One side of a comparison: a saved template version and the model to run it on (None: its own)."""

    version: int
    model: str | None = None

    def label(self) -> str:
        """Short name, e.g. `v2 · openai/gpt-4o-mini`."""
        return f"v{self.version}" + (f" · {self.model}" if self.model else "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored with runs and votes."""
        return {"version": self.version, "model": self.model}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        """The inverse of as_dict."""
        return cls(int(data["version"]), data.get("model"))


@dataclass(frozen=True)
class Checks:
    """Automatic checks of each answer; unset ones are skipped."""

    regex: str | None = None
    min_chars: int | None = None
    max_chars: int | None = None
    judge_model: str | None = None  # an LLM judge compares A and B pairwise when set

    def validate(self) -> None:
        """CompareError when a check cannot work."""
        if self.regex:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise CompareError(f"The regular expression is not valid: {exc}.") from exc
        if self.min_chars and self.max_chars and self.min_chars > self.max_chars:
            raise CompareError(f"The minimum length ({self.min_chars}) is above the maximum ({self.max_chars}).")


@dataclass
class VariantAnswer:
    """What one variant answered to one input."""

    text: str = ""
    status: str = "ok"  # ok, invalid, error
    error: str | None = None
    request_id: str | None = None
    tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)


@dataclass
class RunProgress:
    """How far a batch run got."""

    total: int
    done: int = 0
    failed: int = 0
    cancelled: bool = False


def check_answer(outcome: VariantAnswer, expected: str | None, checks: Checks, has_schema: bool) -> dict[str, bool]:
    """Pass/fail of each applicable check for one answer."""
    text, answered = outcome.text, outcome.status != "error"
    out: dict[str, bool] = {}
    if expected:
        out["contains expected"] = answered and expected.strip().casefold() in text.casefold()
    if has_schema:
        out["valid JSON"] = outcome.status == "ok"
    if checks.regex:
        out["regex"] = answered and re.search(checks.regex, text) is not None
    if checks.min_chars is not None or checks.max_chars is not None:
        n = len(text)
        out["length"] = answered and (checks.min_chars or 0) <= n <= (checks.max_chars or n)
    return out


def run_variant(
    gateway: Gateway, template: Template, values: dict[str, Any], variant: Variant, ctx: CallContext
) -> VariantAnswer:
    """Run one variant on one input; failures come back as a VariantAnswer with status error, never raised."""
    try:
        run = run_template(gateway, template, values, ctx, variant.version, variant.model)
    except (GatewayError, TemplateError) as exc:
        return VariantAnswer(status="error", error=str(exc), request_id=getattr(exc, "request_id", None))
    r = run.result
    return VariantAnswer(
        r.text,
        "ok" if run.valid else "invalid",
        run.problem,
        r.request_id,
        sum(c.prompt_tokens + c.completion_tokens for c in run.calls),
        _total(c.cost_usd for c in run.calls),
        sum(c.latency_ms or 0 for c in run.calls),
    )


def stream_pair(
    gateway: Gateway,
    templates: dict[str, Template],
    variants: dict[str, Variant],
    values: dict[str, Any],
    user: str | None,
    sides: tuple[str, ...] = ("A", "B"),
) -> Iterator[tuple[str, str | None, VariantAnswer | None]]:
    """Run A and B (or only `sides`) at once; yields (side, text piece, None) as text arrives, then (side, None,
    outcome)."""
    events: queue.Queue = queue.Queue()

    def work(side: str) -> None:
        template, variant = templates[side], variants[side]
        ctx = CallContext(
            feature=RUN_FEATURE, user=user, template_name=template.name, template_version=variant.version, variant=side
        )
        try:
            if template.json_schema is not None:  # structured output is validated whole, so not streamed
                outcome = run_variant(gateway, template, values, variant, ctx)
                events.put((side, outcome.text, None))
            else:
                stream = gateway.stream(
                    build_messages(template, values), variant.model or template.model, ctx, **template.params()
                )
                for piece in stream:
                    events.put((side, piece, None))
                r = stream.result
                assert r is not None  # a stream iterated to its end holds its result
                outcome = VariantAnswer(
                    r.text, "ok", None, r.request_id, r.prompt_tokens + r.completion_tokens, r.cost_usd, r.latency_ms
                )
        except (GatewayError, TemplateError) as exc:
            outcome = VariantAnswer(status="error", error=str(exc), request_id=getattr(exc, "request_id", None))
        events.put((side, None, outcome))

    threads = [threading.Thread(target=work, args=(side,), daemon=True) for side in sides]
    for t in threads:
        t.start()
    finished = 0
    while finished < len(sides):
        side, piece, outcome = events.get()
        finished += outcome is not None
        yield side, piece, outcome


def start_run(
    engine: Engine, template_name: str, test_set_id: int, a: Variant, b: Variant, checks: Checks, user: str | None
) -> int:
    """Record a new batch run (status running) and return its id."""
    checks.validate()
    if not load_cases(engine, test_set_id):
        raise CompareError("That test set has no cases yet. Add some on the Test sets tab.")
    with Session(engine) as s, s.begin():
        run = CompareRun(
            test_set_id=test_set_id,
            template_name=template_name,
            variant_a=a.as_dict(),
            variant_b=b.as_dict(),
            checks=checks.__dict__.copy(),
            status="running",
            created_by=user,
        )
        s.add(run)
        s.flush()
        return run.id


def execute_run(
    gateway: Gateway,
    store: TemplateStore,
    run_id: int,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    cancel: threading.Event | None = None,
    progress: Callable[[RunProgress], None] | None = None,
) -> RunProgress:
    """Run A and B over every case not yet answered, at most `concurrency` calls at a time.

    A failing row is stored as a failure and the run goes on; setting `cancel` stops new calls
    (calls in flight finish and are stored). Rows already stored are skipped, so a run can be resumed.
    """
    engine, cancel = gateway.engine, cancel or threading.Event()
    with Session(engine) as s:
        run = s.get(CompareRun, run_id)
        if run is None:
            raise CompareError("That run no longer exists.")
        name, checks = run.template_name, Checks(**run.checks)
        variants = {"A": Variant.from_dict(run.variant_a), "B": Variant.from_dict(run.variant_b)}
        done = set(s.execute(select(RunResult.case_id, RunResult.variant).where(RunResult.run_id == run_id)).all())
        user, set_id = run.created_by, run.test_set_id
    templates = {side: store.get_version(name, v.version).template for side, v in variants.items()}
    cases = load_cases(engine, set_id) if set_id is not None else []
    tasks = [(case, side) for case in cases for side in ("A", "B") if (case.id, side) not in done]
    state = RunProgress(total=len(tasks))

    def one(case: Case, side: str) -> VariantAnswer:
        ctx = CallContext(
            feature=RUN_FEATURE,
            user=user,
            template_name=name,
            experiment_id=f"run:{run_id}",
            variant=side,
            metadata={"case_id": case.id},
            deferred_log=True,
        )
        with spans.span("compare.item", run_id=str(run_id), case_id=case.id, variant=side) as current:
            outcome = run_variant(gateway, templates[side], case.values, variants[side], ctx)
            outcome.checks = check_answer(outcome, case.expected, checks, templates[side].json_schema is not None)
            current.set_attribute(spans.STATUS, outcome.status)
        return outcome

    # `concurrency` workers each take the next task as soon as their call has answered, so never more than
    # `concurrency` calls are in flight and no worker waits on the database: the gateway commits the
    # call-log rows in the background (deferred_log), and this thread stores the answers, many rows a
    # transaction, each only once the call-log rows of its calls are committed, and reports progress.
    Finished = tuple[Case, str, VariantAnswer] | BaseException | None  # a task's answer, a failure, a worker's end
    todo, take, finished = iter(tasks), threading.Lock(), queue.SimpleQueue[Finished]()
    stop = threading.Event()  # a worker failed unexpectedly: the others stop too

    def work() -> None:
        try:
            while not (cancel.is_set() or stop.is_set()):
                with take:
                    task = next(todo, None)
                if task is None:
                    break
                finished.put((*task, one(*task)))
        except BaseException as exc:
            stop.set()
            finished.put(exc)
        finally:
            finished.put(None)

    workers = [
        threading.Thread(target=work, name=f"compare-{run_id}-{i}", daemon=True)
        for i in range(max(1, min(concurrency, len(tasks))))
    ]
    for w in workers:
        w.start()
    batch: list[tuple[Case, str, VariantAnswer]] = []
    running, flush_at, failure = len(workers), 0.0, None

    def flush() -> None:
        gateway.flush_log()  # an answer is never stored before its call-log row
        _store_results(engine, run_id, batch)
        state.done += len(batch)
        state.failed += sum(o.status == "error" for _, _, o in batch)
        batch.clear()
        if progress:
            progress(state)

    try:
        while running:
            try:
                item = finished.get(timeout=max(0.0, flush_at - time.monotonic()) if batch else None)
            except queue.Empty:
                flush()
                continue
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                failure = failure or item
            else:
                batch.append(item)
                if len(batch) == 1:
                    flush_at = time.monotonic() + RESULTS_FLUSH_S
                if len(batch) >= max(RESULTS_FLUSH_ROWS, concurrency):
                    flush()
        if batch:
            flush()
        gateway.flush_log()
    except BaseException:  # the answers could not be stored: stop the workers, calls in flight finish
        stop.set()
        raise
    if failure is not None:
        raise failure
    state.cancelled = cancel.is_set() and state.done < state.total
    if checks.judge_model and not state.cancelled:
        judge_run(gateway, run_id, checks.judge_model, concurrency=concurrency, cancel=cancel)
    with Session(engine) as s, s.begin():
        s.execute(
            update(CompareRun)
            .where(CompareRun.id == run_id)
            .values(status="cancelled" if state.cancelled else "done", finished_at=utcnow())
        )
    return state


def _store_results(
    engine: Engine, run_id: int, batch: list[tuple[Case, str, VariantAnswer]], skip_existing: bool = False
) -> None:
    """Insert answers in one transaction (one executemany: no ORM unit of work per row).

    `skip_existing`: a row already stored (by another delivery of the same queued case) is kept, not duplicated.
    """
    with engine.begin() as conn:
        _insert_results(conn, engine.dialect.name, run_id, batch, skip_existing)


# Core statements on the table, built once: through a Session an ORM-entity insert takes the bulk-persistence path
# (~0.1 ms more per item of a queued run)
_INSERT_RESULTS = insert(cast(Table, RunResult.__table__))
_INSERT_NEW_RESULTS = {
    pg: (pg_insert if pg else sqlite_insert)(cast(Table, RunResult.__table__)).on_conflict_do_nothing()
    for pg in (False, True)
}


def _insert_results(
    conn: Any, dialect: str, run_id: int, batch: list[tuple[Case, str, VariantAnswer]], skip_existing: bool
) -> None:
    """`_store_results` in the caller's transaction (a Connection or Session)."""
    conn.execute(
        (_INSERT_NEW_RESULTS[dialect == "postgresql"] if skip_existing else _INSERT_RESULTS),
        [
            {
                "run_id": run_id,
                "case_id": case.id,
                "variant": side,
                "text": o.text,
                "status": o.status,
                "error": o.error,
                "request_id": o.request_id,
                "tokens": o.tokens,
                "cost_usd": o.cost_usd,
                "latency_ms": o.latency_ms,
                "checks": o.checks,
            }
            for case, side, o in batch
        ],
    )


JUDGE_SYSTEM = (
    "You compare two answers to the same request. Judge correctness first, then helpfulness "
    "and brevity. Reply with exactly one word: 1, 2 or tie."
)


def _judge_once(gateway: Gateway, model: str, request: str, first: str, second: str, user: str | None) -> str | None:
    prompt = f"Request:\n{request}\n\nAnswer 1:\n{first}\n\nAnswer 2:\n{second}\n\nWhich answer is better?"
    result = gateway.invoke(
        [("system", JUDGE_SYSTEM), ("user", prompt)],
        model,
        CallContext(feature=JUDGE_FEATURE, user=user),
        temperature=0,
    )
    word = result.text.strip().strip(".*").lower().split()
    return word[0] if word and word[0] in ("1", "2", "tie") else None


def judge_pair(
    gateway: Gateway, model: str, request: str, answer_a: str, answer_b: str, user: str | None = None
) -> str:
    """A, B or tie: the judge is asked twice with the order swapped; a win counts only when both agree."""
    first = {"1": "A", "2": "B", "tie": "tie"}.get(_judge_once(gateway, model, request, answer_a, answer_b, user) or "")
    second = {"1": "B", "2": "A", "tie": "tie"}.get(
        _judge_once(gateway, model, request, answer_b, answer_a, user) or ""
    )
    return first if first == second and first in ("A", "B") else "tie"


def judge_run(
    gateway: Gateway, run_id: int, model: str, *, concurrency: int = 4, cancel: threading.Event | None = None
) -> int:
    """Judge every case where both answered and the judge has not yet; returns how many were judged."""
    engine, cancel = gateway.engine, cancel or threading.Event()
    judged = {r["case_id"] for r in run_rows(engine, run_id) if r["judge"]}
    rows = [
        r
        for r in run_rows(engine, run_id)
        if r["case_id"] not in judged
        and r["A"]
        and r["B"]
        and r["A"]["status"] != "error"
        and r["B"]["status"] != "error"
    ]
    run = get_run(engine, run_id)

    def one(row: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        if cancel.is_set():
            return row, None
        request = "\n".join(f"{k}: {v}" for k, v in row["values"].items())
        try:
            return row, judge_pair(gateway, model, request, row["A"]["text"], row["B"]["text"], run["created_by"])
        except GatewayError:
            return row, None  # an unjudged row stays unjudged; the people's votes still count

    count = 0
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for row, verdict in pool.map(one, rows):
            if verdict is not None:
                record_row_vote(engine, run, row, verdict, voter="judge", case_id=row["case_id"])
                count += 1
    return count


def record_vote(
    engine: Engine,
    template_name: str,
    a: Variant,
    b: Variant,
    inputs: dict[str, Any],
    answer_a: str | None,
    answer_b: str | None,
    verdict: str,
    *,
    voter: str = "human",
    user: str | None = None,
    comment: str | None = None,
    run_id: int | None = None,
    case_id: int | None = None,
    blind: bool = False,
) -> None:
    """Store a verdict with both variants and the input; a person's new vote on a run row replaces their old one."""
    if verdict not in VERDICTS:
        raise CompareError(f"A vote is one of {', '.join(VERDICTS.values())}.")
    with Session(engine) as s, s.begin():
        if run_id is not None:
            s.execute(
                delete(CompareVote).where(
                    CompareVote.run_id == run_id,
                    CompareVote.case_id == case_id,
                    CompareVote.voter == voter,
                    CompareVote.user == user,
                )
            )
        s.add(
            CompareVote(
                run_id=run_id,
                case_id=case_id,
                template_name=template_name,
                variant_a=a.as_dict(),
                variant_b=b.as_dict(),
                inputs=dict(inputs),
                answer_a=answer_a,
                answer_b=answer_b,
                verdict=verdict,
                voter=voter,
                blind=blind,
                comment=(comment or "").strip() or None,
                user=user,
            )
        )


def record_row_vote(engine: Engine, run: Mapping[str, Any], row: Mapping[str, Any], verdict: str, **how: Any) -> None:
    """`record_vote` on one row of a batch run (`run` from get_run, `row` from run_rows): its variants, inputs and
    answers; `how` is voter, user, case_id, blind."""
    answer_a, answer_b = ((row[side] or {}).get("text") for side in ("A", "B"))
    record_vote(
        engine,
        run["template_name"],
        run["A"],
        run["B"],
        row["values"],
        answer_a,
        answer_b,
        verdict,
        run_id=run["id"],
        **how,
    )


def blind_swapped(run_id: int, case_id: int, user: str | None) -> bool:
    """Whether blind review shows B first for this row and reviewer (random-looking but stable)."""
    return hashlib.sha256(f"{run_id}:{case_id}:{user}".encode()).digest()[0] % 2 == 1


def list_runs(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Stored runs, newest first."""
    with Session(engine) as s:
        rows = s.scalars(select(CompareRun).order_by(CompareRun.id.desc()).limit(limit))
        return [_run_dict(r) for r in rows]


def get_run(engine: Engine, run_id: int) -> dict[str, Any]:
    """One run's settings and status."""
    with Session(engine) as s:
        run = s.get(CompareRun, run_id)
        if run is None:
            raise CompareError("That run no longer exists.")
        return _run_dict(run)


def _run_dict(r: CompareRun) -> dict[str, Any]:
    a, b = Variant.from_dict(r.variant_a), Variant.from_dict(r.variant_b)
    return {
        "id": r.id,
        "template_name": r.template_name,
        "A": a,
        "B": b,
        "test_set_id": r.test_set_id,
        "status": r.status,
        "created_by": r.created_by,
        "created_at": r.created_at,
        "checks": r.checks,
        "title": f"#{r.id} {r.template_name}: A {a.label()} vs B {b.label()} ({r.status})",
    }


def run_rows(engine: Engine, run_id: int, user: str | None = None) -> list[dict[str, Any]]:
    """Per case: inputs, expected, A's and B's outcome, the judge's verdict and `user`'s own vote."""
    run = get_run(engine, run_id)
    cases = load_cases(engine, run["test_set_id"]) if run["test_set_id"] is not None else []
    with Session(engine) as s:
        stored = s.scalars(select(RunResult).where(RunResult.run_id == run_id))
        results: dict[tuple[int | None, str], RunResult] = {(r.case_id, r.variant): r for r in stored}
        votes = list(s.scalars(select(CompareVote).where(CompareVote.run_id == run_id)))
    judge = {v.case_id: v.verdict for v in votes if v.voter == "judge"}
    mine = {v.case_id: v.verdict for v in votes if v.voter == "human" and v.user == user}
    out = []
    for case in cases:
        row: dict[str, Any] = {
            "case_id": case.id,
            "values": case.values,
            "expected": case.expected,
            "judge": judge.get(case.id),
            "vote": mine.get(case.id),
        }
        for side in ("A", "B"):
            r = results.get((case.id, side))
            row[side] = (
                None
                if r is None
                else {
                    "text": r.text,
                    "status": r.status,
                    "error": r.error,
                    "tokens": r.tokens,
                    "cost_usd": r.cost_usd,
                    "latency_ms": r.latency_ms,
                    "checks": r.checks,
                }
            )
        out.append(row)
    return out


def promote(store: TemplateStore, template_name: str, a: Variant, b: Variant, user: str | None) -> int:
    """Point the production label at B's version; returns it. CompareError when that changes nothing."""
    if a.version == b.version:
        raise CompareError(
            f"A and B are both v{b.version}: they differ only in model, which is not part of a "
            "label. Save a version of the template with that model, then promote it."
        )
    store.move_label(
        template_name, PRODUCTION, b.version, user, f"Promoted from Compare: B {b.label()} beat A {a.label()}"
    )
    return b.version


def _total(values) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


KIND = "compare"  # job items of batch runs: one per case and side, or one per case when a judge compares them
SIDES = ("A", "B")


def queue_run(engine: Engine, queue: WorkQueue, run_id: int) -> int:
    """Put a run's cases on the queue; returns how many items.

    One item per case and side, so a case's A and B calls are in flight at the same time (on any workers) and a
    worker thread makes one call at a time, as for every other kind of item. A run with a judge gets one item per
    case instead (A, B, then the judge's verdict): the judge needs both answers in one place.
    """
    run = get_run(engine, run_id)
    cases = load_cases(engine, run["test_set_id"]) if run["test_set_id"] is not None else []
    numbered = [(i + 1, c.id) for i, c in enumerate(cases) if c.id is not None]
    entries: list[tuple[int, str, dict[str, Any]]]
    if run["checks"].get("judge_model"):
        entries = [(case_id, f"case {n}", {}) for n, case_id in numbered]
    else:
        entries = [(case_id, f"case {n} · {side}", {"side": side}) for n, case_id in numbered for side in SIDES]
    ids = items.add_items(engine, KIND, run_id, entries)
    with Session(engine) as s, s.begin():
        s.execute(update(CompareRun).where(CompareRun.id == run_id).values(status="queued", finished_at=None))
    queue.enqueue(KIND, ids)
    return len(ids)


def run_case_item(
    gateway: Gateway, store: TemplateStore, limiter: ProviderLimiter, ctx: ItemContext
) -> tuple[str, str | None] | None:
    """The queue's task for one item of a run: one side of a case, or (judged runs, older items) a whole case.

    Idempotent: a side whose answer is stored is never called again, a stored judge verdict is not asked again.
    Calls wait for a slot of their provider (WORKBENCH_PROVIDER_LIMITS), shared by every worker.
    """
    side = ctx.item.progress.get("side")
    about = {"variant": side} if side in SIDES else {}
    # one trace per batch item: its side's call, or both sides' calls and the judge's
    with spans.span("compare.item", run_id=str(ctx.item.job_id), case_id=ctx.item.position, **about):
        if side in SIDES:
            return _run_side_item(gateway, store, limiter, ctx, side)
        return _run_case_item(gateway, store, limiter, ctx)


_CASES, _RESULTS = cast(Table, TestCase.__table__), cast(Table, RunResult.__table__)
_CASE_AND_STORED = select(  # a side item's one read: its case, and whether its answer is already stored
    _CASES.c["values"],  # `.c.values` is the collection's own method
    _CASES.c.expected,
    exists()
    .where(
        _RESULTS.c.run_id == bindparam("b_run"),
        _RESULTS.c.case_id == _CASES.c.id,
        _RESULTS.c.variant == bindparam("b_side"),
    )
    .label("stored"),
).where(_CASES.c.id == bindparam("b_case"), _CASES.c.test_set_id == bindparam("b_set"))


def _run_side_item(
    gateway: Gateway, store: TemplateStore, limiter: ProviderLimiter, ctx: ItemContext, side: str
) -> tuple[str, str | None] | None:
    # Per side: one read (its case, and whether its answer is stored), its call (holding a call slot of the worker
    # only for the call), and its call-log row and answer written with the item's end: the claim and the end are
    # shared with the other threads' writes of this process (group commit).
    engine, run_id, case_id = gateway.engine, ctx.item.job_id, ctx.item.position
    run, templates = _run_setup(engine, store, run_id)
    if run["test_set_id"] is None:
        return "failed", "This test case was deleted."
    params = {"b_run": run_id, "b_side": side, "b_case": case_id, "b_set": run["test_set_id"]}
    with engine.connect() as conn:
        row = conn.execute(_CASE_AND_STORED, params).one_or_none()
    if row is None:
        return "failed", "This test case was deleted."
    if row.stored:
        return None
    values = dict(row._mapping["values"])  # `row.values` could be taken for a method of the row
    case, variant, template = Case(case_id, values, row.expected), run[side], templates[side]
    model = variant.model or template.model or gateway.settings.default_model
    cc = _side_context(run, run_id, side, case_id, ctx, log_with_end=True)
    with limiter.slot(provider_of(model), cancelled=ctx.cancelled):
        outcome = run_variant(gateway, template, case.values, variant, cc)
    outcome.checks = check_answer(outcome, case.expected, Checks(**run["checks"]), template.json_schema is not None)
    dialect, stored = engine.dialect.name, [(case, side, outcome)]
    ctx.at_end.append(lambda s: _insert_results(s, dialect, run_id, stored, True))  # one transaction with the end
    return None


def _side_context(
    run: dict[str, Any],
    run_id: int,
    side: str,
    case_id: int,
    ctx: ItemContext,
    log_with_end: bool = False,
) -> CallContext:
    """The call-log context of one side's call for one case of a batch run: its request holds one of the worker's
    call slots (only the request: the gateway's work before and after it overlaps other items' calls), and with
    `log_with_end` its call-log row is committed with the item's end (ItemContext.call_rows)."""
    return CallContext(
        hold=ctx.calling,
        log_rows=ctx.call_rows if log_with_end else None,
        feature=RUN_FEATURE,
        user=run["created_by"],
        template_name=run["template_name"],
        experiment_id=f"run:{run_id}",
        variant=side,
        metadata={"case_id": case_id},
    )


def _run_case_item(
    gateway: Gateway, store: TemplateStore, limiter: ProviderLimiter, ctx: ItemContext
) -> tuple[str, str | None] | None:
    # Per case: reads (the run, its one case, the sides already stored) and one write per side answered, shared
    # with the other threads' writes of this process (group commit): the claim checked for a cancel, a cheap read
    # checks again between the sides, and the run's progress is its stored answers (run_progress).
    engine, run_id, case_id = gateway.engine, ctx.item.job_id, ctx.item.position
    run, templates = _run_setup(engine, store, run_id)
    case = load_case(engine, run["test_set_id"], case_id) if run["test_set_id"] is not None else None
    if case is None:
        return "failed", "This test case was deleted."
    checks = Checks(**run["checks"])
    with Session(engine) as s:
        done = set(s.scalars(select(RunResult.variant).where(RunResult.run_id == run_id, RunResult.case_id == case_id)))
    group, dialect, called = group_commit(engine), engine.dialect.name, False
    for side in ("A", "B"):
        if side in done:
            continue
        if called:
            _check_cancel(engine, ctx)
        variant: Variant = run[side]
        template = templates[side]
        model = variant.model or template.model or gateway.settings.default_model
        cc = _side_context(run, run_id, side, case_id, ctx)  # its call-log row is committed when the call returns
        with limiter.slot(provider_of(model), cancelled=ctx.cancelled):
            outcome = run_variant(gateway, template, case.values, variant, cc)
        outcome.checks = check_answer(outcome, case.expected, checks, template.json_schema is not None)
        row = [(case, side, outcome)]
        write = lambda s, row=row: _insert_results(s, dialect, run_id, row, True)  # noqa: E731
        if side == "B" and not checks.judge_model:
            ctx.at_end.append(write)  # stored with the item's end, in one transaction
        else:
            group.run(write)  # stored now: a worker killed during B's call does not call A again
        ctx.progress[side] = outcome.status
        called = True
    if checks.judge_model:
        _judge_case(gateway, limiter, ctx, run, case_id, checks.judge_model)
    return None


_SETUPS: weakref.WeakKeyDictionary[Engine, dict[int, tuple[dict[str, Any], dict[str, Template]]]] = (
    weakref.WeakKeyDictionary()
)
_SETUPS_LOCK = threading.Lock()
_SETUPS_LOADING = threading.Lock()


def _run_setup(engine: Engine, store: TemplateStore, run_id: int) -> tuple[dict[str, Any], dict[str, Template]]:
    """A run's settings and both sides' templates, read once per process: they never change once the run is started
    (template versions are immutable), and every case of the run needs them (five reads a case otherwise)."""
    with _SETUPS_LOCK:
        setup = _SETUPS.setdefault(engine, {}).get(run_id)
    if setup is not None:
        return setup
    with _SETUPS_LOADING:  # a run's first items arrive together: one thread reads, the others wait for its result
        with _SETUPS_LOCK:
            setup = _SETUPS.setdefault(engine, {}).get(run_id)
        if setup is None:
            run = get_run(engine, run_id)
            setup = run, {side: store.get_version(run["template_name"], run[side].version).template for side in "AB"}
            with _SETUPS_LOCK:
                runs = _SETUPS.setdefault(engine, {})
                if len(runs) >= 16:
                    runs.pop(next(iter(runs)))
                runs[run_id] = setup
    return setup


def _check_cancel(engine: Engine, ctx: ItemContext) -> None:
    """Raise Cancelled if the item was cancelled or taken over (a read: no write, no lock)."""
    with Session(engine) as s:
        row = s.execute(
            select(JobItem.cancel_requested, JobItem.status, JobItem.worker).where(JobItem.id == ctx.item.id)
        ).one_or_none()
    if row is None or row.cancel_requested or row.status != "running" or row.worker != ctx.worker:
        raise Cancelled(f"item {ctx.item.id} was cancelled or taken over")


def _judge_case(
    gateway: Gateway, limiter: ProviderLimiter, ctx: ItemContext, run: dict[str, Any], case_id: int, model: str
) -> None:
    engine = gateway.engine
    with Session(engine) as s:
        if s.scalar(
            select(CompareVote.id).where(
                CompareVote.run_id == run["id"], CompareVote.case_id == case_id, CompareVote.voter == "judge"
            )
        ):
            return
    row = next((r for r in run_rows(engine, run["id"]) if r["case_id"] == case_id), None)
    if row is None or not row["A"] or not row["B"] or "error" in (row["A"]["status"], row["B"]["status"]):
        return
    request = "\n".join(f"{k}: {v}" for k, v in row["values"].items())
    try:
        with ctx.calling(), limiter.slot(provider_of(model)):
            verdict = judge_pair(gateway, model, request, row["A"]["text"], row["B"]["text"], run["created_by"])
    except GatewayError:
        return  # an unjudged row stays unjudged; the people's votes still count
    record_row_vote(engine, run, row, verdict, voter="judge", case_id=case_id)


_ACTIVE_ITEM = (  # one is enough (a count would read them all), in a statement built once
    select(JobItem.id)
    .where(JobItem.kind == KIND, JobItem.job_id == bindparam("b_run"), JobItem.status.in_(items.ACTIVE))
    .limit(1)
)


def settle_run(engine: Engine, run_id: int) -> None:
    """Record a run's final status (done, cancelled, failed) once none of its items is queued or running."""
    with engine.connect() as conn:  # one row to read while items are left (this runs after every item)
        active = conn.scalar(_ACTIVE_ITEM, {"b_run": run_id})
    status = None if active is not None else items.settled_status(engine, KIND, run_id)
    if status is not None:
        with Session(engine) as s, s.begin():
            s.execute(
                update(CompareRun)
                .where(CompareRun.id == run_id, items.none_active(KIND, run_id))
                .values(status=status, finished_at=utcnow())
            )


def run_progress(engine: Engine, run_id: int) -> RunProgress:
    """How far a run got, from the database (so every process shows it): rows stored, failed, cancelled."""
    run = get_run(engine, run_id)
    cases = load_cases(engine, run["test_set_id"]) if run["test_set_id"] is not None else []
    with Session(engine) as s:
        statuses = list(s.scalars(select(RunResult.status).where(RunResult.run_id == run_id)))
    return RunProgress(
        total=2 * len(cases),
        done=len(statuses),
        failed=sum(st == "error" for st in statuses),
        cancelled=run["status"] == "cancelled",
    )


def run_workers(engine: Engine, run_id: int) -> list[str]:
    """The workers running the run's cases now."""
    its = items.job_items(engine, KIND, [run_id]).get(run_id, [])
    return sorted({i.worker for i in its if i.status == "running" and i.worker})


def cancel_run(engine: Engine, run_id: int) -> None:
    """Cancel a queued or running run: cases not started never start; calls in flight finish and are stored."""
    items.cancel(engine, KIND, run_id)
    settle_run(engine, run_id)


def retry_run(engine: Engine, queue: WorkQueue, run_id: int) -> int:
    """Run again the cases of a run that failed, were cancelled, or got an error answer; returns how many cases."""
    with Session(engine) as s, s.begin():
        errored = set(
            s.execute(
                select(RunResult.case_id, RunResult.variant).where(
                    RunResult.run_id == run_id, RunResult.status == "error"
                )
            ).tuples()
        )
        s.execute(delete(RunResult).where(RunResult.run_id == run_id, RunResult.status == "error"))
        if errored:
            done = s.execute(
                select(JobItem.id, JobItem.position, JobItem.progress).where(
                    JobItem.kind == KIND, JobItem.job_id == run_id, JobItem.status == "done"
                )
            ).all()
            again = [i for i, case_id, progress in done if any((case_id, side) in errored for side in _sides(progress))]
            if again:
                s.execute(update(JobItem).where(JobItem.id.in_(again)).values(status="failed"))
    ids = items.requeue(engine, KIND, run_id)
    if not ids:
        raise CompareError(f"Run #{run_id} has nothing to retry: every row was answered.")
    with Session(engine) as s, s.begin():
        s.execute(update(CompareRun).where(CompareRun.id == run_id).values(status="queued", finished_at=None))
        cases = len(set(s.scalars(select(JobItem.position).where(JobItem.id.in_(ids)))))
    queue.enqueue(KIND, ids)
    return cases


def _sides(progress: Mapping[str, Any]) -> tuple[str, ...]:
    """The sides a run's item answers: its own (one item per side), or both (one item per case)."""
    side = progress.get("side")
    return (side,) if side in SIDES else SIDES
