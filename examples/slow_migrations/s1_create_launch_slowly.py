"""Create the table ``launch``, slowly: a migration that takes about a second, as one on a big
table would. Notebook 12 runs it from two processes at once (``examples/migrate.py``).

Revision ID: s1
Revises:
Create Date: 2026-11-24 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from snippets.lab.server import slow_statement

revision: str = "s1"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SECONDS = 1.0


def upgrade() -> None:
    op.create_table(
        "launch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rocket", sa.String(length=50), nullable=False),
    )
    op.execute(slow_statement(op.get_bind(), SECONDS))


def downgrade() -> None:
    op.drop_table("launch")
