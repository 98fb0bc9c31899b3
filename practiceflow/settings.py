"""One typed settings object for every process.

Sources, highest first: keyword arguments, environment variables (``PRACTICEFLOW_*``,
nested with ``__``), a TOML file (``PRACTICEFLOW_CONFIG`` or ``./practiceflow.toml``),
then the defaults below. The defaults are the embedded local stack: a Kafka broker
and schema registry that ``practiceflow stack up`` starts on loopback, and chdb
(ClickHouse in-process) under the state directory.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from practiceflow.processors.ehr.config import EhrFhirTarget
from practiceflow.processors.identity.choose import IdentityPolicy
from practiceflow.processors.llm.config import LLMSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


class PatientIdPolicy(BaseModel):
    """One practice's canonical patient id rule (see ``processors/identity/choose.py``)."""

    model_config = ConfigDict(extra="forbid")
    types: list[str] = Field(
        default_factory=lambda: ["MR", "MRN", "PI", "PT"], description="identifier types that key a patient, best first"
    )
    authorities: list[str] = Field(default_factory=list, description="assigning authorities, best first; [] = any")
    fallback: bool = Field(default=True, description="no preferred identifier: key by an untyped/unknown-type one")
    ssn_in_clear: bool = Field(default=False, description="keep SSNs unmasked in Patient.identifiers (Kafka only)")

    @model_validator(mode="after")
    def _check(self) -> PatientIdPolicy:
        self.policy()  # raises for SS/DL/PPN/member-id types
        return self

    def policy(self) -> IdentityPolicy:
        return IdentityPolicy(tuple(self.types), tuple(self.authorities), self.fallback, self.ssn_in_clear)


class BillingIdentity(BaseModel):
    """The practice's billing identity on drafted corrected claims (837P, denial workflow).

    The defaults are placeholders marked VERIFY: a draft is never sent without a person's
    approval, and the person sees them; set the real values per deployment."""

    model_config = ConfigDict(extra="forbid")
    name: str = "VERIFY PRACTICE NAME"
    tax_id: str = "000000000"
    npi: str | None = Field(default=None, description="billing NPI; None = the payee NPI of the 835 (N1*PE)")
    street: str = "VERIFY ADDRESS"
    city: str = "CITY"
    state: str = "ST"
    zip: str = "00000"
    sender_id: str = Field(default="PRACTICEFLOW", description="ISA06 / submitter id at the clearinghouse")
    receiver_id: str = Field(default="CLEARINGHOUSE", description="ISA08 / receiver id")
    receiver_name: str = "CLEARINGHOUSE"


def _config_file() -> Path:
    return Path(os.environ.get("PRACTICEFLOW_CONFIG", "practiceflow.toml"))


