"""Group commit of queued work (lib.jobs.commits) and an item's last writes committed with its end (queued compare
cases store their B answer that way): concurrent writes share a transaction, a failing write fails only its caller,
and an item whose last writes fail is not recorded as done."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session
from waiting import wait_for

from lib.core.settings import load_settings
from lib.core.tables import JobItem
from lib.jobs import items
from lib.jobs.commits import GroupCommit, group_commit
from lib.jobs.queue import WorkQueue


def _count_commits(engine) -> list[int]:
    commits = [0]

    @event.listens_for(engine, "commit")
    def counted(_conn) -> None:
        commits[0] += 1

    return commits


def _add_item(position: int):
    def work(s: Session) -> int:
        s.execute(
            insert(JobItem).values(
                kind="t", job_id=1, position=position, name=f"n{position}", status="queued", progress={}
            )
        )
        return position

    return work


def test_concurrent_writes_share_one_transaction_and_each_caller_gets_its_own_result(any_engine):
    group, commits = GroupCommit(any_engine), _count_commits(any_engine)
    hold, results = threading.Event(), {}

    def first(s: Session) -> str:
        _add_item(0)(s)
        hold.wait(30)  # the other callers queue up meanwhile
        return "first"

    def call(i: int) -> None:
        results[i] = group.run(first if i == 0 else _add_item(i))

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert wait_for(lambda: group._writing, 10)
    threads += [threading.Thread(target=call, args=(i,)) for i in range(1, 8)]
    for t in threads[1:]:
        t.start()
    assert wait_for(lambda: len(group._queue) == 7, 10)
    hold.set()
    for t in threads:
        t.join(30)
    assert results == {0: "first", **{i: i for i in range(1, 8)}}
    assert commits[0] == 2  # the first caller's transaction, then the seven queued behind it in one
    with Session(any_engine) as s:
        assert s.scalar(select(func.count()).select_from(JobItem)) == 8
    assert group_commit(any_engine) is group_commit(any_engine)


def test_a_failing_write_fails_only_its_caller_and_the_others_are_committed(any_engine):
    group, hold, outcomes = GroupCommit(any_engine), threading.Event(), {}

    def bad(s: Session) -> None:
        _add_item(99)(s)
        raise ValueError("this write is refused")

    def call(i: int, work) -> None:
        try:
            outcomes[i] = group.run(work)
        except ValueError as exc:
            outcomes[i] = str(exc)

    first = threading.Thread(target=call, args=(0, lambda s: hold.wait(30)))
    first.start()
    assert wait_for(lambda: group._writing, 10)
    others = [threading.Thread(target=call, args=(i, bad if i == 2 else _add_item(i))) for i in (1, 2, 3)]
    for t in others:
        t.start()
    assert wait_for(lambda: len(group._queue) == 3, 10)
    hold.set()
    for t in [first, *others]:
        t.join(30)
    assert outcomes == {0: True, 1: 1, 2: "this write is refused", 3: 3}
    with Session(any_engine) as s:
        assert sorted(s.scalars(select(JobItem.position))) == [1, 3]  # the refused write left nothing


@pytest.mark.parametrize("fails", [False, True])
def test_an_items_last_writes_commit_with_its_end_or_it_is_not_done(any_engine, tmp_path, fails):
    queue = WorkQueue(load_settings(env={"WORKBENCH_DATA_DIR": str(tmp_path)}), any_engine)

    def handler(ctx: items.ItemContext) -> None:
        ctx.at_end.append(_add_item(50))
        if fails:
            ctx.at_end.append(lambda s: s.execute(insert(JobItem).values(kind=None)))  # violates NOT NULL

    queue.register("t", handler)
    (item_id,) = items.add_items(any_engine, "t", 1, [(1, "one", {})])
    queue.run_item("t", item_id)
    with Session(any_engine) as s:
        item = s.get(JobItem, item_id)
        stored = list(s.scalars(select(JobItem.position).where(JobItem.position == 50)))
    assert item is not None
    if fails:
        assert item.status == "failed" and item.error and "IntegrityError" in item.error
        assert stored == []  # nothing of the item's last writes without its end
    else:
        assert item.status == "done" and stored == [50]
