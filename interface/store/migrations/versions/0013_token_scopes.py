"""api_tokens.scopes and .patient: SMART-style FHIR scopes on API tokens; patients sorted by name

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Nullable: tokens made before this revision carry no FHIR scope, so /fhir refuses them
    # (403) until a new token with --scope is made; /api/* is unchanged.
    op.add_column('api_tokens', sa.Column('scopes', sa.String(length=1000), nullable=True))
    op.add_column('api_tokens', sa.Column('patient', sa.String(length=128), nullable=True))
    # FHIR Patient searches page in (family, given, mrn) order without sorting every match.
    op.create_index('ix_patients_name_order', 'patients', ['family', 'given', 'mrn'])


def downgrade() -> None:
    op.drop_index('ix_patients_name_order', table_name='patients')
    op.drop_column('api_tokens', 'patient')
    op.drop_column('api_tokens', 'scopes')
