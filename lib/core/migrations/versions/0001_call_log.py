"""Call log and price overrides.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("session_id", sa.String(64)),
        sa.Column("user", sa.String(255)),
        sa.Column("feature", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("template_name", sa.String(255)),
        sa.Column("template_version", sa.Integer),
        sa.Column("experiment_id", sa.String(64)),
        sa.Column("variant", sa.String(32)),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_type", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("prompt", sa.Text),
        sa.Column("response", sa.Text),
        sa.Column("metadata", sa.JSON),
    )
    for col in ("created_at", "feature", "user", "model", "status"):
        op.create_index(f"ix_llm_calls_{col}", "llm_calls", [col])
    op.create_table(
        "prices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("input_per_mtok", sa.Float, nullable=False),
        sa.Column("cached_input_per_mtok", sa.Float),
        sa.Column("output_per_mtok", sa.Float, nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255)),
    )
    op.create_index("ix_prices_model", "prices", ["model"])


def downgrade() -> None:
    op.drop_table("prices")
    op.drop_table("llm_calls")
