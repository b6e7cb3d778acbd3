"""ISPmail's three tables, as the guide's SQL makes them (created only where missing).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# MySQL/MariaDB: InnoDB for the foreign keys; utf8mb4 so any address fits.
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "virtual_domains" not in existing:
        op.create_table(
            "virtual_domains",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(50), nullable=False, unique=True),
            **_MYSQL,
        )
    if "virtual_users" not in existing:
        op.create_table(
            "virtual_users",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column(
                "domain_id",
                sa.Integer(),
                sa.ForeignKey("virtual_domains.id", ondelete="CASCADE"),
                nullable=False,
            ),
            sa.Column("email", sa.String(100), nullable=False, unique=True),
            sa.Column("password", sa.String(150), nullable=False),
            **_MYSQL,
        )
    if "virtual_aliases" not in existing:
        op.create_table(
            "virtual_aliases",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column(
                "domain_id",
                sa.Integer(),
                sa.ForeignKey("virtual_domains.id", ondelete="CASCADE"),
                nullable=False,
            ),
            sa.Column("source", sa.String(100), nullable=False),
            sa.Column("destination", sa.String(100), nullable=False),
            **_MYSQL,
        )


def downgrade() -> None:
    raise NotImplementedError("mailroom never drops the mail accounts' tables; do it by hand")
