"""worker job runs: last run, duration and failure counts per job

Revision ID: i1201
Revises: i10b01
"""
from alembic import op
import sqlalchemy as sa

import release_server.models_common


revision = 'i1201'
down_revision = 'i10b01'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('worker_job_runs',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_started_at', release_server.models_common.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_duration_seconds', sa.Float(), nullable=True),
    sa.Column('last_ok', sa.Boolean(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_worker_job_runs'))
    )


def downgrade() -> None:
    op.drop_table('worker_job_runs')
