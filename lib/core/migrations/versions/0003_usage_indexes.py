"""Indexes and hourly rollups for the Usage dashboard.

lead: rebase onto 0002 at merge (this branch was cut before 0002 existed).

- ix_llm_calls_usage: created_at first, then every column the dashboard filters, groups or sums, so a
  30-day aggregate reads only this index (covering) instead of visiting fat rows with prompt and
  response text. On PostgreSQL the non-key columns go in INCLUDE.
- ix_llm_calls_cost: (cost_usd, created_at) for "most expensive calls" (walk from the top) and
  "unpriced calls" (cost_usd IS NULL within a range) without scanning the range.
- ix_llm_calls_latency: (latency_ms, created_at) so p50/p95 of a range walk the index in latency
  order (no sort of ~400k rows), and (created_at, latency_ms) to sort one day's latencies from a
  narrow index (half the time of the wide one); see lib/usage/sql.py.
- llm_usage_hourly, llm_usage_user_hourly: hourly sums kept by triggers (see lib/core/rollups.py), backfilled
  from the existing calls.

Revision ID: 0003
Revises: 0001
"""

from alembic import op

from lib.core.rollups_v1 import create_sql, drop_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

USAGE_KEY = ["created_at"]
USAGE_INCLUDED = [
    "feature",
    "user",
    "model",
    "provider",
    "status",
    "template_name",
    "template_version",
    "error_type",
    "cost_usd",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "latency_ms",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_llm_calls_usage", "llm_calls", USAGE_KEY, postgresql_include=USAGE_INCLUDED)
    else:
        op.create_index("ix_llm_calls_usage", "llm_calls", USAGE_KEY + USAGE_INCLUDED)
    op.create_index("ix_llm_calls_cost", "llm_calls", ["cost_usd", "created_at"])
    op.create_index("ix_llm_calls_latency", "llm_calls", ["latency_ms", "created_at"])
    op.create_index("ix_llm_calls_created_latency", "llm_calls", ["created_at", "latency_ms"])
    for stmt in create_sql(op.get_bind().dialect.name):
        op.execute(stmt)


def downgrade() -> None:
    for stmt in drop_sql(op.get_bind().dialect.name):
        op.execute(stmt)
    op.drop_index("ix_llm_calls_created_latency", "llm_calls")
    op.drop_index("ix_llm_calls_latency", "llm_calls")
    op.drop_index("ix_llm_calls_cost", "llm_calls")
    op.drop_index("ix_llm_calls_usage", "llm_calls")
