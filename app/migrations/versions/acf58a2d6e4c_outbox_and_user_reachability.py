"""db_manager's outbox (db_manager__telegram_outbox) and app__users.unreachable_since.

The app sends the story's scenes, payment thank-yous, referral notices and broadcasts
through the outbox; a user who blocked the bot is marked unreachable (broadcasts skip them).

Revision ID: acf58a2d6e4c
Revises: 465a26877f12
Create Date: 2026-12-02 01:42:19.377071
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "acf58a2d6e4c"
down_revision: str | Sequence[str] | None = "465a26877f12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "db_manager__telegram_outbox"
PENDING = sa.text("status = 'pending'")
DEAD = sa.text("status = 'dead'")


def upgrade() -> None:
    op.create_table(
        TABLE,
        # Plain INTEGER on SQLite: only an INTEGER PRIMARY KEY is its (autoincrementing) rowid.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_key", sa.BigInteger(), nullable=True),
        sa.Column("chat_kind", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_db_manager__telegram_outbox")),
    )
    # The queue in order, each chat's pending rows (the per-chat order check), dead letters:
    # partial indexes.
    op.create_index(
        "ix_db_manager__telegram_outbox_pending",
        TABLE,
        ["bot_id", "id"],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_db_manager__telegram_outbox_pending_chat",
        TABLE,
        ["bot_id", "chat_key", "id"],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_db_manager__telegram_outbox_dead",
        TABLE,
        ["id"],
        unique=False,
        postgresql_where=DEAD,
        sqlite_where=DEAD,
    )
    # Nullable, no default: every existing user stays reachable; no table rewrite.
    op.add_column(
        "app__users", sa.Column("unreachable_since", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("app__users", "unreachable_since")
    op.drop_index("ix_db_manager__telegram_outbox_dead", table_name=TABLE)
    op.drop_index("ix_db_manager__telegram_outbox_pending_chat", table_name=TABLE)
    op.drop_index("ix_db_manager__telegram_outbox_pending", table_name=TABLE)
    op.drop_table(TABLE)
