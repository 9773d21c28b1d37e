"""Queued batch runs, one item per case and side: a case's A and B calls are in flight at the same time, a retry
runs again only the side that failed, a judged run keeps one item per case, and a worker thread's item end is
committed after the thread moves on (its next claim carries it; a submitted write's follow-up runs once committed)."""

from __future__ import annotations

import json
import threading
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from test_compare_queue_commits import _count_commits
from waiting import wait_for

from lib.compare.runs import (
    KIND,
    Checks,
    Variant,
    get_run,
    queue_run,
    retry_run,
    run_case_item,
    run_progress,
    settle_run,
    start_run,
)
from lib.compare.test_sets import create_test_set, parse_csv
from lib.core.settings import load_settings
from lib.core.tables import JobItem, LlmCall, RunResult
from lib.gateway.client import Gateway
from lib.gateway.errors import BadRequest
from lib.jobs import items
from lib.jobs.commits import GroupCommit, group_commit
from lib.jobs.limits import ProviderLimiter
from lib.jobs.queue import WorkQueue
from lib.prompts.language import Template
from lib.prompts.store import TemplateStore

NAME = "support.reply"


class HeldModel(BaseChatModel):
    """A chat model whose calls wait until `release` is set (so a test sees which run at once); `fails` refuses."""

    release: Any
    seen: Any
    fails: bool = False

    @property
    def _llm_type(self) -> str:
        return "held"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        with self.seen:
            self.seen.waiting.append(messages[0].content)
            self.seen.notify_all()
        assert self.release.wait(timeout=10)
        if self.fails:
            raise BadRequest("The model refused this input.")
        msg = AIMessage(
            content=f"reply to {messages[-1].content}",
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])


