"""The /feedback conversation: app__feedback and db_manager's FSM state table.

Revision ID: b5e0c7d41a93
Revises: 3f1c2a9d8e47
Create Date: 2026-12-01 22:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "b5e0c7d41a93"
down_revision: str | Sequence[str] | None = "3f1c2a9d8e47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app__feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.String(length=2000), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app__feedback")),
    )
    with op.batch_alter_table("app__feedback", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_app__feedback_telegram_id"), ["telegram_id"], unique=False
        )

    op.create_table(
        "db_manager__telegram_fsm",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("thread_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("business_connection_id", sa.String(length=255), nullable=False),
        sa.Column("destiny", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=255), nullable=True),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint(
            "bot_id",
            "chat_id",
            "user_id",
            "thread_id",
            "business_connection_id",
            "destiny",
            name=op.f("pk_db_manager__telegram_fsm"),
        ),
    )


def downgrade() -> None:
    op.drop_table("db_manager__telegram_fsm")
    with op.batch_alter_table("app__feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app__feedback_telegram_id"))
    op.drop_table("app__feedback")
