"""A migration that fails at its third step: what does each backend leave behind?

Steps 1 and 2 (a new column, a new table) succeed; step 3, a unique index on ``codename``,
fails because codenames repeat. Notebook 12 runs it and looks.

Revision ID: m4
Revises: m3
Create Date: 2026-11-24 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "m4"
down_revision: str | Sequence[str] | None = "m3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("mission", sa.Column("launched_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "mission_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mission_id", sa.Integer(), sa.ForeignKey("mission.id"), nullable=False),
        sa.Column("entry", sa.String(length=200), nullable=False),
    )
    op.create_index("ux_mission_codename", "mission", ["codename"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_mission_codename", table_name="mission")
    op.drop_table("mission_log")
    op.drop_column("mission", "launched_at")
