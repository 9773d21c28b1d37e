"""What the Settings page shows and saves: providers and their reachability, prices in force, budgets with their
burn. Keys are never returned."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lib.core.settings import ProviderConfig, Settings
from lib.core.tables import PriceOverride, utcnow
from lib.gateway.breaker import CircuitBreaker
from lib.gateway.cost_control import budget_table, delete_budget, next_month, set_budget
from lib.gateway.pricing import PriceTable, find_price, set_price_override

if TYPE_CHECKING:
    from lib.gateway.client import Gateway


def provider_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per provider: kind, endpoint, models, timeout, external, whether a key is set (never the key)."""
    return [
        {
            "provider": p.name,
            "kind": p.kind,
            "base_url": p.base_url or ("OpenAI" if p.kind == "openai" else "—"),
            "models": ", ".join(p.models),
            "default model": p.default_model,
            "timeout s": p.timeout_s,
            "external": p.external,
            "key set": bool(p.api_key),
        }
        for p in settings.providers
    ]


def feature_defaults(settings: Settings) -> list[dict[str, Any]]:
    """The model each feature uses, and its fallback."""
    features = sorted({"chat", "compare", "judge", "embed", *settings.fallback_models})
    return [
        {
            "feature": f,
            "model": settings.embedding_model if f == "embed" else settings.default_model,
            "fallback": settings.fallback_models.get(f, "—"),
            "cached": f in settings.cache_features,
            "max input tokens": settings.max_input_tokens.get(f, "—"),
            "max output tokens": settings.max_output_tokens.get(f, "—"),
        }
        for f in features
    ]


def check_provider(provider: ProviderConfig, timeout_s: float = 5.0) -> dict[str, Any]:
    """List the provider's models over HTTP; says whether it answered, how fast, and what went wrong."""
    if provider.kind == "offline":
        return {"provider": provider.name, "reachable": True, "latency ms": 0.0, "detail": "built in"}
    import openai

    from lib.gateway.errors import map_error

    client = openai.OpenAI(
        base_url=provider.base_url, api_key=provider.api_key or "not-needed", timeout=timeout_s, max_retries=0
    )
    started = time.perf_counter()
    try:
        ids = [m.id for m in client.models.list()]
    except Exception as exc:
        return {
            "provider": provider.name,
            "reachable": False,
            "latency ms": None,
            "detail": str(map_error(exc, provider.name, timeout_s)),
        }
    missing = [m for m in provider.models if m not in ids]
    detail = f"{len(ids)} models served" + (f"; not served: {', '.join(missing)}" if missing and ids else "")
    return {
        "provider": provider.name,
        "reachable": True,
        "latency ms": round((time.perf_counter() - started) * 1000, 1),
        "detail": detail,
    }


def price_rows(settings: Settings, table: PriceTable, engine: Engine) -> list[dict[str, Any]]:
    """Prices in force for every configured model and every model in the shipped table."""
    models = sorted(set(settings.model_names()) | set(table.prices))
    rows = []
    for m in models:
        p = find_price(m, table, engine)
        rows.append(
            {
                "model": m,
                "input $/1M": p.input if p else None,
                "cached input $/1M": p.cached_input if p else None,
                "output $/1M": p.output if p else None,
                "source": p.source if p else "UNPRICED: calls are logged without a cost",
            }
        )
    return rows


def prices_caption(settings: Settings, table: PriceTable) -> str:
    """What the Prices tab says about the table's date and about models without a price."""
    unpriced = {
        "block": "calls to it are refused while a dollar budget applies, since their cost could not be counted",
        "tokens": "while a dollar budget applies, its calls count $0 there and their tokens count on token budgets",
    }[settings.unpriced_policy]
    return (
        f"Shipped list prices as of {table.as_of}, per million tokens. Overrides win from their date on; a model "
        f"with no price is logged as unpriced, never as $0, and {unpriced} (WORKBENCH_UNPRICED_POLICY)."
    )


def override_history(engine: Engine) -> list[dict[str, Any]]:
    """Every price override, newest first (they are kept, never edited)."""
    with Session(engine) as s:
        rows = s.scalars(select(PriceOverride).order_by(PriceOverride.effective_from.desc(), PriceOverride.id.desc()))
        return [
            {
                "model": r.model,
                "input $/1M": r.input_per_mtok,
                "cached input $/1M": r.cached_input_per_mtok,
                "output $/1M": r.output_per_mtok,
                "from": r.effective_from,
                "by": r.created_by,
            }
            for r in rows
        ]


def breaker_caption(settings: Settings, breaker: CircuitBreaker) -> str:
    """Each provider's circuit-breaker state, in one line."""
    return "Circuit breakers: " + ", ".join(f"{p.name} {breaker.state(p.name)}" for p in settings.providers)


def budget_bars(engine: Engine, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each budget as a progress bar: id, filled fraction (0 to 1) and its line of text; a used-up one says so, and
    what calls in progress hold on it."""
    reset = next_month(now or utcnow()).strftime("%Y-%m-%d")
    bars = []
    for b in budget_table(engine):
        by_usd = b["limit_usd"] is not None
        limit = f"${b['limit_usd']:,.2f}" if by_usd else f"{b['limit_tokens']:,} tokens"
        spent = f"${b['spent_usd']:,.4f}" if by_usd else f"{b['spent_tokens']:,} tokens"
        if b["used"] >= 1:
            then = f"used up: calls are refused until {reset} (UTC)"
        else:
            then = f"soft limit {b['soft_ratio']:.0%}, then {b['degrade_model'] or 'warn only'}"
        held = f"${b['reserved_usd']:,.4f}" if by_usd else f"{b['reserved_tokens']:,} tokens"
        held = f", {held} held by calls in progress" if b["reserved_usd"] or b["reserved_tokens"] else ""
        text = f"{b['scope']} {b['subject']}: {spent} of {limit} this month{held} ({then})"
        bars.append({"id": b["id"], "fraction": min(b["used"], 1.0), "text": text})
    return bars


def save_budget(
    gateway: Gateway,
    scope: str,
    subject: str,
    limit_usd: float,
    limit_tokens: int,
    soft_ratio: float,
    degrade_model: str | None,
    user: str | None,
) -> None:
    """Save a budget from the Settings form (a 0 limit there means none) and apply it at once; ValueError if wrong."""
    set_budget(
        gateway.engine,
        scope,
        subject or "*",
        limit_usd or None,
        int(limit_tokens) or None,
        soft_ratio,
        degrade_model,
        user,
    )
    gateway.budgets.invalidate()


def remove_budget(gateway: Gateway, budget_id: int) -> None:
    """Delete a budget and stop applying it at once."""
    delete_budget(gateway.engine, budget_id)
    gateway.budgets.invalidate()


def save_price(
    gateway: Gateway,
    model: str,
    input_per_mtok: float,
    output_per_mtok: float,
    cached_per_mtok: float,
    user: str | None,
) -> None:
    """Save a price override from the Settings form; calls are priced with it from now on."""
    set_price_override(gateway.engine, model.strip(), input_per_mtok, output_per_mtok, cached_per_mtok, user)
    gateway.invalidate_prices()
