"""Compare: test sets from CSV and from Chat, batch runs (bounded, cancellable, per-row failures), votes,
the judge, summaries, promotion, and live A/B assignment and reporting."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fake_openai import FakeOpenAI, Reply, Status
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib.chat.conversations import add_message, create_session, set_feedback
from lib.compare.live_ab import ExperimentError, live_report, start_experiment, stop_experiment
from lib.compare.runs import (
    Checks,
    CompareError,
    Variant,
    execute_run,
    get_run,
    judge_pair,
    promote,
    record_vote,
    run_rows,
    start_run,
    stream_pair,
)
from lib.compare.summary import summarize_run
from lib.compare.test_sets import (
    TestSetError,
    add_case_from_message,
    create_test_set,
    load_cases,
    parse_csv,
    replace_cases,
)
from lib.core.settings import load_settings
from lib.core.tables import LlmCall, RunResult
from lib.gateway.client import CallContext, Gateway
from lib.gateway.errors import BadRequest
from lib.prompts.language import Template
from lib.prompts.live import assign_variant, live_variant_for
from lib.prompts.store import TemplateStore

NAME = "support.reply"
V1 = Template(name=NAME, system="You answer customers.", user="Answer: {{ question }}")
V2 = Template(name=NAME, system="You answer customers kindly.", user="Answer: {{ question }}")


class GateModel(BaseChatModel):
    """A chat model whose calls wait at a gate, so a test sees how many run at once; 'boom' fails."""

    gate: Any
    lock: Any
    state: dict

    @property
    def _llm_type(self) -> str:
        return "gate"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        question = messages[-1].content
        with self.lock:
            self.state["inflight"] += 1
            self.state["max"] = max(self.state["max"], self.state["inflight"])
            self.lock.notify_all()
        try:
            assert self.gate.wait(timeout=10)
            if "boom" in question:
                raise BadRequest("The model refused this input.")
            msg = AIMessage(
                content=f"{'kind ' if 'kindly' in messages[0].content else ''}reply to {question}",
                usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            )
            return ChatResult(generations=[ChatGeneration(message=msg)])
        finally:
            with self.lock:
                self.state["inflight"] -= 1


@pytest.fixture
def gated(any_engine):
    gate, cond = threading.Event(), threading.Condition()
    model = GateModel(gate=gate, lock=cond, state={"inflight": 0, "max": 0})
    providers = {"acme": {"base_url": "http://127.0.0.1:9/v1", "models": ["m1", "m2"]}}
    settings = load_settings(env={"WORKBENCH_PROVIDERS": json.dumps(providers)})
    gw = Gateway(settings, any_engine, model_factory=lambda *_: model, sleep=lambda s: None)
    store = TemplateStore(any_engine)
    store.create(V1, "ada", labels=("production",))
    store.save_version(V2, "ada", "kinder")
    return gw, store, model


def make_set(engine, n: int, *, boom: int | None = None) -> int:
    rows = "".join(f"q{i}{' boom' if i == boom else ''},reply\n" for i in range(1, n + 1))
    return create_test_set(
        engine, "smoke", ["question"], "ada", parse_csv(f"question,expected\n{rows}".encode(), ["question"])
    )


def wait_for_inflight(model: GateModel, n: int) -> None:
    with model.lock:
        assert model.lock.wait_for(lambda: model.state["inflight"] >= n, timeout=10)


def llm_rows(engine) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


# ---- test sets ----------------------------------------------------------------------------------


def test_a_csv_with_the_template_variables_and_expected_answers_becomes_cases():
    cases = parse_csv('\ufeffquestion,expected\nWhere is it?,Paris\n"A, B?",\n'.encode(), ["question"])
    assert [(c.values, c.expected) for c in cases] == [
        ({"question": "Where is it?"}, "Paris"),
        ({"question": "A, B?"}, None),
    ]


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"question\n", "no cases"),
        (b"query,expected\nhi,x\n", "missing question; unexpected 'query'"),
        ("question\ncaf\xe9\n".encode("latin-1"), "not UTF-8"),
        (b"question,expected\nhi,x,extra\n", "Line 2 has 3 values"),
    ],
)
def test_a_bad_csv_is_refused_with_a_message_that_says_what_to_fix(data, message):
    with pytest.raises(TestSetError, match=message):
        parse_csv(data, ["question"])


def test_edited_rows_replace_the_cases_and_blank_rows_are_dropped(any_engine):
    set_id = make_set(any_engine, 3)
    n = replace_cases(any_engine, set_id, [{"question": "new", "expected": " yes "}, {"question": None}])
    assert n == 1
    assert [(c.values, c.expected) for c in load_cases(any_engine, set_id)] == [({"question": "new"}, "yes")]
    with pytest.raises(TestSetError, match="already exists"):
        make_set(any_engine, 1)


def test_a_thumbs_down_answer_adds_its_question_and_context_to_a_test_set(any_engine):
    set_id = create_test_set(any_engine, "bad answers", ["context", "question"], "ada")
    chat = create_session(any_engine, "ada").id
    add_message(any_engine, chat, "user", "When does the canteen open?")
    source = {
        "number": 1,
        "chunk_id": "c1",
        "document_id": 1,
        "document": "handbook.pdf",
        "page": 2,
        "chunk_index": 0,
        "text": "The canteen opens at eight.",
        "score": 0.9,
    }
    answer = add_message(any_engine, chat, "assistant", "At nine.", sources=[source], request_id="r1")
    add_case_from_message(any_engine, set_id, answer.id)
    [case] = load_cases(any_engine, set_id)
    assert case.values["question"] == "When does the canteen open?"
    assert "The canteen opens at eight." in case.values["context"]
    wrong = create_test_set(any_engine, "other", ["customer"], "ada")
    with pytest.raises(TestSetError, match="needs customer"):
        add_case_from_message(any_engine, wrong, answer.id)


# ---- batch runs ---------------------------------------------------------------------------------


def test_a_batch_run_never_has_more_calls_in_flight_than_its_concurrency(gated, any_engine):
    gw, store, model = gated
    run_id = start_run(any_engine, NAME, make_set(any_engine, 10), Variant(1), Variant(2), Checks(), "ada")
    seen = []
    worker = threading.Thread(target=lambda: seen.append(execute_run(gw, store, run_id, concurrency=3)))
    worker.start()
    wait_for_inflight(model, 3)
    model.gate.set()
    worker.join(timeout=30)
    assert model.state["max"] == 3
    assert (seen[0].done, seen[0].failed, seen[0].cancelled) == (20, 0, False)
    rows = run_rows(any_engine, run_id)
    assert rows[0]["A"]["text"] == "reply to Answer: q1" and rows[0]["B"]["text"] == "kind reply to Answer: q1"
    assert get_run(any_engine, run_id)["status"] == "done"


def test_cancel_stops_new_calls_keeps_finished_rows_and_a_resume_completes_without_duplicates(gated, any_engine):
    gw, store, model = gated
    run_id = start_run(any_engine, NAME, make_set(any_engine, 10), Variant(1), Variant(2), Checks(), "ada")
    cancel, seen = threading.Event(), []
    worker = threading.Thread(target=lambda: seen.append(execute_run(gw, store, run_id, concurrency=2, cancel=cancel)))
    worker.start()
    wait_for_inflight(model, 2)
    cancel.set()
    model.gate.set()
    worker.join(timeout=30)
    assert (seen[0].done, seen[0].cancelled) == (2, True)
    assert get_run(any_engine, run_id)["status"] == "cancelled"
    assert len(llm_rows(any_engine)) == 2

    again = execute_run(gw, store, run_id, concurrency=4)
    assert (again.total, again.done, again.cancelled) == (18, 18, False)
    with Session(any_engine) as s:
        assert s.scalar(select(func.count()).select_from(RunResult).where(RunResult.run_id == run_id)) == 20
    calls = llm_rows(any_engine)
    assert len(calls) == 20 and len({(c.meta["case_id"], c.variant) for c in calls}) == 20
    assert {c.experiment_id for c in calls} == {f"run:{run_id}"}


def test_a_failing_row_is_shown_on_that_row_and_the_run_goes_on(gated, any_engine):
    gw, store, model = gated
    model.gate.set()
    run_id = start_run(
        any_engine,
        NAME,
        make_set(any_engine, 4, boom=2),
        Variant(1),
        Variant(2, "acme/m2"),
        Checks(regex=r"^reply", max_chars=40),
        "ada",
    )
    progress = execute_run(gw, store, run_id, concurrency=2)
    assert (progress.done, progress.failed) == (8, 2)
    rows = run_rows(any_engine, run_id)
    assert rows[1]["A"]["status"] == rows[1]["B"]["status"] == "error"
    assert "refused this input" in rows[1]["A"]["error"]
    assert rows[0]["A"]["checks"] == {"contains expected": True, "regex": True, "length": True}
    assert rows[0]["B"]["checks"]["regex"] is False  # "kind reply…" does not start with "reply"
    summary = summarize_run(any_engine, run_id)
    assert (summary.a.errors, summary.b.errors, summary.a.rows) == (1, 1, 4)
    assert summary.a.checks["regex"] == (3, 4) and summary.b.checks["regex"] == (0, 4)
    assert summary.a.total_tokens == 45 and summary.a.mean_tokens == 15


def test_an_unexpected_error_in_a_worker_stops_the_run_and_reaches_the_caller(gated, any_engine, monkeypatch):
    import lib.compare.runs as experiments

    gw, store, model = gated
    model.gate.set()
    real = experiments.check_answer

    def broken(outcome, expected, checks, has_schema):
        if "q3" in outcome.text:
            raise RuntimeError("a bug in a check")
        return real(outcome, expected, checks, has_schema)

    monkeypatch.setattr(experiments, "check_answer", broken)
    run_id = start_run(any_engine, NAME, make_set(any_engine, 30), Variant(1), Variant(2), Checks(), "ada")
    with pytest.raises(RuntimeError, match="a bug in a check"):
        execute_run(gw, store, run_id, concurrency=2)
    stored = {(r["case_id"], side) for r in run_rows(any_engine, run_id) for side in "AB" if r[side]}
    calls = llm_rows(any_engine)
    assert 0 < len(stored) < 60  # the rows answered before stay; the rest were not started
    assert {(c.meta["case_id"], c.variant) for c in calls} >= stored  # every stored answer has its call row
    assert len(calls) == len({c.request_id for c in calls}) <= len(stored) + 4  # at most the calls in flight more


def test_a_run_on_an_empty_test_set_or_with_a_broken_regex_is_refused(gated, any_engine):
    set_id = create_test_set(any_engine, "empty", ["question"], "ada")
    with pytest.raises(CompareError, match="no cases"):
        start_run(any_engine, NAME, set_id, Variant(1), Variant(2), Checks(), "ada")
    with pytest.raises(CompareError, match="regular expression"):
        start_run(any_engine, NAME, make_set(any_engine, 1), Variant(1), Variant(2), Checks(regex="(a"), "ada")


def test_votes_give_b_win_rate_with_wilson_interval_and_sign_test(gated, any_engine):
    gw, store, model = gated
    model.gate.set()
    run_id = start_run(any_engine, NAME, make_set(any_engine, 12), Variant(1), Variant(2), Checks(), "ada")
    execute_run(gw, store, run_id)
    rows = run_rows(any_engine, run_id)
    verdicts = ["B"] * 9 + ["A", "tie", "both_bad"]
    for row, verdict in zip(rows, verdicts):
        record_vote(
            any_engine,
            NAME,
            Variant(1),
            Variant(2),
            row["values"],
            "a",
            "b",
            "A",
            user="ada",
            run_id=run_id,
            case_id=row["case_id"],
        )
        record_vote(
            any_engine,
            NAME,
            Variant(1),
            Variant(2),
            row["values"],
            "a",
            "b",
            verdict,
            user="ada",
            run_id=run_id,
            case_id=row["case_id"],
            blind=True,
        )  # a changed vote replaces the old one
    summary = summarize_run(any_engine, run_id)
    assert summary.votes == {"A": 1, "B": 9, "tie": 1, "both_bad": 1}
    assert summary.win_rate.value == 0.9 and summary.p_value == pytest.approx(22 / 1024)
    assert "B won 9 of 10" in summary.verdict() and "significant" in summary.verdict()
    assert run_rows(any_engine, run_id, "ada")[0]["vote"] == "B"


def test_promote_moves_production_to_b_and_refuses_when_only_the_model_differs(gated):
    _, store, _ = gated
    assert promote(store, NAME, Variant(1), Variant(2), "ada") == 2
    assert store.get_by_label(NAME, "production").version == 2
    with pytest.raises(CompareError, match="differ only in model"):
        promote(store, NAME, Variant(2, "acme/m1"), Variant(2, "acme/m2"), "ada")


# ---- against the loopback server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def real_gw(server, any_engine):
    server.reset()
    providers = {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["judge", "m1"]}}
    settings = load_settings(env={"WORKBENCH_PROVIDERS": json.dumps(providers)})
    return Gateway(settings, any_engine, sleep=lambda s: None)


def test_the_judge_wins_only_when_both_orders_agree(real_gw, server):
    server.enqueue(Reply("2"), Reply("1"))  # B second, then B first: both say B
    assert judge_pair(real_gw, "acme/judge", "q", "answer a", "answer b") == "B"
    server.enqueue(Reply("1"), Reply("1"))  # position bias: the first answer both times
    assert judge_pair(real_gw, "acme/judge", "q", "answer a", "answer c") == "tie"
    first, second = server.requests[-2:]
    assert "Answer 1:\nanswer a" in first["json"]["messages"][1]["content"]
    assert "Answer 1:\nanswer c" in second["json"]["messages"][1]["content"]


def test_side_by_side_streams_both_variants_and_reports_each_outcome(real_gw, server, any_engine):
    server.default_reply = Reply("same words from the fake model")
    store = TemplateStore(any_engine)
    store.create(V1, "ada")
    store.save_version(V2, "ada")
    templates = {"A": V1, "B": V2}
    events = list(
        stream_pair(
            real_gw, templates, {"A": Variant(1, "acme/m1"), "B": Variant(2, "acme/m1")}, {"question": "hi"}, "ada"
        )
    )
    texts = {s: "".join(p for side, p, o in events if side == s and p) for s in "AB"}
    outcomes = {side: o for side, _, o in events if o}
    assert texts == {"A": "same words from the fake model", "B": "same words from the fake model"}
    assert outcomes["A"].status == outcomes["B"].status == "ok" and outcomes["A"].tokens > 0
    assert sorted((r.variant, r.template_version, r.status) for r in llm_rows(any_engine)) == [
        ("A", 1, "ok"),
        ("B", 2, "ok"),
    ]  # both really called: no cache hit for the second


def test_a_server_error_on_one_side_shows_on_that_side_only(real_gw, server, any_engine):
    server.enqueue(Status(400))
    store = TemplateStore(any_engine)
    store.create(V1, "ada")
    events = list(
        stream_pair(
            real_gw,
            {"A": V1, "B": V1},
            {"A": Variant(1, "acme/m1"), "B": Variant(1, "acme/m1")},
            {"question": "hi"},
            "ada",
        )
    )
    statuses = sorted(o.status for _, _, o in events if o)
    assert statuses == ["error", "ok"]


# ---- live A/B -----------------------------------------------------------------------------------


def test_assignment_is_sticky_per_user_and_splits_users_near_the_share():
    first = {u: assign_variant("exp-1", f"user{u}", 0.5) for u in range(2000)}
    again = {u: assign_variant("exp-1", f"user{u}", 0.5) for u in range(2000)}
    assert first == again
    share = sum(v == "B" for v in first.values()) / 2000
    assert 0.45 < share < 0.55
    assert {assign_variant("exp-1", "ada", 0.0001), assign_variant("exp-1", "ada", 0.9999)} <= {"A", "B"}
    assert sum(assign_variant("exp-1", f"user{u}", 0.2) == "B" for u in range(2000)) / 2000 < 0.25


def test_a_live_experiment_routes_users_reports_per_variant_and_stopping_returns_to_production(gated, any_engine):
    gw, store, model = gated
    model.gate.set()
    exp_id = start_experiment(any_engine, store, NAME, 1, 2, "lead")
    with pytest.raises(ExperimentError, match="already running"):
        start_experiment(any_engine, store, NAME, 1, 2, "lead")
    chat = create_session(any_engine, "x").id
    for i in range(40):
        user = f"user{i}"
        got = live_variant_for(any_engine, NAME, user)
        assert got == live_variant_for(any_engine, NAME, user)  # sticky
        exp, variant, version = got
        result = gw.invoke(
            [("user", "hi")],
            "acme/m1",
            CallContext(user=user, experiment_id=exp, variant=variant, template_name=NAME, template_version=version),
        )
        msg = add_message(any_engine, chat, "assistant", result.text, request_id=result.request_id)
        set_feedback(any_engine, msg.id, 1 if variant == "B" else -1, user="x")  # the conversation's owner
    report = {v.variant: v for v in live_report(any_engine, exp_id)}
    assert report["A"].calls + report["B"].calls == 40 and report["A"].calls > 5 and report["B"].calls > 5
    assert report["B"].thumbs_up.value == 1 and report["A"].thumbs_up.value == 0
    assert report["B"].thumbs_up.low > report["A"].thumbs_up.high
    assert report["A"].error_rate.value == 0
    stop_experiment(any_engine, exp_id)
    assert live_variant_for(any_engine, NAME, "user1") is None
