"""change feed of installations' credentials and settings

Revision ID: i10b01
Revises: l001
"""
from alembic import op
import sqlalchemy as sa

import release_server.models_common


revision = 'i10b01'
down_revision = 'l001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'installation_changes',
        sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('installation_id', sa.String(length=36), nullable=True),
        sa.Column('changed_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('version', name=op.f('pk_installation_changes')),
    )


def downgrade() -> None:
    op.drop_table('installation_changes')
