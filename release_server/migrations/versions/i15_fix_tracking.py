"""fix tracking: releases that fix failure groups and tickets; fixed installations; failure causes;
ticket departments and development-request reviews

Revision ID: i1501
Revises: m0201
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = 'i1501'
down_revision = 'm0201'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('release_fixed_groups',
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('linked_by', sa.String(length=120), nullable=False),
    sa.Column('linked_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['failure_groups.id'], name=op.f('fk_release_fixed_groups_group_id_failure_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_release_fixed_groups_release_id_releases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('release_id', 'group_id', name=op.f('pk_release_fixed_groups'))
    )
    with op.batch_alter_table('release_fixed_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_release_fixed_groups_group_id'), ['group_id'], unique=False)
    op.create_table('release_fixed_tickets',
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('linked_by', sa.String(length=120), nullable=False),
    sa.Column('linked_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_release_fixed_tickets_release_id_releases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_release_fixed_tickets_ticket_id_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('release_id', 'ticket_id', name=op.f('pk_release_fixed_tickets'))
    )
    with op.batch_alter_table('release_fixed_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_release_fixed_tickets_ticket_id'), ['ticket_id'], unique=False)
    with op.batch_alter_table('failure_group_installations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fixed_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('fixed_version', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_failure_group_installations_installation_id', ['installation_id'], unique=False)
    with op.batch_alter_table('failure_groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cause', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_failure_groups_cause'), ['cause'], unique=False)
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('department', sa.String(length=20), server_default='support', nullable=False))
        batch_op.add_column(sa.Column('review', sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column('review_reason', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_tickets_department'), ['department'], unique=False)
    _fill_causes()


def _fill_causes() -> None:
    """Existing groups get their cause from the parts they were fingerprinted by."""
    from release_server.support.fingerprint import cause_of

    bind = op.get_bind()
    groups = sa.table('failure_groups', sa.column('id', sa.Integer()), sa.column('component', sa.String()),
                      sa.column('stage', sa.String()), sa.column('error_code', sa.String()),
                      sa.column('message_pattern', sa.Text()), sa.column('cause', sa.String()))
    rows = bind.execute(sa.select(groups.c.id, groups.c.component, groups.c.stage, groups.c.error_code,
                                  groups.c.message_pattern)).all()
    for gid, component, stage, code, pattern in rows:
        bind.execute(groups.update().where(groups.c.id == gid)
                     .values(cause=cause_of(component or "", stage or "", code or "", pattern or "")))


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tickets_department'))
        batch_op.drop_column('review_reason')
        batch_op.drop_column('review')
        batch_op.drop_column('department')
    with op.batch_alter_table('failure_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failure_groups_cause'))
        batch_op.drop_column('cause')
    with op.batch_alter_table('failure_group_installations', schema=None) as batch_op:
        batch_op.drop_index('ix_failure_group_installations_installation_id')
        batch_op.drop_column('fixed_version')
        batch_op.drop_column('fixed_at')
    with op.batch_alter_table('release_fixed_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_release_fixed_tickets_ticket_id'))
    op.drop_table('release_fixed_tickets')
    with op.batch_alter_table('release_fixed_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_release_fixed_groups_group_id'))
    op.drop_table('release_fixed_groups')
