"""Prices per model (shipped dated table + database overrides) and the cost of one call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lib.core.tables import PriceOverride, utcnow

PRICE_TABLE = Path(__file__).resolve().parent.parent.parent / "data" / "prices.json"


@dataclass(frozen=True)
class Price:
    """USD per million tokens; cached input falls back to the input rate when unknown."""

    input: float
    cached_input: float | None
    output: float
    source: str  # "table 2026-11-01", "override", "free provider"

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """Cost in USD; cached tokens are part of prompt_tokens and priced at their own rate."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (prompt_tokens - cached) * self.input + cached * cached_rate + completion_tokens * self.output
        ) / 1_000_000


@dataclass(frozen=True)
class PriceTable:
    """The shipped table, loaded once."""

    as_of: str
    prices: dict[str, Price]
    free_providers: frozenset[str]


def load_price_table(path: Path = PRICE_TABLE) -> PriceTable:
    """Read the shipped, dated price table."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    src = f"table {raw['as_of']}"
    prices = {m: Price(p["input"], p.get("cached_input"), p["output"], src) for m, p in raw["models"].items()}
    return PriceTable(raw["as_of"], prices, frozenset(raw.get("free_providers", ())))


def find_price(model: str, table: PriceTable, engine: Engine | None = None, at: datetime | None = None) -> Price | None:
    """The price of `provider/model` at time `at`: newest override, else the table; None = unpriced."""
    if engine is not None:
        with Session(engine) as s:
            row = s.scalars(
                select(PriceOverride)
                .where(PriceOverride.model == model, PriceOverride.effective_from <= (at or utcnow()))
                .order_by(PriceOverride.effective_from.desc(), PriceOverride.id.desc())
                .limit(1)
            ).first()
        if row is not None:
            return Price(row.input_per_mtok, row.cached_input_per_mtok, row.output_per_mtok, "override")
    if model in table.prices:
        return table.prices[model]
    if model.split("/", 1)[0] in table.free_providers:
        return Price(0.0, 0.0, 0.0, "free provider")
    return None


def set_price_override(
    engine: Engine,
    model: str,
    input_per_mtok: float,
    output_per_mtok: float,
    cached_input_per_mtok: float | None = None,
    user: str | None = None,
    effective_from: datetime | None = None,
) -> None:
    """Record a custom price for `model` (kept with its date; never edits earlier rows)."""
    if min(input_per_mtok, output_per_mtok, cached_input_per_mtok or 0) < 0:
        raise ValueError("Prices cannot be negative.")
    with Session(engine) as s, s.begin():
        s.add(
            PriceOverride(
                model=model,
                input_per_mtok=input_per_mtok,
                output_per_mtok=output_per_mtok,
                cached_input_per_mtok=cached_input_per_mtok,
                created_by=user,
                effective_from=effective_from or utcnow(),
            )
        )
