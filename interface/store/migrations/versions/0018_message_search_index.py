"""message search: an index on (sending_application, message_type, received_at) for a date range
with a sender and a type

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-11 10:00:00

A plain ``CREATE INDEX`` (``op.create_index``): never a batch rebuild of ``messages``, which on
SQLite would drop the full-text triggers of migration 0014.
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0018'
down_revision: Union[str, Sequence[str], None] = '0017'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index(
        'ix_messages_sender_type_received',
        'messages',
        ['sending_application', 'message_type', 'received_at'],
    )


def downgrade() -> None:
    op.drop_index('ix_messages_sender_type_received', table_name='messages')
