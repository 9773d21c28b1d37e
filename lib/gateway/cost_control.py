"""Cost control in front of the gateway: an exact-match response cache, and monthly budgets."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from langchain_core.messages import BaseMessage
from sqlalchemy import CursorResult, Engine, delete, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from lib.core.settings import Settings
from lib.core.tables import Budget, CachedResponse, LlmCall, utcnow
from lib.gateway.call_log import without_nul
from lib.gateway.errors import BudgetExceeded, UnpricedModel
from lib.gateway.pricing import Price
from lib.gateway.reservations import Counter, Key, Limit, read_counters, release_expired, sync_counter, try_reserve
from lib.gateway.reservations import settle as settle_reservation
from lib.gateway.tokens import message_text

log = logging.getLogger(__name__)

SCOPES = ("global", "user", "feature")
DEFAULT_OUTPUT_TOKENS = 4096  # a call under a hard budget without its own output cap gets this one
MIN_ANSWER_TOKENS = 16  # a budget that cannot pay for the question and this much answer refuses the call
RESERVE_TRIES = 8  # other calls reserving at the same moment: plan again with what is left, this often


def cache_key(model: str, params: dict[str, Any], messages: Sequence[BaseMessage], user: str | None = None) -> str:
    """SHA-256 of the exact request: model, parameters, every message's role and text, and whose it is.

    `user` None: an answer any user may be served (a feature marked shared); else only that user's.
    """
    payload: dict[str, Any] = {
        "model": model,
        "params": {k: params[k] for k in sorted(params)},
        "messages": [[m.type, message_text(m)] for m in messages],
    }
    if user is not None:
        payload["user"] = user
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


def period_of(now: datetime) -> str:
    """The budget month of `now`, as counters are keyed: "2026-11"."""
    return month_start(now).strftime("%Y-%m")


def reservation_ttl_s(settings: Settings) -> float:
    """How long a call can hold a reservation: every attempt on its model and on a fallback timing out, plus backoff.

    A reservation older than this belongs to a process that died mid-call and is given back.
    """
    timeout = max((p.timeout_s for p in settings.providers), default=60.0)
    per_model = timeout * (settings.max_retries + 1) + settings.backoff_max_s * settings.max_retries
    return 2 * per_model + 60.0


@dataclass(frozen=True)
class CallEstimate:
    """What a call needs before it is sent: estimated input tokens, the caller's output cap, the model's price."""

    input_tokens: int
    max_output: int | None  # None: the caller set no cap
    price: Price | None  # None: no price is known for the model


@dataclass
class Admission:
    """A call let through: the model to use (maybe degraded), notices for the user, what it holds on its budgets."""

    model: str
    notices: list[str] = field(default_factory=list)
    max_tokens: int | None = None  # the output cap the budgets can pay for, sent to the provider; None: no cap
    blocks_unpriced: bool = False  # a dollar budget applies and unpriced models are refused (fallbacks too)
    reservation_id: str | None = None
    period: str = ""
    reserved: dict[Key, tuple[float, int]] = field(default_factory=dict)  # (scope, subject) -> dollars, tokens


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
    """Every budget with this month's burn (as enforced: never less than the call log shows), for the admin page.

    `reserved_*` is what calls still running hold on the budget.
    """
    with Session(engine) as s:
        budgets = list(s.scalars(select(Budget).order_by(Budget.scope, Budget.subject)))
    counters = read_counters(engine, [(b.scope, b.subject) for b in budgets], period_of(utcnow())) if budgets else {}
    rows = []
    for b in budgets:
        usd, tokens = spend_this_month(engine, b.scope, b.subject)
        c = counters[(b.scope, b.subject)]
        usd, tokens = max(usd, c.spent_usd), max(tokens, c.spent_tokens)
        rows.append(
            {
                "id": b.id,
                "scope": b.scope,
                "subject": b.subject,
                "limit_usd": b.limit_usd,
                "spent_usd": round(usd, 6),
                "limit_tokens": b.limit_tokens,
                "spent_tokens": tokens,
                "reserved_usd": round(c.reserved_usd, 6),
                "reserved_tokens": c.reserved_tokens,
                "used": budget_used(usd, tokens, b.limit_usd, b.limit_tokens),
                "soft_ratio": b.soft_ratio,
                "degrade_model": b.degrade_model,
            }
        )
    return rows


def _applies(b: Budget, user: str | None, feature: str) -> bool:
    return (
        b.scope == "global"
        or (b.scope == "user" and b.subject == user)
        or (b.scope == "feature" and b.subject == feature)
    )


def _who(b: Budget) -> str:
    return "everyone" if b.scope == "global" else f"{b.scope} {b.subject!r}"


class BudgetGuard:
    """Holds hard budgets across every process that shares the database (see lib.gateway.reservations).

    Before a call, its worst-case cost (input estimate + output cap at the model's price) is reserved on every
    budget that applies, or the call is refused; the output cap is lowered to what the budgets have left, so a
    call overshoots by no more than its input estimate is off. After the call, `settle` counts the actual cost.
    Budgets are re-read every `refresh_s`; each counter's spend is caught up with the call log as often.
    """

    def __init__(
        self,
        engine: Engine,
        refresh_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
        unpriced_policy: str = "block",
        reservation_ttl_s: float = 600.0,
    ):
        self.engine, self.refresh_s, self.clock, self.now = engine, refresh_s, clock, now
        self.unpriced_policy, self.reservation_ttl_s = unpriced_policy, reservation_ttl_s
        self._lock = threading.Lock()
        self._budgets: list[Budget] = []
        self._budgets_at = -1e18
        self._synced: dict[tuple[str, str, str], float] = {}  # (scope, subject, period) -> when caught up

    def _load_budgets(self) -> list[Budget]:
        with self._lock:
            if self.clock() - self._budgets_at > self.refresh_s:
                with Session(self.engine, expire_on_commit=False) as s:
                    self._budgets = list(s.scalars(select(Budget)))
                self._budgets_at = self.clock()
            return self._budgets

    def invalidate(self) -> None:
        """Re-read budgets and catch spend up with the call log on the next call (after an admin changes a budget)."""
        with self._lock:
            self._budgets_at = -1e18
            self._synced.clear()

    def _counters(self, keys: list[Key], period: str) -> dict[Key, Counter]:
        for key in keys:
            at = self._synced.get((*key, period))
            if at is None or self.clock() - at > self.refresh_s:
                usd, tokens = spend_this_month(self.engine, key[0], key[1], self.now())
                sync_counter(self.engine, key, period, usd, tokens)
                self._synced[(*key, period)] = self.clock()
        return read_counters(self.engine, keys, period)

    def admit(self, user: str | None, feature: str, model: str, estimate: Callable[[str], CallEstimate]) -> Admission:
        """Reserve the call's worst case on its budgets (maybe on a cheaper model, with a warning), or raise."""
        budgets = {(b.scope, b.subject): b for b in self._load_budgets() if _applies(b, user, feature)}
        if not budgets:
            return Admission(model)
        limits = {k: Limit(b.limit_usd, b.limit_tokens) for k, b in budgets.items()}
        period, swept, full = period_of(self.now()), False, next(iter(budgets))
        for _ in range(RESERVE_TRIES):
            counters = self._counters(list(budgets), period)
            try:
                admission = self._plan(budgets, counters, model, estimate)
            except UnpricedModel:
                raise
            except BudgetExceeded:
                if swept or not any(c.reserved_usd or c.reserved_tokens for c in counters.values()):
                    raise
                swept = True  # what blocks may be held by a process that died mid-call
                release_expired(self.engine, self.now())
                continue
            admission.reservation_id, admission.period = uuid.uuid4().hex, period
            expires = self.now() + timedelta(seconds=self.reservation_ttl_s)
            no_room = try_reserve(self.engine, admission.reservation_id, period, admission.reserved, limits, expires)
            if no_room is None:
                return admission
            full = no_room  # another call reserved first: plan again with what is left
        raise self._refusal(budgets[full], read_counters(self.engine, [full], period)[full])

    def _plan(
        self,
        budgets: dict[Key, Budget],
        counters: dict[Key, Counter],
        model: str,
        estimate: Callable[[str], CallEstimate],
    ) -> Admission:
        """The model, notices, output cap and amounts to reserve for a call, given the counters; or raise."""
        admission, degrade = Admission(model), None
        for key, b in budgets.items():
            c = counters[key]
            used = budget_used(
                c.spent_usd + c.reserved_usd, c.spent_tokens + c.reserved_tokens, b.limit_usd, b.limit_tokens
            )
            if used >= 1:
                raise self._refusal(b, c)
            if used >= b.soft_ratio:
                admission.notices.append(f"{used:.0%} of the monthly budget for {_who(b)} is used.")
                degrade = degrade or b.degrade_model
        if degrade and degrade != model:
            admission.model = degrade
            admission.notices.append(f"To stay within budget this answer comes from {degrade}.")
        est = estimate(admission.model)
        in_dollars = [b for b in budgets.values() if b.limit_usd is not None]
        admission.blocks_unpriced = bool(in_dollars) and self.unpriced_policy == "block"
        if est.price is None and admission.blocks_unpriced:
            raise UnpricedModel(
                f"No price is known for {admission.model}, and the monthly budget for {_who(in_dollars[0])} is in "
                "dollars, so this request was not sent: its cost could not be counted. An admin can add the "
                "model's price on the Settings page (Prices), or set WORKBENCH_UNPRICED_POLICY=tokens to count "
                "such calls against token budgets only."
            )
        in_usd = est.price.cost(est.input_tokens, 0) if est.price else 0.0
        out_rate = est.price.output / 1_000_000 if est.price else 0.0
        wanted = est.max_output or DEFAULT_OUTPUT_TOKENS
        cap, capped, binding = wanted, False, None
        for key, b in budgets.items():
            room = _output_room(b, counters[key], est.input_tokens, in_usd, out_rate)
            if room is not None:
                capped = True
                if room < cap:
                    cap, binding = room, key
        if binding is not None and cap < min(wanted, MIN_ANSWER_TOKENS):
            raise self._refusal(budgets[binding], counters[binding])
        admission.max_tokens = cap if capped else None
        admission.reserved = dict.fromkeys(budgets, (in_usd + cap * out_rate, est.input_tokens + cap))
        return admission

    def _refusal(self, b: Budget, c: Counter) -> BudgetExceeded:
        reset = next_month(self.now()).strftime("%Y-%m-%d")
        limit = f"${b.limit_usd:,.2f}" if b.limit_usd is not None else f"{b.limit_tokens:,} tokens"
        head = f"The monthly budget for {_who(b)} ({limit})"
        tail = f"It resets on {reset} (UTC); an admin can raise it on the Settings page."
        if budget_used(c.spent_usd, c.spent_tokens, b.limit_usd, b.limit_tokens) >= 1:
            return BudgetExceeded(f"{head} is used up, so this request was not sent. {tail}")
        if c.reserved_usd or c.reserved_tokens:
            return BudgetExceeded(
                f"{head} is nearly used up and requests still running hold the rest, so this request was not "
                f"sent. Try again in a minute, once they finish. {tail}"
            )
        return BudgetExceeded(
            f"{head} has too little left for this request and a short answer, so it was not sent. Ask a "
            f"shorter question or start a new conversation. {tail}"
        )

    def settle(self, admission: Admission | None, cost_usd: float | None, tokens: int) -> None:
        """Release the call's reservation and count its actual cost (an unpriced call counts its tokens only)."""
        if admission is None or admission.reservation_id is None:
            return
        settle_reservation(
            self.engine, admission.reservation_id, admission.period, admission.reserved, cost_usd or 0.0, tokens
        )


def _output_room(b: Budget, c: Counter, input_tokens: int, in_usd: float, out_rate: float) -> int | None:
    """Output tokens budget `b` can still pay for after the question; None when it does not limit them."""
    room: int | None = None
    if b.limit_usd is not None:
        left = b.limit_usd - c.spent_usd - c.reserved_usd - in_usd
        if out_rate > 0:
            room = math.floor(left / out_rate)
        elif left < 0:
            room = -1  # cannot even pay for the question
    if b.limit_tokens is not None:
        tokens_left = b.limit_tokens - c.spent_tokens - c.reserved_tokens - input_tokens
        room = tokens_left if room is None else min(room, tokens_left)
    return room


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
