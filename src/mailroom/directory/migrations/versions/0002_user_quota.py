"""virtual_users.quota (bytes, 0 = unlimited), as later ISPmail editions add it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("virtual_users")}
    if "quota" not in columns:
        op.add_column(
            "virtual_users",
            sa.Column("quota", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        )


def downgrade() -> None:
    with op.batch_alter_table("virtual_users") as batch:
        batch.drop_column("quota")
