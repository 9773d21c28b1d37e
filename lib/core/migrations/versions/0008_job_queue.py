"""Job queue: per-item state of queued work, the uploads it reads, and provider limits shared by all workers.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("worker", sa.String(128)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("enqueued_at", TZ, nullable=False),
        sa.Column("heartbeat_at", TZ),
        sa.Column("finished_at", TZ),
    )
    op.create_index("ix_job_items_job", "job_items", ["kind", "job_id"])
    op.create_index("ix_job_items_status", "job_items", ["status"])
    op.create_table(
        "job_blobs",
        sa.Column("item_id", sa.Integer, sa.ForeignKey("job_items.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "provider_slots",
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("holder", sa.String(160)),
        sa.Column("expires_at", TZ),
    )
    op.create_table(
        "provider_windows",
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("window", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("provider_windows")
    op.drop_table("provider_slots")
    op.drop_table("job_blobs")
    op.drop_index("ix_job_items_status", "job_items")
    op.drop_index("ix_job_items_job", "job_items")
    op.drop_table("job_items")
