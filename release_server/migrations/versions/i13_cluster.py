"""outbound mail claims name the worker lease holder that sends them

Revision ID: i1301
Revises: i1601
"""
from alembic import op
import sqlalchemy as sa


revision = 'i1301'
down_revision = 'i1601'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
