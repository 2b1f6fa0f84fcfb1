"""line_search: full-text search over stored lines (text and attributes).

SQLite: an FTS5 index with log_lines as its external content (no second copy of the text),
filled in the background by `server.search.Indexer` up to `search_state.last_line_id`; a
trigger removes a deleted line's entry (only lines already indexed: removing one that never
was would corrupt the index). PostgreSQL: a GIN index over `to_tsvector('simple', raw)`, kept
by PostgreSQL itself.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'search_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('last_line_id', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_search_state')),
    )
    op.execute("INSERT INTO search_state (id, last_line_id) VALUES (1, 0)")
    if op.get_context().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE line_search USING fts5(raw, attributes, content='log_lines', "
                   "content_rowid='id', tokenize='unicode61')")
        op.execute("CREATE TRIGGER log_lines_search_delete AFTER DELETE ON log_lines "
                   "WHEN old.id <= (SELECT last_line_id FROM search_state WHERE id = 1) BEGIN "
                   "INSERT INTO line_search(line_search, rowid, raw, attributes) "
                   "VALUES ('delete', old.id, old.raw, old.attributes); END")
    else:
        op.execute("CREATE INDEX ix_log_lines_search ON log_lines USING gin (to_tsvector('simple', raw))")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS log_lines_search_delete")
        op.execute("DROP TABLE IF EXISTS line_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_log_lines_search")
    op.drop_table('search_state')
