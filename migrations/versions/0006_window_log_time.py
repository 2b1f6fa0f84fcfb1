"""Windows remember the log time of their newest line, for the idle timeout in log time.

`models.windowing` closes a session when a line of its key arrives more than the idle timeout
after its newest line, and sweeps quiet ones as the stream's log time moves on; both read
`last_ts`. Open windows from before this migration get their arrival time (`last_line_at`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('windows') as batch:
        batch.add_column(sa.Column('last_ts', sa.Float(), nullable=True))
    epoch = ("CAST(strftime('%s', last_line_at) AS REAL)" if op.get_bind().dialect.name == "sqlite"
             else "EXTRACT(EPOCH FROM last_line_at)")
    op.execute(f"UPDATE windows SET last_ts = {epoch} WHERE state = 'open'")
    op.create_index('ix_windows_open_last_ts', 'windows', ['stream_id', 'last_ts'], unique=False,
                    sqlite_where=sa.text("state = 'open'"), postgresql_where=sa.text("state = 'open'"))


def downgrade() -> None:
    op.drop_index('ix_windows_open_last_ts', table_name='windows')
    with op.batch_alter_table('windows') as batch:
        batch.drop_column('last_ts')
