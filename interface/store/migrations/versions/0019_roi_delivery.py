"""release of information delivery: roi_links (expiring download links), roi_outbox (e-mails)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 15:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0019'
down_revision: Union[str, Sequence[str], None] = '0018'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'roi_links',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('request_id', _ID, nullable=False),
        sa.Column('packet_id', _ID, nullable=False),
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', _TS, nullable=False),
        sa.Column('expires_at', _TS, nullable=False),
        sa.Column('revoked_at', _TS, nullable=True),
        sa.Column('revoked_by', sa.String(length=128), nullable=True),
        sa.Column('revoked_reason', sa.Text(), nullable=True),
        sa.Column('downloads', sa.Integer(), nullable=False),
        sa.Column('last_download_at', _TS, nullable=True),
        sa.ForeignKeyConstraint(['request_id'], ['roi_requests.id'],
                                name=op.f('fk_roi_links_request_id_roi_requests')),
        sa.ForeignKeyConstraint(['packet_id'], ['roi_packets.id'],
                                name=op.f('fk_roi_links_packet_id_roi_packets')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roi_links')),
        sa.UniqueConstraint('token_sha256', name=op.f('uq_roi_links_token_sha256')),
    )
    op.create_index('ix_roi_links_request', 'roi_links', ['request_id'])
    op.create_table(
        'roi_outbox',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('request_id', _ID, nullable=False),
        sa.Column('link_id', _ID, nullable=False),
        sa.Column('to_address', sa.String(length=250), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', _TS, nullable=False),
        sa.Column('last_attempt_at', _TS, nullable=True),
        sa.Column('next_attempt_at', _TS, nullable=True),
        sa.Column('sent_at', _TS, nullable=True),
        sa.ForeignKeyConstraint(['request_id'], ['roi_requests.id'],
                                name=op.f('fk_roi_outbox_request_id_roi_requests')),
        sa.ForeignKeyConstraint(['link_id'], ['roi_links.id'],
                                name=op.f('fk_roi_outbox_link_id_roi_links')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roi_outbox')),
    )
    op.create_index('ix_roi_outbox_status', 'roi_outbox', ['status', 'next_attempt_at'])
    op.create_index('ix_roi_outbox_request', 'roi_outbox', ['request_id'])


def downgrade() -> None:
    op.drop_index('ix_roi_outbox_request', table_name='roi_outbox')
    op.drop_index('ix_roi_outbox_status', table_name='roi_outbox')
    op.drop_table('roi_outbox')
    op.drop_index('ix_roi_links_request', table_name='roi_links')
    op.drop_table('roi_links')
