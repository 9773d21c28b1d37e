"""Pipelines: versions and labels, runs, rows, per-step results (unique per run, row and step) and reviews.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(80), nullable=False, unique=True),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "pipeline_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255)),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("pipeline_id", "version", name="uq_pipeline_version"),
    )
    op.create_table(
        "pipeline_labels",
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("label", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("moved_by", sa.String(255)),
        sa.Column("moved_at", TZ, nullable=False),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline_name", sa.String(80), nullable=False),
        sa.Column("pipeline_version", sa.Integer, nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_rows", sa.Integer, nullable=False, server_default="0"),
        sa.Column("budget_usd", sa.Float),
        sa.Column("spent_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("concurrency", sa.Integer),
        sa.Column("source", sa.String(255), nullable=False, server_default=""),
        sa.Column("note", sa.Text),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
    )
    op.create_table(
        "pipeline_rows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.String(32)),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("run_id", "position", name="uq_pipeline_row"),
    )
    op.create_index("ix_pipeline_rows_status", "pipeline_rows", ["run_id", "status"])
    op.create_table(
        "pipeline_step_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output", sa.JSON),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("request_ids", sa.JSON, nullable=False),
        sa.Column("decided_by", sa.String(255)),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("run_id", "position", "step", name="uq_pipeline_step_result"),
    )
    op.create_table(
        "pipeline_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("pipeline_name", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", TZ),
        sa.Column("decided_by", sa.String(255)),
        sa.Column("decided_at", TZ),
        sa.Column("reason", sa.Text),
        sa.Column("edited_output", sa.JSON),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("run_id", "position", "step", name="uq_pipeline_review"),
    )
    op.create_index("ix_pipeline_reviews_status", "pipeline_reviews", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_reviews_status", "pipeline_reviews")
    op.drop_table("pipeline_reviews")
    op.drop_table("pipeline_step_results")
    op.drop_index("ix_pipeline_rows_status", "pipeline_rows")
    op.drop_table("pipeline_rows")
    op.drop_table("pipeline_runs")
    op.drop_table("pipeline_labels")
    op.drop_table("pipeline_versions")
    op.drop_table("pipelines")
