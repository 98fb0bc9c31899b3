"""The Faust application: raw topics -> normalizers -> normalized, handoff, DLQ, audit.

ClickHouse is written by its own consumer (``streams/clickhouse_sink.py``), which the
runner and ``practiceflow worker`` start beside this app when a sink is given.

This module is the streaming shell around ``processors/``: it decodes, calls the
pure functions, and writes what they return. Every raw message ends in exactly
one of: normalized records (+ handoff items), or a dead letter. Nothing raises out
of an agent: an unexpected exception is a dead letter with ``internal_error``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from practiceflow.processors.audit import audit_event, chain
from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.deadletter import dead_letter, raw_header_details
from practiceflow.processors.dedup import control_key_for, is_redrive, sweep, sweep_due
from practiceflow.processors.dispatch import handoffs_for, normalize_raw
from practiceflow.settings import Settings
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import catalog, claimcheck
from practiceflow.streams.health import (
    DEAD_LETTERS,
    HANDOFFS,
    MESSAGES,
    NORMALIZE_SECONDS,
    RECORDS,
    ProgressSensor,
    count_unmapped,
    evaluate,
)
from practiceflow.streams.clock import now_ms
from practiceflow.streams.serde import AvroCodec, AvroSerde, registry_client

log = logging.getLogger("practiceflow.worker")


class Pipeline:
    """Owns one Faust app, its topics, tables and agents."""

    def __init__(
        self,
        cfg: Settings,
        bootstrap: str,
        registry_url: str,
        *,
        app_id: str | None = None,
        sink: ClickHouseSink | None = None,
        web_port: int | None = None,
        fax_handler: Any = None,
    ) -> None:
        self.cfg = cfg
        self.prefix = cfg.topic_prefix
        self.partitions = cfg.topic_partitions
        self.serde = AvroSerde(registry_client(registry_url))
        self.sink = sink  # run by streams/clickhouse_sink.py (its own consumer), started by the runner
        self.fax_handler = fax_handler
        self.sensor = ProgressSensor()
        self.app = faust.App(
            app_id or cfg.consumer_group,
            broker=f"kafka://{bootstrap}",
            store="memory://",
            topic_replication_factor=cfg.topic_replication,
            topic_partitions=cfg.topic_partitions,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            broker_commit_every=200,
            broker_commit_interval=1.0,
            web_enabled=web_port is not None,
            web_port=web_port or cfg.web_port,
            web_bind=cfg.web_host,
            web_host=cfg.web_host,
            table_cleanup_interval=60.0,
        )
        self.app.sensors.add(self.sensor)
        self.topics: dict[str, faust.TopicT] = {
            spec.suffix: self.app.topic(
                spec.name(self.prefix),
                value_serializer=AvroCodec(self.serde, f"{spec.name(self.prefix)}-value", spec.record_type),
                key_serializer="raw",
                partitions=spec.partitions or self.partitions,
                internal=False,
            )
            for spec in catalog.CATALOG
        }
        # message key -> received_at (ms) of its first copy; ids older than the retention
        # are forgotten (processors/dedup.py) so the table stays bounded
        self.seen = self.app.Table("seen-messages", default=int, partitions=self.partitions)
        self.dedup_retention_ms = int(cfg.dedup_retention_hours * 3_600_000)
        self._last_sweep: dict[int, int] = {}  # partition -> received_at of its last sweep
        self.audit_heads = self.app.Table("audit-heads", default=str, partitions=self.partitions)
        self.counts: dict[str, int] = {}
        self.source_topics: set[str] = set()
        self._register_agents()
        if web_port is not None:
            self._register_pages()

    # ------------------------------------------------------------------ helpers
    def register_schemas(self) -> dict[str, int]:
        """Register every topic's value schema up front so agents never block on HTTP."""
        return {
            spec.name(self.prefix): self.serde.register(f"{spec.name(self.prefix)}-value", spec.record_type)
            for spec in catalog.CATALOG
        }

    def handled(self, feed: str | None = None) -> int:
        """Raw messages this worker finished: normalized, dead-lettered or recognised as duplicates."""
        ends = (".normalized", ".dead_lettered", ".duplicate")
        return sum(v for k, v in self.counts.items() if k.endswith(ends) and (feed is None or k.startswith(f"{feed}.")))

    def sink_caught_up(self) -> bool:
        """Every record, handoff item and dead letter this worker produced has reached ClickHouse."""
        c = self.counts
        produced = (
            sum(v for k, v in c.items() if k.startswith("record."))
            + c.get("handoff", 0)
            + sum(v for k, v in c.items() if k.endswith(".dead_lettered"))
        )
        sunk = (
            c.get("clickhouse.records", 0) + c.get("clickhouse.handoff_items", 0) + c.get("clickhouse.dead_letters", 0)
        )
        return sunk >= produced

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    async def _send(self, suffix: str, key: str, value: dict[str, Any], practice_id: str) -> None:
        await self.topics[suffix].send(
            key=key.encode(),
            value=value,
            partition=catalog.partition_for(practice_id, self.partitions),
        )

    async def _audit(self, practice_id: str, **kw: Any) -> None:
        ev = audit_event(practice_id, at=now_ms(), **kw)
        await self._send("audit.in", practice_id, ev, practice_id)

    async def _flow(
        self,
        raw: dict[str, Any],
        message_id: str,
        stage: str,
        *,
        records: int = 0,
        record_type: str | None = None,
        started: float | None = None,
    ) -> None:
        await self._send(
            "analytics.flow",
            f"{raw['practice_id']}/{message_id}",
            {
                "practice_id": raw["practice_id"],
                "message_id": message_id,
                "feed": raw["feed"],
                "stage": stage,
                "record_type": record_type,
                "records": records,
                "latency_ms": (time.perf_counter() - started) * 1000 if started else None,
                "at": now_ms(),
            },
            raw["practice_id"],
        )

    # ------------------------------------------------------------------ processing
    async def normalize(self, raw: dict[str, Any]) -> NormalizeResult:
        raw = await claimcheck.resolve(raw, self.cfg)  # a large payload waits in the document store
        if raw["feed"] == "fax":
            if self.fax_handler is None:
                raise Rejected("fax_disabled", "this worker has no OCR handler configured")
            return await self.fax_handler(raw)
        return normalize_raw(raw, self.cfg.identity_policies)

    async def handle_raw(
        self, raw: dict[str, Any], *, topic: str | None = None, partition: int | None = None, offset: int | None = None
    ) -> str:
        """Process one RawMessage; returns the outcome (normalized/dead_lettered/duplicate)."""
        practice, feed = raw["practice_id"], raw["feed"]
        seen_key = f"{practice}/{feed}/{raw['message_id']}"
        if partition is not None:
            self._forget_old_ids(partition, raw["received_at"])
        # a redrive (``practiceflow dlq redrive``) re-sends a dead-lettered id on purpose
        if self.seen[seen_key] and not is_redrive(raw):
            MESSAGES.labels(feed, "duplicate").inc()
            self._count(f"{feed}.duplicate")
            await self._flow(raw, raw["message_id"], "duplicate")
            return "duplicate"
        started = time.perf_counter()
        try:
            result = await self.normalize(raw)
        except Rejected as rej:
            await self._dead_letter(raw, rej.reason_code, rej.reason, topic, partition, offset, started)
            self.seen[seen_key] = raw["received_at"]
            return "dead_lettered"
        except Exception as exc:  # noqa: BLE001 - nothing is lost: internal errors are dead letters too
            # The exception text can quote message content (PHI): plain logs get the type only;
            # the full text travels in the dead letter, which stays inside Kafka.
            log.error("normalizer crashed on %s message %s: %s", feed, raw["message_id"], type(exc).__name__)
            log.debug("normalizer crash details", exc_info=True)
            await self._dead_letter(
                raw, "internal_error", f"{type(exc).__name__}: {exc}", topic, partition, offset, started
            )
            self.seen[seen_key] = raw["received_at"]
            return "dead_lettered"
        NORMALIZE_SECONDS.labels(feed).observe(time.perf_counter() - started)
        count_unmapped(feed, result.warnings)
        ctl_key = control_key_for(practice, feed, result.control_key)
        if ctl_key is not None and self.seen[ctl_key] and not is_redrive(raw):
            await self._control_id_reused(raw, result)
        created = now_ms()
        handoffs = handoffs_for(result, practice, created)
        for rec in result.records:
            rec.value.setdefault("source", {})["raw_topic"] = topic
            await self._send(catalog.NORMALIZED[rec.record_type], rec.key, rec.value, practice)
            RECORDS.labels(rec.record_type).inc()
            self._count(f"record.{rec.record_type}")
        for item in handoffs:
            await self._send("handoff", item.key, item.value, practice)
            HANDOFFS.labels(item.value["workflow"], item.value["queue"]).inc()
            self._count("handoff")
            await self._audit(
                practice,
                actor="practiceflow.worker",
                action="handoff_created",
                entity_type="HandoffItem",
                entity_id=item.value["item_id"],
                reason=f"{item.value['workflow']} rule applied to {result.message_type}",
                details={"queue": item.value["queue"], "priority": item.value["priority"]},
            )
        MESSAGES.labels(feed, "normalized").inc()
        self._count(f"{feed}.normalized")
        await self._flow(raw, result.message_id, "normalized", records=len(result.records), started=started)
        await self._audit(
            practice,
            actor="practiceflow.worker",
            action="normalized",
            entity_type="RawMessage",
            entity_id=raw["message_id"],
            reason=f"{feed} {result.message_type} normalized",
            details={"records": str(len(result.records)), "warnings": str(len(result.warnings))},
        )
        self.seen[seen_key] = raw["received_at"]
        if ctl_key is not None:
            self.seen[ctl_key] = raw["received_at"]
        return "normalized"

    async def _control_id_reused(self, raw: dict[str, Any], result: NormalizeResult) -> None:
        """The sender's control id was seen before with different content: processed (it is a
        new message), and flagged so someone can check the interface engine."""
        feed = raw["feed"]
        result.warnings.append("control_id_reused: the sender's control id was seen before with different content")
        self._count(f"{feed}.control_id_reused")
        await self._audit(
            raw["practice_id"],
            actor="practiceflow.worker",
            action="flagged",
            entity_type="RawMessage",
            entity_id=raw["message_id"],
            reason="control_id_reused",
            details={"control_key": result.control_key or ""},
        )

    def _forget_old_ids(self, partition: int, received_at: int) -> None:
        """Delete this partition's de-dup entries older than the retention (inside the
        agent, so each deletion is a tombstone in the table's changelog)."""
        if not sweep_due(self._last_sweep.get(partition), received_at, self.dedup_retention_ms):
            return
        self._last_sweep[partition] = received_at
        entries = getattr(self.seen.data, "data", None)  # the memory store's dict
        if not isinstance(entries, dict):
            return
        parts = self.partitions
        mine: dict[str, bool] = {}  # practice -> owned by this partition (murmur2 once each)

        def owned(key: str) -> bool:
            practice = key.split("/", 1)[0]
            hit = mine.get(practice)
            if hit is None:
                hit = mine[practice] = catalog.partition_for(practice, parts) == partition
            return hit

        old, legacy = sweep(list(entries.items()), received_at - self.dedup_retention_ms, owned)
        for key in old:
            del self.seen[key]
        for key in legacy:
            self.seen[key] = received_at
        if old:
            self._count("dedup.forgotten", len(old))

    async def _dead_letter(
        self,
        raw: dict[str, Any],
        code: str,
        reason: str,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        started: float,
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
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            # what a redrive needs to rebuild the RawMessage (e.g. the portal event type)
            details={"content_type": raw.get("content_type") or "", **raw_header_details(raw)},
            **claimcheck.reference(raw),
        )
        await self._send(f"dlq.{feed}", f"{practice}/{raw['message_id']}", dl, practice)
        DEAD_LETTERS.labels(feed, code).inc()
        MESSAGES.labels(feed, "dead_lettered").inc()
        self._count(f"{feed}.dead_lettered")
        await self._flow(raw, raw["message_id"], "dead_lettered", started=started)
        await self._audit(
            practice,
            actor="practiceflow.worker",
            action="dead_lettered",
            entity_type="RawMessage",
            entity_id=raw["message_id"],
            reason=code,
            outcome="rejected",
        )

    # ------------------------------------------------------------------ agents
    def _register_agents(self) -> None:
        raw_topics = [self.topics[f"raw.{feed}"] for feed in catalog.FEEDS]
        app = self.app
        self.source_topics |= {t.get_topic_name() for t in raw_topics} | {self.topics["audit.in"].get_topic_name()}

        for raw_topic in raw_topics:

            async def normalize_agent(stream, _topic=raw_topic):
                async for event in stream.events():
                    msg = event.message
                    await self.handle_raw(event.value, topic=msg.topic, partition=msg.partition, offset=msg.offset)

            app.agent(raw_topic, name=f"normalize-{raw_topic.get_topic_name()}")(normalize_agent)

        @app.agent(self.topics["audit.in"], name="audit-chain")
        async def audit_chain(stream):
            async for ev in stream:
                prev = self.audit_heads[ev["practice_id"]] or None
                chained = chain(prev, ev)
                self.audit_heads[ev["practice_id"]] = chained["hash"]
                await self._send("audit", ev["practice_id"], chained, ev["practice_id"])
                self._count("audit.chained")

    def _register_pages(self) -> None:
        app = self.app

        def verdict():
            consumer = app.consumer
            # Only partitions an agent reads; changelog partitions are written, not read, while running.
            assigned = {tp for tp in consumer.assignment() if tp.topic in self.source_topics} if consumer else set()
            highwaters = {tp: consumer.highwater(tp) for tp in assigned} if consumer else {}
            return evaluate(self.sensor, assigned, highwaters, stall_seconds=self.cfg.stall_seconds)

        @app.page("/healthz")
        async def healthz(self_view, request):
            v = verdict()
            return web.json_response(
                {"live": v.live, "reasons": v.reasons, "lag": {k: n for k, n in v.lag.items() if n}},
                status=200 if v.live else 503,
            )

        @app.page("/readyz")
        async def readyz(self_view, request):
            v = verdict()
            return web.json_response({"ready": v.ready, "reasons": v.reasons}, status=200 if v.ready else 503)

        @app.page("/metrics")
        async def metrics(self_view, request):
            return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
