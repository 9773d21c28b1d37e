"""The tables. Each feature's tables live here; schema changes go through lib/migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Timezone-aware now in UTC (stored as UTC everywhere)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class LlmCall(Base):
    """The call log: one row per LLM call through the gateway, whatever its outcome."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    session_id: Mapped[str | None] = mapped_column(String(64))
    user: Mapped[str | None] = mapped_column(String(255))
    feature: Mapped[str] = mapped_column(String(64), nullable=False)
    provider: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    template_name: Mapped[str | None] = mapped_column(String(255))
    template_version: Mapped[int | None] = mapped_column(Integer)
    experiment_id: Mapped[str | None] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cost_usd: Mapped[float | None] = mapped_column(Float)  # NULL = unpriced, never a silent 0
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # ok, error, aborted, cached, blocked
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    prompt: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)

    __table_args__ = (
        Index("ix_llm_calls_created_at", "created_at"),
        Index("ix_llm_calls_feature", "feature"),
        Index("ix_llm_calls_user", "user"),
        Index("ix_llm_calls_model", "model"),
        Index("ix_llm_calls_status", "status"),
        # Usage dashboard (migration 0003): covering index for range aggregates; on SQLite the
        # included columns are key columns, as SQLite has no INCLUDE.
        Index("ix_llm_calls_usage", "created_at",
              postgresql_include=["feature", "user", "model", "provider", "status", "template_name",
                                  "template_version", "error_type", "cost_usd", "prompt_tokens",
                                  "completion_tokens", "cached_tokens", "latency_ms"]),
        Index("ix_llm_calls_cost", "cost_usd", "created_at"),
        Index("ix_llm_calls_latency", "latency_ms", "created_at"),
        Index("ix_llm_calls_created_latency", "created_at", "latency_ms"),
    )


class PriceOverride(Base):
    """A custom price that overrides the shipped table for one model from a date on."""

    __tablename__ = "prices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    input_per_mtok: Mapped[float] = mapped_column(Float, nullable=False)
    cached_input_per_mtok: Mapped[float | None] = mapped_column(Float)
    output_per_mtok: Mapped[float] = mapped_column(Float, nullable=False)
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(255))
