"""Cost control in front of the gateway: an exact-match response cache, and monthly budgets."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from langchain_core.messages import BaseMessage
from sqlalchemy import CursorResult, Engine, delete, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from lib.core.tables import Budget, CachedResponse, LlmCall, utcnow
from lib.gateway.call_log import without_nul
from lib.gateway.errors import BudgetExceeded
from lib.gateway.tokens import message_text

log = logging.getLogger(__name__)

SCOPES = ("global", "user", "feature")


def cache_key(model: str, params: dict[str, Any], messages: Sequence[BaseMessage]) -> str:
    """SHA-256 of the exact request: model, parameters and every message's role and text."""
    payload = {
        "model": model,
        "params": {k: params[k] for k in sorted(params)},
        "messages": [[m.type, message_text(m)] for m in messages],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class ResponseCache:
    """Answers stored in the database (shared by every app process) until their time-to-live ends."""

    def __init__(self, engine: Engine, ttl_s: float, now: Callable[[], datetime] = utcnow):
        self.engine, self.ttl_s, self.now = engine, ttl_s, now

    def get(self, key: str) -> CachedResponse | None:
        """The unexpired answer for `key`, or None."""
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(CachedResponse, key)
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        return row if expires > self.now() else None

    def put(
        self, key: str, model: str, text: str, prompt_tokens: int, completion_tokens: int, cost_usd: float | None
    ) -> None:
        """Store (or refresh) an answer."""
        now = self.now()
        with Session(self.engine) as s, s.begin():
            row = s.get(CachedResponse, key) or CachedResponse(key=key)
            row.model, row.response, row.prompt_tokens, row.completion_tokens = (
                model,
                text,
                prompt_tokens,
                completion_tokens,
            )
            row.cost_usd, row.created_at, row.expires_at = cost_usd, now, now + timedelta(seconds=self.ttl_s)
            s.merge(row)

    def purge_expired(self) -> int:
        """Delete expired answers; returns how many."""
        with Session(self.engine) as s, s.begin():
            done = s.execute(delete(CachedResponse).where(CachedResponse.expires_at <= self.now()))
            return cast(CursorResult, done).rowcount


def purge_expired_cache(engine: Engine, now: Callable[[], datetime] = utcnow) -> int:
    """Delete expired cached answers, which nothing else removes; returns how many. Housekeeping for a scheduler."""
    return ResponseCache(engine, ttl_s=0, now=now).purge_expired()


def month_start(now: datetime) -> datetime:
    """00:00 UTC on the first day of `now`'s month."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(now: datetime) -> datetime:
    """When the current month's budgets reset."""
    start = month_start(now)
    return (start + timedelta(days=32)).replace(day=1)


@dataclass
class Admission:
    """A call let through: the model to use (maybe degraded), notices for the user, what was reserved."""

    model: str
    notices: list[str] = field(default_factory=list)
    reserved: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)


def set_budget(
    engine: Engine,
    scope: str,
    subject: str,
    limit_usd: float | None = None,
    limit_tokens: int | None = None,
    soft_ratio: float = 0.8,
    degrade_model: str | None = None,
    user: str | None = None,
) -> None:
    """Create or change the monthly budget of a scope (global '*', a user, or a feature)."""
    if scope not in SCOPES:
        raise ValueError(f"A budget's scope is one of {SCOPES}.")
    if limit_usd is None and limit_tokens is None:
        raise ValueError("A budget needs a limit in dollars, in tokens, or both.")
    if (limit_usd is not None and limit_usd < 0) or (limit_tokens is not None and limit_tokens < 0):
        raise ValueError("Budget limits cannot be negative.")
    if not 0 < soft_ratio <= 1:
        raise ValueError("The soft limit is a fraction between 0 and 1, e.g. 0.8.")
    subject = "*" if scope == "global" else subject.strip()
    if not subject:
        raise ValueError("Name the user or feature this budget is for.")
    with Session(engine) as s, s.begin():
        row = s.scalar(select(Budget).where(Budget.scope == scope, Budget.subject == subject))
        if row is None:
            row = Budget(scope=scope, subject=subject)
            s.add(row)
        row.limit_usd, row.limit_tokens, row.soft_ratio = limit_usd, limit_tokens, soft_ratio
        row.degrade_model, row.created_by = degrade_model or None, user


def delete_budget(engine: Engine, budget_id: int) -> None:
    """Remove a budget."""
    with Session(engine) as s, s.begin():
        row = s.get(Budget, budget_id)
        if row is not None:
            s.delete(row)


def spend_this_month(engine: Engine, scope: str, subject: str, now: datetime | None = None) -> tuple[float, int]:
    """Dollars and tokens logged this month for a scope (cached hits and refusals cost nothing)."""
    q = select(
        func.coalesce(func.sum(LlmCall.cost_usd), 0.0),
        func.coalesce(func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens), 0),
    ).where(LlmCall.created_at >= month_start(now or utcnow()), LlmCall.status.notin_(("cached", "blocked")))
    if scope == "user":
        q = q.where(LlmCall.user == subject)
    elif scope == "feature":
        q = q.where(LlmCall.feature == subject)
    with Session(engine) as s:
        usd, tokens = s.execute(q).one()
    return float(usd or 0), int(tokens or 0)


def budget_used(usd: float, tokens: int, limit_usd: float | None, limit_tokens: int | None) -> float:
    """The share of a budget used, by its tighter limit; 1.0 or more refuses calls, as a zero limit always does."""

    def share(spent: float, limit: float | None) -> float:
        if limit is None:
            return 0.0
        return spent / limit if limit else 1.0

    return max(share(usd, limit_usd), share(tokens, limit_tokens))


