"""fleet

Revision ID: f001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = 'f001'
down_revision = '0001'
branch_labels = ('fleet',)
depends_on = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('contact_email', sa.String(length=254), nullable=True),
    sa.Column('mail_domains', sa.JSON(), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('name', name=op.f('uq_customers_name'))
    )
    op.create_table('enrollment_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('max_uses', sa.Integer(), nullable=True),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.Column('expires_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_enrollment_tokens_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment_tokens')),
    sa.UniqueConstraint('prefix', name=op.f('uq_enrollment_tokens_prefix'))
    )
    with op.batch_alter_table('enrollment_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollment_tokens_customer_id'), ['customer_id'], unique=False)

    op.create_table('installations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('platform', sa.String(length=120), nullable=False),
    sa.Column('agent_version', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('maintenance_window', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('token_prefix', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('revoked_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('enrolled_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_installations_customer_id_customers'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_installations')),
    sa.UniqueConstraint('token_prefix', name=op.f('uq_installations_token_prefix'))
    )
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_installations_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_installations_last_seen_at'), ['last_seen_at'], unique=False)

    op.create_table('installed_components',
    sa.Column('installation_id', sa.String(length=36), nullable=False),
    sa.Column('component', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('updated_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], name=op.f('fk_installed_components_installation_id_installations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('installation_id', 'component', name=op.f('pk_installed_components'))
    )
    op.create_table('update_reports',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('installation_id', sa.String(length=36), nullable=False),
    sa.Column('component', sa.String(length=64), nullable=False),
    sa.Column('from_version', sa.String(length=64), nullable=True),
    sa.Column('to_version', sa.String(length=64), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('stage', sa.String(length=40), nullable=True),
    sa.Column('error_code', sa.String(length=80), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=True),
    sa.Column('log_tail', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('started_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('received_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], name=op.f('fk_update_reports_installation_id_installations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_update_reports_release_id_releases'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_update_reports'))
    )
    with op.batch_alter_table('update_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_update_reports_component'), ['component'], unique=False)
        batch_op.create_index(batch_op.f('ix_update_reports_installation_id'), ['installation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_update_reports_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_update_reports_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_update_reports_release_id'), ['release_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('update_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_update_reports_release_id'))
        batch_op.drop_index(batch_op.f('ix_update_reports_received_at'))
        batch_op.drop_index(batch_op.f('ix_update_reports_outcome'))
        batch_op.drop_index(batch_op.f('ix_update_reports_installation_id'))
        batch_op.drop_index(batch_op.f('ix_update_reports_component'))

    op.drop_table('update_reports')
    op.drop_table('installed_components')
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_installations_last_seen_at'))
        batch_op.drop_index(batch_op.f('ix_installations_customer_id'))

    op.drop_table('installations')
    with op.batch_alter_table('enrollment_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollment_tokens_customer_id'))

    op.drop_table('enrollment_tokens')
    op.drop_table('customers')
