"""release of information: requests, their events, authorizations, packets, the disclosure log

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'roi_requests',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('mrn', sa.String(length=128), nullable=False),
        sa.Column('requester_type', sa.String(length=32), nullable=False),
        sa.Column('requester_name', sa.String(length=250), nullable=False),
        sa.Column('requester_organization', sa.String(length=250), nullable=True),
        sa.Column('requester_address', sa.Text(), nullable=True),
        sa.Column('requester_email', sa.String(length=250), nullable=True),
        sa.Column('requester_phone', sa.String(length=64), nullable=True),
        sa.Column('identity_checks', sa.Text(), nullable=False),
        sa.Column('identity_verified_by', sa.String(length=128), nullable=True),
        sa.Column('identity_verified_at', _TS, nullable=True),
        sa.Column('scope', sa.Text(), nullable=False),
        sa.Column('purpose', sa.String(length=32), nullable=False),
        sa.Column('purpose_text', sa.Text(), nullable=True),
        sa.Column('delivery', sa.String(length=32), nullable=False),
        sa.Column('state', sa.String(length=8), nullable=True),
        sa.Column('received_on', sa.Date(), nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('extensions', sa.Integer(), nullable=False),
        sa.Column('extension_reason', sa.Text(), nullable=True),
        sa.Column('basis', sa.String(length=32), nullable=False),
        sa.Column('authorization_id', _ID, nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('denial_reason', sa.Text(), nullable=True),
        sa.Column('review_right', sa.Text(), nullable=True),
        sa.Column('summary_page', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', _TS, nullable=False),
        sa.Column('updated_at', _TS, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roi_requests')),
    )
    op.create_index('ix_roi_requests_mrn', 'roi_requests', ['mrn'])
    op.create_index('ix_roi_requests_status_due', 'roi_requests', ['status', 'due_on'])
    op.create_table(
        'roi_events',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('request_id', _ID, nullable=False),
        sa.Column('at', _TS, nullable=False),
        sa.Column('user', sa.String(length=128), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('from_status', sa.String(length=16), nullable=True),
        sa.Column('to_status', sa.String(length=16), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['request_id'], ['roi_requests.id'],
                                name=op.f('fk_roi_events_request_id_roi_requests')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roi_events')),
    )
    op.create_index('ix_roi_events_request', 'roi_events', ['request_id', 'id'])
    op.create_table(
        'roi_authorizations',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('mrn', sa.String(length=128), nullable=False),
        sa.Column('request_id', _ID, nullable=True),
        sa.Column('checklist', sa.Text(), nullable=False),
        sa.Column('categories', sa.Text(), nullable=False),
        sa.Column('expires_on', sa.Date(), nullable=True),
        sa.Column('form_sha256', sa.String(length=64), nullable=True),
        sa.Column('form_media_type', sa.String(length=127), nullable=True),
        sa.Column('form_name', sa.String(length=250), nullable=True),
        sa.Column('revoked_on', sa.Date(), nullable=True),
        sa.Column('revoked_reason', sa.Text(), nullable=True),
        sa.Column('recorded_by', sa.String(length=128), nullable=False),
        sa.Column('recorded_at', _TS, nullable=False),
        sa.ForeignKeyConstraint(['request_id'], ['roi_requests.id'],
                                name=op.f('fk_roi_authorizations_request_id_roi_requests')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roi_authorizations')),
    )
    op.create_index('ix_roi_authorizations_mrn', 'roi_authorizations', ['mrn'])
    op.create_table(
        'roi_packets',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('request_id', _ID, nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('page_count', sa.Integer(), nullable=False),
        sa.Column('manifest', sa.Text(), nullable=False),
        sa.Column('fee_cents', sa.Integer(), nullable=False),
        sa.Column('built_by', sa.String(length=128), nullable=False),
        sa.Column('built_at', _TS, nullable=False),
        sa.ForeignKeyConstraint(['request_id'], ['roi_requests.id'],
                                name=op.f('fk_roi_packets_request_id_roi_requests')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roi_packets')),
    )
    op.create_index('ix_roi_packets_request', 'roi_packets', ['request_id'])
    op.create_table(
        'roi_disclosures',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('mrn', sa.String(length=128), nullable=False),
        sa.Column('request_id', _ID, nullable=True),
        sa.Column('packet_id', _ID, nullable=True),
        sa.Column('disclosed_on', sa.Date(), nullable=False),
        sa.Column('recipient_name', sa.String(length=250), nullable=False),
        sa.Column('recipient_address', sa.Text(), nullable=True),
        sa.Column('recipient_type', sa.String(length=32), nullable=False),
        sa.Column('purpose', sa.Text(), nullable=False),
        sa.Column('basis', sa.String(length=32), nullable=False),
        sa.Column('authorization_id', _ID, nullable=True),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('manifest', sa.Text(), nullable=True),
        sa.Column('packet_sha256', sa.String(length=64), nullable=True),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('recorded_by', sa.String(length=128), nullable=False),
        sa.Column('recorded_at', _TS, nullable=False),
        sa.ForeignKeyConstraint(['packet_id'], ['roi_packets.id'],
                                name=op.f('fk_roi_disclosures_packet_id_roi_packets')),
        sa.ForeignKeyConstraint(['request_id'], ['roi_requests.id'],
                                name=op.f('fk_roi_disclosures_request_id_roi_requests')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roi_disclosures')),
    )
    op.create_index('ix_roi_disclosures_mrn_on', 'roi_disclosures', ['mrn', 'disclosed_on'])


def downgrade() -> None:
    op.drop_index('ix_roi_disclosures_mrn_on', table_name='roi_disclosures')
    op.drop_table('roi_disclosures')
    op.drop_index('ix_roi_packets_request', table_name='roi_packets')
    op.drop_table('roi_packets')
    op.drop_index('ix_roi_authorizations_mrn', table_name='roi_authorizations')
    op.drop_table('roi_authorizations')
    op.drop_index('ix_roi_events_request', table_name='roi_events')
    op.drop_table('roi_events')
    op.drop_index('ix_roi_requests_status_due', table_name='roi_requests')
    op.drop_index('ix_roi_requests_mrn', table_name='roi_requests')
    op.drop_table('roi_requests')
