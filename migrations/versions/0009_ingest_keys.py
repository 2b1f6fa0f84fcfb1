"""ingest_keys: answers of batches posted with an Idempotency-Key.

A client that retries a batch whose answer was lost (a timeout, a dropped connection) sends the
same key; the batch's answer was stored in the batch's own transaction and is sent again instead
of the lines being stored twice. Keys are kept a day.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'ingest_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('stream_id', sa.Integer(), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('answer', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_ingest_keys_stream_id_streams'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_keys')),
        sa.UniqueConstraint('stream_id', 'key', name='uq_ingest_keys_stream_id_key'),
    )
    op.create_index(op.f('ix_ingest_keys_created_at'), 'ingest_keys', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ingest_keys_created_at'), table_name='ingest_keys')
    op.drop_table('ingest_keys')
