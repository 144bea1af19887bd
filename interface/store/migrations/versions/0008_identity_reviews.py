"""identity_reviews: the identity check's held messages and the clerks' decisions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'identity_reviews',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('item_id', _ID, nullable=False),
        sa.Column('message_id', _ID, nullable=False),
        sa.Column('mrn', sa.String(length=128), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_by', sa.String(length=128), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_reviews')),
    )
    op.create_index(op.f('ix_identity_reviews_item_id'), 'identity_reviews', ['item_id'], unique=False)
    op.create_index(op.f('ix_identity_reviews_message_id'), 'identity_reviews', ['message_id'],
                    unique=False)
    op.create_index('ix_identity_reviews_message_mrn', 'identity_reviews', ['message_id', 'mrn'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_identity_reviews_message_mrn', table_name='identity_reviews')
    op.drop_index(op.f('ix_identity_reviews_message_id'), table_name='identity_reviews')
    op.drop_index(op.f('ix_identity_reviews_item_id'), table_name='identity_reviews')
    op.drop_table('identity_reviews')
