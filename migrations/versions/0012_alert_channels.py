"""alert_channels and alert_outbox: notification channels and the durable queue of alerts to them.

An outbox row is written in the transaction of its event (a new open anomaly: `firing`; its
refute, confirmation or mute: `resolved`) and sent by `server.alerts.Dispatcher`; the unique
(channel_id, anomaly_id, event) keeps an event from being queued twice.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-09 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'alert_channels',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('streams', sa.JSON(), nullable=True),
        sa.Column('min_severity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_channels')),
        sa.UniqueConstraint('name', name=op.f('uq_alert_channels_name')),
    )
    op.create_table(
        'alert_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel_id', sa.Integer(), nullable=False),
        sa.Column('anomaly_id', sa.Integer(), nullable=True),
        sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['channel_id'], ['alert_channels.id'],
                                name=op.f('fk_alert_outbox_channel_id_alert_channels'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['anomaly_id'], ['anomalies.id'], name=op.f('fk_alert_outbox_anomaly_id_anomalies'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_outbox')),
        sa.UniqueConstraint('channel_id', 'anomaly_id', 'event', name='uq_alert_outbox_channel_id_anomaly_id_event'),
    )
    op.create_index(op.f('ix_alert_outbox_anomaly_id'), 'alert_outbox', ['anomaly_id'], unique=False)
    op.create_index('ix_alert_outbox_state_channel_id_id', 'alert_outbox', ['state', 'channel_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_alert_outbox_state_channel_id_id', table_name='alert_outbox')
    op.drop_index(op.f('ix_alert_outbox_anomaly_id'), table_name='alert_outbox')
    op.drop_table('alert_outbox')
    op.drop_table('alert_channels')
