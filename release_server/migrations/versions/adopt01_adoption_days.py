"""adoption by day: the counted days and their counts per version

Revision ID: adopt01
Revises: i1701
"""
from alembic import op
import sqlalchemy as sa
import release_server.models_common


revision = 'adopt01'
down_revision = 'i1701'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('adoption_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('component', sa.String(length=64), nullable=False),
    sa.Column('counted_at', release_server.models_common.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'component', name=op.f('pk_adoption_days'))
    )
    op.create_table('adoption_counts',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('component', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('installations', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['day', 'component'], ['adoption_days.day', 'adoption_days.component'],
                            name=op.f('fk_adoption_counts_day_adoption_days'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('day', 'component', 'version', name=op.f('pk_adoption_counts'))
    )


def downgrade() -> None:
    op.drop_table('adoption_counts')
    op.drop_table('adoption_days')
