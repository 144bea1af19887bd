"""Chart completion: document_deficiencies.responsible_* / service / started_at, and
deficiency_waivers (a clerk's waiver of one rule on one document)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # Rows written before: no responsible clinician until the document is next re-evaluated
    # (they list as "unassigned"); their age counts from found_at.
    with op.batch_alter_table('document_deficiencies') as batch:
        batch.add_column(sa.Column('responsible_role', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('responsible_id', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('responsible_name', sa.String(length=250), nullable=True))
        batch.add_column(sa.Column('service', sa.String(length=250), nullable=True))
        batch.add_column(sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_document_deficiencies_responsible', 'document_deficiencies', ['responsible_id'],
                    unique=False)
    op.create_table(
        'deficiency_waivers',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('document_id', _ID, nullable=False),
        sa.Column('document_number', sa.String(length=199), nullable=False),
        sa.Column('rule', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('waived_by', sa.String(length=128), nullable=False),
        sa.Column('waived_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deficiency_waivers')),
        sa.UniqueConstraint('document_id', 'rule', name='uq_deficiency_waivers_document_rule'),
    )


def downgrade() -> None:
    op.drop_table('deficiency_waivers')
    op.drop_index('ix_document_deficiencies_responsible', table_name='document_deficiencies')
    with op.batch_alter_table('document_deficiencies') as batch:
        batch.drop_column('started_at')
        batch.drop_column('service')
        batch.drop_column('responsible_name')
        batch.drop_column('responsible_id')
        batch.drop_column('responsible_role')
