"""The durable schema (SQLAlchemy Core), one table per concept of DOMAIN.md.

PostgreSQL or SQLite holds the durable truth; Redis holds locks, presence and fan-out, and is
rebuilt from here (customers.holder_user_id / selection_token) when it comes back empty.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)

from domain.db.types import Id, Json, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NOW = text("CURRENT_TIMESTAMP")

data_owners = Table(
    "data_owners",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("timezone", String(64), nullable=False, server_default="Europe/Oslo"),
    Column("created_at", UtcDateTime, nullable=False, server_default=NOW),
)

crms = Table(
    "crms",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("data_owner_id", Id, ForeignKey("data_owners.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(3), nullable=False),  # b2b | b2c, fixed forever (rule 1)
    Column("info_fields", Json, nullable=False),  # [{"key", "label", "type"}]
    UniqueConstraint("data_owner_id", "name"),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("data_owner_id", Id, ForeignKey("data_owners.id"), nullable=False, index=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", UtcDateTime, nullable=False, server_default=NOW),
)

assignments = Table(
    "assignments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("data_owner_id", Id, ForeignKey("data_owners.id"), nullable=False, index=True),
    Column("crm_id", Id, ForeignKey("crms.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("flow", Json, nullable=False),  # statuses and outcomes, checked by domain.flows
    Column("setup", Json, nullable=False),  # sort keys, limits, SMS, timers, dial mode
    Column("created_at", UtcDateTime, nullable=False, server_default=NOW),
    UniqueConstraint("data_owner_id", "name"),
)

segments = Table(
    "segments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("assignment_id", Id, ForeignKey("assignments.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("is_unsegmented", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("assignment_id", "name"),
)
# Every assignment has exactly one unsegmented segment.
Index(
    "uq_segments_one_unsegmented",
    segments.c.assignment_id,
    unique=True,
    postgresql_where=segments.c.is_unsegmented,
    sqlite_where=segments.c.is_unsegmented,
)

grants = Table(
    "grants",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("assignment_id", Id, ForeignKey("assignments.id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("user_id", "assignment_id"),
)
Index("ix_grants_assignment", grants.c.assignment_id)

customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("data_owner_id", Id, ForeignKey("data_owners.id"), nullable=False),
    Column("crm_id", Id, ForeignKey("crms.id"), nullable=False),
    Column("external_id", String(100), nullable=False),
    Column("name", String(300), nullable=False),
    Column("phones", Json, nullable=False),
    Column("email", String(320)),
    Column("info", Json, nullable=False),
    # Placement (rule 2): at most one assignment, one segment, one status.
    Column("assignment_id", Id, ForeignKey("assignments.id")),
    Column("segment_id", Id, ForeignKey("segments.id")),
    Column("status", String(64)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_attempt_at", UtcDateTime),
    # Due time of the open shared follow-up, kept beside the row so the list query can hold
    # the customer back until then and put it first afterwards (rule 11) without a join.
    Column("shared_follow_up_at", UtcDateTime),
    # Durable copy of the selection (the lock lives in Redis): rebuilds Redis after a loss and
    # fences writes, which must present the current token (rule 8). No foreign key: users are
    # never deleted, and its check would lock the holder's users row at every selection.
    Column("holder_user_id", Id),
    Column("selection_token", BigInteger),
    Column("selected_at", UtcDateTime),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False, server_default=NOW),
    Column("updated_at", UtcDateTime, nullable=False, server_default=NOW),
    UniqueConstraint("crm_id", "external_id"),
)
# The next-right-customer query: available customers of an assignment in list order.
Index(
    "ix_customers_list",
    customers.c.assignment_id,
    customers.c.status,
    customers.c.segment_id,
    customers.c.attempts,
    customers.c.last_attempt_at,
    customers.c.id,
)
# Due shared follow-ups go first (rule 11).
Index(
    "ix_customers_shared_due",
    customers.c.assignment_id,
    customers.c.shared_follow_up_at,
    postgresql_where=customers.c.shared_follow_up_at.isnot(None),
    sqlite_where=customers.c.shared_follow_up_at.isnot(None),
)
Index("ix_customers_owner_crm", customers.c.data_owner_id, customers.c.crm_id)
# No index names the holder: selecting and releasing then change no indexed column of the row,
# so PostgreSQL writes them as heap-only (HOT) updates, with no new entry in any index. What the
# holder's index found (a user's older holding to clear, rule 4) is found through this instead.

user_selections = Table(
    "user_selections",
    metadata,
    # Each user's latest recorded selection (rule 4: one customer per user), whether or not it
    # has been released since: selecting the next customer clears that one's holder if it still
    # names this user (a crash between a Redis release and its recording left it).
    Column("user_id", Id, ForeignKey("users.id"), primary_key=True),
    Column("customer_id", Id, nullable=False),
    Column("token", BigInteger, nullable=False),
)

follow_ups = Table(
    "follow_ups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("assignment_id", Id, ForeignKey("assignments.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # personal | shared
    Column("owner_user_id", Id, ForeignKey("users.id")),  # NULL for shared
    Column("due_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False, server_default=NOW),
    Column("created_by", Id, ForeignKey("users.id")),
    Column("ended_at", UtcDateTime),
    Column("ended_reason", String(32)),
)
# My Work: a user's open personal follow-ups by due time.
Index(
    "ix_follow_ups_my_work",
    follow_ups.c.owner_user_id,
    follow_ups.c.due_at,
    postgresql_where=follow_ups.c.ended_at.is_(None),
    sqlite_where=follow_ups.c.ended_at.is_(None),
)
# My Work and the side panel: open shared follow-ups of the user's assignments.
Index(
    "ix_follow_ups_shared",
    follow_ups.c.assignment_id,
    follow_ups.c.kind,
    follow_ups.c.due_at,
    postgresql_where=follow_ups.c.ended_at.is_(None),
    sqlite_where=follow_ups.c.ended_at.is_(None),
)
Index("ix_follow_ups_customer", follow_ups.c.customer_id)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("assignment_id", Id, ForeignKey("assignments.id"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("call_back_at", UtcDateTime),
)
Index("ix_attempts_customer", attempts.c.customer_id, attempts.c.at)

# Append-only, three rows a claim loop. Its ids name customers, users and assignments without
# foreign keys: none of those rows is ever deleted, and each key would cost every history row
# a locking read of the row it names (on PostgreSQL a share lock that every concurrent
# transaction takes on the same assignment row: a multixact each time), which was most of the
# database's work per claim.
history = Table(
    "history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("customer_id", Id, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("user_id", Id),
    Column("assignment_id", Id),
    Column("data", Json, nullable=False),
    Column("note", Text),
)
Index("ix_history_customer", history.c.customer_id, history.c.id)
# The release audit (who released whose selection, per assignment) reads history this way.
# Partial: the selections and outcomes, two of every three rows a claim loop writes, add no
# entry to it. A query it serves names the kind as this literal (HistoryKind.RELEASED), not as
# a parameter, which a generic plan could not match with the index's predicate.
RELEASED_KIND = literal_column("'released'")
Index(
    "ix_history_releases",
    history.c.assignment_id,
    history.c.id,
    postgresql_where=history.c.kind == RELEASED_KIND,
    sqlite_where=history.c.kind == RELEASED_KIND,
)

# Bulk work (rules 19-23) -----------------------------------------------------------------------

# A bulk operation (mass outcome, move, import) as a resumable job: each batch's change and the
# cursor advance commit together, and a node holds the job by a lease that runs out when the
# node dies, so any node resumes it where it stopped (no customer changed twice, none forgotten).
bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("data_owner_id", Id, ForeignKey("data_owners.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # outcome | move | import
    Column("status", String(16), nullable=False),  # pending | running | done | failed
    Column("params", Json, nullable=False),
    Column("created_by", Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False, server_default=NOW),
    Column("updated_at", UtcDateTime, nullable=False, server_default=NOW),
    Column("cursor", BigInteger, nullable=False, server_default="0"),  # last id / row done
    Column("expected", Integer, nullable=False, server_default="0"),  # matched at the start
    Column("counts", Json, nullable=False),  # running tallies, final in `report`
    Column("report", Json),
    Column("error", Text),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime),
    Column("finished_at", UtcDateTime),
)
Index("ix_bulk_jobs_status", bulk_jobs.c.status, bulk_jobs.c.lease_until)

# An import's rows, staged when the job is made (so any node can resume it), each with its
# result once its batch ran: updated | unchanged | not_found | invalid | selected (rule 22).
bulk_import_rows = Table(
    "bulk_import_rows",
    metadata,
    Column("job_id", Id, ForeignKey("bulk_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("row_no", Integer, nullable=False),
    Column("external_id", String(100)),
    Column("data", Json, nullable=False),  # the row's checked values: {info key: value}
    Column("result", String(16)),
    Column("detail", Text),
    Column("customer_id", Id),
    Column("assignment_id", Id),
    PrimaryKeyConstraint("job_id", "row_no"),
)

# SMS waiting to be sent (rule 23): written in the outcome's own transaction, sent at least
# once by whichever node delivers, never twice for one outcome (`event_key` is unique).
sms_outbox = Table(
    "sms_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("data_owner_id", Id, ForeignKey("data_owners.id"), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("assignment_id", Id, ForeignKey("assignments.id")),
    Column("event_key", String(120), nullable=False, unique=True),
    Column("outcome_key", String(64), nullable=False),
    Column("to_phone", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("tries", Integer, nullable=False, server_default="0"),
    Column("created_by", Id, ForeignKey("users.id")),
    Column("created_at", UtcDateTime, nullable=False, server_default=NOW),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime),
    Column("sent_at", UtcDateTime),
    Column("provider_message_id", String(200)),
    Column("last_error", Text),
)
Index("ix_sms_outbox_due", sms_outbox.c.status, sms_outbox.c.next_attempt_at)

# The customers a bulk job matched when it was made, walked in id order by its batches: the
# report counts every one of them (rule 21), also those that stopped matching meanwhile.
bulk_job_items = Table(
    "bulk_job_items",
    metadata,
    Column("job_id", Id, ForeignKey("bulk_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("customer_id", Id, nullable=False),
    PrimaryKeyConstraint("job_id", "customer_id"),
)

# Dialing --------------------------------------------------------------------------------------

# The data owner's do-not-call list: numbers normalized by domain.db.dnc.normalize_phone,
# checked when a call is about to be placed (a listed number is never dialed).
dnc_numbers = Table(
    "dnc_numbers",
    metadata,
    Column("data_owner_id", Id, ForeignKey("data_owners.id"), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("added_at", UtcDateTime, nullable=False, server_default=NOW),
    Column("added_by", Id, ForeignKey("users.id")),
    PrimaryKeyConstraint("data_owner_id", "phone"),
)

# Every call the dialer placed, with how it ended (answered, busy, no_answer, failed, abandoned,
# cancelled): the abandon rate an authority asks for is counted from here.
calls = Table(
    "calls",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("data_owner_id", Id, ForeignKey("data_owners.id"), nullable=False),
    Column("assignment_id", Id, ForeignKey("assignments.id"), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("number", String(32), nullable=False),
    Column("result", String(16), nullable=False),
    Column("agent_user_id", Id, ForeignKey("users.id")),
    Column("dialed_at", UtcDateTime, nullable=False),
    Column("answered_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
)
Index("ix_calls_assignment", calls.c.assignment_id, calls.c.dialed_at)
