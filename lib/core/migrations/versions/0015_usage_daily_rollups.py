"""Daily twins of the usage rollups (llm_usage_daily, ..., llm_latency_user_dims_daily; see lib/core/rollups.py):
per UTC day, the same dimensions and measures as the hourly ones, built from them and kept equal to their GROUP BY
day by triggers on the hourly tables. A range of local days then reads its whole UTC days from these (2.5-10x
fewer rows than the hourly rollups at 1-10M calls) and only its edge hours from the hourly rollups.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

from lib.core import rollups

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for stmt in rollups.create_daily_sql(op.get_bind().dialect.name):
        op.execute(stmt)


def downgrade() -> None:
    for stmt in rollups.drop_daily_sql(op.get_bind().dialect.name):
        op.execute(stmt)
