"""Compare: test sets and cases, batch runs and their results, votes, live experiments.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "test_sets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("variables", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "test_cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("test_set_id", sa.Integer, sa.ForeignKey("test_sets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("expected", sa.Text),
        sa.Column("source", sa.JSON),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_test_cases_test_set_id", "test_cases", ["test_set_id"])
    op.create_table(
        "compare_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("test_set_id", sa.Integer, sa.ForeignKey("test_sets.id", ondelete="SET NULL")),
        sa.Column("template_name", sa.String(128), nullable=False),
        sa.Column("variant_a", sa.JSON, nullable=False),
        sa.Column("variant_b", sa.JSON, nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
    )
    op.create_table(
        "run_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("compare_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("variant", sa.String(1), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("request_id", sa.String(64)),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.UniqueConstraint("run_id", "case_id", "variant", name="uq_run_results_row"),
    )
    op.create_index("ix_run_results_run_id", "run_results", ["run_id"])
    op.create_table(
        "compare_votes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("compare_runs.id", ondelete="CASCADE")),
        sa.Column("case_id", sa.Integer),
        sa.Column("template_name", sa.String(128), nullable=False),
        sa.Column("variant_a", sa.JSON, nullable=False),
        sa.Column("variant_b", sa.JSON, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("answer_a", sa.Text),
        sa.Column("answer_b", sa.Text),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("voter", sa.String(16), nullable=False),
        sa.Column("blind", sa.Boolean, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("user", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_compare_votes_run_id", "compare_votes", ["run_id"])
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("template_name", sa.String(128), nullable=False),
        sa.Column("version_a", sa.Integer, nullable=False),
        sa.Column("version_b", sa.Integer, nullable=False),
        sa.Column("share_b", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("stopped_at", TZ),
    )
    op.create_index("ix_experiments_template_name", "experiments", ["template_name"])
    op.create_index("ix_llm_calls_experiment_id", "llm_calls", ["experiment_id"])


def downgrade() -> None:
    op.drop_index("ix_llm_calls_experiment_id", "llm_calls")
    for table in ("experiments", "compare_votes", "run_results", "compare_runs", "test_cases", "test_sets"):
        op.drop_table(table)