def budget_table(engine: Engine) -> list[dict[str, Any]]:
    """Every budget with this month's burn, for the admin page."""
    with Session(engine) as s:
        budgets = list(s.scalars(select(Budget).order_by(Budget.scope, Budget.subject)))
    rows = []
    for b in budgets:
        usd, tokens = spend_this_month(engine, b.scope, b.subject)
        rows.append(
            {
                "id": b.id,
                "scope": b.scope,
                "subject": b.subject,
                "limit_usd": b.limit_usd,
                "spent_usd": round(usd, 6),
                "limit_tokens": b.limit_tokens,
                "spent_tokens": tokens,
                "used": budget_used(usd, tokens, b.limit_usd, b.limit_tokens),
                "soft_ratio": b.soft_ratio,
                "degrade_model": b.degrade_model,
            }
        )
    return rows


class BudgetGuard:
    """Checks budgets before a call (with its estimate) and accounts for it after (with its actual cost).

    Check-and-reserve happens under one lock, so concurrent calls in this process cannot together pass
    a hard limit by more than one call's cost. Spend is read from the call log and refreshed every
    `refresh_s`, so calls from other processes count too (with that much delay).
    """

    def __init__(
        self,
        engine: Engine,
        refresh_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ):
        self.engine, self.refresh_s, self.clock, self.now = engine, refresh_s, clock, now
        self._lock = threading.Lock()
        self._budgets: list[Budget] = []
        self._budgets_at = -1e18
        self._spent: dict[tuple[str, str], tuple[float, int, float, datetime]] = {}
        self._reserved: dict[tuple[str, str], tuple[float, int]] = {}

    def _load_budgets(self) -> list[Budget]:
        if self.clock() - self._budgets_at > self.refresh_s:
            with Session(self.engine, expire_on_commit=False) as s:
                self._budgets = list(s.scalars(select(Budget)))
            self._budgets_at = self.clock()
        return self._budgets

    def invalidate(self) -> None:
        """Forget cached budgets and spend (after an admin changes a budget)."""
        with self._lock:
            self._budgets_at = -1e18
            self._spent.clear()

    def _spend(self, key: tuple[str, str]) -> tuple[float, int]:
        month = month_start(self.now())
        cached = self._spent.get(key)
        if cached is None or self.clock() - cached[2] > self.refresh_s or cached[3] != month:
            usd, tokens = spend_this_month(self.engine, key[0], key[1], self.now())
            cached = (usd, tokens, self.clock(), month)
            self._spent[key] = cached
        return cached[0], cached[1]

    def admit(
        self, user: str | None, feature: str, model: str, estimate: Callable[[str], tuple[float, int]]
    ) -> Admission:
        """Let a call through (maybe on a cheaper model, with a warning) or raise BudgetExceeded."""
        with self._lock:
            budgets = [
                b
                for b in self._load_budgets()
                if (b.scope == "global")
                or (b.scope == "user" and b.subject == user)
                or (b.scope == "feature" and b.subject == feature)
            ]
            admission = Admission(model)
            if not budgets:
                return admission
            degrade: str | None = None
            for b in budgets:
                key = (b.scope, b.subject)
                usd, tokens = self._spend(key)
                r_usd, r_tokens = self._reserved.get(key, (0.0, 0))
                usd, tokens = usd + r_usd, tokens + r_tokens
                used = budget_used(usd, tokens, b.limit_usd, b.limit_tokens)
                what = "everyone" if b.scope == "global" else f"{b.scope} {b.subject!r}"
                if used >= 1:
                    reset = next_month(self.now()).strftime("%Y-%m-%d")
                    limit = f"${b.limit_usd:,.2f}" if b.limit_usd is not None else f"{b.limit_tokens:,} tokens"
                    raise BudgetExceeded(
                        f"The monthly budget for {what} ({limit}) is used up, so this request was "
                        f"not sent. It resets on {reset} (UTC); an admin can raise it on the "
                        "Settings page."
                    )
                if used >= b.soft_ratio:
                    admission.notices.append(f"{used:.0%} of the monthly budget for {what} is used.")
                    degrade = degrade or b.degrade_model
            if degrade and degrade != model:
                admission.model = degrade
                admission.notices.append(f"To stay within budget this answer comes from {degrade}.")
            est_usd, est_tokens = estimate(admission.model)
            for b in budgets:
                key = (b.scope, b.subject)
                r_usd, r_tokens = self._reserved.get(key, (0.0, 0))
                self._reserved[key] = (r_usd + est_usd, r_tokens + est_tokens)
                admission.reserved[key] = (est_usd, est_tokens)
            return admission

    def settle(self, admission: Admission | None, cost_usd: float | None, tokens: int) -> None:
        """Release the reservation and count the call's actual cost."""
        if admission is None or not admission.reserved:
            return
        with self._lock:
            for key, (est_usd, est_tokens) in admission.reserved.items():
                r_usd, r_tokens = self._reserved.get(key, (0.0, 0))
                self._reserved[key] = (max(0.0, r_usd - est_usd), max(0, r_tokens - est_tokens))
                if key in self._spent:
                    usd, tok, at, month = self._spent[key]
                    self._spent[key] = (usd + (cost_usd or 0.0), tok + tokens, at, month)


def integrity_safe_put(cache: ResponseCache, key: str, model: str, text: str, *args: Any) -> None:
    """Store in the cache if it can be; a failure here must never cost the user the answer they already have.

    Two processes storing the same key at once is not an error. NUL characters (which PostgreSQL refuses in
    text) are dropped, as in the call log, so the cached answer is the one logged.
    """
    try:
        cache.put(key, model, without_nul(text), *args)
    except IntegrityError:
        pass
    except SQLAlchemyError:
        log.warning("could not store a cached answer for %s", model, exc_info=True)
