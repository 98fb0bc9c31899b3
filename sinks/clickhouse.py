"""ClickHouse tables for analytics, written through clickhouse-connect.

Embedded default: chdb (ClickHouse in-process, ``chdb:///path``); production: a
ClickHouse server URL. Tables are ReplacingMergeTree on stable keys, so a replay
after a restart rewrites the same rows instead of adding new ones (query with
FINAL, or let merges collapse them). Audit events are keyed by event id and time, so an
event the chain wrote twice (a crash between its changelog write and its send) is one row,
while the same action repeated later (a resend accepted again) stays two.

Exactly once, raw counts included: every row carries the Kafka position it came from
(``kafka_topic``, ``kafka_partition``, ``kafka_offset``). One INSERT per table per batch
is atomic, so the highest offset a table holds for a partition says exactly what of
that partition is in that table; ``write_batch`` skips rows at or below it. A batch
re-read after a crash between the INSERT and the offset commit (or after a failed
INSERT whose outcome is unknown) therefore adds nothing twice. This relies on one
writer per partition at a time, which the sink's Kafka consumer group provides
(``streams/clickhouse_sink.py``).

Tables of patient records are ordered by (practice, patient, entity...): a sort key
without the patient let two patients' records with the same entity id (two flu shots on
one day) replace each other. ``ensure_schema`` sets a table with an out-of-date key aside
and copies its rows into the re-keyed one (rows the old key already collapsed must be replayed).

What PHI lands here (the analytics store), and what does not:

* stored: the practice id, the canonical patient id (the practice's MRN or an
  ``unresolved:`` marker; never an SSN, see ``processors/identity``), entity ids,
  codes and their code-system displays, numeric and coded result values with units,
  flags, statuses, event times, counts, reason codes, and rule-written handoff titles.
* not stored: names, birth dates, addresses, phones, any identifier but the canonical
  patient id, free text (text-typed observation values, notes, document text, handoff
  narrative and evidence), payloads, and the quoted content of dead-letter reasons.
  Titles and reasons are also scrubbed of SSN-shaped numbers (last four kept).

Those stay in Kafka (the records and dead letters, with their retention and access
control), which is where staff tools read them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect

from practiceflow.processors.identity.choose import scrub_ssn

log = logging.getLogger("practiceflow.clickhouse")

TABLES: dict[str, str] = {
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
    # pilot (shadow) mode: one row per compared work item (processors/pilot/compare.py); sums per
    # workflow / kind / rule version are `practiceflow pilot report` (README "Pilot mode")
    "pilot_agreement": """
        CREATE TABLE IF NOT EXISTS {db}.pilot_agreement (
            practice_id LowCardinality(String), item_id String, workflow LowCardinality(String),
            kind LowCardinality(String), queue LowCardinality(String), rule_id LowCardinality(String),
            rule_version LowCardinality(String), staff_option LowCardinality(String), staff_queue LowCardinality(String),
            staff_channel LowCardinality(String), decision_id String, verdict LowCardinality(String), why String,
            minutes Float64, minutes_saved Float64, task_rule LowCardinality(String), decided_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(decided_at) ORDER BY (practice_id, item_id)""",
    "audit_events": """
        CREATE TABLE IF NOT EXISTS {db}.audit_events (
            practice_id LowCardinality(String), event_id String, at DateTime64(3, 'UTC'),
            actor LowCardinality(String), action LowCardinality(String), entity_type LowCardinality(String),
            entity_id String, reason String, outcome LowCardinality(String), prev_hash String, hash String
        ) ENGINE = ReplacingMergeTree(at) ORDER BY (practice_id, event_id, at)""",
}

# columns added after a table's first release, per table (ALTER ... ADD COLUMN IF NOT EXISTS at
# start, so a database created by an older version gains them; rows written before read the default)
ADDED_COLUMNS: dict[str, dict[str, str]] = {
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
    # the event's details are hashed into the chain: `practiceflow audit verify` needs them
    "audit_events": {"details": "Map(String, String)"},
}

# the Kafka position of each row (see the module docstring); added to every table, also to
# tables created by an older version (ALTER ... ADD COLUMN IF NOT EXISTS)
POSITION_COLUMNS: dict[str, str] = {
    "kafka_topic": "LowCardinality(String) DEFAULT ''",
    "kafka_partition": "Int32 DEFAULT -1",
    "kafka_offset": "Int64 DEFAULT -1",
}

Position = tuple[str, int, int]  # (topic, partition, offset)


# value types whose value is free text: not stored (only codes and numbers are)
_TEXT_VALUE_TYPES = frozenset({"TX", "FT", "ST", "string", "ED", "RP", "markdown", "Attachment", "Annotation"})
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _reason(text: str) -> str:
    """A dead-letter reason without the message content it may quote."""
    return scrub_ssn(_QUOTED.sub("'…'", text))[:500]


def _obs_value(v: dict[str, Any]) -> str:
    vt = v.get("value_type")
    if vt is None and v.get("value_numeric") is None:
        return ""  # untyped (HL7 with OBX-2 empty): treated as text
    if vt in _TEXT_VALUE_TYPES:
        return ""
    return scrub_ssn(_s(v.get("value")))


def _ts(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def _s(v: Any) -> str:
    return "" if v is None else str(v)


class ClickHouseSink:
    """Batches rows per table; one lock because chdb is one embedded engine."""

    def __init__(self, dsn: str, database: str = "practiceflow") -> None:
        self.dsn = dsn
        self.database = database
        self._lock = threading.Lock()
        self.client = clickhouse_connect.get_client(dsn=dsn)
        # table -> (topic, partition) -> highest Kafka offset the table holds; loaded lazily
        self._marks: dict[str, dict[tuple[str, int], int]] = {}
        self.ensure_schema()

    def ensure_schema(self) -> None:
        with self._lock:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            for table, ddl in TABLES.items():
                aside = self._set_aside_if_rekeyed(table, ddl)
                self.client.command(ddl.format(db=self.database))
                for col, spec in {**ADDED_COLUMNS.get(table, {}), **POSITION_COLUMNS}.items():
                    self.client.command(f"ALTER TABLE {self.database}.{table} ADD COLUMN IF NOT EXISTS {col} {spec}")
                if aside is not None:
                    self._copy_rows(aside, table)

    def _copy_rows(self, source: str, table: str) -> None:
        """Copy a set-aside table's rows into its re-keyed successor (the columns both have;
        Kafka positions included, so the sink's exactly-once marks stay right). Rows the old
        key had already collapsed (two patients' records with one entity id) are not there
        to copy: only a replay of the topics brings those back."""
        cols = [
            c
            for (c,) in self.client.query(
                "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s ORDER BY position",
                parameters={"db": self.database, "t": source},
            ).result_rows
        ]
        target = {
            c
            for (c,) in self.client.query(
                "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                parameters={"db": self.database, "t": table},
            ).result_rows
        }
        shared = ", ".join(c for c in cols if c in target)
        db = self.database
        self.client.command(f"INSERT INTO {db}.{table} ({shared}) SELECT {shared} FROM {db}.{source}")

    def _set_aside_if_rekeyed(self, table: str, ddl: str) -> str | None:
        """A table created by an older version with another ORDER BY (the ReplacingMergeTree
        key) or another engine (its version column) cannot be altered to the new one: rename it aside (``<table>_before_<time>``, rows
        kept) so the new one is created; ``ensure_schema`` then copies the rows over. Kafka holds the records; a new sink consumer group
        (``practiceflow sink --group …``) re-reads them within the topics' retention."""
        want = ddl.rsplit("ORDER BY", 1)[1].strip().strip("()").replace(" ", "")
        # the engine and its version column only, e.g. ReplacingMergeTree(revision): the rest of
        # engine_full (PARTITION BY, TTL, SETTINGS) is formatted by the server its own way
        engine = ddl.split("ENGINE =", 1)[1].strip().split(")", 1)[0].replace(" ", "") + ")"
        rows = self.client.query(
            "SELECT sorting_key, engine_full FROM system.tables WHERE database = %(db)s AND name = %(t)s",
            parameters={"db": self.database, "t": table},
        ).result_rows
        # a new ORDER BY, or a new version column (handoff_items: by revision, not created_at)
        if rows and (rows[0][0].replace(" ", "") != want or not rows[0][1].replace(" ", "").startswith(engine)):
            aside = f"{table}_before_{datetime.now(tz=UTC):%Y%m%d%H%M%S}"
            log.warning("ClickHouse table %s has key (%s), not (%s): renamed to %s", table, rows[0][0], want, aside)
            self.client.command(f"RENAME TABLE {self.database}.{table} TO {self.database}.{aside}")
            return aside
        return None

    def forget_marks(self) -> None:
        """Re-read the written positions before the next write (after a rebalance: another
        sink instance may have written these partitions meanwhile)."""
        self._marks.clear()

    def _table_marks(self, table: str) -> dict[tuple[str, int], int]:
        marks = self._marks.get(table)
        if marks is None:
            rows = self.query(
                f"SELECT kafka_topic, kafka_partition, max(kafka_offset) FROM {{db}}.{table} "
                "WHERE kafka_offset >= 0 GROUP BY kafka_topic, kafka_partition"
            )
            marks = self._marks[table] = {(t, int(p)): int(o) for t, p, o in rows}
        return marks

    def insert(self, table: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        cols = list(rows[0].keys())
        with self._lock:
            self.client.insert(f"{self.database}.{table}", [[r[c] for c in cols] for r in rows], column_names=cols)
        return len(rows)

    def query(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        with self._lock:
            return [
                tuple(row) for row in self.client.query(sql.format(db=self.database), parameters=parameters).result_rows
            ]

    def close(self) -> None:
        with self._lock:
            self.client.close()

    # -- row builders: record dict -> table rows
    def write_batch(
        self, batch: Iterable[tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], Position]], now_ms: int
    ) -> dict[str, int]:
        """Write (record_type, value[, (topic, partition, offset)]) items to their tables.

        Returns the rows per table that are now in ClickHouse for this batch: inserted, or
        found already written by an earlier attempt (positioned items at or below the
        table's mark). Raises whatever the client raises; the caller retries the same batch.
        """
        by_table: dict[str, list[dict[str, Any]]] = {}
        for item in batch:
            record_type, value = item[0], item[1]
            pos: Sequence[Any] = item[2] if len(item) > 2 else ("", -1, -1)
            for table, row in rows_for(record_type, value, now_ms):
                row["kafka_topic"], row["kafka_partition"], row["kafka_offset"] = pos[0], pos[1], pos[2]
                by_table.setdefault(table, []).append(row)
        return {t: self._insert_new(t, rows) for t, rows in by_table.items()}

    def _insert_new(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert the rows this table does not hold yet (by Kafka position); one atomic INSERT."""
        marks = self._table_marks(table)
        fresh = [
            r
            for r in rows
            if r["kafka_offset"] < 0 or r["kafka_offset"] > marks.get((r["kafka_topic"], r["kafka_partition"]), -1)
        ]
        try:
            self.insert(table, fresh)
        except Exception:
            self._marks.pop(table, None)  # outcome unknown: re-read the marks before the retry
            raise
        for r in fresh:
            if r["kafka_offset"] >= 0:
                key = (r["kafka_topic"], r["kafka_partition"])
                if r["kafka_offset"] > marks.get(key, -1):
                    marks[key] = r["kafka_offset"]
        return len(rows)


_PILOT_COLUMNS = (
    "practice_id",
    "item_id",
    "workflow",
    "kind",
    "queue",
    "rule_id",
    "rule_version",
    "staff_option",
    "staff_queue",
    "staff_channel",
    "decision_id",
    "verdict",
    "why",
    "minutes",
    "minutes_saved",
    "task_rule",
    "decided_at",
)


def rows_for(record_type: str, v: dict[str, Any], now_ms: int) -> list[tuple[str, dict[str, Any]]]:
    written = _ts(now_ms)
    if record_type == "HandoffItem":
        by = v.get("produced_by") or {}
        return [
            (
                "handoff_items",
                {
                    "practice_id": v["practice_id"],
                    "item_id": v["item_id"],
                    "workflow": v["workflow"],
                    "queue": v["queue"],
                    "priority": v["priority"],
                    "title": scrub_ssn(v["title"]),
                    "patient_id": _s(v.get("patient_id")),
                    "subject_type": _s(v.get("subject_type")),
                    "subject_id": _s(v.get("subject_id")),
                    "evidence_count": len(v.get("evidence") or []),
                    "created_at": _ts(v["created_at"]),
                    "kind": _s(v.get("kind")),
                    "state": v.get("state") or "open",
                    "revision": v.get("revision") or 1,
                    "rule_id": _s(by.get("rule_id")),
                    "rule_version": _s(by.get("rule_version")),
                    "model": _s(by.get("model")),
                    "prompt_version": _s(by.get("prompt_version")),
                    "outcome": _s(v.get("outcome")),
                    "due_at": _ts(v["due_at"]) if v.get("due_at") is not None else None,
                    "updated_at": _ts(v["updated_at"]) if v.get("updated_at") is not None else None,
                },
            )
        ]
    if record_type == "DeadLetter":
        payload = v.get("payload") or b""
        return [
            (
                "dead_letters",
                {
                    "practice_id": v["practice_id"],
                    "feed": v["feed"],
                    "stage": v["stage"],
                    "reason_code": v["reason_code"],
                    "reason": _reason(v["reason"]),
                    "message_id": _s(v.get("message_id")),
                    # a claim-checked or head-only dead letter names its whole original
                    "payload_sha256": v.get("payload_sha256") or hashlib.sha256(payload).hexdigest(),
                    "payload_bytes": v.get("payload_size") or len(payload),
                    "failed_at": _ts(v["failed_at"]),
                },
            )
        ]
    if record_type == "DenialLedgerEntry":
        return [("denial_money", _denial_money_row(v))]
    if record_type == "FlowEvent":
        return [
            (
                "flow_events",
                {
                    "practice_id": v["practice_id"],
                    "message_id": v["message_id"],
                    "feed": v["feed"],
                    "stage": v["stage"],
                    "record_type": _s(v.get("record_type")),
                    "records": v.get("records") or 0,
                    "latency_ms": v.get("latency_ms"),
                    "at": _ts(v["at"]),
                },
            )
        ]
    if record_type == "PilotComparison":
        row = {k: v[k] for k in _PILOT_COLUMNS}
        row["decided_at"] = _ts(v["decided_at"])
        return [("pilot_agreement", row)]
    if record_type == "AuditEvent":
        return [
            (
                "audit_events",
                {
                    "practice_id": v["practice_id"],
                    "event_id": v["event_id"],
                    "at": _ts(v["at"]),
                    "actor": v["actor"],
                    "action": v["action"],
                    "entity_type": v["entity_type"],
                    "entity_id": v["entity_id"],
                    "reason": scrub_ssn(v["reason"]),
                    "outcome": v["outcome"],
                    "details": dict(v.get("details") or {}),
                    "prev_hash": _s(v.get("prev_hash")),
                    "hash": _s(v.get("hash")),
                },
            )
        ]
    src = v.get("source") or {}
    rows = [
        (
            "records",
            {
                "practice_id": v["practice_id"],
                "record_type": record_type,
                "key": _entity_id(record_type, v),
                "message_id": _s(src.get("message_id")),
                "feed": _s(src.get("feed")),
                "message_type": _s(src.get("message_type")),
                "patient_id": _s(v.get("patient_id")),
                "written_at": written,
            },
        )
    ]
    if record_type == "Observation":
        code = v.get("code") or {}
        rows.append(
            (
                "observations",
                {
                    "practice_id": v["practice_id"],
                    "observation_id": v["observation_id"],
                    "patient_id": v["patient_id"],
                    "order_id": _s(v.get("order_id")),
                    "code": _s(code.get("code")),
                    "code_system": _s(code.get("system")),
                    "display": _s(code.get("display")),
                    "value": _obs_value(v),
                    "value_numeric": v.get("value_numeric"),
                    "units": _s(v.get("units")),
                    "flags": list(v.get("abnormal_flags") or []),
                    "status": _s(v.get("status")),
                    "effective_at": _s(v.get("effective_at")),
                    "message_id": _s(src.get("message_id")),
                    "written_at": written,
                },
            )
        )
    elif record_type == "Immunization":
        rows.append(("immunizations", _immunization_row(v, src, written)))
    elif record_type == "FaxClassification":
        # class, confidence, match and routing; never the extracted values (names, dates of birth)
        rows.append(
            (
                "fax_classifications",
                {
                    "practice_id": v["practice_id"],
                    "classification_id": v["classification_id"],
                    "document_id": v["document_id"],
                    "segment_index": v.get("segment_index") or 0,
                    "pages": len(v.get("pages") or []),
                    "doc_class": v["doc_class"],
                    "kind": v["kind"],
                    "confidence": float(v["confidence"]),
                    "abstained": bool(v["abstained"]),
                    "queue": v["queue"],
                    "priority": _s(v.get("priority")),
                    "routing_reason": scrub_ssn(_s(v.get("routing_reason")))[:200],
                    "patient_match": v["patient_match"],
                    "patient_id": _s(v.get("patient_id")),
                    "misdirected": bool(v.get("misdirected")),
                    "missing_pages": bool(v.get("missing_pages")),
                    "model_id": _s(v.get("model_id")),
                    "message_id": _s(src.get("message_id")),
                    "written_at": written,
                },
            )
        )
    return rows


def _denial_money_row(v: dict[str, Any]) -> dict[str, Any]:
    """One row per ledger entry (its latest state wins): money, not narrative - codes, amounts, dates."""
    return {
        "practice_id": v["practice_id"],
        "entry_id": v["entry_id"],
        "claim_id": v["claim_id"],
        "adjudication_id": v["adjudication_id"],
        "payer_id": _s(v.get("payer_id")),
        "payer_name": _s(v.get("payer_name")),
        "category": v["category"],
        "rule_ids": list(v.get("rule_ids") or []),
        "reason_codes": list(v.get("reason_codes") or []),
        "adjusted": float(v.get("adjusted") or 0.0),
        "denied": float(v.get("denied") or 0.0),
        "recoverable": float(v.get("recoverable") or 0.0),
        "recovered": float(v.get("recovered") or 0.0),
        "written_off": float(v.get("written_off") or 0.0),
        "patient_responsibility": float(v.get("patient_responsibility") or 0.0),
        "state": v["state"],
        "action": _s(v.get("action")),
        "denied_on": _s(v.get("denied_on")),
        "resolved_on": _s(v.get("resolved_on")),
        "days_to_resolution": v.get("days_to_resolution"),
        "item_id": _s(v.get("item_id")),
        "updated_at": _ts(v["updated_at"]),
    }


def _immunization_row(v: dict[str, Any], src: dict[str, Any], written: datetime) -> dict[str, Any]:
    """One row per immunization: what an immunization registry report or a
    "who is due" query reads (vaccine, date, lot, manufacturer, funding)."""
    vaccine = v.get("vaccine") or {}
    mvx = v.get("manufacturer") or {}
    elig = v.get("funding_eligibility") or {}
    return {
        "practice_id": v["practice_id"],
        "immunization_id": v["immunization_id"],
        "patient_id": v["patient_id"],
        "vaccine_code": _s(vaccine.get("code")),
        "vaccine_system": _s(vaccine.get("system")),
        "vaccine_display": _s(vaccine.get("display")),
        "status": _s(v.get("status")),
        "administered_at": _s(v.get("administered_at")),
        "amount": v.get("amount"),
        "amount_units": _s(v.get("amount_units")),
        "lot_number": _s(v.get("lot_number")),
        "manufacturer": _s(mvx.get("code") or mvx.get("display")),
        "site": _s(v.get("site")),
        "route": _s(v.get("route")),
        "funding_eligibility": _s(elig.get("code")),
        "message_id": _s(src.get("message_id")),
        "written_at": written,
    }


_ID_FIELDS = (
    "classification_id",
    "observation_id",
    "order_id",
    "appointment_id",
    "document_id",
    "encounter_id",
    "coverage_id",
    "condition_id",
    "immunization_id",
    "allergy_id",
    "adjudication_id",
    "adjustment_id",
    "status_id",
    "response_id",
    "ack_id",
    "claim_id",
    "submission_id",
    "request_id",
    "link_id",
    "patient_id",
)


def _entity_id(record_type: str, v: dict[str, Any]) -> str:
    for f in _ID_FIELDS:
        if v.get(f):
            return str(v[f])
    return ""