class FaxRoster(BaseModel):
    """Who a practice is, for recognising a fax meant for someone else (``fax_roster``)."""

    names: list[str] = Field(default_factory=list, description="names the practice goes by")
    providers: list[str] = Field(default_factory=list, description="its providers, e.g. 'Dr. Ana Patel'")


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
    clickhouse_audit_retention_days: int = Field(
        default=2192, description="TTL of ClickHouse audit_events, by event time (six years); 0 = kept for ever"
    )
    clickhouse_retention_days: int = Field(
        default=2192, description="TTL of the other ClickHouse tables (sinks/clickhouse_migrations RETENTION); 0 = kept"
    )

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
    max_message_bytes: int = 16 * 1024 * 1024
    claim_check_bytes: int = Field(
        default=512 * 1024,
        gt=0,
        description="payloads larger than this go to the document store and the raw topic carries their "
        "reference, size and SHA-256 (keep it well under the broker's max.message.bytes, about 1 MiB)",
    )

    # -- workflows (processors/workflows, rules/)
    rules_dir: Path | None = Field(
        default=None,
        description="the practice's own rule files, <rules_dir>/<workflow>/*.yaml; they replace or extend the "
        "shipped rules/ (see rules/README.md); None = the shipped rules only",
    )
    pilot: dict[str, list[str]] = Field(
        default_factory=dict,
        description='pilot (shadow) mode: practice id (or "*") -> workflows (or ["*"]) that run beside staff, '
        "send nothing, and are compared with staff decisions (processors/pilot/)",
    )
    pilot_allowed_commands: list[str] = Field(
        default_factory=lambda: ["llm"],
        description="command kinds a piloted workflow may still issue (reads its proposal needs; writes nothing)",
    )

    # -- patient identity (processors/identity)
    patient_id_policy: dict[str, PatientIdPolicy] = Field(
        default_factory=dict,
        description='practice id (or "*") -> which identifier is the canonical patient id; default MR, MRN, PI, PT',
    )

    # -- insurance eligibility (processors/workflows/intake, sinks/clearinghouse)
    clearinghouse: str = Field(
        default="none",
        pattern=r"^(none|simulator|core|folder)$",
        description="none: no clearinghouse configured, every check ends 'could not determine' (nothing "
        "is sent, nothing started); simulator: the local clearinghouse simulator (synthetic 271s: "
        "development and tests only; the worker starts it); core: CAQH CORE real-time at clearinghouse_url; "
        "folder: batch drop in clearinghouse_outbox/inbox",
    )
    clearinghouse_url: str | None = Field(default=None, description="CORE endpoint; None = the simulator's")
    clearinghouse_sim_port: int = Field(default=8095, description="port of the embedded simulator")
    clearinghouse_sender_id: str = Field(default="PRACTICEFLOW", description="ISA06 / CORE SenderID")
    clearinghouse_receiver_id: str = Field(default="CLEARINGHOUSE", description="ISA08 / CORE ReceiverID")
    clearinghouse_username: str | None = None
    clearinghouse_password: SecretStr | None = None
    clearinghouse_outbox: Path | None = Field(
        default=None, description="folder mode; None = <state_dir>/clearinghouse/out"
    )
    clearinghouse_inbox: Path | None = Field(
        default=None, description="folder mode; None = <state_dir>/clearinghouse/in"
    )
    eligibility_deadline_s: float = Field(default=120.0, gt=0, description="a check not answered by then: timeout")
    eligibility_attempt_timeout_s: float = Field(default=10.0, gt=0, description="one attempt's time limit")
    eligibility_rate_per_payer: float = Field(default=5.0, ge=0, description="requests per second per payer (0 = none)")
    eligibility_provider_npi: str = Field(default="1234567893", description="2100B NM109: the practice's NPI")
    eligibility_provider_name: str = Field(default="DEMO CLINIC", description="2100B NM103")

    # -- gateway credentials (each practice: the current secret and, while rotating, the next one)
    gateway_tokens: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description="practice id -> bearer tokens (1 or 2) for /fhir, /fax, /x12 and /documents",
    )
    portal_secrets: dict[str, list[SecretStr]] = Field(
        default_factory=dict, description="practice id -> portal webhook HMAC secrets (1 or 2)"
    )
    mllp_tls_client_ca: Path | None = Field(
        default=None, description="CA bundle for MLLP client certificates; set = mutual TLS required"
    )
    mllp_client_practices: dict[str, str] = Field(
        default_factory=dict,
        description="client certificate -> practice: keys 'sha256:<hex>', 'san:<name>' or 'cn:<name>'",
    )
    signature_tolerance_s: int = Field(default=300, gt=0, description="portal webhook timestamp window")

    # -- gateway bounds under hostile input
    mllp_idle_timeout_s: float = Field(default=120.0, gt=0, description="close an MLLP connection idle this long")
    mllp_frame_timeout_s: float = Field(default=30.0, gt=0, description="a started frame must end within this")
    mllp_max_connections: int = Field(default=256, gt=0, description="open MLLP connections per listener")
    mllp_max_connections_per_peer: int = Field(default=16, gt=0, description="open MLLP connections per peer IP")
    read_buffer_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="bytes all MLLP frames and HTTP bodies being read may hold"
    )
    http_max_concurrent_bodies: int = Field(default=64, gt=0, description="HTTP bodies read at once")
    http_body_timeout_s: float = Field(default=60.0, gt=0, description="an HTTP body must arrive within this")

    @field_validator("gateway_tokens", "portal_secrets", mode="before")
    @classmethod
    def _one_or_two_secrets(cls, value: object) -> object:
        """A bare string is one secret; a list holds the current and the next (rotation)."""
        if not isinstance(value, dict):
            return value
        out: dict[object, object] = {}
        for practice, secrets in value.items():
            items = [secrets] if isinstance(secrets, (str, SecretStr)) else list(secrets)
            if not 1 <= len(items) <= 2:
                raise ValueError(f"{practice}: give one secret, or two while rotating (current, next)")
            if any(not (s.get_secret_value() if isinstance(s, SecretStr) else str(s)) for s in items):
                raise ValueError(f"{practice}: an empty secret authenticates nobody")
            out[practice] = items
        return out

    @field_validator("gateway_tokens")
    @classmethod
    def _tokens_name_one_practice(cls, value: dict[str, list[SecretStr]]) -> dict[str, list[SecretStr]]:
        """A token shared by two practices would let one write as the other."""
        seen: dict[str, str] = {}
        for practice, tokens in value.items():
            for token in tokens:
                other = seen.setdefault(token.get_secret_value(), practice)
                if other != practice:
                    raise ValueError(f"practices {other!r} and {practice!r} share a bearer token")
        return value

    def mllp_tls_problems(self) -> list[str]:
        """Why the MLLP TLS settings are half-configured ([] = consistent).

        WHY: a client CA or client mapping without a server certificate and key used to
        give a plaintext listener that authenticates nobody; a CA without a mapping (or a
        mapping without a CA) silently dropped the per-certificate tenants. Refuse instead.
        """
        problems: list[str] = []
        if (self.mllp_tls_client_ca or self.mllp_client_practices) and not (self.mllp_tls_cert and self.mllp_tls_key):
            problems.append("mllp_tls_client_ca/mllp_client_practices need mllp_tls_cert and mllp_tls_key")
        if self.mllp_tls_client_ca and not self.mllp_client_practices:
            problems.append("mllp_tls_client_ca needs mllp_client_practices (client certificate -> practice)")
        if self.mllp_client_practices and not self.mllp_tls_client_ca:
            problems.append("mllp_client_practices needs mllp_tls_client_ca (the CA that issues client certificates)")
        return problems

    @model_validator(mode="after")
    def _mllp_tls_consistent(self) -> Settings:
        """Refuse to load half-configured MLLP (mutual) TLS: it would fail open."""
        problems = self.mllp_tls_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- the LLM layer (processors/llm/config.py; env PRACTICEFLOW_LLM__BASE_URL etc.)
    llm: LLMSettings = Field(
        default_factory=LLMSettings,
        description="the practice's own model server, the PHI guard's allow-list, timeouts, retries, breaker",
    )

    # -- worker web (health + metrics)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    stall_seconds: float = Field(default=60.0, description="no progress for this long while lag > 0 = not live")
    commit_stall_seconds: float = Field(
        default=300.0,
        gt=0,
        description="committed offset unchanged this long while messages wait after it = not live; keep it above "
        "the longest batch (fax_batch_max x ocr_timeout_seconds)",
    )
    dedup_retention_hours: float = Field(
        default=168.0, gt=0, description="how long the worker remembers a message id to recognise resends"
    )
    # -- worker recovery (streams/recovery.py)
    worker_instance_id: str = Field(
        default="auto",
        description="Kafka static group membership (group.instance.id) of the worker and its sink: a restarted "
        "worker takes its partitions back at once instead of waiting for the dead member's session to expire. "
        "auto = host name + state dir (unique per worker, as its RocksDB folder is); empty = dynamic membership",
    )
    worker_session_timeout_s: float = Field(
        default=10.0, ge=6.0, le=60.0, description="a worker silent this long loses its partitions (broker minimum 6)"
    )

    # -- worker state and processing (streams/normalize_agent.py, streams/offsets.py)
    table_store: str = Field(
        default="rocksdb://",
        description="Faust table store: rocksdb:// (RocksDB through rocksdict, under <state_dir>/worker) or memory://",
    )
    table_standby_replicas: int = Field(default=1, ge=0, description="standby copies of each table partition")
    worker_batch_max: int = Field(default=500, gt=0, description="raw messages handled per commit")
    fax_batch_max: int = Field(
        default=4, gt=0, description="faxes handled per commit (each is OCRed, seconds apiece; see worker_batch_max)"
    )
    worker_batch_seconds: float = Field(
        default=0.05,
        gt=0,
        description="longest wait to fill a batch (Faust's take() ticks at it, also while a backlog waits): "
        "shorter batches cost bulk throughput (worker drain 309 msg/s at 0.05, 253 at 0.02, bench/e2e_notes.md)",
    )
    request_batch_seconds: float = Field(
        default=0.02,
        gt=0,
        description="the same for the agents on a person-facing request's path (the portal normalizer and "
        "the refill workflow): each consumed hop waits up to it, so it adds to a request's latency "
        "(refill p50/p99 at 100/s: 198/333 ms with 0.05, 102-129/202-244 ms with 0.02)",
    )
    worker_fetch_wait_ms: int = Field(
        default=50,
        ge=1,
        le=1500,
        description="longest the worker's Kafka fetch waits on the broker for new records (streams/fetching.py); "
        "every consumed hop of a workflow can wait this long (Faust's own 1500 made a refill 5-7 s)",
    )
    retry_max_attempts: int = Field(default=6, ge=1, description="tries of a transiently failing input, first included")
    retry_backoff_ms: int = Field(default=2_000, gt=0, description="delay before the first retry; doubles each time")
    retry_backoff_max_ms: int = Field(default=300_000, gt=0, description="longest delay between two tries")

    # -- fax OCR in the worker
    ocr_max_pages: int = Field(
        default=30, gt=0, description="pages OCRed per fax; later pages are kept but not OCRed (flagged)"
    )
    ocr_timeout_seconds: float = Field(
        default=50.0,
        gt=0,
        description="OCR time per fax; past it the OCR process is killed and the fax kept without text (flagged). "
        "Keep it under stall_seconds",
    )
    ocr_jobs: int = Field(default=1, gt=0, description="pages OCRed in parallel within one fax")
    fax_model_dir: Path | None = Field(
        default=None, description="where the fax classifier is trained to and loaded from; None = <state_dir>/models"
    )
    fax_roster: dict[str, FaxRoster] = Field(
        default_factory=dict,
        description='practice id (or "*") -> its names and providers; a fax addressed to others is misdirected',
    )

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

    # -- denial workflow
    ehr_fhir: dict[str, EhrFhirTarget] = Field(
        default_factory=dict,
        description="practice id -> its EHR's FHIR R4 API for the write-back (base_url, SMART Backend Services "
        "client); a practice without one is not written back (README: Write-back to the EHR)",
    )
    billing: BillingIdentity = Field(
        default_factory=BillingIdentity, description="billing identity on drafted corrected claims (837P)"
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
    @cached_property
    def identity_policies(self) -> dict[str, IdentityPolicy]:
        """Practice id -> identity policy, for ``processors.dispatch.normalize_raw``."""
        return {practice: p.policy() for practice, p in self.patient_id_policy.items()}

    @property
    def chdb_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.state_dir / 'clickhouse').resolve()}"

    @property
    def replay_state_file(self) -> Path:
        """Where the gateway keeps webhook ids it accepted inside their signature window."""
        return self.state_dir / "gateway" / "replay.jsonl"

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


def secret_bytes(secrets: dict[str, list[SecretStr]]) -> dict[str, tuple[bytes, ...]]:
    """``gateway_tokens``/``portal_secrets`` as the bytes the credential checks compare."""
    return {p: tuple(s.get_secret_value().encode() for s in items) for p, items in secrets.items()}
