"""A data migration: add mission.slug, fill it in batches, then make it NOT NULL and unique.

The rows are read and written through a table *sketch* (``sa.table``), never through the
application's models: a migration must keep working when the models have moved on. Each batch is
one keyset-paginated UPDATE of at most ``BATCH`` rows, so no statement touches the whole table
at once. (On PostgreSQL all batches still run in the migration's one transaction; commit per batch
with ``op.get_context().autocommit_block()`` when the table is too big for one.)

Revision ID: m3
Revises: m2
Create Date: 2026-11-24 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "m3"
down_revision: str | Sequence[str] | None = "m2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 250

mission = sa.table(
    "mission", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("slug")
)


def upgrade() -> None:
    op.add_column("mission", sa.Column("slug", sa.String(length=120), nullable=True))
    bind = op.get_bind()
    last_id, filled = 0, 0
    while True:
        ids = (
            bind.execute(
                sa.select(mission.c.id)
                .where(mission.c.id > last_id)
                .order_by(mission.c.id)
                .limit(BATCH)
            )
            .scalars()
            .all()
        )
        if not ids:
            break
        # type_=String: with it, "+" means string concatenation (|| or CONCAT()) on every backend.
        words = sa.func.lower(sa.func.replace(mission.c.name, " ", "-"), type_=sa.String)
        slug = words + "-" + sa.cast(mission.c.id, sa.String)
        bind.execute(
            mission.update().where(mission.c.id.between(ids[0], ids[-1])).values(slug=slug)
        )
        last_id, filled = ids[-1], filled + len(ids)
        print(f"m3: slug filled for {filled} missions")
    with op.batch_alter_table("mission") as batch_op:
        batch_op.alter_column("slug", existing_type=sa.String(length=120), nullable=False)
        batch_op.create_index(batch_op.f("ix_mission_slug"), ["slug"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("mission") as batch_op:
        batch_op.drop_index(batch_op.f("ix_mission_slug"))
        batch_op.drop_column("slug")
