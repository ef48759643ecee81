"""claimed components: publisher keys, pending signatures

Revision ID: i1701
Revises: i14b01
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = 'i1701'
down_revision = 'i14b01'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tuf_claims',
    sa.Column('component', sa.String(length=64), nullable=False),
    sa.Column('keys', sa.JSON(), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('component', name=op.f('pk_tuf_claims'))
    )
    op.create_table('tuf_pending',
    sa.Column('component', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('role_json', sa.Text(), nullable=False),
    sa.Column('targets_bytes', sa.LargeBinary(), nullable=True),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_tuf_pending_release_id_releases'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('component', name=op.f('pk_tuf_pending'))
    )
    op.create_index(op.f('ix_tuf_pending_release_id'), 'tuf_pending', ['release_id'], unique=False)
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signatures_pending', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_column('signatures_pending')
    op.drop_index(op.f('ix_tuf_pending_release_id'), table_name='tuf_pending')
    op.drop_table('tuf_pending')
    op.drop_table('tuf_claims')
