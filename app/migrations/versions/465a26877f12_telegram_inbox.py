"""db_manager's webhook inbox: db_manager__telegram_inbox ([bot] processing = "inbox").

Revision ID: 465a26877f12
Revises: 107d3761e785
Create Date: 2026-12-02 01:19:11.908816
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "465a26877f12"
down_revision: str | Sequence[str] | None = "107d3761e785"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "db_manager__telegram_inbox"
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_key", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("bot_id", "update_id", name=op.f("pk_db_manager__telegram_inbox")),
    )
    # The queue (pending updates in order) and each chat's pending updates: partial indexes.
    op.create_index(
        "ix_db_manager__telegram_inbox_pending",
        TABLE,
        ["bot_id", "update_id"],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_db_manager__telegram_inbox_pending_chat",
        TABLE,
        ["bot_id", "chat_key", "update_id"],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_db_manager__telegram_inbox_finished_at", TABLE, ["finished_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_db_manager__telegram_inbox_finished_at", table_name=TABLE)
    op.drop_index("ix_db_manager__telegram_inbox_pending_chat", table_name=TABLE)
    op.drop_index("ix_db_manager__telegram_inbox_pending", table_name=TABLE)
    op.drop_table(TABLE)
