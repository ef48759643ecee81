"""delta patches between releases; transfer figures on update reports

Revision ID: i1601
Revises: i11rob01
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = 'i1601'
down_revision = 'i11rob01'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('release_deltas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('from_release_id', sa.Integer(), nullable=False),
    sa.Column('to_release_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('target_path', sa.String(length=512), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('length', sa.BigInteger(), nullable=True),
    sa.Column('base_tar_sha256', sa.String(length=64), nullable=True),
    sa.Column('base_tar_length', sa.BigInteger(), nullable=True),
    sa.Column('tar_sha256', sa.String(length=64), nullable=True),
    sa.Column('tar_length', sa.BigInteger(), nullable=True),
    sa.Column('generation_seconds', sa.Float(), nullable=True),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['from_release_id'], ['releases.id'], name=op.f('fk_release_deltas_from_release_id_releases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['to_release_id'], ['releases.id'], name=op.f('fk_release_deltas_to_release_id_releases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_release_deltas')),
    sa.UniqueConstraint('from_release_id', 'to_release_id', name='uq_release_deltas_pair'),
    sa.UniqueConstraint('target_path', name=op.f('uq_release_deltas_target_path'))
    )
    with op.batch_alter_table('release_deltas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_release_deltas_from_release_id'), ['from_release_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_release_deltas_to_release_id'), ['to_release_id'], unique=False)
    with op.batch_alter_table('update_reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bytes_downloaded', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('bytes_full', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('update_reports', schema=None) as batch_op:
        batch_op.drop_column('bytes_full')
        batch_op.drop_column('bytes_downloaded')
    with op.batch_alter_table('release_deltas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_release_deltas_to_release_id'))
        batch_op.drop_index(batch_op.f('ix_release_deltas_from_release_id'))
    op.drop_table('release_deltas')
