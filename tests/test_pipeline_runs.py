"""Pipeline runs on the job queue against the loopback server: every call logged once with feature pipeline, schema
retries then a failed row, resume without repeated calls, the budget pause, review gates, export, the offline refusal
and the command line's exit codes."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from fake_openai import FakeOpenAI, Reply
from langchain_core.embeddings import DeterministicFakeEmbedding
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from waiting import wait_for

from lib.cli.main import main as cli
from lib.core.settings import load_settings
from lib.core.tables import JobItem, LlmCall, PipelineRun, PipelineStepResult
from lib.gateway.pricing import set_price_override
from lib.jobs import items
from lib.jobs.items import ItemContext
from lib.jobs.queue import ensure_embedded
from lib.pipelines import review, runs
from lib.pipelines.definition import GateStep, Pipeline, PromptStep
from lib.pipelines.export import export_csv, export_jsonl
from lib.pipelines.inputs import MissingColumns
from lib.pipelines.steps import StepOutcome
from lib.pipelines.trial import estimate_cost, try_row
from lib.prompts.language import Template
from lib.services import Services, open_engine

CLASSIFY = {
    "type": "object",
    "properties": {"category": {"type": "string"}, "urgency": {"type": "string", "enum": ["low", "high"]}},
    "required": ["category", "urgency"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as srv:
        yield srv


def last_user(body: dict) -> str:
    return next(m["content"] for m in reversed(body.get("messages", [])) if m["role"] == "user")


def answer(body: dict) -> Reply:
    """Classify by the ticket's words; reply in plain text; 'garbage' tickets never answer in JSON."""
    messages = body.get("messages", [])
    text = " ".join(str(m.get("content")) for m in messages)
    if "Classify" not in text:
        return Reply("Thanks, we are on it.")
    if "garbage" in text:
        return Reply("I think it is a complaint.")
    if "flaky" in text and "That answer is invalid" not in text:
        return Reply('{"category": "bug"}')  # misses urgency: retried with the error
    urgency = "high" if "urgent" in text else "low"
    category = "complaint" if "angry" in text else "question"
    return Reply(json.dumps({"category": category, "urgency": urgency}))


