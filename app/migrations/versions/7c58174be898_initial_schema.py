"""Initial schema: the app's tables and db_manager's telegram_updates.

Revision ID: 7c58174be898
Revises:
Create Date: 2026-11-25 20:44:16.752189
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7c58174be898"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "app__users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("first_name", sa.String(length=256), nullable=True),
        sa.Column("last_name", sa.String(length=256), nullable=True),
        sa.Column("language_code", sa.String(length=35), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("referrer_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["referrer_id"],
            ["app__users.id"],
            name=op.f("fk_app__users_referrer_id_app__users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app__users")),
        sa.UniqueConstraint("telegram_id", name=op.f("uq_app__users_telegram_id")),
    )
    with op.batch_alter_table("app__users", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_app__users_referrer_id"), ["referrer_id"], unique=False
        )

    op.create_table(
        "db_manager__telegram_updates",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "bot_id", "update_id", name=op.f("pk_db_manager__telegram_updates")
        ),
    )
    with op.batch_alter_table("db_manager__telegram_updates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_db_manager__telegram_updates_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "app__novel_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("scene", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "direction IN ('in', 'out')", name=op.f("ck_app__novel_messages_direction")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app__users.id"],
            name=op.f("fk_app__novel_messages_user_id_app__users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app__novel_messages")),
    )
    with op.batch_alter_table("app__novel_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_app__novel_messages_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "app__novel_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("scene", sa.String(length=64), nullable=False),
        sa.Column("variables", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("premium", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app__users.id"],
            name=op.f("fk_app__novel_states_user_id_app__users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app__novel_states")),
        sa.UniqueConstraint("user_id", name=op.f("uq_app__novel_states_user_id")),
    )
    op.create_table(
        "app__payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=8), server_default="XTR", nullable=False),
        sa.Column("invoice_payload", sa.String(length=128), nullable=False),
        sa.Column("telegram_payment_charge_id", sa.String(length=255), nullable=False),
        sa.Column("provider_payment_charge_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="paid", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app__users.id"],
            name=op.f("fk_app__payments_user_id_app__users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app__payments")),
        sa.UniqueConstraint(
            "telegram_payment_charge_id", name=op.f("uq_app__payments_telegram_payment_charge_id")
        ),
    )
    with op.batch_alter_table("app__payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app__payments_user_id"), ["user_id"], unique=False)

    op.create_table(
        "app__referral_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("uses", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["app__users.id"],
            name=op.f("fk_app__referral_links_owner_id_app__users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app__referral_links")),
        sa.UniqueConstraint("code", name=op.f("uq_app__referral_links_code")),
        sa.UniqueConstraint("owner_id", name=op.f("uq_app__referral_links_owner_id")),
    )


def downgrade() -> None:

    op.drop_table("app__referral_links")
    with op.batch_alter_table("app__payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app__payments_user_id"))

    op.drop_table("app__payments")
    op.drop_table("app__novel_states")
    with op.batch_alter_table("app__novel_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app__novel_messages_user_id"))

    op.drop_table("app__novel_messages")
    with op.batch_alter_table("db_manager__telegram_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_db_manager__telegram_updates_received_at"))

    op.drop_table("db_manager__telegram_updates")
    with op.batch_alter_table("app__users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app__users_referrer_id"))

    op.drop_table("app__users")
