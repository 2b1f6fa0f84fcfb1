"""cluster: the tables of running past one machine (`server.cluster`).

Partition leases with fencing epochs, the nodes' heartbeats, each stream's parser committed
with its batches, the ordered per-stream event log; who claimed a window and who runs a job.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

LineId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')  # as server.tables: migrations stand alone

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'partition_leases',
        sa.Column('partition', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('owner', sa.String(length=128), nullable=True),
        sa.Column('epoch', sa.BigInteger(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('partition', name=op.f('pk_partition_leases')),
    )
    op.create_table(
        'cluster_nodes',
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('seen_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_cluster_nodes')),
    )
    op.create_table(
        'stream_parsers',
        sa.Column('stream_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('n_templates', sa.Integer(), nullable=False),
        sa.Column('state', sa.LargeBinary(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_stream_parsers_stream_id_streams'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('stream_id', name=op.f('pk_stream_parsers')),
    )
    op.create_table(
        'stream_events',
        sa.Column('id', LineId, autoincrement=True, nullable=False),
        sa.Column('stream_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_stream_events_stream_id_streams'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_stream_events')),
    )
    op.create_index(op.f('ix_stream_events_stream_id'), 'stream_events', ['stream_id'], unique=False)
    with op.batch_alter_table('windows') as batch:
        batch.add_column(sa.Column('claimed_by', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('claimed_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('owner', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('owner')
    with op.batch_alter_table('windows') as batch:
        batch.drop_column('claimed_at')
        batch.drop_column('claimed_by')
    op.drop_index(op.f('ix_stream_events_stream_id'), table_name='stream_events')
    op.drop_table('stream_events')
    op.drop_table('stream_parsers')
    op.drop_table('cluster_nodes')
    op.drop_table('partition_leases')
