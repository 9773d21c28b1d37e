"""Group commit under a worker's threads: 32 threads each write 200 small rows to SQLite, one at a time, with 2 ms
of other work between writes (as worker threads claim and end items between calls).

Figures: CPU per write (the whole process, so waking waiting threads counts) and wall time, through the group commit
(lib.jobs.commits.GroupCommit: concurrent writes share transactions) and, as the baseline in the same run, through
one transaction per write (`engine.begin()` in each thread, SQLite's busy handler between writers).
Target, at the median of the repeats: the group commit costs no more CPU per write than the baseline (the waiting
threads are woken one by one, not all on every commit) and takes <= 0.8x its wall time.
Run: `.venv/bin/python bench/group_commit.py [--threads 32] [--writes 200] [--repeat 5]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Connection, Engine, text

from lib.core.db import make_engine
from lib.jobs.commits import GroupCommit

PAUSE_S = 0.002  # other work between one write and the thread's next


def timed(threads: int, writes: int, write: Callable[[Callable[[Connection], None]], None]) -> tuple[float, float]:
    """(CPU ms per write, wall s) for `threads` threads each making `writes` writes through `write`."""

    def work(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t (v) VALUES (1)"))

    def loop() -> None:
        for _ in range(writes):
            write(work)
            time.sleep(PAUSE_S)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return 1000 * (time.process_time() - cpu) / (threads * writes), time.perf_counter() - wall


def fresh_engine(folder: str, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{folder}/{name}.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
    return engine


def alone(engine: Engine) -> Callable[[Callable[[Connection], None]], None]:
    def write(work: Callable[[Connection], None]) -> None:
        with engine.begin() as conn:
            work(conn)

    return write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    grouped, single = [], []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeat):
            g = fresh_engine(folder, f"group{i}")
            grouped.append(timed(args.threads, args.writes, GroupCommit(g).run))
            s = fresh_engine(folder, f"alone{i}")
            single.append(timed(args.threads, args.writes, alone(s)))
            g.dispose()
            s.dispose()
            print(
                f"run {i + 1}/{args.repeat}: group commit {grouped[-1][0]:.3f} ms CPU a write, wall {grouped[-1][1]:.2f} s;"
                f" one transaction a write {single[-1][0]:.3f} ms, wall {single[-1][1]:.2f} s"
            )
    value = statistics.median(c for c, _ in grouped)
    baseline = statistics.median(c for c, _ in single)
    ratio = value / baseline
    wall = statistics.median(w for _, w in grouped) / statistics.median(w for _, w in single)
    met = ratio <= 1.0 and wall <= 0.8
    print(
        f"{args.threads} threads x {args.writes} writes, {PAUSE_S * 1000:.0f} ms apart: group commit {value:.3f} ms CPU"
        f" a write (wall {statistics.median(w for _, w in grouped):.2f} s), one transaction a write {baseline:.3f} ms"
        f" (wall {statistics.median(w for _, w in single):.2f} s); CPU {ratio:.2f}x, wall {wall:.2f}x;"
        f" target CPU <= 1.0x and wall <= 0.8x: {'met' if met else 'NOT met'}"
    )
    print(
        json.dumps(
            {
                "metric": "group_commit_cpu_ms_per_write",
                "value": round(value, 4),
                "baseline": round(baseline, 4),
                "ratio": round(ratio, 3),
                "target": "CPU per write <= 1.0x and wall <= 0.8x one transaction per write",
                "wall_ratio": round(wall, 3),
                "threads": args.threads,
                "writes": args.writes,
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
