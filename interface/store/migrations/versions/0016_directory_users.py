"""users.source, users.disabled_by: console users signed in against the hospital's directory (LDAP)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Every existing user is a local one (a password in this database).
    op.add_column('users', sa.Column('source', sa.String(length=16), server_default='local', nullable=False))
    # 'directory' when the directory's answer disabled the user (re-enabled by its next yes);
    # NULL when an administrator did (only an administrator re-enables).
    op.add_column('users', sa.Column('disabled_by', sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column('users', 'disabled_by')
    op.drop_column('users', 'source')
