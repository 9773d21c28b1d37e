"""Daily twins of the usage rollups (llm_usage_daily, ..., llm_latency_user_dims_daily; see lib/core/rollups.py):
per UTC day, the same dimensions and measures as the hourly ones, built from them and kept equal to their GROUP BY
day by triggers on the hourly tables. A range of local days then reads its whole UTC days from these (2.5-10x
fewer rows than the hourly rollups at 1-10M calls) and only its edge hours from the hourly rollups. The SQL is what
lib/core/rollups.py generated, frozen in lib/core/migrations/frozen/0015_daily_*.sql.

The call log's indexes on feature, user, model and status become (that column, cost_usd, created_at): the same
lookups by value, and the most expensive calls of one value in a period without reading the whole period (a cheap
model's top calls, whose costs sit deep in the all-calls cost index).

Revision ID: 0015
Revises: 0014
"""

from alembic import op

from lib.core.migrations.frozen import statements

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


DIM_INDEXES = ("feature", "user", "model", "status")


def upgrade() -> None:
    for stmt in statements("0015_daily", op.get_bind().dialect.name, "create"):
        op.execute(stmt)
    for col in DIM_INDEXES:
        op.drop_index(f"ix_llm_calls_{col}", "llm_calls")
        op.create_index(f"ix_llm_calls_{col}", "llm_calls", [col, "cost_usd", "created_at"])


def downgrade() -> None:
    for col in DIM_INDEXES:
        op.drop_index(f"ix_llm_calls_{col}", "llm_calls")
        op.create_index(f"ix_llm_calls_{col}", "llm_calls", [col])
    for stmt in statements("0015_daily", op.get_bind().dialect.name, "drop"):
        op.execute(stmt)
