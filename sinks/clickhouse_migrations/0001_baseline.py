"""0001: the schema main had before migrations (TABLES + ADDED_COLUMNS + the Kafka positions).

Frozen: this is what ``ClickHouseSink.ensure_schema`` created up to session 18, so a database
written by that version is "at 0001" once this has run over it (every statement is
``IF NOT EXISTS``). A table from an even older version whose ORDER BY or version column
differs is renamed aside (``<table>_before_<time>``) and its rows copied into the new one,
as ``ensure_schema`` always did. Never edit this file; add a new migration instead.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from practiceflow.sinks.clickhouse_migrations import MigrationContext

log = logging.getLogger("practiceflow.clickhouse.migrations")

V1_TABLES: dict[str, str] = {
    "records": """
        CREATE TABLE IF NOT EXISTS {db}.records (
            practice_id LowCardinality(String), record_type LowCardinality(String), key String,
            message_id String, feed LowCardinality(String), message_type LowCardinality(String),
            patient_id String, written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(written_at) ORDER BY (practice_id, patient_id, record_type, key)""",
    "observations": """
        CREATE TABLE IF NOT EXISTS {db}.observations (
            practice_id LowCardinality(String), observation_id String, patient_id String,
            order_id String, code String, code_system String, display String, value String,
            value_numeric Nullable(Float64), units String, flags Array(String), status String,
            effective_at String, message_id String, written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(written_at) ORDER BY (practice_id, patient_id, observation_id)""",
    "immunizations": """
        CREATE TABLE IF NOT EXISTS {db}.immunizations (
            practice_id LowCardinality(String), immunization_id String, patient_id String,
            vaccine_code String, vaccine_system LowCardinality(String), vaccine_display String,
            status LowCardinality(String), administered_at String, amount Nullable(Float64), amount_units String,
            lot_number String, manufacturer String, site String, route String,
            funding_eligibility String, message_id String, written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(written_at) ORDER BY (practice_id, patient_id, immunization_id)""",
    "fax_classifications": """
        CREATE TABLE IF NOT EXISTS {db}.fax_classifications (
            practice_id LowCardinality(String), classification_id String, document_id String,
            segment_index UInt16, pages UInt16, doc_class LowCardinality(String), kind LowCardinality(String),
            confidence Float64, abstained Bool, queue LowCardinality(String), priority LowCardinality(String),
            routing_reason LowCardinality(String), patient_match LowCardinality(String), patient_id String,
            misdirected Bool, missing_pages Bool, model_id LowCardinality(String), message_id String,
            written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(written_at) ORDER BY (practice_id, document_id, classification_id)""",
    "handoff_items": """
        CREATE TABLE IF NOT EXISTS {db}.handoff_items (
            practice_id LowCardinality(String), item_id String, workflow LowCardinality(String),
            queue LowCardinality(String), priority LowCardinality(String), title String,
            patient_id String, subject_type String, subject_id String, evidence_count UInt16,
            created_at DateTime64(3, 'UTC'), revision UInt32 DEFAULT 1
        ) ENGINE = ReplacingMergeTree(revision) ORDER BY (practice_id, item_id)""",
    "dead_letters": """
        CREATE TABLE IF NOT EXISTS {db}.dead_letters (
            practice_id LowCardinality(String), feed LowCardinality(String), stage LowCardinality(String),
            reason_code LowCardinality(String), reason String, message_id String,
            payload_sha256 String, payload_bytes UInt32, failed_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(failed_at) ORDER BY (practice_id, feed, payload_sha256, reason_code)""",
    # the denial workflow's money (DenialLedgerEntry, topic denials.ledger): latest row per entry;
    # sums per practice / payer / category with FINAL (README "Denial follow-up")
    "denial_money": """
        CREATE TABLE IF NOT EXISTS {db}.denial_money (
            practice_id LowCardinality(String), entry_id String, claim_id String, adjudication_id String,
            payer_id LowCardinality(String), payer_name LowCardinality(String), category LowCardinality(String),
            rule_ids Array(String), reason_codes Array(String), adjusted Float64, denied Float64,
            recoverable Float64, recovered Float64, written_off Float64, patient_responsibility Float64,
            state LowCardinality(String), action LowCardinality(String), denied_on String, resolved_on String,
            days_to_resolution Nullable(Int32), item_id String, updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (practice_id, entry_id)""",
    "flow_events": """
        CREATE TABLE IF NOT EXISTS {db}.flow_events (
            practice_id LowCardinality(String), message_id String, feed LowCardinality(String),
            stage LowCardinality(String), record_type LowCardinality(String), records UInt32,
            latency_ms Nullable(Float64), at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(at) ORDER BY (practice_id, feed, stage, message_id, record_type)""",
    "audit_events": """
        CREATE TABLE IF NOT EXISTS {db}.audit_events (
            practice_id LowCardinality(String), event_id String, at DateTime64(3, 'UTC'),
            actor LowCardinality(String), action LowCardinality(String), entity_type LowCardinality(String),
            entity_id String, reason String, outcome LowCardinality(String), prev_hash String, hash String
        ) ENGINE = ReplacingMergeTree(at) ORDER BY (practice_id, event_id, at)""",
}

# columns added after a table's first release, per table (ALTER ... ADD COLUMN IF NOT EXISTS at
# start, so a database created by an older version gains them; rows written before read the default)
V1_ADDED_COLUMNS: dict[str, dict[str, str]] = {
    # the work-item contract, version 2 (processors/workflows/workitem.py)
    "handoff_items": {
        "kind": "LowCardinality(String) DEFAULT ''",
        "state": "LowCardinality(String) DEFAULT 'open'",
        "rule_id": "LowCardinality(String) DEFAULT ''",
        "rule_version": "LowCardinality(String) DEFAULT ''",
        "model": "LowCardinality(String) DEFAULT ''",
        "prompt_version": "LowCardinality(String) DEFAULT ''",
        "outcome": "LowCardinality(String) DEFAULT ''",
        "due_at": "Nullable(DateTime64(3, 'UTC'))",
        "updated_at": "Nullable(DateTime64(3, 'UTC'))",
    },
}

# the Kafka position of each row (see the module docstring); added to every table, also to
# tables created by an older version (ALTER ... ADD COLUMN IF NOT EXISTS)
POSITION_COLUMNS: dict[str, str] = {
    "kafka_topic": "LowCardinality(String) DEFAULT ''",
    "kafka_partition": "Int32 DEFAULT -1",
    "kafka_offset": "Int64 DEFAULT -1",
}


def migrate(ctx: MigrationContext) -> None:
    for table, ddl in V1_TABLES.items():
        aside = _set_aside_if_rekeyed(ctx, table, ddl)
        ctx.command(ddl)
        for col, spec in {**V1_ADDED_COLUMNS.get(table, {}), **POSITION_COLUMNS}.items():
            ctx.command(f"ALTER TABLE {{db}}.{table} ADD COLUMN IF NOT EXISTS {col} {spec}")
        if aside is not None:
            copy_rows(ctx, aside, table)


def copy_rows(ctx: MigrationContext, source: str, table: str) -> None:
    """Copy a set-aside table's rows into its successor (the columns both have; Kafka
    positions included, so the sink's exactly-once marks stay right). Rows an old key had
    already collapsed are not there to copy: only a replay of the topics brings those back."""
    target = set(ctx.columns(table))
    shared = ", ".join(c for c in ctx.columns(source) if c in target)
    ctx.command(f"INSERT INTO {{db}}.{table} ({shared}) SELECT {shared} FROM {{db}}.{source}")  # noqa: S608 - our table names


def _set_aside_if_rekeyed(ctx: MigrationContext, table: str, ddl: str) -> str | None:
    """A table with another ORDER BY or engine version column cannot be altered to the new
    one: rename it aside (rows kept) so the new one is created, then copy the rows over."""
    want = ddl.rsplit("ORDER BY", 1)[1].strip().strip("()").replace(" ", "")
    engine = ddl.split("ENGINE =", 1)[1].strip().split(")", 1)[0].replace(" ", "") + ")"
    info = ctx.table_info(table)
    if info is None:
        return None
    sorting_key, engine_full = info[1], info[2]
    if sorting_key.replace(" ", "") != want or not engine_full.replace(" ", "").startswith(engine):
        aside = f"{table}_before_{datetime.now(tz=UTC):%Y%m%d%H%M%S}"
        log.warning("ClickHouse table %s has key (%s), not (%s): renamed to %s", table, sorting_key, want, aside)
        ctx.command(f"RENAME TABLE {{db}}.{table} TO {{db}}.{aside}")
        return aside
    return None
