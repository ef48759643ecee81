"""installations by name (the index the lists page by) and the revoked ones (which the figures subtract)

Revision ID: pg01
Revises: adopt01
"""
from alembic import op
import sqlalchemy as sa


revision = 'pg01'
down_revision = 'adopt01'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.create_index('ix_installations_name_id', ['name', 'id'], unique=False)
        batch_op.create_index('ix_installations_revoked', ['id'], unique=False,
                              postgresql_where=sa.text('revoked_at IS NOT NULL'),
                              sqlite_where=sa.text('revoked_at IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.drop_index('ix_installations_revoked')
        batch_op.drop_index('ix_installations_name_id')
