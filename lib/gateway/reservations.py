"""Hard budgets held across processes: a counter row per budget and month in the shared database; a call reserves
its worst-case cost there (all its budgets or none, never past a limit) and settles it with the actual cost.

The reservation is one conditional UPDATE per budget (spent + reserved + cost <= limit) in one transaction: on
PostgreSQL the row lock makes a concurrent UPDATE re-check the condition once the first commits; on SQLite the
first UPDATE takes the database's write lock (no read comes before it in the transaction, so WAL never refuses
the upgrade). Reservations of a process that died expire; `release_expired` gives them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from lib.core.tables import BudgetCounter, BudgetReservation

Key = tuple[str, str]  # (scope, subject) of a budget
EPSILON_USD = 1e-12  # float sums of many small costs must not refuse a call that fits exactly

C = BudgetCounter.__table__.c
R = BudgetReservation.__table__.c


@dataclass(frozen=True)
class Counter:
    """A budget's month: what was spent and what calls in flight hold."""

    spent_usd: float = 0.0
    spent_tokens: int = 0
    reserved_usd: float = 0.0
    reserved_tokens: int = 0


@dataclass(frozen=True)
class Limit:
    """A budget's hard limits (None: no limit of that kind)."""

    usd: float | None
    tokens: int | None


NO_LIMIT_USD, NO_LIMIT_TOKENS = 1e300, 2**62  # stand-ins for "no limit of this kind" in the conditional UPDATE

# The per-call statements as plain SQL: building them from SQLAlchemy expressions cost more (~0.1 ms each) than
# running them. Standard SQL, the same on SQLite and PostgreSQL.
_RESERVE = text(
    "UPDATE budget_counters SET reserved_usd = reserved_usd + :usd, reserved_tokens = reserved_tokens + :tokens "
    "WHERE scope = :scope AND subject = :subject AND period = :period "
    "AND spent_usd + reserved_usd + :usd <= :limit_usd AND spent_tokens + reserved_tokens + :tokens <= :limit_tokens"
)
_GIVE_BACK = text(
    "UPDATE budget_counters SET "
    "reserved_usd = CASE WHEN reserved_usd < :usd THEN 0.0 ELSE reserved_usd - :usd END, "
    "reserved_tokens = CASE WHEN reserved_tokens < :tokens THEN 0 ELSE reserved_tokens - :tokens END, "
    "spent_usd = spent_usd + :spent_usd, spent_tokens = spent_tokens + :spent_tokens "
    "WHERE scope = :scope AND subject = :subject AND period = :period"
)
_UNHOLD = text("DELETE FROM budget_reservations WHERE id = :id AND scope = :scope AND subject = :subject")
_READ = "SELECT scope, subject, spent_usd, spent_tokens, reserved_usd, reserved_tokens FROM budget_counters "


def _this(key: Key, period: str) -> Any:
    return and_(C.scope == key[0], C.subject == key[1], C.period == period)


def read_counters(engine: Engine, keys: Iterable[Key], period: str) -> dict[Key, Counter]:
    """The counters of `keys` for `period` (a missing one reads as all zero)."""
    keys = list(keys)
    if not keys:
        return {}
    pairs = " OR ".join(f"(scope = :s{i} AND subject = :u{i})" for i in range(len(keys)))
    params: dict[str, Any] = {"period": period}
    for i, (scope, subject) in enumerate(keys):
        params |= {f"s{i}": scope, f"u{i}": subject}
    with engine.connect() as conn:
        found = {
            (r[0], r[1]): Counter(float(r[2]), int(r[3]), float(r[4]), int(r[5]))
            for r in conn.execute(text(f"{_READ}WHERE period = :period AND ({pairs})"), params)
        }
    return {k: found.get(k, Counter()) for k in keys}


def _insert_missing(conn: Connection, values: dict[str, Any]) -> None:
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(BudgetCounter).values(**values).on_conflict_do_nothing())
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(BudgetCounter).values(**values).on_conflict_do_nothing())
        return
    try:
        with conn.begin_nested():
            conn.execute(insert(BudgetCounter).values(**values))
    except IntegrityError:
        pass  # another process created it first: the UPDATE below brings it up to date


