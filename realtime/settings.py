"""Process configuration, read from the environment (and `.env`) by pydantic-settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a dialhub node. Unset REDIS_URL / DATABASE_URL mean "embedded"."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
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
    db_pool_size: int = Field(default=10, validation_alias="DIALHUB_DB_POOL_SIZE")

    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "dialhub.sqlite3"
