"""Provider limits for queued work, shared by every worker through the database: at most N calls in flight and
R requests started per minute to a provider (WORKBENCH_PROVIDER_LIMITS).

Only queued work (batch runs, indexing with a provider's embeddings) takes a slot; chat calls from the pages never
wait here, so set the limits below the provider's own quota and chat keeps the rest.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from lib.core.tables import ProviderSlot, ProviderWindow, utcnow
from lib.jobs.items import Cancelled, process_alive, worker_id

MAX_WAIT_STEP_S = 0.5


def _run(conn: Connection, stmt: Any, params: Any = None) -> CursorResult:
    return conn.execute(stmt, params)


def provider_of(model: str) -> str:
    """The provider of a `provider/model` name."""
    return model.split("/", 1)[0]


class ProviderLimiter:
    """Hands out a provider's in-flight slots and per-minute requests to queued work, across processes."""

    def __init__(self, engine: Engine, limits: Mapping[str, Mapping[str, int]], lease_s: float = 600) -> None:
        self.engine, self.limits, self.lease_s = engine, dict(limits), lease_s
        self._ready: set[tuple[str, int]] = set()
        self._stop = threading.Event()  # never set: waits are Event waits so they need no sleep

    def _insert_ignore(self, conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        _run(conn, insert(table).on_conflict_do_nothing(), rows)

    def _take_slot(self, provider: str, n: int, holder: str) -> int | None:
        now = utcnow()
        with self.engine.begin() as conn:
            if (provider, n) not in self._ready:
                self._insert_ignore(conn, ProviderSlot, [{"provider": provider, "slot": i} for i in range(n)])
                self._ready.add((provider, n))
            for slot in random.sample(range(n), n):
                taken = _run(
                    conn,
                    update(ProviderSlot)
                    .where(
                        ProviderSlot.provider == provider,
                        ProviderSlot.slot == slot,
                        or_(ProviderSlot.holder.is_(None), ProviderSlot.expires_at < now),
                    )
                    .values(holder=holder, expires_at=now + timedelta(seconds=self.lease_s)),
                ).rowcount
                if taken == 1:
                    return slot
        return None

    def _free_dead_slots(self, provider: str) -> None:
        with self.engine.begin() as conn:
            held = _run(
                conn,
                select(ProviderSlot.slot, ProviderSlot.holder).where(
                    ProviderSlot.provider == provider, ProviderSlot.holder.is_not(None)
                ),
            ).all()
            for slot, holder in held:
                if holder and process_alive(holder.rsplit(":", 1)[0]) is False:
                    _run(
                        conn,
                        update(ProviderSlot)
                        .where(and_(ProviderSlot.provider == provider, ProviderSlot.slot == slot))
                        .where(ProviderSlot.holder == holder)
                        .values(holder=None, expires_at=None),
                    )

    def _release(self, provider: str, slot: int, holder: str) -> None:
        with self.engine.begin() as conn:
            _run(
                conn,
                update(ProviderSlot)
                .where(ProviderSlot.provider == provider, ProviderSlot.slot == slot, ProviderSlot.holder == holder)
                .values(holder=None, expires_at=None),
            )

    def _count_request(self, provider: str, rpm: int) -> bool:
        window = int(time.time() // 60)
        with self.engine.begin() as conn:
            self._insert_ignore(conn, ProviderWindow, [{"provider": provider, "window": window, "count": 0}])
            return (
                _run(
                    conn,
                    update(ProviderWindow)
                    .where(
                        ProviderWindow.provider == provider,
                        ProviderWindow.window == window,
                        ProviderWindow.count < rpm,
                    )
                    .values(count=ProviderWindow.count + 1),
                ).rowcount
                == 1
            )

    @contextmanager
    def slot(self, provider: str, cancelled: Callable[[], bool] = lambda: False) -> Iterator[None]:
        """Hold one of `provider`'s in-flight slots and one request of its minute for the body (wait until free).

        No limit configured: returns at once. Raises Cancelled when `cancelled()` turns true while waiting.
        """
        limits = self.limits.get(provider)
        if not limits:
            yield
            return
        holder = f"{worker_id()}:{threading.get_ident()}"
        held: int | None = None
        step, waited = 0.01, 0.0
        try:
            while True:
                if "concurrency" in limits and held is None:
                    held = self._take_slot(provider, limits["concurrency"], holder)
                if (held is not None or "concurrency" not in limits) and (
                    "rpm" not in limits or self._count_request(provider, limits["rpm"])
                ):
                    break
                if cancelled():
                    raise Cancelled(f"cancelled while waiting for a {provider} slot")
                if held is None and waited >= 1.0:
                    self._free_dead_slots(provider)
                    waited = 0.0
                self._stop.wait(step)
                waited += step
                step = min(step * 2, MAX_WAIT_STEP_S)
            yield
        finally:
            if held is not None:
                self._release(provider, held, holder)

    def in_flight(self, provider: str) -> int:
        """Slots of `provider` held now (for tests and the page)."""
        now = utcnow()
        with self.engine.connect() as conn:
            return len(
                _run(
                    conn,
                    select(ProviderSlot.slot).where(
                        ProviderSlot.provider == provider,
                        ProviderSlot.holder.is_not(None),
                        ProviderSlot.expires_at >= now,
                    ),
                ).all()
            )