def sync_counter(engine: Engine, key: Key, period: str, spent_usd: float, spent_tokens: int) -> None:
    """Create the counter if missing, and raise its spend to what the call log shows (never lower it).

    Raising only: calls settle on the counter before their call-log row is written, so the log never holds a
    call the counter lacks, but spend logged by others (or by a process that died after logging) is caught up.
    """
    values = {"scope": key[0], "subject": key[1], "period": period, "spent_usd": spent_usd}
    values |= {"spent_tokens": spent_tokens, "reserved_usd": 0.0, "reserved_tokens": 0}
    with engine.begin() as conn:
        _insert_missing(conn, values)
        conn.execute(
            update(BudgetCounter)
            .where(_this(key, period), or_(C.spent_usd < spent_usd, C.spent_tokens < spent_tokens))
            .values(
                spent_usd=case((C.spent_usd < spent_usd, spent_usd), else_=C.spent_usd),
                spent_tokens=case((C.spent_tokens < spent_tokens, spent_tokens), else_=C.spent_tokens),
            )
        )


def try_reserve(
    engine: Engine,
    reservation_id: str,
    period: str,
    amounts: Mapping[Key, tuple[float, int]],
    limits: Mapping[Key, Limit],
    expires_at: datetime,
) -> Key | None:
    """Reserve `amounts` on every budget at once, or on none: None when done, else the first budget without room."""
    try:
        _reserve(engine, reservation_id, period, amounts, limits, expires_at)
    except _NoRoom as full:
        return full.key
    return None


class _NoRoom(Exception):
    """A budget has no room for the reservation; raised to roll the transaction back."""

    def __init__(self, key: Key):
        super().__init__(key)
        self.key = key


def _reserve(
    engine: Engine,
    reservation_id: str,
    period: str,
    amounts: Mapping[Key, tuple[float, int]],
    limits: Mapping[Key, Limit],
    expires_at: datetime,
) -> None:
    with engine.begin() as conn:
        for key in sorted(amounts):  # one lock order for every process: no deadlocks on PostgreSQL
            usd, tokens = amounts[key]
            limit = limits[key]
            cap_usd = NO_LIMIT_USD if limit.usd is None else limit.usd + EPSILON_USD
            cap_tokens = NO_LIMIT_TOKENS if limit.tokens is None else limit.tokens
            params = {"scope": key[0], "subject": key[1], "period": period, "usd": usd, "tokens": tokens}
            done = conn.execute(_RESERVE, params | {"limit_usd": cap_usd, "limit_tokens": cap_tokens})
            if done.rowcount != 1:
                raise _NoRoom(key)
        conn.execute(
            insert(BudgetReservation),
            [
                {"id": reservation_id, "scope": k[0], "subject": k[1], "period": period}
                | {"usd": usd, "tokens": tokens, "expires_at": expires_at}
                for k, (usd, tokens) in amounts.items()
            ],
        )


def _give_back(conn: Connection, key: Key, period: str, usd: float, tokens: int, spent: tuple[float, int]) -> None:
    where = {"scope": key[0], "subject": key[1], "period": period}
    conn.execute(_GIVE_BACK, where | {"usd": usd, "tokens": tokens, "spent_usd": spent[0], "spent_tokens": spent[1]})


def settle(
    engine: Engine,
    reservation_id: str,
    period: str,
    amounts: Mapping[Key, tuple[float, int]],
    actual_usd: float,
    actual_tokens: int,
) -> None:
    """Release a call's reservation and count what it actually cost, on every budget it reserved on."""
    with engine.begin() as conn:
        for key in sorted(amounts):
            gone = conn.execute(_UNHOLD, {"id": reservation_id, "scope": key[0], "subject": key[1]}).rowcount
            usd, tokens = amounts[key] if gone else (0.0, 0)  # expired meanwhile: already given back
            _give_back(conn, key, period, usd, tokens, (actual_usd, actual_tokens))


def release_expired(engine: Engine, now: datetime) -> int:
    """Give back reservations past their expiry (their process died mid-call); returns how many."""
    with engine.connect() as conn:
        rows = conn.execute(select(R.id, R.scope, R.subject, R.period, R.usd, R.tokens).where(R.expires_at < now)).all()
    released = 0
    with engine.begin() as conn:
        for rid, scope, subject, period, usd, tokens in sorted(rows, key=lambda r: (r[1], r[2], r[0])):
            gone = conn.execute(_UNHOLD, {"id": rid, "scope": scope, "subject": subject}).rowcount
            if gone:  # not settled meanwhile
                _give_back(conn, (scope, subject), period, float(usd), int(tokens), (0.0, 0))
                released += 1
    return released
