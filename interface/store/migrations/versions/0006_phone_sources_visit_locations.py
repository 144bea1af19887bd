"""patient_phones.source (each phone list replaced on its own) and visit_locations (where the
patient was during a visit, with times)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:10:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('patient_phones', sa.Column('source', sa.String(length=32), nullable=True))
    # Rows written before: one list from PID-13 and PID-14 together, the ``phones`` list.
    op.execute("UPDATE patient_phones SET source = 'phones'")
    op.create_table(
        'visit_locations',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('visit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('location', sa.String(length=250), nullable=False),
        sa.Column('from_at', sa.String(length=40), nullable=True),
        sa.Column('to_at', sa.String(length=40), nullable=True),
        sa.Column('event', sa.String(length=8), nullable=True),
        sa.Column('cancelled_at', sa.String(length=40), nullable=True),
        sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['visit_id'], ['visits.id'],
                                name=op.f('fk_visit_locations_visit_id_visits')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_visit_locations')),
    )
    op.create_index(op.f('ix_visit_locations_visit_id'), 'visit_locations', ['visit_id'], unique=False)
    op.create_index(op.f('ix_visit_locations_message_id'), 'visit_locations', ['message_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_visit_locations_message_id'), table_name='visit_locations')
    op.drop_index(op.f('ix_visit_locations_visit_id'), table_name='visit_locations')
    op.drop_table('visit_locations')
    op.drop_column('patient_phones', 'source')
