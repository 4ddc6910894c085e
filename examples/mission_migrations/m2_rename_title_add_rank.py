"""Rename mission.title to name, add rank (server default 0) and an index on codename.

Autogenerate proposed the rename as "add column name, drop column title", which would lose every
title (notebook 12 runs that script too); this is the reviewed version. Batch mode: SQLite
cannot ALTER a column in place, so the table is copied there; elsewhere the same ``batch_op``
calls are plain ALTER TABLE statements.

Revision ID: m2
Revises: m1
Create Date: 2026-11-24 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "m2"
down_revision: str | Sequence[str] | None = "m1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mission") as batch_op:
        # MySQL/MariaDB rename with CHANGE COLUMN, which restates the type: hence existing_*.
        batch_op.alter_column(
            "title", new_column_name="name", existing_type=sa.String(100), existing_nullable=False
        )
        # NOT NULL on a table with rows needs a server default to fill the rows already there.
        batch_op.add_column(sa.Column("rank", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(batch_op.f("ix_mission_codename"), ["codename"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mission") as batch_op:
        batch_op.drop_index(batch_op.f("ix_mission_codename"))
        batch_op.drop_column("rank")
        batch_op.alter_column(
            "name", new_column_name="title", existing_type=sa.String(100), existing_nullable=False
        )
