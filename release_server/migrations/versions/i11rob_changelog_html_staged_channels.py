"""changelogs rendered once at publish; channels that require a staged rollout

Revision ID: i11rob01
Revises: i11sec01
"""
from alembic import op
import sqlalchemy as sa


revision = 'i11rob01'
down_revision = 'i11sec01'
branch_labels = None
depends_on = None


def _render(text: str) -> str:
    """The stored HTML of a changelog published before rendering moved to publish time."""
    import html

    from release_server.releases.changelog import ChangelogTooDeepError, ChangelogTooLargeError, render

    try:
        return render(text or "")
    except (ChangelogTooDeepError, ChangelogTooLargeError):
        return f"<pre>{html.escape(text)}</pre>"


def upgrade() -> None:
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changelog_html', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('require_staged_rollout', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    releases = sa.table('releases', sa.column('id', sa.Integer), sa.column('changelog', sa.Text),
                        sa.column('changelog_html', sa.Text))
    conn = op.get_bind()
    rows = conn.execute(sa.select(releases.c.id, releases.c.changelog).where(releases.c.changelog != '')).all()
    for rid, text in rows:
        conn.execute(releases.update().where(releases.c.id == rid).values(changelog_html=_render(text)))


def downgrade() -> None:
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('require_staged_rollout')
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_column('changelog_html')
