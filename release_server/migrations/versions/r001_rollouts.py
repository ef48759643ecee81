"""rollouts

Revision ID: r001
Revises: f001
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = 'r001'
down_revision = 'f001'
branch_labels = ('rollouts',)
depends_on = None


def upgrade() -> None:
    op.create_table('catalog_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('auth_version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalog_state'))
    )
    op.bulk_insert(sa.table('catalog_state', sa.column('id', sa.Integer), sa.column('version', sa.Integer),
                            sa.column('auth_version', sa.Integer)), [{'id': 1, 'version': 0, 'auth_version': 0}])
    op.create_table('pins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=20), nullable=False),
    sa.Column('scope_value', sa.String(length=200), nullable=False),
    sa.Column('component', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.Column('exact', sa.Boolean(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pins')),
    sa.UniqueConstraint('scope', 'scope_value', 'component', name='uq_pins_scope')
    )
    op.create_table('release_restrictions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('installation_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_release_restrictions_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], name=op.f('fk_release_restrictions_installation_id_installations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_release_restrictions_release_id_releases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_release_restrictions'))
    )
    with op.batch_alter_table('release_restrictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_release_restrictions_release_id'), ['release_id'], unique=False)

    op.create_table('rollouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('share', sa.Integer(), nullable=False),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('phase_started_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failure_threshold', sa.Float(), nullable=False),
    sa.Column('min_attempts', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('successes', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('halted_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('halt_reason', sa.Text(), nullable=True),
    sa.Column('halt_figures', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_rollouts_release_id_releases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollouts')),
    sa.UniqueConstraint('release_id', 'channel', name='uq_rollouts_release_channel')
    )
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollouts_release_id'), ['release_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollouts_release_id'))

    op.drop_table('rollouts')
    with op.batch_alter_table('release_restrictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_release_restrictions_release_id'))

    op.drop_table('release_restrictions')
    op.drop_table('pins')
    op.drop_table('catalog_state')
