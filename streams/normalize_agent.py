"""The normalize agents: raw (and retry) topics -> records, handoff items, dead letters, retries.

Every raw message ends in exactly one outcome: normalized records (+ handoff items),
a dead letter, or — for a failure of a dependency, not of the input — a retry through
``pf.retry.<feed>`` (``streams/retry.py``) that ends in one of the first two.

Commit rule (the fix for issue 8's silent loss, see ``streams/offsets.py``): messages
are handled in batches; every output of a batch is sent, and the batch waits for the
broker to confirm all of them; only then are the batch's ids marked in the de-dup
table, and only once those table writes are confirmed too are the offsets committed.
A crash at any point leaves the uncommitted messages to be handled again: a message
whose outcome was written *and* marked is recognised as a replay (its de-dup entry
holds this very copy's ``received_at``) and skipped; one whose outcome was written but
not marked is handled again under the same keys and audit event ids, which the
compacted topics, ReplacingMergeTree tables and the audit chain absorb.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import faust

from practiceflow.processors.audit import audit_event
from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.deadletter import dead_letter, raw_header_details
from practiceflow.processors.dedup import control_key_for, is_redrive, sweep, sweep_due
from practiceflow.processors.dispatch import handoffs_for
from practiceflow.processors.retry import HEADERS as RETRY_HEADERS, decide, is_transient, not_before, retry_headers
from practiceflow.schemas.headers import folded_header
from practiceflow.streams import catalog, claimcheck
from practiceflow.streams.batches import run_batches
from practiceflow.streams.clock import now_ms
from practiceflow.streams.health import DEAD_LETTERS, HANDOFFS, MESSAGES, NORMALIZE_SECONDS, RECORDS, count_unmapped
from practiceflow.streams.metrics import observe_pipeline_seconds
from practiceflow.streams.offsets import Committer, Outbox, confirmed, in_event
from practiceflow.streams.undecodable import (
    REASON_CODE as UNDECODABLE_CODE,
    UNDECODABLE,
    as_raw_message,
    is_undecodable,
)

__all__ = ["Batch", "Normalizer", "Outbox", "confirmed"]  # Outbox/confirmed: moved to offsets.py, kept here too

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline
    from practiceflow.streams.workflows.context import PatientContexts

log = logging.getLogger("practiceflow.worker")


def _redrive_headers(raw: dict[str, Any]) -> dict[str, str]:
    headers = {k: v for k, v in (raw.get("headers") or {}).items() if k not in RETRY_HEADERS}
    return raw_header_details(dict(raw, headers=headers))


@dataclass
class Batch:
    """What one batch decided, applied once its outputs are confirmed."""

    outbox: Outbox
    # the de-dup sweep's deletions (and legacy rewrites): the store changes at once, the changelog
    # records go through the same librdkafka producer as the marks (one producer per changelog
    # partition keeps their order) and are confirmed with them, before the offsets are committed
    sweeps: Outbox
    marks: list[tuple[Any, str, int]] = field(default_factory=list)  # (event, de-dup key, received_at)
    pending: dict[str, int] = field(default_factory=dict)  # de-dup keys marked in this batch
    counts: list[tuple[str, int]] = field(default_factory=list)
    # the record types this batch folds into the patient contexts itself (empty: none), and the
    # (input event, record type, record) of each such record written: folded after the batch's
    # last input (PatientContexts.fold_upstream), confirmed with the records
    fold_types: frozenset[str] = frozenset()
    context_records: list[tuple[Any, str, dict[str, Any]]] = field(default_factory=list)


class Normalizer:
    """Handles batches of RawMessage events for one Pipeline (raw and retry topics alike)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self._context_mark: list[tuple[str, bytes]] = []  # pf-context: this group, whose tables hold the fold

    def _contexts(self, fold_contexts: bool) -> PatientContexts | None:
        """The patient-context tables this batch folds its context records into: the worker's,
        when it runs them (registered after the normalizers are made, so looked up per batch)."""
        contexts: PatientContexts | None = getattr(self.p, "contexts", None) if fold_contexts else None
        if contexts is not None and not self._context_mark:
            self._context_mark = [folded_header(self.p.app.conf.id)]
        return contexts

    # ------------------------------------------------------------------ batch
    async def run(
        self,
        stream: faust.StreamT,
        committer: Committer,
        *,
        honour_not_before: bool = False,
        batch_max: int | None = None,
        batch_seconds: float | None = None,
        name_outputs: bool = True,
        fold_contexts: bool = True,
    ) -> None:
        """``batch_max`` overrides ``worker_batch_max`` for slow feeds (fax: OCR per message),
        so a crash re-does little work and a batch never holds many slow messages.
        ``name_outputs``: number each message's outputs (``Pipeline.names_outputs``).
        ``fold_contexts``: fold the batch's patient-context records here (``fold_upstream``); the
        retry agents do not: they sleep out backoffs between inputs, and their records are outside
        the barrier's first stage, so the context agent folds them (its second stage covers them)."""

        async def handle(events: list[Any]) -> None:
            await self.process_batch(
                events,
                committer,
                honour_not_before=honour_not_before,
                name_outputs=name_outputs,
                fold_contexts=fold_contexts,
            )

        await run_batches(self.p, stream, handle, "normalize", batch_max=batch_max, batch_seconds=batch_seconds)

    async def process_batch(
        self,
        events: list[Any],
        committer: Committer,
        *,
        honour_not_before: bool = False,
        name_outputs: bool = True,
        fold_contexts: bool = True,
    ) -> None:
        admitted = await committer.admit(events)
        if not admitted:
            return
        batch = Batch(outbox=self.p.outbox(), sweeps=self.p.outbox())
        contexts = self._contexts(fold_contexts)
        if contexts is not None:
            batch.fold_types = contexts.upstream_types
        for ev in admitted:
            if honour_not_before:
                await self._wait_not_before(ev.value, ev.message.tp)
            msg = ev.message
            # every output names this input (pf-source) and, where a replay gives the same outputs,
            # its place among them (pf-seq): the ClickHouse sink writes a replay's copies once
            with in_event(ev), batch.outbox.made_from(msg.topic, msg.partition, msg.offset, numbered=name_outputs):
                await self.handle(ev, batch)
            self.p.sensor.touch(ev.message.tp)
        if contexts is not None and batch.context_records:
            if self.p.app.rebalancing or committer.generation != self.p.app.consumer_generation_id:
                # a rebalance since admit (or under way: Faust revokes the table partitions before the
                # new generation is set): these partitions may be another worker's now, and so their
                # table partitions. Abandoned: no fold, no marks, no commit; the inputs are delivered
                # again (to this worker or the new owner) and handled, folded and marked there. The
                # records already sent carry the mark; the second pass writes the same records
                # (same keys) and folds them. Should the second pass end otherwise (a dead letter),
                # the first pass's records stay unfolded: a record nothing else confirms.
                await batch.outbox.confirm()
                await committer.commit([])  # nothing of this batch; ends its turn (the tail probe's busy flag)
                log.info("normalize batch abandoned after a rebalance (%d inputs)", len(admitted))
                return
            # the patient contexts, written with the records they are folded from
            batch.counts.extend(
                contexts.fold_upstream(batch.context_records, batch.outbox, committer.generation).items()
            )
        await batch.outbox.confirm()  # 1. every output is in Kafka (and the contexts folded from them)
        observe_pipeline_seconds(batch.marks)
        marks = self.p.outbox()
        for ev, key, received_at in batch.marks:
            marks.table_write(self.p.seen, ev, key, received_at)
        # 2. the de-dup marks are in the changelog, and the sweep's tombstones, sent earlier (confirmed
        # first, so the store's persisted changelog offset only moves forward)
        await batch.sweeps.confirm()
        await marks.confirm()
        for name, n in batch.counts:
            self.p._count(name, n)
        await committer.commit(admitted)

    async def _wait_not_before(self, raw: dict[str, Any], tp: Any) -> None:
        """Sleep until the retry's not-before time, in slices that report progress: a
        backoff (up to ``retry_backoff_max_ms``) is waiting by design, not a stall."""
        step = max(0.5, self.p.cfg.stall_seconds / 4)
        while (delay := (not_before(raw.get("headers")) - now_ms()) / 1000) > 0:
            self.p.sensor.touch(tp)
            await asyncio.sleep(min(delay, step))
        self.p.sensor.touch(tp)

    # ------------------------------------------------------------------ one message
    async def handle(self, ev: Any, batch: Batch) -> str:
        """Decide one message's outcome and queue its outputs; returns the outcome."""
        raw: dict[str, Any] = ev.value
        msg = ev.message
        if is_undecodable(raw):  # bytes no reader understands: a dead letter, never a stalled partition
            return await self._undecodable(ev, batch)
        practice, feed = raw["practice_id"], raw["feed"]
        seen_key = f"{practice}/{feed}/{raw['message_id']}"
        self._forget_old_ids(ev, raw["received_at"], batch)
        headers = raw.get("headers") or {}
        redrive = is_redrive(raw)  # `practiceflow dlq redrive` re-sends a dead-lettered id on purpose
        prev = batch.pending.get(seen_key) or self.p.seen[seen_key]
        if prev and not redrive:
            if prev == raw["received_at"]:
                batch.counts.append((f"{feed}.replayed", 1))
                return "replayed"  # this very copy already has its outcome (a crash replay)
            MESSAGES.labels(feed, "duplicate").inc()
            batch.counts.append((f"{feed}.duplicate", 1))
            await self._flow(batch, raw, "duplicate")
            return "duplicate"
        started = time.perf_counter()
        try:
            result = await self.p.normalize(raw)
        except Rejected as rej:
            await self._dead_letter(batch, raw, rej.reason_code, rej.reason, msg, started)
            self._mark(batch, ev, seen_key, raw["received_at"])
            return "dead_lettered"
        except Exception as exc:
            # The exception text can quote message content (PHI): plain logs get the type only;
            # the full text travels in the dead letter or retry, which stay inside Kafka.
            error = f"{type(exc).__name__}: {exc}"
            if not is_transient(exc):
                log.error("normalizer crashed on %s message %s: %s", feed, raw["message_id"], type(exc).__name__)
                log.debug("normalizer crash details", exc_info=True)
                await self._dead_letter(batch, raw, "internal_error", error, msg, started)
            else:
                failed_at = now_ms()
                decision = decide(self.p.retry_policy, headers, failed_at)
                if not decision.retry:
                    await self._dead_letter(
                        batch,
                        raw,
                        "retries_exhausted",
                        f"{decision.attempt} attempts; last: {error}",
                        msg,
                        started,
                    )
                else:
                    log.warning(
                        "%s message %s failed transiently (%s); retry %d scheduled",
                        feed,
                        raw["message_id"],
                        type(exc).__name__,
                        decision.attempt,
                    )
                    retry = dict(raw, headers=retry_headers(headers, decision, error, failed_at))
                    await batch.outbox.send(
                        self.p.topics[f"retry.{feed}"],
                        f"{practice}/{raw['message_id']}",
                        retry,
                        catalog.partition_for(practice, self.p.partitions),
                    )
                    MESSAGES.labels(feed, "retrying").inc()
                    batch.counts.append((f"{feed}.retrying", 1))
                    await self._flow(batch, raw, "retrying")
                    return "retrying"  # not marked: the retry decides the outcome
            self._mark(batch, ev, seen_key, raw["received_at"])
            return "dead_lettered"
        ctl_key = control_key_for(practice, feed, result.control_key)
        if ctl_key is not None and not redrive and (batch.pending.get(ctl_key) or self.p.seen[ctl_key]):
            await self._control_id_reused(batch, raw, result)
        await self._normalized(batch, ev, raw, result, started)
        self._mark(batch, ev, seen_key, raw["received_at"])
        if ctl_key is not None:
            self._mark(batch, ev, ctl_key, raw["received_at"])
        return "normalized"

    async def _undecodable(self, ev: Any, batch: Batch) -> str:
        """Dead-letter an input record that could not be decoded (``streams/undecodable.py``)."""
        raw = as_raw_message(ev.value, ev.message, self.p.cfg.practices, self.p.cfg.claim_check_bytes)
        key = f"{raw['practice_id']}/{raw['feed']}/{raw['message_id']}"
        if (batch.pending.get(key) or self.p.seen[key]) == raw["received_at"]:
            return "replayed"
        reason = ev.value[UNDECODABLE]
        await self._dead_letter(batch, raw, UNDECODABLE_CODE, reason, ev.message, time.perf_counter())
        self._mark(batch, ev, key, raw["received_at"])
        return "dead_lettered"

    async def _control_id_reused(self, batch: Batch, raw: dict[str, Any], result: NormalizeResult) -> None:
        """The sender's control id was seen before with different content: processed (it is a
        new message), and flagged so someone can check the interface engine."""
        feed = raw["feed"]
        result.warnings.append("control_id_reused: the sender's control id was seen before with different content")
        batch.counts.append((f"{feed}.control_id_reused", 1))
        await self._audit(
            batch,
            raw,
            0,
            action="flagged",
            entity_type="RawMessage",
            entity_id=raw["message_id"],
            reason="control_id_reused",
            details={"control_key": result.control_key or ""},
        )

    @staticmethod
    def _mark(batch: Batch, ev: Any, key: str, received_at: int) -> None:
        batch.marks.append((ev, key, received_at))
        batch.pending[key] = received_at

    async def _normalized(
        self, batch: Batch, ev: Any, raw: dict[str, Any], result: NormalizeResult, started: float
    ) -> None:
        topic = ev.message.topic
        # which raw record these came from (the pf-source header made_from adds): the context
        # barrier of a workflow reading them waits for its own feed only up to there
        practice, feed = raw["practice_id"], raw["feed"]
        NORMALIZE_SECONDS.labels(feed).observe(time.perf_counter() - started)
        count_unmapped(feed, result.warnings)
        partition = catalog.partition_for(practice, self.p.partitions)
        handoffs = handoffs_for(result, practice, now_ms())
        types: dict[str, int] = {}  # counted per type, not per record: a labelled metric costs a lookup
        for rec in result.records:
            if rec.record_type == "WorkflowCommand":  # a step's command (the fax step's cmd.llm), same batch
                await batch.outbox.send(self.p.topics[f"cmd.{rec.value['kind']}"], rec.key, rec.value, partition)
                batch.counts.append((f"commands.{rec.value['kind']}", 1))
                continue
            rec.value.setdefault("source", {})["raw_topic"] = topic
            out = self.p.topics[catalog.NORMALIZED[rec.record_type]]
            # folded in this pass when the input's partition is the record's (a practice's partition
            # number on every topic), as the table partition is the input event's; else the context
            # agent folds it
            if rec.record_type in batch.fold_types and ev.message.partition == partition:
                await batch.outbox.send(out, rec.key, rec.value, partition, self._context_mark)
                batch.context_records.append((ev, rec.record_type, rec.value))
            else:
                await batch.outbox.send(out, rec.key, rec.value, partition)
            types[rec.record_type] = types.get(rec.record_type, 0) + 1
        for record_type, n in types.items():
            RECORDS.labels(record_type).inc(n)
            batch.counts.append((f"record.{record_type}", n))
        for seq, item in enumerate(handoffs, start=1):
            await batch.outbox.send(self.p.topics["handoff"], item.key, item.value, partition)
            HANDOFFS.labels(item.value["workflow"], item.value["queue"]).inc()
            batch.counts.append(("handoff", 1))
            await self._audit(
                batch,
                raw,
                seq,
                action="handoff_created",
                entity_type="HandoffItem",
                entity_id=item.value["item_id"],
                reason=f"{item.value['workflow']} rule applied to {result.message_type}",
                details={"queue": item.value["queue"], "priority": item.value["priority"]},
            )
        MESSAGES.labels(feed, "normalized").inc()
        batch.counts.append((f"{feed}.normalized", 1))
        await self._flow(batch, raw, "normalized", records=len(result.records), started=started)
        await self._audit(
            batch,
            raw,
            0,
            action="normalized",
            entity_type="RawMessage",
            entity_id=raw["message_id"],
            reason=f"{feed} {result.message_type} normalized",
            details={"records": str(len(result.records)), "warnings": str(len(result.warnings))},
        )

    async def _dead_letter(
        self, batch: Batch, raw: dict[str, Any], code: str, reason: str, msg: Any, started: float
    ) -> None:
        practice, feed = raw["practice_id"], raw["feed"]
        dl = dead_letter(
            practice,
            feed,
            "normalize",
            code,
            reason,
            raw["payload"],
            failed_at=now_ms(),
            message_id=raw["message_id"],
            source_topic=msg.topic,
            source_partition=msg.partition,
            source_offset=msg.offset,
            # what a redrive needs to rebuild the RawMessage (e.g. the portal event type); a
            # redrive starts its retries afresh, so the retry.* bookkeeping is left out
            details={"content_type": raw.get("content_type") or "", **_redrive_headers(raw)},
            **claimcheck.reference(raw),
        )
        partition = catalog.partition_for(practice, self.p.partitions)
        await batch.outbox.send(self.p.topics[f"dlq.{feed}"], f"{practice}/{raw['message_id']}", dl, partition)
        DEAD_LETTERS.labels(feed, code).inc()
        MESSAGES.labels(feed, "dead_lettered").inc()
        batch.counts.append((f"{feed}.dead_lettered", 1))
        await self._flow(batch, raw, "dead_lettered", started=started)
        await self._audit(
            batch,
            raw,
            0,
            action="dead_lettered",
            entity_type="RawMessage",
            entity_id=raw["message_id"],
            reason=code,
            outcome="rejected",
        )

    async def _audit(self, batch: Batch, raw: dict[str, Any], seq: int, **kw: Any) -> None:
        practice = raw["practice_id"]
        ev = audit_event(
            practice,
            actor="practiceflow.worker",
            at=now_ms(),
            source=f"{raw['feed']}/{raw['message_id']}@{raw['received_at']}",
            seq=seq,
            **kw,
        )
        await batch.outbox.send(
            self.p.topics["audit.in"], practice, ev, catalog.partition_for(practice, self.p.partitions)
        )

    async def _flow(
        self,
        batch: Batch,
        raw: dict[str, Any],
        stage: str,
        *,
        records: int = 0,
        started: float | None = None,
    ) -> None:
        practice = raw["practice_id"]
        await batch.outbox.send(
            self.p.topics["analytics.flow"],
            f"{practice}/{raw['message_id']}",
            {
                "practice_id": practice,
                "message_id": raw["message_id"],
                "feed": raw["feed"],
                "stage": stage,
                "record_type": None,
                "records": records,
                "latency_ms": (time.perf_counter() - started) * 1000 if started else None,
                "at": now_ms(),
            },
            catalog.partition_for(practice, self.p.partitions),
        )

    # ------------------------------------------------------------------ de-dup expiry
    def _forget_old_ids(self, ev: Any, received_at: int, batch: Batch) -> None:
        """Delete this partition's de-dup entries older than the retention (``ev``'s partition;
        each deletion is a tombstone in the table's changelog, through ``batch.sweeps``).

        Reads the table through its public iteration (``items()``), which the memory and
        RocksDB stores both serve; entries marked earlier in the same batch count too.
        """
        p = self.p
        partition = ev.message.partition
        if not sweep_due(p._last_sweep.get(partition), received_at, p.dedup_retention_ms):
            return
        p._last_sweep[partition] = received_at
        parts = p.partitions
        mine: dict[str, bool] = {}  # practice -> owned by this partition (murmur2 once each)

        def owned(key: str) -> bool:
            practice = key.split("/", 1)[0]
            hit = mine.get(practice)
            if hit is None:
                hit = mine[practice] = catalog.partition_for(practice, parts) == partition
            return hit

        cutoff = received_at - p.dedup_retention_ms
        old, legacy = sweep(list(p.seen.items()), cutoff, owned)
        for key in old:
            batch.sweeps.table_write(p.seen, ev, key, None)
        for key in legacy:
            batch.sweeps.table_write(p.seen, ev, key, received_at)
        early = [k for k, at in batch.pending.items() if at < cutoff and owned(k)]
        for key in early:
            del batch.pending[key]
        batch.marks[:] = [m for m in batch.marks if m[1] not in early]
        if old or early:
            batch.counts.append(("dedup.forgotten", len(old) + len(early)))
