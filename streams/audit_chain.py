"""The audit chain agent: ``pf.audit.in`` -> hash-chained ``pf.audit``, crash-safe.

A chain is broken by a missing link and "tampered" by a doubled one, so the agent must
write each event exactly once, in order, through crashes. It is idempotent by event
id (ids are unique per event and stable across replays, ``processors/audit.py``):

* One table, ``audit-heads``, holds per practice the head hash (key ``<practice>``, as
  before), per chained event its id (``id:<practice>/<event_id>`` -> ``at``, forgotten
  after the de-dup retention), and per partition a checkpoint (``ckpt:<partition>`` ->
  the ``pf.audit`` offset of the last event the table reflects). All three live in the
  same changelog partition, written in that order, so a checkpoint that survived a
  crash vouches for every id and head before it.
* A batch chains its events, waits until the broker confirms every chained event, then
  writes ids, heads and the checkpoint, waits for those, and only then commits its
  ``pf.audit.in`` offsets (``streams/offsets.py``).
* A crash after the chained events were written but before the table caught up is
  repaired when the partition is next assigned: ``pf.audit`` is read from the checkpoint
  to its end and the table brought up to date from what is really there, so re-delivered
  events are recognised by id and skipped, and the head is the last event written.
* A table without a checkpoint (a new worker group, such as each ``practiceflow day`` on a
  kept stack) takes the heads and ids the same way from the last events on ``pf.audit``, so
  the chain goes on where it is; that is no crash repair and is logged as such (info).
* The same holds for events the normalize agent emits twice (a message handled again
  after a crash): same id, skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import faust
from confluent_kafka import TopicPartition

from practiceflow.processors.audit import chain
from practiceflow.processors.dedup import sweep, sweep_due
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.offsets import Committer, Outbox, in_event
from practiceflow.streams.positions import position, watermarks
from practiceflow.streams.topic_reader import Span, read_spans, reader_consumer

if TYPE_CHECKING:
    from faust.types import TP

    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.worker.audit")

ID_PREFIX = "id:"
CKPT_PREFIX = "ckpt:"
RECONCILE_WITHOUT_CHECKPOINT = 10_000  # a table from before checkpoints: re-read this many events
READ_TIMEOUT = 120.0  # seconds to read a partition's unchained tail to its end (a loaded broker is slow)


class AuditTail:
    """Reads one partition of ``pf.audit`` from an offset to its end (a plain consumer, no group)."""

    def __init__(self, bootstrap: str, topic: str, decode: Any) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.decode = decode
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-tail")

    def _read(self, partition: int, after: int | None) -> list[tuple[int, dict[str, Any]]]:
        """Every chained event of ``partition`` after ``after``, to the end the topic has now.

        An end not reached in ``READ_TIMEOUT`` raises (``TimeoutError``: the batch fails and the
        worker restarts) rather than returning a part: a partial read would make the chain's head
        an event that is not the last one, and every new event would fork the chain from there."""
        c = reader_consumer(self.bootstrap, "audit-tail")
        try:
            low, high = watermarks(c, TopicPartition(self.topic, partition), timeout=30)
            start = after + 1 if after is not None else max(low, high - RECONCILE_WITHOUT_CHECKPOINT)
            span = Span(self.topic, partition, max(start, low), high)
            return [
                (position(m)[2], self.decode(m.value()))
                for m in read_spans(c, [span], READ_TIMEOUT)
                if m.value() is not None
            ]
        finally:
            c.close()

    async def read(self, partition: int, after: int | None) -> list[tuple[int, dict[str, Any]]]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, partition, after)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class AuditChainer:
    def __init__(self, pipeline: Pipeline, tail: AuditTail) -> None:
        self.p = pipeline
        self.table = pipeline.audit_heads
        self.tail = tail
        self._reconciled: set[TP] = set()
        self._generation: int | None = None
        self._last_sweep: dict[int, int] = {}

    async def run(self, stream: faust.StreamT, committer: Committer) -> None:
        await run_batches(self.p, stream, lambda events: self.process_batch(events, committer), "audit chain")

    def _get(self, key: str) -> str:
        return self.table[key] or ""

    async def _reconcile(self, ev: Any) -> None:
        """Bring the table up to what ``pf.audit`` really holds after its checkpoint."""
        partition = ev.message.partition
        with in_event(ev):
            ckpt = self._get(f"{CKPT_PREFIX}{partition}")
        found = await self.tail.read(partition, int(ckpt) if ckpt else None)
        if not found:
            return
        writes = self.p.outbox()
        for offset, chained in found:
            practice = chained["practice_id"]
            writes.table_write(self.table, ev, f"{ID_PREFIX}{practice}/{chained['event_id']}", str(chained["at"]))
            writes.table_write(self.table, ev, practice, chained["hash"])
            writes.table_write(self.table, ev, f"{CKPT_PREFIX}{partition}", str(offset))
        await writes.confirm()
        if ckpt:  # the table vouched for everything up to its checkpoint: the rest was written before a crash
            self.p._count("audit.recovered", len(found))
            log.warning(
                "audit chain: partition %d caught up with %d events written before a crash", partition, len(found)
            )
            return
        # No checkpoint: this group's table is new - a new worker group (every `practiceflow day` runs
        # one on a kept stack), or one stopped before its first checkpoint - and the chain it continues
        # is the one already on pf.audit. Not a crash repair (issue 8: a second day warned of one).
        self.p._count("audit.continued", len(found))
        log.info(
            "audit chain: partition %d had no checkpoint in this worker group's table; continued the chain "
            "after the last %d events on pf.audit",
            partition,
            len(found),
        )

    async def process_batch(self, events: list[Any], committer: Committer) -> None:
        admitted = await committer.admit(events)
        if committer.generation != self._generation:
            self._generation = committer.generation
            self._reconciled.clear()
        if not admitted:
            return
        for ev in admitted:
            tp = ev.message.tp
            if tp not in self._reconciled:
                await self._reconcile(ev)
                self._reconciled.add(tp)
        outbox = self.p.outbox()
        # the id sweep's tombstones: the store changes at once, the changelog through the same
        # producer as the ids and heads below (order kept per changelog partition), confirmed with them
        sweeps = self.p.outbox()
        heads: dict[str, str] = {}
        chained_ids: set[str] = set()
        plan: list[tuple[Any, dict[str, Any]]] = []
        skipped = 0
        for ev in admitted:
            event: dict[str, Any] = ev.value
            practice = event["practice_id"]
            id_key = f"{ID_PREFIX}{practice}/{event['event_id']}"
            with in_event(ev):
                self._forget_old_ids(ev, event["at"], sweeps)
                if id_key in chained_ids or self._get(id_key):
                    skipped += 1
                    continue
                prev = heads.get(practice) or self._get(practice) or None
            linked = chain(prev, event)
            heads[practice] = linked["hash"]
            chained_ids.add(id_key)
            await outbox.send(
                self.p.topics["audit"], practice, linked, catalog.partition_for(practice, self.p.partitions)
            )
            plan.append((ev, linked))
        written = await outbox.confirm()
        # ids, then each practice's last head, then each partition's last checkpoint: in this
        # order within a changelog partition, a surviving checkpoint vouches for the rest
        writes = self.p.outbox()
        last_head: dict[str, tuple[Any, str]] = {}
        last_ckpt: dict[int, tuple[Any, int]] = {}
        for (ev, linked), meta in zip(plan, written, strict=True):
            practice = linked["practice_id"]
            writes.table_write(self.table, ev, f"{ID_PREFIX}{practice}/{linked['event_id']}", str(linked["at"]))
            last_head[practice] = (ev, linked["hash"])
            last_ckpt[ev.message.partition] = (ev, meta.offset)
        for practice, (ev, head) in last_head.items():
            writes.table_write(self.table, ev, practice, head)
        for partition, (ev, offset) in last_ckpt.items():
            writes.table_write(self.table, ev, f"{CKPT_PREFIX}{partition}", str(offset))
        await sweeps.confirm()  # sent before the ids: confirmed first, so the persisted offset only moves on
        await writes.confirm()
        if plan:
            self.p._count("audit.chained", len(plan))
        if skipped:
            self.p._count("audit.already_chained", skipped)
        await committer.commit(admitted)

    def _forget_old_ids(self, ev: Any, at: int, sweeps: Outbox) -> None:
        """Chained ids are remembered for the de-dup retention, then deleted (tombstones, queued
        in ``sweeps``) from ``ev``'s partition."""
        partition = ev.message.partition
        retention = self.p.dedup_retention_ms
        if not sweep_due(self._last_sweep.get(partition), at, retention):
            return
        self._last_sweep[partition] = at
        parts = self.p.partitions

        def owned(key: str) -> bool:
            return catalog.partition_for(key[len(ID_PREFIX) :].split("/", 1)[0], parts) == partition

        entries = []
        for key, value in self.table.items():
            if key.startswith(ID_PREFIX):
                with contextlib.suppress(ValueError):
                    entries.append((key, int(value)))
        old, _legacy = sweep(entries, at - retention, owned)
        for key in old:
            sweeps.table_write(self.table, ev, key, None)
