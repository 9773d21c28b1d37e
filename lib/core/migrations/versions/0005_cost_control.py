"""Response cache, budgets, and the money a cache hit saved.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("llm_calls") as batch:
        batch.add_column(sa.Column("saved_usd", sa.Float))
    op.create_table(
        "response_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
    )
    op.create_index("ix_response_cache_expires_at", "response_cache", ["expires_at"])
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("limit_usd", sa.Float),
        sa.Column("limit_tokens", sa.Integer),
        sa.Column("soft_ratio", sa.Float, nullable=False, server_default="0.8"),
        sa.Column("degrade_model", sa.String(255)),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("scope", "subject", name="uq_budgets_scope_subject"),
    )


def downgrade() -> None:
    op.drop_table("budgets")
    op.drop_table("response_cache")
    with op.batch_alter_table("llm_calls") as batch:
        batch.drop_column("saved_usd")
