"""incoming mail finds its customer by index: one row per mail domain, contact addresses indexed

Revision ID: m0201
Revises: i1301
"""
from alembic import op
import sqlalchemy as sa


revision = 'm0201'
down_revision = 'i1301'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'customer_mail_domains',
        sa.Column('domain', sa.String(length=253), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('domain', 'customer_id'),
    )
    customers = sa.table('customers', sa.column('id', sa.Integer()), sa.column('mail_domains', sa.JSON()))
    domains = sa.table('customer_mail_domains', sa.column('domain', sa.String()), sa.column('customer_id', sa.Integer()))
    conn = op.get_bind()
    rows = []
    for cid, listed in conn.execute(sa.select(customers.c.id, customers.c.mail_domains)):
        for d in sorted({str(d).strip().lower().lstrip('@') for d in (listed or [])} - {''}):
            rows.append({'domain': d[:253], 'customer_id': cid})
    if rows:
        op.bulk_insert(domains, rows)
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_contact_email', ['contact_email'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_contact_email')
    op.drop_table('customer_mail_domains')
