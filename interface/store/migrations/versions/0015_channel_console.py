"""channel_controls, channel_listeners, channel_stats: pausing, bound endpoints, trends

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TS = sa.DateTime(timezone=True)
_N_BUCKETS = 15  # channel_schema.N_BUCKETS when this migration was written


def upgrade() -> None:
    op.create_table(
        'channel_controls',
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('destination', sa.String(length=64), nullable=False),
        sa.Column('paused_by', sa.String(length=128), nullable=False),
        sa.Column('paused_at', _TS, nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('channel', 'destination', name=op.f('pk_channel_controls')),
    )
    op.create_table(
        'channel_listeners',
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('process', sa.String(length=128), nullable=False),
        sa.Column('endpoint', sa.String(length=500), nullable=False),
        sa.Column('host', sa.String(length=128), nullable=True),
        sa.Column('port', sa.Integer(), nullable=True),
        sa.Column('connections', sa.Integer(), nullable=False),
        sa.Column('paused', sa.Integer(), nullable=False),
        sa.Column('started_at', _TS, nullable=False),
        sa.Column('seen_at', _TS, nullable=False),
        sa.PrimaryKeyConstraint('channel', 'process', name=op.f('pk_channel_listeners')),
    )
    op.create_table(
        'channel_stats',
        sa.Column('period', sa.String(length=1), nullable=False),
        sa.Column('start', _TS, nullable=False),
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('destination', sa.String(length=64), nullable=False),
        sa.Column('received', sa.Integer(), nullable=False),
        sa.Column('accepted', sa.Integer(), nullable=False),
        sa.Column('rejected', sa.Integer(), nullable=False),
        sa.Column('errored', sa.Integer(), nullable=False),
        sa.Column('latency_count', sa.Integer(), nullable=False),
        sa.Column('latency_sum_ms', sa.BigInteger(), nullable=False),
        *(sa.Column(f'b{i}', sa.Integer(), nullable=False) for i in range(_N_BUCKETS)),
        sa.PrimaryKeyConstraint('period', 'start', 'channel', 'destination', name=op.f('pk_channel_stats')),
    )
    op.create_index('ix_channel_stats_channel', 'channel_stats', ['channel', 'period', 'start'])


def downgrade() -> None:
    op.drop_index('ix_channel_stats_channel', table_name='channel_stats')
    op.drop_table('channel_stats')
    op.drop_table('channel_listeners')
    op.drop_table('channel_controls')
