"""appointments: what the scheduling feed (SIU S12..S17, S26) said about each appointment

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 13:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'appointments',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('placer_id', sa.String(length=199), nullable=True),
        sa.Column('placer_namespace', sa.String(length=199), server_default='', nullable=False),
        sa.Column('filler_id', sa.String(length=199), nullable=True),
        sa.Column('filler_namespace', sa.String(length=199), server_default='', nullable=False),
        sa.Column('mrn', sa.String(length=128), nullable=False),
        sa.Column('start_at', sa.String(length=40), nullable=True),
        sa.Column('start_utc', sa.DateTime(timezone=True), nullable=True),
        sa.Column('end_at', sa.String(length=40), nullable=True),
        sa.Column('duration', sa.String(length=32), nullable=True),
        sa.Column('duration_units', sa.String(length=32), nullable=True),
        sa.Column('location', sa.String(length=250), nullable=True),
        sa.Column('provider_id', sa.String(length=128), nullable=True),
        sa.Column('provider_family', sa.String(length=194), nullable=True),
        sa.Column('provider_given', sa.String(length=128), nullable=True),
        sa.Column('provider_authority', sa.String(length=128), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('reason', sa.String(length=250), nullable=True),
        sa.Column('type', sa.String(length=250), nullable=True),
        sa.Column('event_reason', sa.String(length=250), nullable=True),
        sa.Column('last_event', sa.String(length=8), nullable=False),
        sa.Column('message_id', _ID, nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_appointments')),
    )
    op.create_index('ix_appointments_filler', 'appointments', ['filler_id', 'filler_namespace'])
    op.create_index('ix_appointments_placer', 'appointments', ['placer_id', 'placer_namespace'])
    op.create_index('ix_appointments_start', 'appointments', ['start_utc'])
    op.create_index('ix_appointments_mrn', 'appointments', ['mrn'])
    op.create_index('ix_appointments_message_id', 'appointments', ['message_id'])


def downgrade() -> None:
    for name in ('ix_appointments_message_id', 'ix_appointments_mrn', 'ix_appointments_start',
                 'ix_appointments_placer', 'ix_appointments_filler'):
        op.drop_index(name, table_name='appointments')
    op.drop_table('appointments')
