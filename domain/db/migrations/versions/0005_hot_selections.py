"""a claim loop's writes made cheap: no index on the holder (selections and releases become
heap-only updates; each user's latest selection in a table of its own instead), no foreign keys
on history and the holder, the release audit's index on releases only

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 12:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RELEASED = sa.text("kind = 'released'")
HISTORY_KEYS = {
    "fk_history_customer_id_customers": ("customer_id", "customers"),
    "fk_history_user_id_users": ("user_id", "users"),
    "fk_history_assignment_id_assignments": ("assignment_id", "assignments"),
}


def upgrade() -> None:
    op.create_table(
        "user_selections",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_selections_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_selections")),
    )
    # Each holder's newest holding (read while the holder's index still exists).
    op.execute(
        "INSERT INTO user_selections (user_id, customer_id, token)"
        " SELECT c.holder_user_id, c.id, c.selection_token FROM customers c"
        " WHERE c.holder_user_id IS NOT NULL AND c.selection_token IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM customers d WHERE d.holder_user_id = c.holder_user_id"
        " AND (d.selection_token > c.selection_token"
        " OR (d.selection_token = c.selection_token AND d.id > c.id)))"
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_customers_holder",
            postgresql_where=sa.text("holder_user_id IS NOT NULL"),
            sqlite_where=sa.text("holder_user_id IS NOT NULL"),
        )
        batch_op.drop_constraint("fk_customers_holder_user_id_users", type_="foreignkey")
    with op.batch_alter_table("history", schema=None) as batch_op:
        for name in HISTORY_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
    op.create_index(
        "ix_history_releases",
        "history",
        ["assignment_id", "id"],
        unique=False,
        postgresql_where=RELEASED,
        sqlite_where=RELEASED,
    )
    op.drop_index("ix_history_assignment_kind", table_name="history")


def downgrade() -> None:
    op.create_index(
        "ix_history_assignment_kind", "history", ["assignment_id", "kind", "id"], unique=False
    )
    op.drop_index(
        "ix_history_releases",
        table_name="history",
        postgresql_where=RELEASED,
        sqlite_where=RELEASED,
    )
    with op.batch_alter_table("history", schema=None) as batch_op:
        for name, (column, table) in HISTORY_KEYS.items():
            batch_op.create_foreign_key(name, table, [column], ["id"])
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_customers_holder_user_id_users", "users", ["holder_user_id"], ["id"]
        )
        batch_op.create_index(
            "ix_customers_holder",
            ["holder_user_id"],
            unique=False,
            postgresql_where=sa.text("holder_user_id IS NOT NULL"),
            sqlite_where=sa.text("holder_user_id IS NOT NULL"),
        )
    op.drop_table("user_selections")
