"""installations by name: the index the installation lists page by

Revision ID: pg01
Revises: adopt01
"""
from alembic import op


revision = 'pg01'
down_revision = 'adopt01'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.create_index('ix_installations_name_id', ['name', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.drop_index('ix_installations_name_id')
