"""One typed settings object for every process.

Sources, highest first: keyword arguments, environment variables (``PRACTICEFLOW_*``,
nested with ``__``), a TOML file (``PRACTICEFLOW_CONFIG`` or ``./practiceflow.toml``),
then the defaults below. The defaults are the embedded local stack: a Kafka broker
and schema registry that ``practiceflow stack up`` starts on loopback, and chdb
(ClickHouse in-process) under the state directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _config_file() -> Path:
    return Path(os.environ.get("PRACTICEFLOW_CONFIG", "practiceflow.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRACTICEFLOW_", env_nested_delimiter="__", extra="ignore")

    # -- where state lives
    state_dir: Path = Field(default=REPO_ROOT / ".stack", description="local stack data, jar cache, chdb files")

    # -- Kafka
    kafka_bootstrap: str | None = Field(default=None, description="host:port,...; None = the local stack's broker")
    topic_prefix: str = "pf"
    topic_partitions: int = 3
    topic_replication: int = 1
    consumer_group: str = "practiceflow"

    # -- schema registry (Confluent REST protocol)
    schema_registry_url: str | None = Field(
        default=None,
        description="e.g. http://registry:8081 or http://apicurio:8080/apis/ccompat/v7; "
        "None = the local stack's registry; mock:// = in-process (one process owns every schema)",
    )

    # -- ClickHouse through clickhouse-connect
    clickhouse_dsn: str | None = Field(default=None, description="None = chdb:///<state_dir>/clickhouse")
    clickhouse_database: str = "practiceflow"

    # -- tenants
    default_practice_id: str = "demo-clinic"
    practices: list[str] = Field(default_factory=lambda: ["demo-clinic"], description="tenants the gateways accept")

    # -- gateways
    gateway_host: str = "127.0.0.1"
    mllp_port: int = 2575
    mllp_practice_id: str | None = Field(default=None, description="tenant of the MLLP listener (default_practice_id)")
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    http_port: int = 8080
    drop_dir: Path | None = Field(default=None, description="folder drops; None = <state_dir>/drop")
    portal_secrets: dict[str, str] = Field(default_factory=dict, description="practice id -> portal webhook secret")
    max_message_bytes: int = 16 * 1024 * 1024

    # -- worker web (health + metrics)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    stall_seconds: float = Field(default=60.0, description="no progress for this long while lag > 0 = not live")
    dedup_retention_hours: float = Field(
        default=168.0, gt=0, description="how long the worker remembers a message id to recognise resends"
    )

    # -- worker state and processing (streams/normalize_agent.py, streams/offsets.py)
    table_store: str = Field(
        default="rocksdb://",
        description="Faust table store: rocksdb:// (RocksDB through rocksdict, under <state_dir>/worker) or memory://",
    )
    table_standby_replicas: int = Field(default=1, ge=0, description="standby copies of each table partition")
    worker_batch_max: int = Field(default=500, gt=0, description="raw messages handled per commit")
    worker_batch_seconds: float = Field(default=0.05, gt=0, description="longest wait to fill a batch")
    retry_max_attempts: int = Field(default=6, ge=1, description="tries of a transiently failing input, first included")
    retry_backoff_ms: int = Field(default=2_000, gt=0, description="delay before the first retry; doubles each time")
    retry_backoff_max_ms: int = Field(default=300_000, gt=0, description="longest delay between two tries")

    # -- documents
    document_store: str | None = Field(
        default=None, description="file:///path or s3://bucket/prefix; None = <state_dir>/documents"
    )
    document_store_endpoint: str | None = Field(
        default=None, description="S3-compatible endpoint URL (MinIO, Ceph RGW); None = AWS S3"
    )
    document_store_region: str | None = None
    document_store_sse: str | None = Field(
        default=None, description='S3 server-side encryption: "AES256" or "aws:kms"; None = the bucket default'
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return init_settings, env_settings, toml, file_secret_settings

    # -- derived
    @property
    def chdb_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.state_dir / 'clickhouse').resolve()}"

    @property
    def documents_uri(self) -> str:
        return self.document_store or (self.state_dir / "documents").resolve().as_uri()

    @property
    def document_store_options(self) -> dict[str, str | None]:
        """Keyword arguments for ``sinks.docstore.open_document_store``."""
        return {
            "endpoint_url": self.document_store_endpoint,
            "region": self.document_store_region,
            "sse": self.document_store_sse,
        }
