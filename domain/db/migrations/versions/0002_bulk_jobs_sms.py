"""bulk jobs, their items, import rows and the SMS outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:22:42.805380
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import domain.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bulk_jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "data_owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "created_at",
            domain.db.types.UtcDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            domain.db.types.UtcDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("cursor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("expected", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "report",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", domain.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", domain.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_bulk_jobs_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["data_owner_id"],
            ["data_owners.id"],
            name=op.f("fk_bulk_jobs_data_owner_id_data_owners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_jobs")),
    )
    with op.batch_alter_table("bulk_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_bulk_jobs_status", ["status", "lease_until"], unique=False)

    op.create_table(
        "bulk_job_items",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["bulk_jobs.id"],
            name=op.f("fk_bulk_job_items_job_id_bulk_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "customer_id", name=op.f("pk_bulk_job_items")),
    )
    op.create_table(
        "bulk_import_rows",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("row_no", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "assignment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["bulk_jobs.id"],
            name=op.f("fk_bulk_import_rows_job_id_bulk_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "row_no", name=op.f("pk_bulk_import_rows")),
    )
    op.create_table(
        "sms_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "data_owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "assignment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("event_key", sa.String(length=120), nullable=False),
        sa.Column("outcome_key", sa.String(length=64), nullable=False),
        sa.Column("to_phone", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "created_at",
            domain.db.types.UtcDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("next_attempt_at", domain.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", domain.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", domain.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignments.id"],
            name=op.f("fk_sms_outbox_assignment_id_assignments"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_sms_outbox_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_sms_outbox_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["data_owner_id"],
            ["data_owners.id"],
            name=op.f("fk_sms_outbox_data_owner_id_data_owners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_outbox")),
        sa.UniqueConstraint("event_key", name=op.f("uq_sms_outbox_event_key")),
    )
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_sms_outbox_due", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_outbox_due")

    op.drop_table("sms_outbox")
    op.drop_table("bulk_import_rows")
    op.drop_table("bulk_job_items")
    with op.batch_alter_table("bulk_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_jobs_status")

    op.drop_table("bulk_jobs")