@pytest.fixture
def services(server, monkeypatch):
    server.reset()
    server.responder = answer
    providers = {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["m1"]}}
    monkeypatch.setenv("WORKBENCH_PROVIDERS", json.dumps(providers))
    monkeypatch.setenv("WORKBENCH_JOB_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("WORKBENCH_APP_WORKERS", "4")
    svc = Services(load_settings(), local_embeddings=DeterministicFakeEmbedding(size=16))
    svc.templates.create(
        Template(name="p.classify", user="Classify: {{ ticket }}", model="acme/m1", max_tokens=30),
        "ada",
        labels=("production",),
    )
    svc.templates.create(
        Template(name="p.reply", user="Reply to {{ ticket }} ({{ classify.category }})", model="acme/m1"),
        "ada",
        labels=("production",),
    )
    return svc


def save(svc: Services, *steps, name: str = "Triage") -> Pipeline:
    svc.pipelines.save(Pipeline(name, tuple(steps)), "ada")
    return svc.pipelines.get(name)


def classify(**kw) -> PromptStep:
    return PromptStep("classify", "p.classify", output_schema=CLASSIFY, **kw)


def reply(**kw) -> PromptStep:
    return PromptStep("reply", "p.reply", **kw)


def settled(svc: Services, run_id: int, timeout: float = 60) -> runs.RunStatus:
    ok = wait_for(lambda: runs.run_status(svc.engine, run_id).state not in ("queued", "running"), timeout)
    status = runs.run_status(svc.engine, run_id)
    assert ok, status
    return status


def chat_requests(server: FakeOpenAI) -> int:
    return sum(r["path"].endswith("/chat/completions") for r in server.requests)


def test_a_200_row_run_completes_with_every_call_logged_once_with_feature_pipeline(services, server):
    pipeline = save(services, classify(), reply())
    services.start_workers()
    run_id = runs.start_run(services.pipeline_deps, pipeline, [{"ticket": f"ticket {i}"} for i in range(200)], "ada")
    status = settled(services, run_id)
    assert status.state == "completed" and status.rows["completed"] == 200
    assert status.steps == {"classify": {"ok": 200}, "reply": {"ok": 200}}
    with Session(services.engine) as s:
        calls = s.execute(
            select(
                LlmCall.step, LlmCall.pipeline_name, LlmCall.pipeline_version, LlmCall.template_name, LlmCall.status
            ).where(LlmCall.run_id == str(run_id), LlmCall.feature == "pipeline")
        ).all()
        results = s.scalar(select(func.count()).where(PipelineStepResult.run_id == run_id))
    assert len(calls) == 400 == chat_requests(server) and results == 400
    assert {(c.step, c.pipeline_name, c.pipeline_version, c.status) for c in calls} == {
        ("classify", "Triage", 1, "ok"),
        ("reply", "Triage", 1, "ok"),
    }
    rows = runs.results(services.engine, run_id)
    assert rows[7].outputs["classify"] == {"category": "question", "urgency": "low"}  # an object, not a string
    assert rows[7].values["reply.text"] == "Thanks, we are on it."


def test_an_invalid_answer_is_retried_with_the_error_then_the_row_fails_at_that_step_and_can_be_retried(
    services, server
):
    pipeline = save(services, classify(max_attempts=2), reply())
    services.start_workers()
    rows = [{"ticket": "flaky printer"}, {"ticket": "garbage in"}, {"ticket": "fine"}]
    run_id = runs.start_run(services.pipeline_deps, pipeline, rows, "ada")
    status = settled(services, run_id)
    assert status.state == "failed" and status.rows["failed"] == 1 and status.rows["completed"] == 2
    assert status.failed_at == {"classify": 1}
    retried = [r for r in server.requests if "That answer is invalid" in json.dumps(r["json"])]
    assert any("'urgency' is a required property" in json.dumps(r["json"]) for r in retried)
    failed = runs.results(services.engine, run_id)[1]
    assert failed.status == "failed" and failed.step == "classify"
    assert "No valid answer after 2 attempt(s)" in failed.error and "not JSON" in failed.error
    assert "classify" not in failed.outputs  # never passed on as a string
    before = chat_requests(server)
    server.responder = lambda body: (
        Reply('{"category": "complaint", "urgency": "low"}')
        if "Classify" in last_user(body)
        else Reply("Sorry about that.")
    )
    assert runs.retry_failed(services.pipeline_deps, run_id) == 1
    status = settled(services, run_id)
    assert status.state == "completed"
    assert chat_requests(server) - before == 2  # only the failed row, from its failed step


def test_resume_after_a_restart_never_repeats_a_completed_step_of_any_row(services, server, monkeypatch):
    pipeline = save(services, classify(), reply())
    deps = services.pipeline_deps
    rows = [{"ticket": f"t{i}"} for i in range(20)]
    run_id = runs.start_run(deps, pipeline, rows, "ada")  # queued; no worker yet
    with Session(services.engine) as s:
        ids = dict(
            s.execute(select(JobItem.position, JobItem.id).where(JobItem.job_id == run_id, JobItem.kind == "pipeline"))
            .tuples()
            .all()
        )
    for pos in range(10):  # the first worker finished rows 0-9
        services.queue.run_item("pipeline", ids[pos])
    assert chat_requests(server) == 20
    for pos in range(10, 15):  # ... and was killed after storing rows 10-14's first step
        runs.store_step(
            services.engine, run_id, pos, StepOutcome("classify", "ok", {"category": "x", "urgency": "low"})
        )
    with Session(services.engine) as s, s.begin():
        s.execute(
            update(JobItem)
            .where(JobItem.id.in_([ids[p] for p in range(10, 15)]))
            .values(status="running", worker="gone-host:1")
        )
    monkeypatch.setenv("WORKBENCH_JOB_HEARTBEAT_S", "0.1")  # the dead worker's items are found at the first sweep
    ensure_embedded(services.queue, 4)  # the app starts again
    status = settled(services, run_id)
    assert status.state == "completed" and status.rows["completed"] == 20
    assert chat_requests(server) == 20 + 5 + 10  # rows 10-14 called only for `reply`, rows 15-19 for both
    with Session(services.engine) as s:
        per_step = s.execute(
            select(PipelineStepResult.position, PipelineStepResult.step, func.count())
            .where(PipelineStepResult.run_id == run_id)
            .group_by(PipelineStepResult.position, PipelineStepResult.step)
        ).all()
    assert len(per_step) == 40 and {n for *_, n in per_step} == {1}


def test_the_run_pauses_before_crossing_its_budget_and_resumes_when_raised(services, server):
    set_price_override(services.engine, "acme/m1", 1000.0, 1000.0)  # $0.001 a token: a call costs cents
    pipeline = save(services, classify())
    services.start_workers()
    run_id = runs.start_run(
        services.pipeline_deps, pipeline, [{"ticket": f"ticket {i}"} for i in range(12)], "ada", budget_usd=0.3
    )
    status = settled(services, run_id)
    assert status.state == "paused_budget" and "budget" in status.label

    def in_hand() -> int:  # rows whose calls were already paid for when the run paused: they finish by themselves
        with Session(services.engine) as s:
            running = (JobItem.kind == runs.KIND, JobItem.job_id == run_id, JobItem.status == "running")
            return s.scalar(select(func.count()).select_from(JobItem).where(*running))

    assert wait_for(lambda: in_hand() == 0, 30)
    status = runs.run_status(services.engine, run_id)
    assert 0 < status.rows["completed"] < 12 and status.rows["pending"] == 12 - status.rows["completed"]
    assert 0 < status.cost_usd <= 0.3  # never crossed
    with Session(services.engine) as s:
        assert s.scalar(select(PipelineRun.reserved_usd).where(PipelineRun.id == run_id)) == pytest.approx(0)
    done, calls = status.rows["completed"], chat_requests(server)
    assert calls == done
    with pytest.raises(runs.RunError, match="must be above"):
        runs.resume_run(services.pipeline_deps, run_id, raise_budget_to=0.1)
    # rows whose worker is still stopping at the pause are queued again; one still in hand goes on by itself
    assert 0 < runs.resume_run(services.pipeline_deps, run_id, raise_budget_to=10.0) <= 12 - done
    status = settled(services, run_id)
    assert status.state == "completed" and status.rows["completed"] == 12
    assert chat_requests(server) == 12  # no row called twice


def test_a_row_whose_item_fails_outside_its_steps_fails_and_its_run_settles(services, server, monkeypatch):
    # e.g. a template deleted under a running pipeline: the row used to stay pending and its run running for good
    pipeline = save(services, classify(), reply())
    engine = services.engine
    run_id = runs.start_run(services.pipeline_deps, pipeline, [{"ticket": "A"}], "ada")

    def gone(*args, **kwargs):
        raise RuntimeError("the template p.classify was deleted\nand more detail")

    monkeypatch.setattr(runs, "resolved_run", gone)
    with Session(engine) as s:
        item_id = s.scalar(select(JobItem.id).where(JobItem.kind == runs.KIND, JobItem.job_id == run_id))
    services.queue.run_item(runs.KIND, item_id)
    status = runs.run_status(engine, run_id)
    assert status.state == "failed" and status.rows["failed"] == 1 and status.rows["pending"] == 0, status
    [row] = runs.results(engine, run_id)
    assert row.error == "RuntimeError: the template p.classify was deleted"


def test_a_row_waits_for_review_only_once_its_item_has_ended(services, server):
    # a decision puts the row's ended item back on the queue: taken while the item was still ending, it found
    # nothing to put back and the row stayed pending for good, so the review appears with the item's end
    pipeline = save(services, classify(), GateStep("check", 'classify.urgency == "high"'), reply())
    engine = services.engine
    run_id = runs.start_run(services.pipeline_deps, pipeline, [{"ticket": "urgent A"}], "ada")
    with Session(engine) as s:
        item_id = s.scalar(select(JobItem.id).where(JobItem.kind == runs.KIND, JobItem.job_id == run_id))
    item = items.claim(engine, item_id, "here:1")
    assert item is not None
    ctx = ItemContext(engine, item, "here:1")
    assert services.queue.handlers[runs.KIND](ctx) is None  # the row reached the gate
    assert review.review_queue(engine, run_id=run_id) == []
    with engine.begin() as conn:  # what the worker commits as the item's end
        for write in ctx.at_end:
            write(conn)
        assert items.finish_in(conn, item_id, "here:1", "done")
    [waiting] = review.review_queue(engine, run_id=run_id)
    assert (waiting.position, waiting.gate) == (0, "check")


def test_a_row_a_reviewer_sends_on_runs_even_if_a_late_settle_marked_the_run_waiting_for_review(services, server):
    # No workers: each item runs here, in order. A settle that counted the rows just before a decision can record
    # "waiting_review" after the decision set the run running; the row sent on must still run (it used to end
    # cancelled, "run waiting_review", and stay pending for good), and such a settle no longer writes at all.
    pipeline = save(services, classify(), GateStep("check", 'classify.urgency == "high"'), reply())
    deps, engine = services.pipeline_deps, services.engine
    run_id = runs.start_run(deps, pipeline, [{"ticket": "urgent A"}, {"ticket": "urgent B"}], "ada")

    def item_ids() -> list[int]:
        with Session(engine) as s:
            return list(s.scalars(select(JobItem.id).where(JobItem.kind == runs.KIND, JobItem.job_id == run_id)))

    for item_id in item_ids():
        services.queue.run_item(runs.KIND, item_id)
    assert runs.run_status(engine, run_id).state == "waiting_review"
    first = min(review.review_queue(engine, run_id=run_id), key=lambda i: i.position)
    review.decide(deps, first.id, "approve", "rita")  # row 0 pending, its item queued again, the run running
    assert runs.run_status(engine, run_id).state == "running"
    runs.settle_run(engine, run_id)  # a settle now: row 0 is pending and its item queued, so it writes nothing
    assert runs.run_status(engine, run_id).state == "running"
    with Session(engine) as s, s.begin():  # the late settle of the old code, counted before the decision
        s.execute(update(PipelineRun).where(PipelineRun.id == run_id).values(status="waiting_review"))
    for item_id in item_ids():
        services.queue.run_item(runs.KIND, item_id)
    status = runs.run_status(engine, run_id)
    assert status.rows["completed"] == 1 and status.rows["review"] == 1 and status.rows["pending"] == 0, status
    assert status.state == "waiting_review" and status.finished_at is None
    second = next(iter(review.review_queue(engine, run_id=run_id)))
    review.decide(deps, second.id, "reject", "rita", reason="Not a ticket")
    status = runs.run_status(engine, run_id)
    assert status.state == "completed" and status.finished_at is not None


def test_gates_route_matching_rows_to_review_and_decisions_continue_edit_or_stop_them(services, server):
    pipeline = save(
        services,
        classify(),
        GateStep("check", 'classify.urgency == "high"', edits_step="classify"),
        reply(condition='classify.category != "spam"'),
    )
    services.start_workers()
    rows = [{"ticket": "urgent A"}, {"ticket": "urgent angry B"}, {"ticket": "urgent C"}, {"ticket": "calm D"}]
    run_id = runs.start_run(services.pipeline_deps, pipeline, rows, "ada")
    status = settled(services, run_id)
    assert status.state == "waiting_review" and status.label == "waiting for review (3)"
    queue = sorted(review.review_queue(services.engine, run_id=run_id), key=lambda i: i.position)
    assert [(i.position, i.input["ticket"]) for i in queue] == [(0, "urgent A"), (1, "urgent angry B"), (2, "urgent C")]
    assert queue[1].outputs == {"classify": {"category": "complaint", "urgency": "high"}}
    deps = services.pipeline_deps
    review.decide(deps, queue[0].id, "approve", "rita")
    with pytest.raises(review.ReviewError, match=r"not valid for step 'classify'.*urgency"):
        review.decide(deps, queue[1].id, "edit", "rita", edited_output={"category": "spam", "urgency": "extreme"})
    review.decide(deps, queue[1].id, "edit", "rita", edited_output='{"category": "spam", "urgency": "low"}')
    with pytest.raises(review.ReviewError, match="Say why"):
        review.decide(deps, queue[2].id, "reject", "rita")
    review.decide(deps, queue[2].id, "reject", "rita", reason="Duplicate of another ticket")
    with pytest.raises(review.ReviewError, match="already decided"):
        review.decide(deps, queue[0].id, "reject", "sam", reason="late")
    status = settled(services, run_id)
    assert status.state == "completed", status
    assert status.rows == {"pending": 0, "completed": 3, "failed": 0, "review": 0, "rejected": 1}
    by_pos = {r.position: r for r in runs.results(services.engine, run_id)}
    assert by_pos[0].step_status == {"classify": "ok", "check": "approved", "reply": "ok"}
    assert by_pos[1].values["classify.category"] == "spam" and by_pos[1].step_status["reply"] == "skipped"
    assert by_pos[1].outputs["classify"] == {"category": "complaint", "urgency": "high"}  # the original is kept
    assert by_pos[2].status == "rejected" and "reply" not in by_pos[2].outputs
    assert by_pos[2].decisions["check"]["decided_by"] == "rita"
    assert by_pos[2].decisions["check"]["reason"] == "Duplicate of another ticket"
    assert by_pos[2].decisions["check"]["decided_at"] is not None
    assert by_pos[3].step_status["check"] == "passed"


def test_a_gate_timeout_takes_the_default_decision(services, server):
    pipeline = save(
        services,
        classify(),
        GateStep("check", 'classify.urgency == "high"', timeout_s=0.01, timeout_decision="approve"),
        reply(),
    )
    services.start_workers()
    run_id = runs.start_run(services.pipeline_deps, pipeline, [{"ticket": "urgent"}], "ada")
    assert settled(services, run_id).state == "waiting_review"
    assert wait_for(lambda: review.expire_reviews(services.pipeline_deps) == 1, 5)
    status = settled(services, run_id)
    assert status.state == "completed"
    row = runs.results(services.engine, run_id)[0]
    assert row.decisions["check"]["decided_by"] == review.TIMEOUT_REVIEWER and row.step_status["reply"] == "ok"


def test_exports_have_a_column_per_output_field_and_neutralise_formulas(services, server):
    server.responder = lambda body: (
        Reply('{"category": "=HYPERLINK(\\"x\\")", "urgency": "low"}')
        if "Classify" in (last_user(body))
        else Reply("+1 555 0100")
    )
    pipeline = save(services, classify(), reply())
    services.start_workers()
    run_id = runs.start_run(services.pipeline_deps, pipeline, [{"ticket": "@SUM(A1)"}], "ada")
    settled(services, run_id)
    table = list(csv.DictReader(io.StringIO(export_csv(services.engine, run_id))))
    assert table[0]["ticket"] == "'@SUM(A1)"
    assert table[0]["classify.category"] == '\'=HYPERLINK("x")' and table[0]["classify.urgency"] == "low"
    assert table[0]["reply.text"] == "'+1 555 0100" and table[0]["status"] == "completed"
    line = json.loads(export_jsonl(services.engine, run_id).splitlines()[0])
    assert line["classify.category"] == '=HYPERLINK("x")'  # JSONL keeps values as they are


def test_try_row_traces_each_step_and_the_estimate_extrapolates(services, server):
    set_price_override(services.engine, "acme/m1", 1.0, 2.0)
    pipeline = save(services, classify(), GateStep("check", 'classify.urgency == "high"'), reply())
    trace = try_row(services.pipeline_deps, pipeline, {"ticket": "urgent"}, "ada")
    assert [(s.step, s.status) for s in trace.steps] == [("classify", "ok"), ("check", "review"), ("reply", "ok")]
    assert "Classify: urgent" in trace.steps[0].messages[-1][1] and trace.steps[0].tokens > 0
    assert trace.cost_usd and trace.cost_usd > 0
    estimate = estimate_cost(services.pipeline_deps, pipeline, [{"ticket": f"t{i}"} for i in range(30)], "ada")
    assert estimate.sample_rows == 3 and estimate.estimated_usd == pytest.approx(estimate.per_row_usd * 30)
    with Session(services.engine) as s:
        assert (
            s.scalar(select(func.count()).where(LlmCall.feature == "pipeline", LlmCall.pipeline_name == "Triage")) == 8
        )


def test_a_missing_column_or_an_offline_model_refuses_to_start(services, monkeypatch, server):
    pipeline = save(services, classify(), reply())
    with pytest.raises(MissingColumns, match="no column 'ticket'"):
        runs.start_run(services.pipeline_deps, pipeline, [{"text": "x"}], "ada")
    monkeypatch.delenv("WORKBENCH_PROVIDERS")
    offline = Services(load_settings(), engine=services.engine)
    services.templates.save_version(Template(name="p.classify", user="Classify: {{ ticket }}"), "ada")
    services.templates.move_label("p.classify", "production", 2, "ada")
    with pytest.raises(runs.RunError, match=r"No model is configured.*'classify'"):
        runs.start_run(offline.pipeline_deps, pipeline, [{"ticket": "x"}], "ada")


def test_the_command_line_runs_through_the_queue_with_exit_codes(services, server, tmp_path, capsys):
    save(services, classify(max_attempts=1), reply())
    good, bad, missing = tmp_path / "good.csv", tmp_path / "bad.jsonl", tmp_path / "missing.csv"
    good.write_text("ticket\nfirst\nsecond\n")
    bad.write_text('{"ticket": "fine"}\n{"ticket": "garbage"}\n')
    missing.write_text("text\nx\n")
    out = tmp_path / "out.jsonl"
    assert cli(["pipeline", "list"]) == 0 and "Triage\tv1\tproduction=v1" in capsys.readouterr().out
    assert cli(["pipeline", "run", "Triage", "--input", str(good), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["completed", "completed"] and lines[0]["reply.text"]
    assert cli(["pipeline", "run", "Triage", "--input", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "row 2 failed at step classify" in err and re.search(r"1 row\(s\) failed: 2\b", err)
    assert cli(["pipeline", "run", "Triage", "--input", str(missing), "--out", str(out)]) == 2
    assert "no column 'ticket'" in capsys.readouterr().err
    assert cli(["pipeline", "run", "Nope", "--input", str(good), "--out", str(out)]) == 2
    assert cli(["pipeline", "run", "Triage", "--input", str(good), "--out", str(tmp_path / "x.txt")]) == 2


@pytest.mark.postgres
def test_on_postgresql_a_run_pauses_at_its_budget_waits_at_a_gate_and_completes(services, server, pg_url):
    pg = Services(services.settings, engine=open_engine(pg_url))
    for name, user in (
        ("p.classify", "Classify: {{ ticket }}"),
        ("p.reply", "Reply to {{ ticket }} ({{ classify.category }})"),
    ):
        pg.templates.create(
            Template(name=name, user=user, model="acme/m1", max_tokens=30), "ada", labels=("production",)
        )
    set_price_override(pg.engine, "acme/m1", 1000.0, 1000.0)
    pipeline = save(pg, classify(), GateStep("check", 'classify.urgency == "high"'), reply())
    pg.start_workers()
    rows = [{"ticket": "urgent"}, *({"ticket": f"calm {i}"} for i in range(5))]
    run_id = runs.start_run(pg.pipeline_deps, pipeline, rows, "ada", budget_usd=0.25)
    status = settled(pg, run_id)
    assert status.state == "paused_budget" and status.cost_usd <= 0.25
    runs.resume_run(pg.pipeline_deps, run_id, raise_budget_to=100.0)
    status = settled(pg, run_id)
    assert status.state == "waiting_review" and status.rows["completed"] == 5
    item = review.review_queue(pg.engine, run_id=run_id)[0]
    review.decide(pg.pipeline_deps, item.id, "approve", "rita")
    assert settled(pg, run_id).state == "completed"
    with Session(pg.engine) as s:
        assert s.scalar(select(func.count()).where(LlmCall.run_id == str(run_id))) == chat_requests(server) == 12
    pg.engine.dispose()


def test_a_run_limited_to_one_row_at_a_time_never_overlaps_its_calls(services, server):
    starts: list[float] = []

    def timed(body: dict) -> Reply:
        import time

        starts.append(time.monotonic())
        return Reply(answer(body).text, delay=0.05)

    server.responder = timed
    pipeline = save(services, classify())
    services.start_workers()  # 4 worker threads
    run_id = runs.start_run(
        services.pipeline_deps, pipeline, [{"ticket": f"t{i}"} for i in range(6)], "ada", concurrency=1
    )
    assert settled(services, run_id).state == "completed"
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert len(starts) == 6 and min(gaps) >= 0.045  # each call starts after the previous answered
    assert runs.runnable_problem(services.pipeline_deps, pipeline) is None
