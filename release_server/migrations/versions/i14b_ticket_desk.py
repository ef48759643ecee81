"""ticket desk: staff display names, CC contacts, saved filters, canned replies

Revision ID: i14b01
Revises: i1501
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = 'i14b01'
down_revision = 'i1501'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display_name', sa.String(length=120), nullable=True))
    op.create_table('ticket_cc',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('added_by', sa.String(length=200), nullable=False),
    sa.Column('added_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_cc_ticket_id_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_cc')),
    sa.UniqueConstraint('ticket_id', 'email', name='uq_ticket_cc_ticket_email')
    )
    with op.batch_alter_table('ticket_cc', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_cc_ticket_id'), ['ticket_id'], unique=False)
    op.create_table('saved_ticket_filters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('query', sa.JSON(), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_saved_ticket_filters_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saved_ticket_filters')),
    sa.UniqueConstraint('user_id', 'name', name='uq_saved_ticket_filters_user_name')
    )
    with op.batch_alter_table('saved_ticket_filters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saved_ticket_filters_user_id'), ['user_id'], unique=False)
    op.create_table('canned_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_canned_replies')),
    sa.UniqueConstraint('title', name='uq_canned_replies_title')
    )


def downgrade() -> None:
    op.drop_table('canned_replies')
    with op.batch_alter_table('saved_ticket_filters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saved_ticket_filters_user_id'))
    op.drop_table('saved_ticket_filters')
    with op.batch_alter_table('ticket_cc', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_cc_ticket_id'))
    op.drop_table('ticket_cc')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('display_name')
