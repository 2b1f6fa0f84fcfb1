"""api_keys.scopes and api_keys.streams: what a key may do, and on which streams.

Keys made before this migration keep every right (scopes ["admin"], every stream).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 16:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('scopes', sa.JSON(), nullable=False, server_default=sa.text("'[\"admin\"]'")))
        batch.add_column(sa.Column('streams', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('streams')
        batch.drop_column('scopes')
