"""patients.lists_digest: digests of the patient's lists last written (chart store hint)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 00:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Nullable, no default: existing patients start without a digest (their lists are read on
    # the next message, as before). ADD COLUMN works as is on SQLite and PostgreSQL.
    op.add_column('patients', sa.Column('lists_digest', sa.String(length=400), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35): a batch (copy-and-move) rebuild of ``patients`` would
    # lose its expression indexes (lower(family), lower(given)), which SQLite cannot reflect.
    op.drop_column('patients', 'lists_digest')
