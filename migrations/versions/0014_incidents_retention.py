"""incidents, incident_notes and anomalies.incident_id: incidents as stored rows.

Until now an incident was computed on every read (a run of one stream's anomalies, each within
`incident_gap_seconds` of the one before); from now on `store.assign_incidents` opens and
extends them as anomalies are stored, and operators acknowledge, assign, resolve and annotate
them.

The anomalies already stored are grouped here by the same rule, in SQL (window functions:
SQLite 3.25+ and PostgreSQL alike, and offline SQL still renders), with the gap the server
starts with: `LOGSENSE_INCIDENT_GAP_SECONDS` if set, else the default 300 s. An incident takes
the id of its first anomaly, is `open` while one of its anomalies is open (else `resolved`,
"auto", at its newest anomaly's `updated_at`), and its `severity` is the worst of them.
Retention per stream (`StreamSettings.retention_days`) needs no schema: settings are JSON.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-11 10:00:00
"""

import os
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_GAP_SECONDS = 300.0  # server.settings.Settings.incident_gap_seconds when this was written


def _gap_seconds() -> float:
    try:
        gap = float(os.environ.get("LOGSENSE_INCIDENT_GAP_SECONDS") or DEFAULT_GAP_SECONDS)
    except ValueError:
        return DEFAULT_GAP_SECONDS
    return gap if 0 <= gap < 10**9 else DEFAULT_GAP_SECONDS


def upgrade() -> None:
    op.create_table(
        'incidents',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('stream_id', sa.Integer(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('severity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('template_id', sa.Integer(), nullable=True),
        sa.Column('assignee', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('n_anomalies', sa.Integer(), nullable=False),
        sa.Column('opened_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=False),
        sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.Column('resolved_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_incidents_stream_id_streams'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents')),
    )
    op.create_index('ix_incidents_stream_id_status_id', 'incidents', ['stream_id', 'status', 'id'], unique=False)
    op.create_index('ix_incidents_status_id', 'incidents', ['status', 'id'], unique=False)
    op.create_table(
        'incident_notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('incident_id', sa.Integer(), nullable=False),
        sa.Column('author', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'],
                                name=op.f('fk_incident_notes_incident_id_incidents'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_notes')),
    )
    op.create_index(op.f('ix_incident_notes_incident_id'), 'incident_notes', ['incident_id'], unique=False)
    # No foreign key: SQLite adds one only by rebuilding the anomalies table, and that rebuild's
    # DROP TABLE (foreign keys on) would cascade into feedback and alert_outbox. An incident goes
    # only with its stream (and its anomalies with it) or, by retention, once it has none left.
    op.add_column('anomalies', sa.Column('incident_id', sa.Integer(), nullable=True))
    op.create_index(op.f('ix_anomalies_incident_id'), 'anomalies', ['incident_id'], unique=False)
    _backfill(op.get_context().dialect.name == "sqlite")


def _backfill(sqlite: bool) -> None:
    """Group the stored anomalies into incidents by the gap rule (see the module's docstring)."""
    gap = _gap_seconds()
    if sqlite:  # created_at is naive UTC text
        apart = f"(julianday(created_at) - julianday(prev_at)) * 86400.0 > {gap!r}"
    else:
        apart = f"created_at - prev_at > interval '{gap!r} seconds'"
    op.execute(
        "CREATE TABLE incident_backfill AS "
        "SELECT id, FIRST_VALUE(id) OVER (PARTITION BY stream_id, run ORDER BY created_at, id) AS incident_id FROM ("
        " SELECT id, stream_id, created_at, SUM(starts) OVER (PARTITION BY stream_id ORDER BY created_at, id"
        "  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run FROM ("
        f"  SELECT id, stream_id, created_at, CASE WHEN prev_at IS NULL OR {apart} THEN 1 ELSE 0 END AS starts FROM ("
        "   SELECT id, stream_id, created_at,"
        "    LAG(created_at) OVER (PARTITION BY stream_id ORDER BY created_at, id) AS prev_at FROM anomalies"
        "  ) AS lagged"
        " ) AS marked"
        ") AS runs"
    )
    op.execute("CREATE INDEX ix_incident_backfill_id ON incident_backfill (id)")
    op.execute(
        "INSERT INTO incidents (id, stream_id, status, severity, title, template_id, assignee, n_anomalies, opened_at,"
        " last_seen_at, acknowledged_at, resolved_at, resolved_by, updated_at) "
        "SELECT b.incident_id, min(a.stream_id),"
        " CASE WHEN sum(CASE WHEN a.status = 'open' THEN 1 ELSE 0 END) > 0 THEN 'open' ELSE 'resolved' END,"
        " CASE WHEN sum(CASE WHEN a.severity = 'danger' THEN 1 ELSE 0 END) > 0 THEN 'danger' ELSE 'watch' END,"
        " '', NULL, NULL, count(*), min(a.created_at), max(a.created_at), NULL,"
        " CASE WHEN sum(CASE WHEN a.status = 'open' THEN 1 ELSE 0 END) > 0 THEN NULL ELSE max(a.updated_at) END,"
        " CASE WHEN sum(CASE WHEN a.status = 'open' THEN 1 ELSE 0 END) > 0 THEN NULL ELSE 'auto' END,"
        " max(a.updated_at) "
        "FROM anomalies a JOIN incident_backfill b ON b.id = a.id GROUP BY b.incident_id"
    )
    op.execute(  # the title: its first anomaly's masked line; a window anomaly without one: its template id
        "UPDATE incidents SET template_id = (SELECT a.template_id FROM anomalies a WHERE a.id = incidents.id),"
        " title = coalesce((SELECT substr(l.masked, 1, 255) FROM anomalies a JOIN log_lines l ON l.id = a.line_id"
        " WHERE a.id = incidents.id), '')"
    )
    op.execute("UPDATE anomalies SET incident_id = "
               "(SELECT b.incident_id FROM incident_backfill b WHERE b.id = anomalies.id)")
    op.execute("DROP TABLE incident_backfill")
    if not sqlite:  # ids were given explicitly: the sequence goes on after them
        op.execute("SELECT setval(pg_get_serial_sequence('incidents', 'id'), coalesce(max(id), 0) + 1, false) "
                   "FROM incidents")


def downgrade() -> None:
    op.drop_index(op.f('ix_anomalies_incident_id'), table_name='anomalies')
    op.drop_column('anomalies', 'incident_id')  # SQLite 3.35+: ALTER TABLE DROP COLUMN, no rebuild
    op.drop_index(op.f('ix_incident_notes_incident_id'), table_name='incident_notes')
    op.drop_table('incident_notes')
    op.drop_index('ix_incidents_status_id', table_name='incidents')
    op.drop_index('ix_incidents_stream_id_status_id', table_name='incidents')
    op.drop_table('incidents')
