"""template_reviews: the training review (models.review), one row per suspicious template.

Train mode learns whatever arrives; a template that looks like an incident (rare, severe, a
burst) is held back as unconfirmed until an operator calls it normal or an anomaly. The rows are
the truth a restart rebuilds the model's review from.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'template_reviews',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('stream_id', sa.Integer(), nullable=False),
        sa.Column('template_id', sa.Integer(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('reasons', sa.JSON(), nullable=False),
        sa.Column('n_lines', sa.Integer(), nullable=False),
        sa.Column('n_windows', sa.Integer(), nullable=False),
        sa.Column('first_ts', sa.Float(), nullable=True),
        sa.Column('last_ts', sa.Float(), nullable=True),
        sa.Column('example', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('answered_at', sa.DateTime(), nullable=True),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_template_reviews_stream_id_streams'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_template_reviews')),
        sa.UniqueConstraint('stream_id', 'template_id', name='uq_template_reviews_stream_id_template_id'),
    )


def downgrade() -> None:
    op.drop_table('template_reviews')
