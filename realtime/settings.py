"""Process configuration, read from the environment (and `.env`) by pydantic-settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a dialhub node. Unset REDIS_URL / DATABASE_URL mean "embedded"."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    # REDIS_URL names one node of a Redis Cluster, which tells the client of the others.
    redis_cluster: bool = Field(default=False, validation_alias="DIALHUB_REDIS_CLUSTER")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    # PostgreSQL only: keep every table in this schema (tests use a fresh one per run).
    database_schema: str | None = Field(default=None, validation_alias="DIALHUB_DB_SCHEMA")
    var_dir: Path = Field(default=Path("var"), validation_alias="DIALHUB_VAR_DIR")
    secret_key: str = Field(
        default="dev-only-secret-change-me", validation_alias="DIALHUB_SECRET_KEY"
    )
    token_ttl_seconds: int = Field(default=12 * 3600, validation_alias="DIALHUB_TOKEN_TTL")
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"],
        validation_alias="DIALHUB_ALLOWED_ORIGINS",
    )
    presence_timeout_seconds: float = Field(
        default=30.0, validation_alias="DIALHUB_PRESENCE_TIMEOUT"
    )
    # A connection opened past the pool is closed again when it comes back (SQLAlchemy's
    # overflow): a node whose bursts outgrow its pool opens and closes a database session per
    # request, which costs both sides more than the request. Size it for the busiest second.
    db_pool_size: int = Field(default=20, ge=1, validation_alias="DIALHUB_DB_POOL_SIZE")
    # WebSocket hub (docs/operations.md).
    ws_send_queue: int = Field(default=256, ge=1, validation_alias="DIALHUB_WS_SEND_QUEUE")
    ws_max_frame_bytes: int = Field(
        default=64 * 1024, ge=256, validation_alias="DIALHUB_WS_MAX_FRAME_BYTES"
    )
    ws_rate_per_second: float = Field(default=20.0, gt=0, validation_alias="DIALHUB_WS_RATE")
    ws_rate_burst: int = Field(default=40, ge=1, validation_alias="DIALHUB_WS_RATE_BURST")
    event_stream_length: int = Field(
        default=256, ge=16, validation_alias="DIALHUB_EVENT_STREAM_LENGTH"
    )
    shutdown_retry_ms: tuple[int, int] = Field(
        default=(500, 5000), validation_alias="DIALHUB_SHUTDOWN_RETRY_MS"
    )
    # Rule 23: where queued SMS go. Unset: appended to <var>/sms-outbox.jsonl (nothing leaves
    # the building); set: POSTed to this HTTP gateway.
    sms_gateway_url: str | None = Field(default=None, validation_alias="DIALHUB_SMS_GATEWAY_URL")
    sms_gateway_token: str | None = Field(
        default=None, validation_alias="DIALHUB_SMS_GATEWAY_TOKEN"
    )
    # Seconds between two rounds of sending due SMS; 0: this node sends none.
    sms_interval_seconds: float = Field(default=5.0, ge=0, validation_alias="DIALHUB_SMS_INTERVAL")
    # Bulk jobs: seconds between two looks for jobs nobody runs (pending, or their node died);
    # 0: this node runs only the jobs started on it. Customers (or import rows) per batch.
    job_interval_seconds: float = Field(default=5.0, ge=0, validation_alias="DIALHUB_JOB_INTERVAL")
    job_batch_size: int = Field(default=1000, ge=1, validation_alias="DIALHUB_JOB_BATCH")

    # Dialing (docs/operations.md): the phone system. "simulator" (the default) rings simulated
    # customers in real time; "package.module:factory" names a provider of dialer.telephony's
    # port, called as factory(settings, clock). Caller id shown to the customers called.
    telephony: str = Field(default="simulator", validation_alias="DIALHUB_TELEPHONY")
    caller_id: str = Field(default="", validation_alias="DIALHUB_CALLER_ID")
    # The simulator's customers: shares answering / busy, mean ring and talk seconds, how long
    # an unanswered call rings, its seed, and fixed fates by number suffix
    # ('{"99": "busy"}': every number ending in 99 is busy), like a carrier's test numbers.
    sim_answer_rate: float = Field(default=0.3, ge=0, le=1, validation_alias="DIALHUB_SIM_ANSWER")
    sim_busy_rate: float = Field(default=0.1, ge=0, le=1, validation_alias="DIALHUB_SIM_BUSY")
    sim_ring_seconds: float = Field(default=8.0, gt=0, validation_alias="DIALHUB_SIM_RING")
    sim_talk_seconds: float = Field(default=100.0, gt=0, validation_alias="DIALHUB_SIM_TALK")
    sim_no_answer_seconds: float = Field(
        default=30.0, gt=0, validation_alias="DIALHUB_SIM_NO_ANSWER"
    )
    sim_seed: int = Field(default=0, validation_alias="DIALHUB_SIM_SEED")
    sim_fates: dict[str, str] = Field(default_factory=dict, validation_alias="DIALHUB_SIM_FATES")
    # The answer rate the predictive pacer assumes until calls teach it the real one.
    pacing_prior_answer_rate: float = Field(
        default=0.3, gt=0, le=1, validation_alias="DIALHUB_PACING_PRIOR_ANSWER"
    )

    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "dialhub.sqlite3"
