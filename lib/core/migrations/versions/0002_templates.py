"""Prompt templates: templates, immutable versions, labels and the history of label moves.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _template_fk() -> sa.Column:
    return sa.Column(
        "template_id", sa.Integer, sa.ForeignKey("prompt_templates.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "prompt_templates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255)),
    )
    op.create_table(
        "template_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _template_fk(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255)),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("template_id", "version", name="uq_template_versions_version"),
    )
    op.create_table(
        "template_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _template_fk(),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255)),
        sa.UniqueConstraint("template_id", "label", name="uq_template_labels_label"),
    )
    op.create_table(
        "label_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _template_fk(),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("from_version", sa.Integer),
        sa.Column("to_version", sa.Integer, nullable=False),
        sa.Column("moved_by", sa.String(255)),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_label_moves_template_id", "label_moves", ["template_id"])


def downgrade() -> None:
    op.drop_table("label_moves")
    op.drop_table("template_labels")
    op.drop_table("template_versions")
    op.drop_table("prompt_templates")
