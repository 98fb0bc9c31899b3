"""ClickHouse tables for analytics, written through clickhouse-connect.

Embedded default: chdb (ClickHouse in-process, ``chdb:///path``); production: a
ClickHouse server URL. Tables are ReplacingMergeTree on stable keys (``TABLE_KEYS``), so a replay
after a restart rewrites the same rows instead of adding new ones (query with
FINAL, or let merges collapse them). Audit events are keyed by event id and time, so an
event the chain wrote twice (a crash between its changelog write and its send) is one row,
while the same action repeated later (a resend accepted again) stays two.

Exactly once, raw counts included (for numbered outputs; see below): every row carries the Kafka position it came from
(``kafka_topic``, ``kafka_partition``, ``kafka_offset``) and its *origin*: the input it was made
from and its number among that input's outputs (``origin_topic``, ``origin_partition``,
``origin_offset``, ``origin_seq``, from the worker's ``pf-source``/``pf-seq`` headers), plus a
hash of its sort key (``origin_key``). A record without the headers is its own origin (its
position, seq 0). Two copies of one output share an origin wherever they sit in Kafka: the sink
re-reading a batch it wrote before its commit (a sink crash), and the worker sending a batch's
outputs again after a crash between their confirmation and its de-dup marks (issue 8's
"rewritten" outcomes, which used to add raw rows until a merge).

Per table, Kafka partition and origin partition the sink keeps the highest origin it holds
(its mark). Every copy of an output goes to the same Kafka partition as the first
(``catalog.partition_for`` is deterministic), so a copy is never above its mark: an origin above
the mark is new, one at or below it is looked up exactly (order only changes how many lookups
run). One INSERT is atomic per ClickHouse partition only (tables are partitioned by practice
bucket and month), so a crash may leave part of a batch written; the exact lookup covers that
too. Two copies inside one batch: the first is kept. A row is skipped only when the table holds
the same origin, seq and sort-key hash, so a skipped row's key is always in the table (barring
a 64-bit collision): no key is lost. What "first copy kept" can change is which version of a
key's other columns stays, so only handlers whose replay sends the same outputs number them
(the normalizer; not the fax feed, whose OCR runs under a time limit: ``Pipeline.names_outputs``).
A copy whose numbering shifted is not recognised and stays a raw row until a merge (never a loss).
This relies on one writer per partition at a time, which the sink's Kafka consumer group
provides (``streams/clickhouse_sink.py``), and on a stable text form of the key columns
(``origin_key`` hashes ``str()`` of each: change one only with a migration). A topic's partition
count changed between an output and its replay lets that copy through as a raw row. Rows from
before migration 0008 have no key hash (0): they match a re-read of their own Kafka message.

Tables of patient records are ordered by (practice, patient, entity...): a sort key
without the patient let two patients' records with the same entity id (two flu shots on
one day) replace each other. The schema is versioned: ``ensure_schema`` applies the
migrations in ``sinks/clickhouse_migrations/`` (0001 sets a table with an out-of-date key
aside and copies its rows into the re-keyed one) and the configured retention (TTLs).

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
from typing import TYPE_CHECKING, Any

import clickhouse_connect

from practiceflow.processors.identity.choose import scrub_ssn
from practiceflow.schemas.headers import Origin
from practiceflow.sinks import clickhouse_migrations as migrations

if TYPE_CHECKING:
    from practiceflow.settings import Settings

log = logging.getLogger("practiceflow.clickhouse")

# every table the sink writes -> its ReplacingMergeTree sort key (the key FINAL collapses on).
# The tables themselves are created and changed by the versioned migrations in
# sinks/clickhouse_migrations/ (README "ClickHouse analytics": add a table = add a migration
# here, a row builder in rows_for, and the table's key here; tests check they agree).
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "records": ("practice_id", "patient_id", "record_type", "key"),
    "observations": ("practice_id", "patient_id", "observation_id"),
    "immunizations": ("practice_id", "patient_id", "immunization_id"),
    "fax_classifications": ("practice_id", "document_id", "classification_id"),
    "handoff_items": ("practice_id", "item_id"),
    "dead_letters": ("practice_id", "feed", "payload_sha256", "reason_code"),
    "denial_money": ("practice_id", "entry_id"),
    "flow_events": ("practice_id", "feed", "stage", "message_id", "record_type"),
    "audit_events": ("practice_id", "event_id", "at"),
    "work_item_events": ("practice_id", "item_id", "revision"),
    "decisions": ("practice_id", "decision_id"),
    "drafts": ("practice_id", "draft_id"),
    "command_results": ("practice_id", "command_id"),
    "eligibility_results": ("practice_id", "patient_id", "response_id"),
    "pilot_agreement": ("practice_id", "item_id"),
}

Position = tuple[str, int, int]  # (topic, partition, offset)
_Ident = tuple[str, int, int, int, int]  # an origin and the row's sort-key hash
_MarkKey = tuple[str, int, str, int]  # (Kafka topic, partition, origin topic, partition)


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

    def __init__(
        self,
        dsn: str,
        database: str = "practiceflow",
        *,
        audit_retention_days: int | None = None,
        retention_days: int | None = None,
        migrate: bool = True,
    ) -> None:
        """``*_retention_days``: the TTLs to set (0: rows kept for ever; None: leave the tables'
        TTLs as they are, for readers such as ``practiceflow audit verify``). The deployment's
        sink passes the settings' (``from_settings``: six years by default). ``migrate=False``:
        a reader that neither migrates nor sets TTLs (``audit verify``: one process migrates)."""
        self.dsn = dsn
        self.database = database
        self.audit_retention_days = audit_retention_days
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self.client = clickhouse_connect.get_client(dsn=dsn)
        # table -> (Kafka topic, partition, origin topic, partition) -> highest (origin offset, seq)
        # the table holds; loaded lazily
        self._marks: dict[str, dict[_MarkKey, tuple[int, int]]] = {}
        if migrate:
            self.ensure_schema()

    @classmethod
    def from_settings(cls, cfg: Settings) -> ClickHouseSink:
        """The deployment's sink: its DSN, database and retention (TTLs) from the settings."""
        return cls(
            cfg.chdb_dsn,
            cfg.clickhouse_database,
            audit_retention_days=cfg.clickhouse_audit_retention_days,
            retention_days=cfg.clickhouse_retention_days,
        )

    def ensure_schema(self) -> list[int]:
        """Apply the migrations this database lacks, then the configured retention (TTLs);
        returns the migration versions applied now."""
        with self._lock:
            # chdb is one process per path; a server may see several sinks start at once
            done = migrations.apply_migrations(self.client, self.database, lock=not self.dsn.startswith("chdb:"))
            migrations.apply_retention(
                self.client, self.database, audit_days=self.audit_retention_days, records_days=self.retention_days
            )  # no-op for None
            return done

    def forget_marks(self) -> None:
        """Re-read the written positions before the next write (after a rebalance: another
        sink instance may have written these partitions meanwhile)."""
        self._marks.clear()

    def _table_marks(self, table: str) -> dict[_MarkKey, tuple[int, int]]:
        marks = self._marks.get(table)
        if marks is None:
            rows = self.query(
                "SELECT kafka_topic, kafka_partition, origin_topic, origin_partition, "
                f"max((origin_offset, origin_seq)) FROM {{db}}.{table} WHERE origin_offset >= 0 "
                "GROUP BY kafka_topic, kafka_partition, origin_topic, origin_partition"
            )
            marks = self._marks[table] = {(t, int(p), ot, int(op)): (int(m[0]), int(m[1])) for t, p, ot, op, m in rows}
        return marks

    def insert(self, table: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        cols = list(rows[0].keys())
        with self._lock:
            self.client.insert(
                f"{self.database}.{table}",
                [[r[c] for c in cols] for r in rows],
                column_names=cols,
                # a replay of months of history spans more than the default 100 partitions (0002_partitions.py)
                settings={"max_partitions_per_insert_block": 0},
            )
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
        self,
        batch: Iterable[
            tuple[str, dict[str, Any]]
            | tuple[str, dict[str, Any], Position]
            | tuple[str, dict[str, Any], Position, Origin | None]
        ],
        now_ms: int,
    ) -> dict[str, int]:
        """Write (record_type, value[, (topic, partition, offset)[, origin]]) items to their tables.

        Returns the rows per table that are now in ClickHouse for this batch: inserted, or
        found already written (an earlier attempt, or another copy of the same output).
        Raises whatever the client raises; the caller retries the same batch.
        """
        by_table: dict[str, list[dict[str, Any]]] = {}
        for item in batch:
            record_type, value = item[0], item[1]
            pos: Sequence[Any] = item[2] if len(item) > 2 else ("", -1, -1)
            origin = item[3] if len(item) > 3 else None
            if origin is None:
                origin = (pos[0], pos[1], pos[2], 0)
            for table, row in rows_for(record_type, value, now_ms):
                row["kafka_topic"], row["kafka_partition"], row["kafka_offset"] = pos[0], pos[1], pos[2]
                row["origin_topic"], row["origin_partition"], row["origin_offset"], row["origin_seq"] = origin
                row["origin_key"] = _key_hash(table, row)
                by_table.setdefault(table, []).append(row)
        return {t: self._insert_new(t, rows) for t, rows in by_table.items()}

    def _insert_new(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert the rows this table does not hold yet (by origin; see the module doc)."""
        marks = self._table_marks(table)
        below = [r for r in rows if r["origin_offset"] >= 0 and _order(r) <= marks.get(_mark_key(r), (-1, -1))]
        held, held_any_key = self._present(table, below) if below else (set(), set())
        first: dict[_Ident, Position] = {}  # an origin's first Kafka position in this batch
        fresh = []
        for r in rows:
            if r["origin_offset"] >= 0:
                ident = _ident(r)
                if ident in held or (ident[:4] in held_any_key and _own_origin(r)):
                    continue  # written before: by an earlier attempt, or as another copy
                if first.setdefault(ident, _pos(r)) != _pos(r):
                    continue  # a second copy of one output in this batch (a replay's)
            fresh.append(r)
        try:
            self.insert(table, fresh)
        except Exception:
            self._marks.pop(table, None)  # outcome unknown: re-read the marks before the retry
            raise
        for r in fresh:
            if r["origin_offset"] >= 0:
                key = _mark_key(r)
                if _order(r) > marks.get(key, (-1, -1)):
                    marks[key] = _order(r)
        return len(rows)

    def _present(self, table: str, rows: list[dict[str, Any]]) -> tuple[set[_Ident], set[Origin]]:
        """The origins of ``rows`` that ``table`` already holds (one query per origin partition):
        with their key hash, and those recorded without one (rows from before migration 0008)."""
        spans: dict[tuple[str, int], list[int]] = {}
        for r in rows:
            spans.setdefault((r["origin_topic"], r["origin_partition"]), []).append(r["origin_offset"])
        held: set[_Ident] = set()
        any_key: set[Origin] = set()
        for (topic, partition), offsets in spans.items():
            for off, seq, key in self.query(
                f"SELECT DISTINCT origin_offset, origin_seq, origin_key FROM {{db}}.{table} WHERE origin_topic = %(t)s "
                "AND origin_partition = %(p)s AND origin_offset BETWEEN %(lo)s AND %(hi)s",
                {"t": topic, "p": partition, "lo": min(offsets), "hi": max(offsets)},
            ):
                if int(key) == 0:
                    any_key.add((topic, partition, int(off), int(seq)))
                else:
                    held.add((topic, partition, int(off), int(seq), int(key)))
        return held, any_key


def _pos(row: dict[str, Any]) -> Position:
    return (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"])


def _ident(row: dict[str, Any]) -> _Ident:
    return (row["origin_topic"], row["origin_partition"], row["origin_offset"], row["origin_seq"], row["origin_key"])


def _own_origin(row: dict[str, Any]) -> bool:
    """A record without origin headers: named by its own Kafka position (what rows written
    before migration 0008, key hash 0, are named by too)."""
    return row["origin_seq"] == 0 and _pos(row) == (row["origin_topic"], row["origin_partition"], row["origin_offset"])


def _order(row: dict[str, Any]) -> tuple[int, int]:
    return (row["origin_offset"], row["origin_seq"])


def _mark_key(row: dict[str, Any]) -> _MarkKey:
    return (row["kafka_topic"], row["kafka_partition"], row["origin_topic"], row["origin_partition"])


def _key_hash(table: str, row: dict[str, Any]) -> int:
    """A 64-bit hash of the row's sort key (never 0: 0 marks rows from before it was recorded).
    With the origin it tells one output's row from another's of the same input."""
    text = "\x1f".join(_s(row[c]) for c in TABLE_KEYS[table])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") or 1


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
            ),
            ("work_item_events", _work_item_event_row(v)),
        ]
    if record_type == "StaffDecision":
        return [("decisions", _decision_row(v))]
    if record_type == "Draft":
        return [("drafts", _draft_row(v, written))]
    if record_type == "CommandResult":
        return [("command_results", _command_result_row(v))]
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
    elif record_type == "EligibilityResponse":
        rows.append(("eligibility_results", _eligibility_row(v, src, written)))
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


def _work_item_event_row(v: dict[str, Any]) -> dict[str, Any]:
    """One row per revision of a work item: the history the compacted topic forgets."""
    by = v.get("produced_by") or {}
    src = v.get("source") or {}
    created = _ts(v["created_at"])
    return {
        "practice_id": v["practice_id"],
        "item_id": v["item_id"],
        "revision": v.get("revision") or 1,
        "workflow": v["workflow"],
        "kind": _s(v.get("kind")),
        "queue": v["queue"],
        "priority": _s(v.get("priority")),
        "state": v.get("state") or "open",
        "outcome": _s(v.get("outcome")),
        "decision_id": _s(v.get("decision_id")),
        "rule_id": _s(by.get("rule_id")),
        "rule_version": _s(by.get("rule_version")),
        "model": _s(by.get("model")),
        "prompt_version": _s(by.get("prompt_version")),
        "source_feed": _s(src.get("feed")),
        "source_message_id": _s(src.get("message_id")),
        "created_at": created,
        "at": _ts(v["updated_at"]) if v.get("updated_at") is not None else created,
    }


def _decision_row(v: dict[str, Any]) -> dict[str, Any]:
    """Who chose what, when; the names of edited fields only (their values and comments are free text)."""
    return {
        "practice_id": v["practice_id"],
        "decision_id": v["decision_id"],
        "item_id": v["item_id"],
        "item_revision": v.get("item_revision") or 0,
        "option": v["option"],
        "actor": v["actor"],
        "actor_role": _s(v.get("actor_role")),
        "channel": _s(v.get("channel")),
        "edited_fields": sorted((v.get("edits") or {}).keys()),
        "decided_at": _ts(v["decided_at"]),
    }


def _draft_row(v: dict[str, Any], written: datetime) -> dict[str, Any]:
    """What was prepared for sign-off and its status; never the body (a FHIR resource, a letter)."""
    by = v.get("produced_by") or {}
    return {
        "practice_id": v["practice_id"],
        "draft_id": v["draft_id"],
        "item_id": v["item_id"],
        "workflow": v["workflow"],
        "kind": v["kind"],
        "content_type": v["content_type"],
        "status": _s(v.get("status")),
        "patient_id": _s(v.get("patient_id")),
        "rule_id": _s(by.get("rule_id")),
        "model": _s(by.get("model")),
        "created_at": _ts(v["created_at"]),
        "written_at": written,
    }


def _command_result_row(v: dict[str, Any]) -> dict[str, Any]:
    """A command's outcome, attempts and latency; never its payload (a 271, an LLM completion)."""
    return {
        "practice_id": v["practice_id"],
        "command_id": v["command_id"],
        "kind": v["kind"],
        "workflow": v["workflow"],
        "outcome": v["outcome"],
        "reason": _reason(_s(v.get("reason")))[:200],
        "payload_type": _s(v.get("payload_type")),
        "attempts": v.get("attempts") or 1,
        "latency_ms": v.get("latency_ms"),
        "completed_at": _ts(v["completed_at"]),
    }


def _eligibility_row(v: dict[str, Any], src: dict[str, Any], written: datetime) -> dict[str, Any]:
    """A 271's answer: payer, active, benefits, rejections; no member id, name or birth date."""
    benefits = v.get("benefits") or []
    return {
        "practice_id": v["practice_id"],
        "response_id": v["response_id"],
        "patient_id": _s(v.get("patient_id")),
        "payer_id": _s(v.get("payer_id")),
        "payer_name": _s(v.get("payer_name")),
        "active": v.get("active"),
        "benefits": len(benefits),
        "authorization_required": any(b.get("authorization_required") for b in benefits),
        "rejections": list(v.get("rejections") or []),
        "follow_up_actions": list(v.get("follow_up_actions") or []),
        "plan_begin": _s(v.get("plan_begin")),
        "plan_end": _s(v.get("plan_end")),
        "message_id": _s(src.get("message_id")),
        "written_at": written,
    }


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
