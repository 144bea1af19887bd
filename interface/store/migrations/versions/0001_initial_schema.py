"""initial schema: the journal, work queue, events, audit, chart and document index

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 19:08:21.604340

Generated with `alembic revision --autogenerate` against PostgreSQL (SQLite cannot reflect
the lower(...) expression indexes); the same operations build the SQLite schema.

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('audit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=32), nullable=True),
    sa.Column('target_id', sa.String(length=128), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit'))
    )
    op.create_index('ix_audit_at', 'audit', ['at'], unique=False)
    op.create_table('chart_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('mrn', sa.String(length=128), nullable=True),
    sa.Column('table_name', sa.String(length=64), nullable=False),
    sa.Column('row_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('field', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('event', sa.String(length=8), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chart_history'))
    )
    op.create_index(op.f('ix_chart_history_message_id'), 'chart_history', ['message_id'], unique=False)
    op.create_index(op.f('ix_chart_history_patient_id'), 'chart_history', ['patient_id'], unique=False)
    op.create_table('document_blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_document_blobs'))
    )
    op.create_table('document_deficiencies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('document_number', sa.String(length=199), nullable=False),
    sa.Column('mrn', sa.String(length=128), nullable=False),
    sa.Column('visit_number', sa.String(length=128), nullable=True),
    sa.Column('type', sa.String(length=250), nullable=True),
    sa.Column('author_id', sa.String(length=128), nullable=True),
    sa.Column('author_family', sa.String(length=194), nullable=True),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_document_deficiencies'))
    )
    op.create_index('ix_document_deficiencies_doc', 'document_deficiencies', ['document_number'], unique=False)
    op.create_index('ix_document_deficiencies_mrn', 'document_deficiencies', ['mrn'], unique=False)
    op.create_index('ix_document_deficiencies_type', 'document_deficiencies', ['type'], unique=False)
    op.create_table('document_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('document_number', sa.String(length=199), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=8), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source_time', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('availability', sa.String(length=16), nullable=True),
    sa.Column('content_kind', sa.String(length=16), nullable=True),
    sa.Column('content_type', sa.String(length=127), nullable=True),
    sa.Column('content_size', sa.Integer(), nullable=True),
    sa.Column('content_sha256', sa.String(length=64), nullable=True),
    sa.Column('content_reference', sa.Text(), nullable=True),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_document_versions'))
    )
    op.create_index('ix_document_versions_message', 'document_versions', ['message_id'], unique=False)
    op.create_index('ix_document_versions_number', 'document_versions', ['document_number', 'id'], unique=False)
    op.create_table('documents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('document_number', sa.String(length=199), nullable=False),
    sa.Column('parent_document_number', sa.String(length=199), nullable=True),
    sa.Column('replaced_by', sa.String(length=199), nullable=True),
    sa.Column('mrn', sa.String(length=128), nullable=False),
    sa.Column('visit_number', sa.String(length=128), nullable=True),
    sa.Column('type', sa.String(length=250), nullable=True),
    sa.Column('presentation', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('activity_at', sa.String(length=40), nullable=True),
    sa.Column('origination_at', sa.String(length=40), nullable=True),
    sa.Column('transcribed_at', sa.String(length=40), nullable=True),
    sa.Column('edited_at', sa.String(length=40), nullable=True),
    sa.Column('author', sa.Text(), nullable=True),
    sa.Column('author_id', sa.String(length=128), nullable=True),
    sa.Column('author_family', sa.String(length=194), nullable=True),
    sa.Column('transcriptionist', sa.Text(), nullable=True),
    sa.Column('authenticated_by', sa.Text(), nullable=True),
    sa.Column('authenticated_at', sa.String(length=40), nullable=True),
    sa.Column('confidentiality', sa.String(length=16), nullable=True),
    sa.Column('availability', sa.String(length=16), nullable=True),
    sa.Column('storage_status', sa.String(length=16), nullable=True),
    sa.Column('change_reason', sa.Text(), nullable=True),
    sa.Column('unique_document_file_name', sa.String(length=250), nullable=True),
    sa.Column('placer_order', sa.String(length=199), nullable=True),
    sa.Column('filler_order', sa.String(length=199), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content_kind', sa.String(length=16), nullable=True),
    sa.Column('content_type', sa.String(length=127), nullable=True),
    sa.Column('content_size', sa.Integer(), nullable=True),
    sa.Column('content_sha256', sa.String(length=64), nullable=True),
    sa.Column('content_reference', sa.Text(), nullable=True),
    sa.Column('content_parts', sa.Text(), nullable=True),
    sa.Column('deficiencies', sa.Text(), nullable=False),
    sa.Column('last_event', sa.String(length=8), nullable=False),
    sa.Column('source_time', sa.String(length=32), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_documents')),
    sa.UniqueConstraint('document_number', name='uq_documents_document_number')
    )
    op.create_index('ix_documents_mrn', 'documents', ['mrn', 'id'], unique=False)
    op.create_index('ix_documents_parent', 'documents', ['parent_document_number'], unique=False)
    op.create_index('ix_documents_type_status', 'documents', ['type', 'status'], unique=False)
    op.create_index('ix_documents_visit', 'documents', ['visit_number'], unique=False)
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('peer', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    op.create_table('messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('peer', sa.String(length=64), nullable=True),
    sa.Column('sending_application', sa.String(length=227), nullable=True),
    sa.Column('sending_facility', sa.String(length=227), nullable=True),
    sa.Column('receiving_application', sa.String(length=227), nullable=True),
    sa.Column('receiving_facility', sa.String(length=227), nullable=True),
    sa.Column('control_id', sa.String(length=199), nullable=True),
    sa.Column('message_type', sa.String(length=32), nullable=True),
    sa.Column('structure', sa.String(length=16), nullable=True),
    sa.Column('version', sa.String(length=16), nullable=True),
    sa.Column('message_time', sa.String(length=32), nullable=True),
    sa.Column('patient_id', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('ack', sa.LargeBinary(), nullable=True),
    sa.Column('ack_code', sa.String(length=2), nullable=True),
    sa.Column('dedup_key', sa.String(length=700), nullable=True),
    sa.Column('error_code', sa.String(length=8), nullable=True),
    sa.Column('error_text', sa.Text(), nullable=True),
    sa.Column('warning', sa.Text(), nullable=True),
    sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('batch_index', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['messages.id'], name=op.f('fk_messages_parent_id_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_messages_dedup_key'))
    )
    op.create_index('ix_messages_channel_id', 'messages', ['channel', 'id'], unique=False)
    op.create_index('ix_messages_control_id', 'messages', ['control_id'], unique=False)
    op.create_index('ix_messages_patient_id', 'messages', ['patient_id'], unique=False)
    op.create_index('ix_messages_received_at', 'messages', ['received_at'], unique=False)
    op.create_index('ix_messages_status', 'messages', ['status', 'id'], unique=False)
    op.create_index('ix_messages_type', 'messages', ['message_type', 'id'], unique=False)
    op.create_table('patients',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('mrn', sa.String(length=128), nullable=False),
    sa.Column('merged_into', sa.String(length=128), nullable=True),
    sa.Column('merged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('family', sa.String(length=250), nullable=True),
    sa.Column('given', sa.String(length=250), nullable=True),
    sa.Column('middle', sa.String(length=250), nullable=True),
    sa.Column('prefix', sa.String(length=250), nullable=True),
    sa.Column('suffix', sa.String(length=250), nullable=True),
    sa.Column('degree', sa.String(length=250), nullable=True),
    sa.Column('name_type', sa.String(length=250), nullable=True),
    sa.Column('mother_maiden_name', sa.String(length=250), nullable=True),
    sa.Column('birth_date', sa.String(length=40), nullable=True),
    sa.Column('sex', sa.String(length=250), nullable=True),
    sa.Column('race', sa.String(length=250), nullable=True),
    sa.Column('ethnicity', sa.String(length=250), nullable=True),
    sa.Column('marital_status', sa.String(length=250), nullable=True),
    sa.Column('language', sa.String(length=250), nullable=True),
    sa.Column('religion', sa.String(length=250), nullable=True),
    sa.Column('ssn', sa.String(length=250), nullable=True),
    sa.Column('death_at', sa.String(length=40), nullable=True),
    sa.Column('deceased', sa.String(length=250), nullable=True),
    sa.Column('recorded_at', sa.String(length=40), nullable=True),
    sa.Column('last_event', sa.String(length=8), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('mrn', name=op.f('uq_patients_mrn'))
    )
    op.create_index('ix_patients_birth_date', 'patients', ['birth_date'], unique=False)
    op.create_index('ix_patients_family_lower', 'patients', [sa.literal_column('lower(family)')], unique=False)
    op.create_index('ix_patients_given_lower', 'patients', [sa.literal_column('lower(given)')], unique=False)
    op.create_index(op.f('ix_patients_merged_into'), 'patients', ['merged_into'], unique=False)
    op.create_index(op.f('ix_patients_message_id'), 'patients', ['message_id'], unique=False)
    op.create_table('allergies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=250), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('type', sa.String(length=250), nullable=True),
    sa.Column('severity', sa.String(length=250), nullable=True),
    sa.Column('reaction', sa.Text(), nullable=True),
    sa.Column('identified', sa.String(length=40), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_allergies_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_allergies'))
    )
    op.create_index(op.f('ix_allergies_message_id'), 'allergies', ['message_id'], unique=False)
    op.create_index(op.f('ix_allergies_patient_id'), 'allergies', ['patient_id'], unique=False)
    op.create_table('insurance',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plan', sa.String(length=250), nullable=True),
    sa.Column('company_id', sa.String(length=250), nullable=True),
    sa.Column('company', sa.String(length=250), nullable=True),
    sa.Column('group_number', sa.String(length=250), nullable=True),
    sa.Column('group_name', sa.String(length=250), nullable=True),
    sa.Column('effective', sa.String(length=40), nullable=True),
    sa.Column('expiration', sa.String(length=40), nullable=True),
    sa.Column('member_id', sa.String(length=250), nullable=True),
    sa.Column('insured_family', sa.String(length=250), nullable=True),
    sa.Column('insured_given', sa.String(length=250), nullable=True),
    sa.Column('insured_middle', sa.String(length=250), nullable=True),
    sa.Column('insured_prefix', sa.String(length=250), nullable=True),
    sa.Column('insured_suffix', sa.String(length=250), nullable=True),
    sa.Column('insured_degree', sa.String(length=250), nullable=True),
    sa.Column('relationship', sa.String(length=250), nullable=True),
    sa.Column('priority', sa.String(length=250), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_insurance_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_insurance'))
    )
    op.create_index(op.f('ix_insurance_message_id'), 'insurance', ['message_id'], unique=False)
    op.create_index(op.f('ix_insurance_patient_id'), 'insurance', ['patient_id'], unique=False)
    op.create_table('next_of_kin',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('family', sa.String(length=250), nullable=True),
    sa.Column('given', sa.String(length=250), nullable=True),
    sa.Column('middle', sa.String(length=250), nullable=True),
    sa.Column('prefix', sa.String(length=250), nullable=True),
    sa.Column('suffix', sa.String(length=250), nullable=True),
    sa.Column('degree', sa.String(length=250), nullable=True),
    sa.Column('relationship', sa.String(length=250), nullable=True),
    sa.Column('phone', sa.String(length=250), nullable=True),
    sa.Column('address_street', sa.String(length=250), nullable=True),
    sa.Column('address_other', sa.String(length=250), nullable=True),
    sa.Column('address_city', sa.String(length=250), nullable=True),
    sa.Column('address_state', sa.String(length=250), nullable=True),
    sa.Column('address_postal_code', sa.String(length=250), nullable=True),
    sa.Column('address_country', sa.String(length=250), nullable=True),
    sa.Column('contact_role', sa.String(length=250), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_next_of_kin_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_next_of_kin'))
    )
    op.create_index(op.f('ix_next_of_kin_message_id'), 'next_of_kin', ['message_id'], unique=False)
    op.create_index(op.f('ix_next_of_kin_patient_id'), 'next_of_kin', ['patient_id'], unique=False)
    op.create_table('patient_addresses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('street', sa.String(length=250), nullable=True),
    sa.Column('other', sa.String(length=250), nullable=True),
    sa.Column('city', sa.String(length=250), nullable=True),
    sa.Column('state', sa.String(length=250), nullable=True),
    sa.Column('postal_code', sa.String(length=250), nullable=True),
    sa.Column('country', sa.String(length=250), nullable=True),
    sa.Column('type', sa.String(length=250), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_addresses_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_addresses'))
    )
    op.create_index(op.f('ix_patient_addresses_message_id'), 'patient_addresses', ['message_id'], unique=False)
    op.create_index(op.f('ix_patient_addresses_patient_id'), 'patient_addresses', ['patient_id'], unique=False)
    op.create_table('patient_identifiers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('value', sa.String(length=250), nullable=False),
    sa.Column('authority', sa.String(length=250), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('facility', sa.String(length=250), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_identifiers_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_identifiers')),
    sa.UniqueConstraint('patient_id', 'authority', 'type', 'value', name='uq_patient_identifiers_key')
    )
    op.create_index(op.f('ix_patient_identifiers_message_id'), 'patient_identifiers', ['message_id'], unique=False)
    op.create_index(op.f('ix_patient_identifiers_patient_id'), 'patient_identifiers', ['patient_id'], unique=False)
    op.create_index('ix_patient_identifiers_value', 'patient_identifiers', ['value'], unique=False)
    op.create_table('patient_names',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('family', sa.String(length=250), nullable=True),
    sa.Column('given', sa.String(length=250), nullable=True),
    sa.Column('middle', sa.String(length=250), nullable=True),
    sa.Column('prefix', sa.String(length=250), nullable=True),
    sa.Column('suffix', sa.String(length=250), nullable=True),
    sa.Column('degree', sa.String(length=250), nullable=True),
    sa.Column('type', sa.String(length=250), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_names_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_names'))
    )
    op.create_index(op.f('ix_patient_names_message_id'), 'patient_names', ['message_id'], unique=False)
    op.create_index(op.f('ix_patient_names_patient_id'), 'patient_names', ['patient_id'], unique=False)
    op.create_table('patient_phones',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('number', sa.String(length=250), nullable=True),
    sa.Column('use', sa.String(length=250), nullable=True),
    sa.Column('equipment', sa.String(length=250), nullable=True),
    sa.Column('email', sa.String(length=250), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_phones_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_phones'))
    )
    op.create_index(op.f('ix_patient_phones_message_id'), 'patient_phones', ['message_id'], unique=False)
    op.create_index(op.f('ix_patient_phones_patient_id'), 'patient_phones', ['patient_id'], unique=False)
    op.create_table('visits',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('visit_number', sa.String(length=250), nullable=True),
    sa.Column('visit_authority', sa.String(length=250), nullable=True),
    sa.Column('class', sa.String(length=250), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('location', sa.String(length=250), nullable=True),
    sa.Column('prior_location', sa.String(length=250), nullable=True),
    sa.Column('attending_id', sa.String(length=250), nullable=True),
    sa.Column('attending_family', sa.String(length=250), nullable=True),
    sa.Column('attending_given', sa.String(length=250), nullable=True),
    sa.Column('attending_authority', sa.String(length=250), nullable=True),
    sa.Column('referring_id', sa.String(length=250), nullable=True),
    sa.Column('referring_family', sa.String(length=250), nullable=True),
    sa.Column('referring_given', sa.String(length=250), nullable=True),
    sa.Column('referring_authority', sa.String(length=250), nullable=True),
    sa.Column('hospital_service', sa.String(length=250), nullable=True),
    sa.Column('admit_source', sa.String(length=250), nullable=True),
    sa.Column('admission_type', sa.String(length=250), nullable=True),
    sa.Column('discharge_disposition', sa.String(length=250), nullable=True),
    sa.Column('admitted_at', sa.String(length=40), nullable=True),
    sa.Column('discharged_at', sa.String(length=40), nullable=True),
    sa.Column('expected_admit_at', sa.String(length=40), nullable=True),
    sa.Column('recorded_at', sa.String(length=40), nullable=True),
    sa.Column('last_event', sa.String(length=8), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_visits_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visits'))
    )
    op.create_index(op.f('ix_visits_message_id'), 'visits', ['message_id'], unique=False)
    op.create_index(op.f('ix_visits_patient_id'), 'visits', ['patient_id'], unique=False)
    op.create_index(op.f('ix_visits_visit_number'), 'visits', ['visit_number'], unique=False)
    op.create_table('work_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('destination', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('error_location', sa.String(length=64), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_work_items_message_id_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_work_items'))
    )
    op.create_index('ix_work_items_message', 'work_items', ['message_id'], unique=False)
    op.create_index('ix_work_items_status_next', 'work_items', ['status', 'next_attempt_at', 'id'], unique=False)
    op.create_table('diagnoses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('visit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('code', sa.String(length=250), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('coding_system', sa.String(length=250), nullable=True),
    sa.Column('type', sa.String(length=250), nullable=True),
    sa.Column('at', sa.String(length=40), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_diagnoses_patient_id_patients')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_diagnoses_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_diagnoses'))
    )
    op.create_index(op.f('ix_diagnoses_message_id'), 'diagnoses', ['message_id'], unique=False)
    op.create_index(op.f('ix_diagnoses_patient_id'), 'diagnoses', ['patient_id'], unique=False)
    op.create_index(op.f('ix_diagnoses_visit_id'), 'diagnoses', ['visit_id'], unique=False)
    op.create_table('work_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['work_items.id'], name=op.f('fk_work_attempts_item_id_work_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_work_attempts'))
    )
    op.create_index(op.f('ix_work_attempts_item_id'), 'work_attempts', ['item_id'], unique=False)
    op.create_table('work_keys',
    sa.Column('item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['work_items.id'], name=op.f('fk_work_keys_item_id_work_items')),
    sa.PrimaryKeyConstraint('item_id', 'key', name=op.f('pk_work_keys'))
    )
    op.create_index('ix_work_keys_key_item', 'work_keys', ['key', 'item_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_work_keys_key_item', table_name='work_keys')
    op.drop_table('work_keys')
    op.drop_index(op.f('ix_work_attempts_item_id'), table_name='work_attempts')
    op.drop_table('work_attempts')
    op.drop_index(op.f('ix_diagnoses_visit_id'), table_name='diagnoses')
    op.drop_index(op.f('ix_diagnoses_patient_id'), table_name='diagnoses')
    op.drop_index(op.f('ix_diagnoses_message_id'), table_name='diagnoses')
    op.drop_table('diagnoses')
    op.drop_index('ix_work_items_status_next', table_name='work_items')
    op.drop_index('ix_work_items_message', table_name='work_items')
    op.drop_table('work_items')
    op.drop_index(op.f('ix_visits_visit_number'), table_name='visits')
    op.drop_index(op.f('ix_visits_patient_id'), table_name='visits')
    op.drop_index(op.f('ix_visits_message_id'), table_name='visits')
    op.drop_table('visits')
    op.drop_index(op.f('ix_patient_phones_patient_id'), table_name='patient_phones')
    op.drop_index(op.f('ix_patient_phones_message_id'), table_name='patient_phones')
    op.drop_table('patient_phones')
    op.drop_index(op.f('ix_patient_names_patient_id'), table_name='patient_names')
    op.drop_index(op.f('ix_patient_names_message_id'), table_name='patient_names')
    op.drop_table('patient_names')
    op.drop_index('ix_patient_identifiers_value', table_name='patient_identifiers')
    op.drop_index(op.f('ix_patient_identifiers_patient_id'), table_name='patient_identifiers')
    op.drop_index(op.f('ix_patient_identifiers_message_id'), table_name='patient_identifiers')
    op.drop_table('patient_identifiers')
    op.drop_index(op.f('ix_patient_addresses_patient_id'), table_name='patient_addresses')
    op.drop_index(op.f('ix_patient_addresses_message_id'), table_name='patient_addresses')
    op.drop_table('patient_addresses')
    op.drop_index(op.f('ix_next_of_kin_patient_id'), table_name='next_of_kin')
    op.drop_index(op.f('ix_next_of_kin_message_id'), table_name='next_of_kin')
    op.drop_table('next_of_kin')
    op.drop_index(op.f('ix_insurance_patient_id'), table_name='insurance')
    op.drop_index(op.f('ix_insurance_message_id'), table_name='insurance')
    op.drop_table('insurance')
    op.drop_index(op.f('ix_allergies_patient_id'), table_name='allergies')
    op.drop_index(op.f('ix_allergies_message_id'), table_name='allergies')
    op.drop_table('allergies')
    op.drop_index(op.f('ix_patients_message_id'), table_name='patients')
    op.drop_index(op.f('ix_patients_merged_into'), table_name='patients')
    op.drop_index('ix_patients_given_lower', table_name='patients')
    op.drop_index('ix_patients_family_lower', table_name='patients')
    op.drop_index('ix_patients_birth_date', table_name='patients')
    op.drop_table('patients')
    op.drop_index('ix_messages_type', table_name='messages')
    op.drop_index('ix_messages_status', table_name='messages')
    op.drop_index('ix_messages_received_at', table_name='messages')
    op.drop_index('ix_messages_patient_id', table_name='messages')
    op.drop_index('ix_messages_control_id', table_name='messages')
    op.drop_index('ix_messages_channel_id', table_name='messages')
    op.drop_table('messages')
    op.drop_table('events')
    op.drop_index('ix_documents_visit', table_name='documents')
    op.drop_index('ix_documents_type_status', table_name='documents')
    op.drop_index('ix_documents_parent', table_name='documents')
    op.drop_index('ix_documents_mrn', table_name='documents')
    op.drop_table('documents')
    op.drop_index('ix_document_versions_number', table_name='document_versions')
    op.drop_index('ix_document_versions_message', table_name='document_versions')
    op.drop_table('document_versions')
    op.drop_index('ix_document_deficiencies_type', table_name='document_deficiencies')
    op.drop_index('ix_document_deficiencies_mrn', table_name='document_deficiencies')
    op.drop_index('ix_document_deficiencies_doc', table_name='document_deficiencies')
    op.drop_table('document_deficiencies')
    op.drop_table('document_blobs')
    op.drop_index(op.f('ix_chart_history_patient_id'), table_name='chart_history')
    op.drop_index(op.f('ix_chart_history_message_id'), table_name='chart_history')
    op.drop_table('chart_history')
    op.drop_index('ix_audit_at', table_name='audit')
    op.drop_table('audit')
