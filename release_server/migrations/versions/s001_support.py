"""support: tickets, failure groups, mail, customer users

Revision ID: s001
Revises: r001
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = 's001'
down_revision = 'r001'
branch_labels = ('support',)
depends_on = None


def upgrade() -> None:
    op.create_table('failure_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('component', sa.String(length=64), nullable=False),
    sa.Column('target_version', sa.String(length=64), nullable=False),
    sa.Column('stage', sa.String(length=40), nullable=False),
    sa.Column('error_code', sa.String(length=80), nullable=False),
    sa.Column('message_pattern', sa.Text(), nullable=False),
    sa.Column('sample_message', sa.Text(), nullable=False),
    sa.Column('regressions', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_failure_groups')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_failure_groups_fingerprint'))
    )
    with op.batch_alter_table('failure_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failure_groups_component'), ['component'], unique=False)

    op.create_table('ticket_counters',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_ticket_counters'))
    )
    op.create_table('customer_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_users_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_users')),
    sa.UniqueConstraint('email', name=op.f('uq_customer_users_email'))
    )
    with op.batch_alter_table('customer_users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_users_customer_id'), ['customer_id'], unique=False)

    op.create_table('customer_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('customer_user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_user_id'], ['customer_users.id'], name=op.f('fk_customer_tokens_customer_user_id_customer_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_tokens')),
    sa.UniqueConstraint('prefix', name=op.f('uq_customer_tokens_prefix'))
    )
    with op.batch_alter_table('customer_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_tokens_customer_user_id'), ['customer_user_id'], unique=False)

    op.create_table('failure_group_installations',
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('installation_id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_failure_group_installations_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['group_id'], ['failure_groups.id'], name=op.f('fk_failure_group_installations_group_id_failure_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], name=op.f('fk_failure_group_installations_installation_id_installations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'installation_id', name=op.f('pk_failure_group_installations'))
    )
    with op.batch_alter_table('failure_group_installations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failure_group_installations_customer_id'), ['customer_id'], unique=False)

    op.create_table('tickets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('priority', sa.String(length=10), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('requester_email', sa.String(length=254), nullable=True),
    sa.Column('requester_name', sa.String(length=200), nullable=False),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('internal', sa.Boolean(), nullable=False),
    sa.Column('installation_id', sa.String(length=36), nullable=True),
    sa.Column('release_id', sa.Integer(), nullable=True),
    sa.Column('rollout_id', sa.Integer(), nullable=True),
    sa.Column('failure_group_id', sa.Integer(), nullable=True),
    sa.Column('previous_ticket_id', sa.Integer(), nullable=True),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('regression', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_tickets_assignee_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_tickets_customer_id_customers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['failure_group_id'], ['failure_groups.id'], name=op.f('fk_tickets_failure_group_id_failure_groups'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['installation_id'], ['installations.id'], name=op.f('fk_tickets_installation_id_installations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['merged_into_id'], ['tickets.id'], name=op.f('fk_tickets_merged_into_id_tickets'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['previous_ticket_id'], ['tickets.id'], name=op.f('fk_tickets_previous_ticket_id_tickets'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_tickets_release_id_releases'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollouts.id'], name=op.f('fk_tickets_rollout_id_rollouts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets')),
    sa.UniqueConstraint('failure_group_id', 'customer_id', name='uq_tickets_failure_group_customer'),
    sa.UniqueConstraint('number', name=op.f('uq_tickets_number')),
    sa.UniqueConstraint('seq', name=op.f('uq_tickets_seq'))
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tickets_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_failure_group_id'), ['failure_group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_installation_id'), ['installation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_processed_at'), ['processed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_requester_email'), ['requester_email'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_rollout_id'), ['rollout_id'], unique=False)
        batch_op.create_index('ix_tickets_status_updated', ['status', 'updated_at'], unique=False)

    op.create_table('failure_group_reports',
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('installation_id', sa.String(length=36), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('received_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['failure_groups.id'], name=op.f('fk_failure_group_reports_group_id_failure_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['report_id'], ['update_reports.id'], name=op.f('fk_failure_group_reports_report_id_update_reports'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_failure_group_reports_ticket_id_tickets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('report_id', name=op.f('pk_failure_group_reports'))
    )
    with op.batch_alter_table('failure_group_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failure_group_reports_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_failure_group_reports_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('mail_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('direction', sa.String(length=3), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('from_addr', sa.String(length=254), nullable=False),
    sa.Column('to_addr', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('outcome', sa.String(length=40), nullable=False),
    sa.Column('blob_key', sa.String(length=255), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('in_reply_to', sa.String(length=998), nullable=False),
    sa.Column('references', sa.JSON(), nullable=False),
    sa.Column('auto_generated', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('sent_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_mail_messages_ticket_id_tickets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_messages')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_mail_messages_dedupe_key'))
    )
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_messages_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_messages_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_mail_messages_outbox', ['direction', 'status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_messages_ticket_id'), ['ticket_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_messages_to_addr'), ['to_addr'], unique=False)

    op.create_table('ticket_failure_groups',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['failure_groups.id'], name=op.f('fk_ticket_failure_groups_group_id_failure_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_failure_groups_ticket_id_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ticket_id', 'group_id', name=op.f('pk_ticket_failure_groups'))
    )
    op.create_table('ticket_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('author', sa.String(length=254), nullable=False),
    sa.Column('author_kind', sa.String(length=20), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('mail_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['mail_id'], ['mail_messages.id'], name=op.f('fk_ticket_events_mail_id_mail_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_events_ticket_id_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_events'))
    )
    with op.batch_alter_table('ticket_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_events_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('ticket_attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('blob_key', sa.String(length=255), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('uploaded_by', sa.String(length=254), nullable=False),
    sa.Column('created_at', release_server.models_common.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['ticket_events.id'], name=op.f('fk_ticket_attachments_event_id_ticket_events'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_attachments_ticket_id_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_attachments'))
    )
    with op.batch_alter_table('ticket_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_attachments_ticket_id'), ['ticket_id'], unique=False)

    op.bulk_insert(sa.table('ticket_counters', sa.column('name', sa.String), sa.column('value', sa.BigInteger)),
                   [{'name': 'ticket', 'value': 0}])
    if op.get_bind().dialect.name == 'postgresql':
        # Ticket numbers on PostgreSQL; owned by tickets.seq so TRUNCATE ... RESTART IDENTITY resets it too.
        op.execute('CREATE SEQUENCE ticket_number_seq OWNED BY tickets.seq')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP SEQUENCE IF EXISTS ticket_number_seq')
    with op.batch_alter_table('ticket_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_attachments_ticket_id'))

    op.drop_table('ticket_attachments')
    with op.batch_alter_table('ticket_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_events_ticket_id'))

    op.drop_table('ticket_events')
    op.drop_table('ticket_failure_groups')
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_messages_to_addr'))
        batch_op.drop_index(batch_op.f('ix_mail_messages_ticket_id'))
        batch_op.drop_index('ix_mail_messages_outbox')
        batch_op.drop_index(batch_op.f('ix_mail_messages_message_id'))
        batch_op.drop_index(batch_op.f('ix_mail_messages_created_at'))

    op.drop_table('mail_messages')
    with op.batch_alter_table('failure_group_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failure_group_reports_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_failure_group_reports_group_id'))

    op.drop_table('failure_group_reports')
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_status_updated')
        batch_op.drop_index(batch_op.f('ix_tickets_rollout_id'))
        batch_op.drop_index(batch_op.f('ix_tickets_requester_email'))
        batch_op.drop_index(batch_op.f('ix_tickets_processed_at'))
        batch_op.drop_index(batch_op.f('ix_tickets_kind'))
        batch_op.drop_index(batch_op.f('ix_tickets_installation_id'))
        batch_op.drop_index(batch_op.f('ix_tickets_failure_group_id'))
        batch_op.drop_index(batch_op.f('ix_tickets_customer_id'))
        batch_op.drop_index(batch_op.f('ix_tickets_created_at'))
        batch_op.drop_index(batch_op.f('ix_tickets_assignee_id'))

    op.drop_table('tickets')
    with op.batch_alter_table('failure_group_installations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failure_group_installations_customer_id'))

    op.drop_table('failure_group_installations')
    with op.batch_alter_table('customer_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_tokens_customer_user_id'))

    op.drop_table('customer_tokens')
    with op.batch_alter_table('customer_users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_users_customer_id'))

    op.drop_table('customer_users')
    op.drop_table('ticket_counters')
    with op.batch_alter_table('failure_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failure_groups_component'))

    op.drop_table('failure_groups')
