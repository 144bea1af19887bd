"""api_tokens.expires_at: API tokens expire (NULL: tokens made before this revision never do)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:15:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Nullable, no default: tokens issued before this revision keep working, without an expiry
    # (they can be listed and revoked one by one; a password change revokes them).
    op.add_column('api_tokens', sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('api_tokens', 'expires_at')
