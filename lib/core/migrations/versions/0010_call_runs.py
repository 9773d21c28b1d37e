"""Which run, step and trace a call belongs to: pipeline runs, assistant turns, OpenTelemetry traces.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_calls") as batch:
        batch.add_column(sa.Column("run_id", sa.String(64)))
        batch.add_column(sa.Column("step", sa.String(64)))
        batch.add_column(sa.Column("pipeline_name", sa.String(255)))
        batch.add_column(sa.Column("pipeline_version", sa.Integer))
        batch.add_column(sa.Column("trace_id", sa.String(32)))
    op.create_index("ix_llm_calls_run_id", "llm_calls", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_llm_calls_run_id", "llm_calls")
    with op.batch_alter_table("llm_calls") as batch:
        for column in ("trace_id", "pipeline_version", "pipeline_name", "step", "run_id"):
            batch.drop_column(column)
