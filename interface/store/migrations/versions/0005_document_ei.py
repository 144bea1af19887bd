"""documents keyed by EI (number + authority), replacement links both ways; history and worklist
rows name their documents row

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_NEW = [('namespace', sa.String(length=199)), ('universal_id', sa.String(length=199)),
        ('universal_id_type', sa.String(length=16)), ('parent_authority', sa.String(length=199)),
        ('replaces', sa.String(length=199)), ('replaces_authority', sa.String(length=199)),
        ('replaced_by_authority', sa.String(length=199))]


def upgrade() -> None:
    # Existing documents have no authority (""): they keep matching by number alone, and the
    # first namespaced message for one records its namespace (interface.store.document_ids).
    with op.batch_alter_table('documents') as batch:
        for name, type_ in _NEW:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.add_column(sa.Column('authority', sa.String(length=199), nullable=False, server_default=''))
        batch.drop_constraint('uq_documents_document_number', type_='unique')
        batch.create_unique_constraint('uq_documents_number_authority', ['document_number', 'authority'])
    for table in ('document_versions', 'document_deficiencies'):
        op.add_column(table, sa.Column('document_id', _ID, nullable=True))
        # document_number was unique until now: each older row names exactly one documents row.
        op.execute(f"UPDATE {table} SET document_id = (SELECT documents.id FROM documents "
                   f"WHERE documents.document_number = {table}.document_number)")
    op.create_index('ix_document_versions_document', 'document_versions', ['document_id', 'id'])
    op.create_index('ix_document_deficiencies_document', 'document_deficiencies', ['document_id'])
    # Replacements made before: the replacement names its parent as the one it replaces.
    op.execute("UPDATE documents SET replaces = parent_document_number WHERE parent_document_number IS NOT NULL "
               "AND EXISTS (SELECT 1 FROM documents p WHERE p.document_number = documents.parent_document_number "
               "AND p.replaced_by = documents.document_number)")


def downgrade() -> None:
    op.drop_index('ix_document_deficiencies_document', table_name='document_deficiencies')
    op.drop_index('ix_document_versions_document', table_name='document_versions')
    op.drop_column('document_deficiencies', 'document_id')
    op.drop_column('document_versions', 'document_id')
    with op.batch_alter_table('documents') as batch:
        batch.drop_constraint('uq_documents_number_authority', type_='unique')
        batch.create_unique_constraint('uq_documents_document_number', ['document_number'])
        batch.drop_column('authority')
        for name, _type in reversed(_NEW):
            batch.drop_column(name)
