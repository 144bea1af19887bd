"""scanning: scan_batches, scan_documents; documents.origin

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0017'
down_revision: Union[str, Sequence[str], None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'scan_batches',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('filename', sa.String(length=250), nullable=True),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('media_type', sa.String(length=64), nullable=True),
        sa.Column('pages', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('pdf_sha256', sa.String(length=64), nullable=True),
        sa.Column('seen', sa.Integer(), nullable=False),
        sa.Column('received_at', _TS, nullable=False),
        sa.Column('received_by', sa.String(length=128), nullable=True),
        sa.Column('processed_at', _TS, nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_scan_batches')),
        sa.UniqueConstraint('sha256', name=op.f('uq_scan_batches_sha256')),
    )
    op.create_index('ix_scan_batches_status', 'scan_batches', ['status', 'id'])
    op.create_table(
        'scan_documents',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('batch_id', _ID, nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('pages', sa.Text(), nullable=False),
        sa.Column('cover', sa.Text(), nullable=True),
        sa.Column('flags', sa.Text(), nullable=False),
        sa.Column('mrn', sa.String(length=128), nullable=True),
        sa.Column('visit_number', sa.String(length=128), nullable=True),
        sa.Column('type', sa.String(length=250), nullable=True),
        sa.Column('document_date', sa.String(length=40), nullable=True),
        sa.Column('author', sa.String(length=250), nullable=True),
        sa.Column('document_id', _ID, nullable=True),
        sa.Column('document_number', sa.String(length=199), nullable=True),
        sa.Column('ocr_status', sa.String(length=16), nullable=False),
        sa.Column('ocr_attempts', sa.Integer(), nullable=False),
        sa.Column('ocr_next_at', _TS, nullable=True),
        sa.Column('ocr_error', sa.Text(), nullable=True),
        sa.Column('ocr_sha256', sa.String(length=64), nullable=True),
        sa.Column('ocr_pages', sa.String(length=64), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('created_at', _TS, nullable=False),
        sa.Column('updated_at', _TS, nullable=False),
        sa.Column('indexed_by', sa.String(length=128), nullable=True),
        sa.Column('indexed_at', _TS, nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_scan_documents')),
    )
    op.create_index('ix_scan_documents_status', 'scan_documents', ['status', 'id'])
    op.create_index('ix_scan_documents_batch', 'scan_documents', ['batch_id'])
    op.create_index('ix_scan_documents_ocr', 'scan_documents', ['ocr_status', 'ocr_next_at'])
    op.create_index('ix_scan_documents_mrn', 'scan_documents', ['mrn'])
    with op.batch_alter_table('documents') as batch:
        batch.add_column(sa.Column('origin', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('documents') as batch:
        batch.drop_column('origin')
    for name in ('ix_scan_documents_mrn', 'ix_scan_documents_ocr', 'ix_scan_documents_batch',
                 'ix_scan_documents_status'):
        op.drop_index(name, table_name='scan_documents')
    op.drop_table('scan_documents')
    op.drop_index('ix_scan_batches_status', table_name='scan_batches')
    op.drop_table('scan_batches')
