"""Initial schema: every table of server/tables.py.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 14:04:22.486678
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

# Line ids: BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
LINE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    op.create_index(op.f('ix_api_keys_prefix'), 'api_keys', ['prefix'], unique=False)

    op.create_table('streams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_streams')),
    sa.UniqueConstraint('name', name=op.f('uq_streams_name'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Integer(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_jobs_stream_id_streams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index('ix_jobs_stream_id_state', 'jobs', ['stream_id', 'state'], unique=False)

    op.create_table('log_lines',
    sa.Column('id', LINE_ID, autoincrement=True, nullable=False),
    sa.Column('stream_id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('timestamp', sa.Float(), nullable=True),
    sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('raw', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('masked', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=True),
    sa.Column('sessions', sa.JSON(), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=True),
    sa.Column('rapid_score', sa.Float(), nullable=True),
    sa.Column('rapid_flag', sa.Boolean(), nullable=True),
    sa.Column('loggpt_flag', sa.Boolean(), nullable=True),
    sa.Column('severity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('checked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_log_lines_stream_id_streams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_log_lines'))
    )
    op.create_index('ix_log_lines_stream_id_id', 'log_lines', ['stream_id', 'id'], unique=False)
    op.create_index('ix_log_lines_stream_id_severity', 'log_lines', ['stream_id', 'severity'], unique=False)

    op.create_table('template_mutes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('until', sa.DateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_template_mutes_stream_id_streams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_template_mutes')),
    sa.UniqueConstraint('stream_id', 'template_id', name='uq_template_mutes_stream_id_template_id')
    )
    op.create_table('windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('n_lines', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('last_line_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('checked_at', sa.DateTime(), nullable=True),
    sa.Column('anomalous', sa.Boolean(), nullable=True),
    sa.Column('model_version', sa.Integer(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_windows_stream_id_streams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_windows'))
    )
    op.create_index('ix_windows_state_id', 'windows', ['state', 'id'], unique=False)
    op.create_index('ix_windows_stream_id_key', 'windows', ['stream_id', 'key'], unique=False)

    op.create_table('anomalies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Integer(), nullable=False),
    sa.Column('line_id', LINE_ID, nullable=True),
    sa.Column('window_id', sa.Integer(), nullable=True),
    sa.Column('template_id', sa.Integer(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('severity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['line_id'], ['log_lines.id'], name=op.f('fk_anomalies_line_id_log_lines'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_anomalies_stream_id_streams'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['window_id'], ['windows.id'], name=op.f('fk_anomalies_window_id_windows'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_anomalies'))
    )
    op.create_index(op.f('ix_anomalies_line_id'), 'anomalies', ['line_id'], unique=False)
    op.create_index('ix_anomalies_stream_id_status_created_at', 'anomalies', ['stream_id', 'status', 'created_at'], unique=False)
    op.create_index(op.f('ix_anomalies_window_id'), 'anomalies', ['window_id'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('live', sa.Boolean(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_model_versions_job_id_jobs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_model_versions_stream_id_streams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('stream_id', 'kind', 'version', name='uq_model_versions_stream_id_kind_version')
    )
    op.create_table('window_lines',
    sa.Column('window_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('line_id', LINE_ID, nullable=False),
    sa.ForeignKeyConstraint(['line_id'], ['log_lines.id'], name=op.f('fk_window_lines_line_id_log_lines'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['window_id'], ['windows.id'], name=op.f('fk_window_lines_window_id_windows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('window_id', 'position', name=op.f('pk_window_lines'))
    )
    op.create_index(op.f('ix_window_lines_line_id'), 'window_lines', ['line_id'], unique=False)

    op.create_table('feedback',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('anomaly_id', sa.Integer(), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('suppress_until', sa.DateTime(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['anomaly_id'], ['anomalies.id'], name=op.f('fk_feedback_anomaly_id_anomalies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback'))
    )
    op.create_index(op.f('ix_feedback_anomaly_id'), 'feedback', ['anomaly_id'], unique=False)



def downgrade() -> None:
    op.drop_index(op.f('ix_feedback_anomaly_id'), table_name='feedback')

    op.drop_table('feedback')
    op.drop_index(op.f('ix_window_lines_line_id'), table_name='window_lines')

    op.drop_table('window_lines')
    op.drop_table('model_versions')
    op.drop_index(op.f('ix_anomalies_window_id'), table_name='anomalies')
    op.drop_index('ix_anomalies_stream_id_status_created_at', table_name='anomalies')
    op.drop_index(op.f('ix_anomalies_line_id'), table_name='anomalies')

    op.drop_table('anomalies')
    op.drop_index('ix_windows_stream_id_key', table_name='windows')
    op.drop_index('ix_windows_state_id', table_name='windows')

    op.drop_table('windows')
    op.drop_table('template_mutes')
    op.drop_index('ix_log_lines_stream_id_severity', table_name='log_lines')
    op.drop_index('ix_log_lines_stream_id_id', table_name='log_lines')

    op.drop_table('log_lines')
    op.drop_index('ix_jobs_stream_id_state', table_name='jobs')

    op.drop_table('jobs')
    op.drop_table('users')
    op.drop_table('streams')
    op.drop_index(op.f('ix_api_keys_prefix'), table_name='api_keys')

    op.drop_table('api_keys')