class Seen(threading.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[str] = []


def a_queue(engine, tmp_path, models: dict[str, HeldModel], overlap: bool = False) -> tuple[WorkQueue, TemplateStore]:
    providers = {"acme": {"base_url": "http://127.0.0.1:9/v1", "models": list(models)}}
    env = {"WORKBENCH_DATA_DIR": str(tmp_path), "WORKBENCH_PROVIDERS": json.dumps(providers)}
    settings = load_settings(env=env)
    gw = Gateway(settings, engine, model_factory=lambda _provider, bare, _params: models[bare], sleep=lambda s: None)
    store = TemplateStore(engine)
    store.create(Template(name=NAME, system="You answer.", user="Q: {{ question }}"), "ada")
    store.save_version(Template(name=NAME, system="You answer kindly.", user="Q: {{ question }}"), "ada")
    queue = WorkQueue(settings, engine)
    limiter = ProviderLimiter(engine, {})
    queue.register(
        KIND, lambda ctx: run_case_item(gw, store, limiter, ctx), lambda run_id: settle_run(engine, run_id), overlap
    )
    return queue, store


def a_run(engine, rows: int, judge: str | None = None) -> int:
    body = "question\n" + "".join(f"q{i}?\n" for i in range(rows))
    set_id = create_test_set(engine, f"set{rows}", ["question"], "ada", parse_csv(body.encode(), ["question"]))
    a, b = Variant(1, "acme/m1"), Variant(2, "acme/m2")
    return start_run(engine, NAME, set_id, a, b, Checks(judge_model=judge), "ada")


def run_items(engine, run_id: int) -> list[JobItem]:
    return items.job_items(engine, KIND, [run_id]).get(run_id, [])


def work(queue: WorkQueue, ids: list[int]) -> list[threading.Thread]:
    threads = [threading.Thread(target=queue.run_item, args=(KIND, i)) for i in ids]
    for t in threads:
        t.start()
    return threads


def test_a_cases_a_and_b_are_two_items_whose_calls_are_in_flight_at_the_same_time(any_engine, tmp_path):
    release, seen = threading.Event(), Seen()
    models = {m: HeldModel(release=release, seen=seen) for m in ("m1", "m2")}
    queue, _ = a_queue(any_engine, tmp_path, models)
    run_id = a_run(any_engine, rows=1)
    assert queue_run(any_engine, queue, run_id) == 2
    its = run_items(any_engine, run_id)
    assert [(i.name, i.progress) for i in its] == [("case 1 · A", {"side": "A"}), ("case 1 · B", {"side": "B"})]
    threads = work(queue, [i.id for i in its])  # two worker threads, one item each
    with seen:
        assert seen.wait_for(lambda: len(seen.waiting) == 2, timeout=10)  # A and B wait at the provider together
    assert sorted(seen.waiting) == ["You answer kindly.", "You answer."]
    release.set()
    for t in threads:
        t.join(30)
    assert get_run(any_engine, run_id)["status"] == "done"
    with Session(any_engine) as s:
        stored = s.execute(select(RunResult.variant, RunResult.request_id, RunResult.text)).all()
        logged = set(s.scalars(select(LlmCall.request_id).where(LlmCall.experiment_id == f"run:{run_id}")))
    assert sorted(v for v, _, _ in stored) == ["A", "B"] and {r for _, r, _ in stored} == logged  # one call a side
    assert {t for _, _, t in stored} == {"reply to Q: q0?"}  # each side answered its case's own input
    queue.run_item(KIND, its[0].id)  # delivered again: nothing is called or stored twice
    assert run_progress(any_engine, run_id).done == 2 and len(seen.waiting) == 2


def test_a_retry_runs_again_only_the_side_that_got_an_error(any_engine, tmp_path):
    release, seen = threading.Event(), Seen()
    release.set()
    models = {"m1": HeldModel(release=release, seen=seen), "m2": HeldModel(release=release, seen=seen, fails=True)}
    queue, _ = a_queue(any_engine, tmp_path, models)
    run_id = a_run(any_engine, rows=2)
    queue_run(any_engine, queue, run_id)
    for t in work(queue, [i.id for i in run_items(any_engine, run_id)]):
        t.join(30)
    assert run_progress(any_engine, run_id).failed == 2  # B refused on both cases
    models["m2"].fails = False
    assert retry_run(any_engine, queue, run_id) == 2  # two cases, each only its B side
    again = [i for i in run_items(any_engine, run_id) if i.status == "queued"]
    assert sorted(i.name for i in again) == ["case 1 · B", "case 2 · B"]
    for t in work(queue, [i.id for i in again]):
        t.join(30)
    progress = run_progress(any_engine, run_id)
    assert (progress.done, progress.failed) == (4, 0) and get_run(any_engine, run_id)["status"] == "done"
    assert seen.waiting.count("You answer.") == 2  # A was not asked again


def test_a_judged_run_keeps_one_item_per_case(any_engine, tmp_path):
    models = {m: HeldModel(release=threading.Event(), seen=Seen()) for m in ("m1", "m2")}
    queue, _ = a_queue(any_engine, tmp_path, models)
    run_id = a_run(any_engine, rows=3, judge="acme/m1")
    assert queue_run(any_engine, queue, run_id) == 3
    assert [(i.name, i.progress) for i in run_items(any_engine, run_id)] == [(f"case {n}", {}) for n in (1, 2, 3)]


def _add_item(position: int, kind: str | None = "t"):
    def write(s: Session) -> int:
        s.execute(
            insert(JobItem).values(kind=kind, job_id=1, position=position, name="n", status="queued", progress={})
        )
        return position

    return write


def test_a_submitted_write_rides_in_the_next_callers_transaction_and_its_follow_up_runs_once_committed(any_engine):
    group, commits, followed = GroupCommit(any_engine), _count_commits(any_engine), []
    group.COALESCE_S = 30.0  # the background committer would wait this long: the caller's transaction carries it
    group.submit(_add_item(1), then=followed.append)
    assert group.run(_add_item(2)) == 2
    assert group.flush(10) and followed == [None] and commits[0] == 1
    group.COALESCE_S = 0.0  # with no caller to carry it, the background committer commits it
    group.submit(_add_item(3, kind=None), then=followed.append)  # refused: NOT NULL
    group.submit(_add_item(4), then=followed.append)
    assert group.flush(10)
    assert followed[0] is None and sorted(f is None for f in followed[1:]) == [False, True]
    with Session(any_engine) as s:
        assert sorted(s.scalars(select(JobItem.position))) == [1, 2, 4]  # the refused write cost the others nothing


def test_a_delivered_items_end_is_committed_after_its_thread_moves_on_then_its_job_end_runs(any_engine, tmp_path):
    queue, ended = WorkQueue(load_settings(env={"WORKBENCH_DATA_DIR": str(tmp_path)}), any_engine), []
    queue.register("t", lambda ctx: ctx.at_end.append(_add_item(50)), on_job_end=ended.append)
    (item_id,) = items.add_items(any_engine, "t", 7, [(1, "one", {})])
    queue._run_delivered("t", item_id)  # what a worker thread runs for a queued message
    assert group_commit(any_engine).flush(10)
    assert wait_for(lambda: ended == [7], 10)
    with Session(any_engine) as s:
        assert s.get(JobItem, item_id).status == "done"
        assert s.scalar(select(func.count()).where(JobItem.position == 50)) == 1
