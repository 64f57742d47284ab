"""Payment amounts are 64-bit: app__payments.amount INTEGER -> BIGINT.

Revision ID: 3f1c2a9d8e47
Revises: 7c58174be898
Create Date: 2026-12-01 22:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3f1c2a9d8e47"
down_revision: str | Sequence[str] | None = "7c58174be898"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _payments(amount: sa.types.TypeEngine[int]) -> sa.Table:
    """``app__payments`` as revision 7c58174be898 made it, with ``amount`` of that type.

    SQLite cannot ALTER a column's type: batch mode rebuilds the table. Handing it the
    table (instead of letting it reflect one) keeps ``db upgrade --sql`` working offline.
    """
    return sa.Table(
        "app__payments",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("amount", amount, nullable=False),
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
            name="fk_app__payments_user_id_app__users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_app__payments"),
        sa.UniqueConstraint(
            "telegram_payment_charge_id", name="uq_app__payments_telegram_payment_charge_id"
        ),
        sa.Index("ix_app__payments_user_id", "user_id"),
    )


def upgrade() -> None:
    # PostgreSQL: one ALTER TABLE ... TYPE BIGINT; SQLite: the table rebuilt.
    with op.batch_alter_table("app__payments", copy_from=_payments(sa.Integer())) as batch_op:
        batch_op.alter_column(
            "amount", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )


def downgrade() -> None:
    # Fails on PostgreSQL if an amount above 2**31 - 1 was stored: nothing is cut silently.
    with op.batch_alter_table("app__payments", copy_from=_payments(sa.BigInteger())) as batch_op:
        batch_op.alter_column(
            "amount", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
