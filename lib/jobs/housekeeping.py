"""Scheduled housekeeping: call-log retention that keeps the usage rollups exact, and old queue bytes and windows.

Retention deletes calls older than WORKBENCH_LOG_RETENTION_DAYS in batches, oldest first; in the same transaction
as each batch it rebuilds the rollup rows of the hours the batch touched from the calls left, so every dashboard
figure stays equal to an aggregation of the call log from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, select, text

from lib.core.rollups import all_rollups, backfill_sql
from lib.core.tables import LlmCall, ProviderWindow, utcnow
from lib.gateway.call_log import lock_rollups

RETENTION_BATCH = 5000


def _stamp(engine: Engine, when: datetime) -> datetime | str:
    """A bound value comparable with stored timestamps (SQLite keeps them as naive UTC text)."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if engine.dialect.name == "sqlite":
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return when


def _hour_floor(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def _rebuild_hours(conn, dialect: str, lo: datetime | str, hi: datetime | str) -> None:
    """Recompute every rollup row with lo <= hour < hi from the calls in that range."""
    for name in all_rollups():
        conn.execute(text(f"DELETE FROM {name} WHERE hour >= :lo AND hour < :hi"), {"lo": lo, "hi": hi})
        sql = backfill_sql(dialect, name, where="c.created_at >= :lo AND c.created_at < :hi")
        conn.execute(text(sql), {"lo": lo, "hi": hi})


def delete_old_calls(
    engine: Engine, days: int, batch: int = RETENTION_BATCH, now: Callable[[], datetime] = utcnow
) -> int:
    """Delete calls older than `days` days, `batch` at a time, rebuilding the rollups of their hours; returns how many."""
    cutoff = now() - timedelta(days=days)
    dialect, deleted = engine.dialect.name, 0
    while True:
        with engine.begin() as conn:
            ids = list(
                conn.scalars(
                    select(LlmCall.id)
                    .where(LlmCall.created_at < cutoff)
                    .order_by(LlmCall.created_at, LlmCall.id)
                    .limit(batch)
                )
            )
            if not ids:
                return deleted
            first, last = conn.execute(
                select(func.min(LlmCall.created_at), func.max(LlmCall.created_at)).where(LlmCall.id.in_(ids))
            ).one()
            lock_rollups(conn)  # the rollups' rows are rewritten here: not beside a call-log insert (deadlock)
            conn.execute(delete(LlmCall).where(LlmCall.id.in_(ids)))
            lo, hi = _hour_floor(first), _hour_floor(last) + timedelta(hours=1)
            _rebuild_hours(conn, dialect, _stamp(engine, lo), _stamp(engine, hi))
            deleted += len(ids)


def delete_old_windows(engine: Engine, keep_minutes: int = 60) -> int:
    """Drop provider rate-limit windows older than `keep_minutes`."""
    oldest = int(utcnow().timestamp() // 60) - keep_minutes
    with engine.begin() as conn:
        return conn.execute(delete(ProviderWindow).where(ProviderWindow.window < oldest)).rowcount
