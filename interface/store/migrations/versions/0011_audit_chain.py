"""audit: the patient an entry is about, how it came (via), and the hash chain (seq, entry_hash,
the audit_chain head row). The chain starts here: rows written before this migration keep no hash
and ``interface audit verify`` counts them as "before the chain" (docs/audit.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('audit') as batch:
        batch.add_column(sa.Column('patient', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('via', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('entry_hash', sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f('uq_audit_seq'), ['seq'])
    op.create_index('ix_audit_patient', 'audit', ['patient', 'id'])
    op.create_index('ix_audit_user_at', 'audit', ['user', 'at'])
    chain = op.create_table(
        'audit_chain',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('last_hash', sa.String(length=64), nullable=False),
        sa.Column('start_id', _ID, nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain')),
    )
    start = op.get_bind().execute(sa.text('SELECT COALESCE(MAX(id), 0) + 1 FROM audit')).scalar_one()
    op.bulk_insert(chain, [{'id': 1, 'seq': 0, 'last_hash': '0' * 64, 'start_id': start}])


def downgrade() -> None:
    op.drop_table('audit_chain')
    op.drop_index('ix_audit_user_at', table_name='audit')
    op.drop_index('ix_audit_patient', table_name='audit')
    with op.batch_alter_table('audit') as batch:
        batch.drop_constraint(op.f('uq_audit_seq'), type_='unique')
        batch.drop_column('entry_hash')
        batch.drop_column('seq')
        batch.drop_column('via')
        batch.drop_column('patient')
