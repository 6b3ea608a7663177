"""do-not-call numbers and the call log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 15:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dnc_numbers",
        sa.Column("data_owner_id", ID, nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column(
            "added_at",
            domain.db.types.UtcDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("added_by", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["added_by"], ["users.id"], name=op.f("fk_dnc_numbers_added_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["data_owner_id"],
            ["data_owners.id"],
            name=op.f("fk_dnc_numbers_data_owner_id_data_owners"),
        ),
        sa.PrimaryKeyConstraint("data_owner_id", "phone", name=op.f("pk_dnc_numbers")),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("data_owner_id", ID, nullable=False),
        sa.Column("assignment_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("agent_user_id", ID, nullable=True),
        sa.Column("dialed_at", domain.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("answered_at", domain.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", domain.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_user_id"], ["users.id"], name=op.f("fk_calls_agent_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["assignment_id"], ["assignments.id"], name=op.f("fk_calls_assignment_id_assignments")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_calls_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["data_owner_id"], ["data_owners.id"], name=op.f("fk_calls_data_owner_id_data_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index("ix_calls_assignment", ["assignment_id", "dialed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_assignment")
    op.drop_table("calls")
    op.drop_table("dnc_numbers")
