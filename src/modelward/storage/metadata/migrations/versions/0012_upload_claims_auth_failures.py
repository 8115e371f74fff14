"""server scale-out: the uploads each user proved they hold, and failed authentications per
client address and minute (shared by every server process)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_claims",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("user_name", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("digest", "user_name", "scope", name=op.f("pk_upload_claims")),
    )
    op.create_table(
        "auth_failures",
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", "minute", name=op.f("pk_auth_failures")),
    )


def downgrade() -> None:
    op.drop_table("auth_failures")
    op.drop_table("upload_claims")
