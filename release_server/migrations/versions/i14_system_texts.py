"""system texts as message codes, languages and time zones per person and customer, failure group states

Revision ID: i1401
Revises: i1201
"""
from alembic import op
import sqlalchemy as sa

import release_server.models_common


revision = 'i1401'
down_revision = 'i1201'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject_code', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('subject_params', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('description_code', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('description_params', sa.JSON(), nullable=True))
    with op.batch_alter_table('ticket_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body_code', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('body_params', sa.JSON(), nullable=True))
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
    with op.batch_alter_table('customer_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
    with op.batch_alter_table('failure_groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=12), server_default='unresolved', nullable=False))
        batch_op.add_column(sa.Column('resolved_in_version', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('state_changed_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('state_changed_by', sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column('ignored_until', release_server.models_common.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ignored_until_reports', sa.Integer(), nullable=True))
        batch_op.create_index('ix_failure_groups_state', ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('failure_groups', schema=None) as batch_op:
        batch_op.drop_index('ix_failure_groups_state')
        for col in ('ignored_until_reports', 'ignored_until', 'state_changed_by', 'state_changed_at',
                    'resolved_in_version', 'state'):
            batch_op.drop_column(col)
    with op.batch_alter_table('customer_users', schema=None) as batch_op:
        batch_op.drop_column('timezone')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('timezone')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('timezone')
        batch_op.drop_column('locale')
    with op.batch_alter_table('ticket_events', schema=None) as batch_op:
        batch_op.drop_column('body_params')
        batch_op.drop_column('body_code')
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        for col in ('description_params', 'description_code', 'subject_params', 'subject_code'):
            batch_op.drop_column(col)
