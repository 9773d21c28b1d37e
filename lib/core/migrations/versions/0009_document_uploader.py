"""Who uploaded each document: only they (or an admin) may delete or replace it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Documents uploaded before this column existed have no uploader: only an admin may change them.
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("uploaded_by", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("uploaded_by")
