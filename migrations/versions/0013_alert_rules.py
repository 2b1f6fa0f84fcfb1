"""alert_channels.only_new_incidents and alert_channels.digest_seconds: more rules per channel.

`only_new_incidents`: alert only for an anomaly that opens a new incident on its stream;
`digest_seconds`: hold firing alerts and send them as one message per interval (None: at once).
Channels made before this migration keep their behaviour (every anomaly, sent at once).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('alert_channels') as batch:
        batch.add_column(sa.Column('only_new_incidents', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('digest_seconds', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('alert_channels') as batch:
        batch.drop_column('digest_seconds')
        batch.drop_column('only_new_incidents')
