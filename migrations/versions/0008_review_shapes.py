"""template_reviews.shape: the training review also lists rare session shapes.

A session stream's incident can be made of common lines only (sessions that stop after their
first two lines); the review lists such a shape, the set of templates its sessions hold, as an
item of its own. Its row keeps `template_id` unique with a negative id (`models.review.shape_id`)
and the shape's template ids here; template rows leave it NULL.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('template_reviews') as batch:
        batch.add_column(sa.Column('shape', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('template_reviews') as batch:
        batch.drop_column('shape')
