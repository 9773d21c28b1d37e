"""Usage rollups for every filter of the dashboard: replaces the rollups of 0003 (lib/core/rollups_v1.py) with
those of lib/core/rollups.py, rebuilt from the call log (the SQL it generated, frozen in
lib/core/migrations/frozen/0013_rollups_*.sql).

- llm_usage_hourly gains the pipeline name, version and step, and a `saved` measure (what cache hits would
  have cost), so cache savings and cost per pipeline read the rollup.
- llm_usage_user_hourly gains every filter dimension, so a user filter combines with any other.
- llm_latency_hourly (now on PostgreSQL too) and llm_latency_user_hourly: latency histograms per hour and
  filter dimension, so p50/p95 of any filter are read from counts.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from lib.core import rollups_v1
from lib.core.migrations.frozen import statements

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in [*rollups_v1.drop_sql(dialect), *statements("0013_rollups", dialect, "create")]:
        op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in [*statements("0013_rollups", dialect, "drop"), *rollups_v1.create_sql(dialect)]:
        op.execute(stmt)
