"""tuf repository and worker lease

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tuf_lock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tuf_lock'))
    )
    op.bulk_insert(sa.table('tuf_lock', sa.column('id', sa.Integer)), [{'id': 1}])
    op.create_table('tuf_roles',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('expires', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_tuf_roles'))
    )
    op.create_table('worker_leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=True),
    sa.Column('expires_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_worker_leases'))
    )
    op.bulk_insert(sa.table('worker_leases', sa.column('name', sa.String)), [{'name': 'worker'}])
    op.create_table('tuf_targets',
    sa.Column('path', sa.String(length=512), nullable=False),
    sa.Column('role', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('length', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_tuf_targets_release_id_releases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('path', name=op.f('pk_tuf_targets'))
    )
    with op.batch_alter_table('tuf_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tuf_targets_release_id'), ['release_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tuf_targets_role'), ['role'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tuf_targets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tuf_targets_role'))
        batch_op.drop_index(batch_op.f('ix_tuf_targets_release_id'))

    op.drop_table('tuf_targets')
    op.drop_table('worker_leases')
    op.drop_table('tuf_roles')
    op.drop_table('tuf_lock')
