"""db_manager's idempotency keys: db_manager__idempotency_keys (the API's retry-safe writes).

Revision ID: 107d3761e785
Revises: b5e0c7d41a93
Create Date: 2026-12-01 22:49:37.636462
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "107d3761e785"
down_revision: str | Sequence[str] | None = "b5e0c7d41a93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "db_manager__idempotency_keys",
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_db_manager__idempotency_keys")),
    )
    with op.batch_alter_table("db_manager__idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_db_manager__idempotency_keys_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("db_manager__idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_db_manager__idempotency_keys_expires_at"))

    op.drop_table("db_manager__idempotency_keys")
