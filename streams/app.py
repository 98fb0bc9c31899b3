"""The Faust application: raw topics -> normalizers -> normalized, handoff, DLQ, audit.

ClickHouse is written by its own consumer (``streams/clickhouse_sink.py``), which the
runner and ``practiceflow worker`` start beside this app when a sink is given.

This module wires the streaming shell around ``processors/``: the app, its topics and
tables, and the agents, each of which lives in its own module:

* ``normalize_agent.py`` — raw topics -> records, handoff items, dead letters, retries;
* ``retry.py`` — ``pf.retry.<feed>`` back into the same normalize path after a backoff;
* ``audit_chain.py`` — ``pf.audit.in`` -> the hash-chained ``pf.audit``;
* ``workflows/`` — the patient context tables and the workflows (``workflows/__init__.py`` MODULES);
* ``offsets.py`` — the commit rule those three share.

Every raw message ends in exactly one outcome: normalized records (+ handoff items) or
a dead letter, possibly after retries. Offsets of the input topics are committed by
the agents themselves, only after the outputs they caused are confirmed by the broker:
Faust's own ack-based commits are switched off for those topics (``acks=False``)
because they commit messages Faust skipped during a rebalance without processing
them — the root cause of issue 8's silent loss, explained in ``offsets.py``.

State: the de-dup and audit tables use Faust's RocksDB store (rocksdict) by default,
under ``<state_dir>/worker/<app id>``, so a restart reads its own disk and only the
changelog tail written since, instead of replaying whole changelogs (``table_store``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from pathlib import Path
from typing import Any

import faust
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.dispatch import normalize_raw
from practiceflow.processors.retry import RetryPolicy
from practiceflow.settings import Settings
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import catalog, claimcheck, fetching, metrics, offsets
from practiceflow.streams.audit_chain import AuditChainer, AuditTail
from practiceflow.streams.health import ProgressSensor, probe
from practiceflow.streams.lifecycle import freeze_startup_heap
from practiceflow.streams.normalize_agent import Normalizer
from practiceflow.streams.offsets import CommittedOffsets, Committer, Outbox
from practiceflow.streams.producer import OutputProducer
from practiceflow.streams.recovery import configure_faust
from practiceflow.streams.retry import register_retry_agents
from practiceflow.streams.serde import AvroCodec, AvroSerde, registry_client
from practiceflow.streams.undecodable import TolerantAvroCodec
from practiceflow.streams.workflows import register_all as register_workflows

log = logging.getLogger("practiceflow.worker")

# the topics the normalize agents read: an undecodable record there is a dead letter
_NORMALIZE_INPUTS = (catalog.Kind.RAW, catalog.Kind.RETRY)


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
        self.bootstrap = bootstrap
        self.serde = AvroSerde(registry_client(registry_url))
        self.sink = sink  # run by streams/clickhouse_sink.py (its own consumer), started by the runner
        self.fax_handler = fax_handler
        self.sensor = ProgressSensor()
        app_id = app_id or cfg.consumer_group
        datadir = Path(cfg.state_dir).resolve() / "worker" / app_id
        datadir.parent.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            app_id,
            broker=f"kafka://{bootstrap}",
            store=cfg.table_store,
            # Faust's default data folder is "<app id>-data" in the working directory (the
            # checkout); table state belongs with the rest of the worker's state
            datadir=str(datadir),
            table_standby_replicas=cfg.table_standby_replicas,
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
        configure_faust(self.app.conf, cfg)  # static membership + short session (streams/recovery.py)
        fetching.install(self.app, cfg.worker_fetch_wait_ms)  # Faust fetches wait 1.5 s (streams/fetching.py)
        self.app.sensors.add(self.sensor)
        # Input topics (raw, retry, audit.in, and the normalized, workflow and command
        # topics the workflow agents read) are committed by their agents, after their
        # outputs are confirmed (streams/offsets.py); acks=False keeps Faust's ack-based
        # commits, which commit past skipped messages, away from them.
        self.topics: dict[str, faust.TopicT] = {
            spec.suffix: self.app.topic(
                spec.name(self.prefix),
                # raw and retry topics: an undecodable record becomes a dead letter (streams/undecodable.py)
                value_serializer=(TolerantAvroCodec if spec.kind in _NORMALIZE_INPUTS else AvroCodec)(
                    self.serde, f"{spec.name(self.prefix)}-value", spec.record_type
                ),
                key_serializer="raw",
                partitions=spec.partitions or self.partitions,
                internal=False,
                acks=not catalog.is_agent_input(spec),
            )
            for spec in catalog.CATALOG
        }
        self.committed_offsets = CommittedOffsets(bootstrap, app_id)
        # batch outputs and table changelog writes go through librdkafka (streams/producer.py)
        self.producer = OutputProducer(bootstrap, client_id=f"{app_id}-outputs")
        self.retry_policy = RetryPolicy(cfg.retry_max_attempts, cfg.retry_backoff_ms, cfg.retry_backoff_max_ms)
        # message key -> received_at (ms) of the copy whose outcome was written; ids older
        # than the retention are forgotten (processors/dedup.py) so the table stays bounded
        # the RocksDB store through rocksdict (python-rocksdb is unmaintained)
        table_options = {"driver": "rocksdict"} if cfg.table_store.startswith("rocksdb") else None
        self.seen = self.app.Table(
            "seen-messages", default=int, partitions=self.partitions, options=dict(table_options or {}) or None
        )
        self.dedup_retention_ms = int(cfg.dedup_retention_hours * 3_600_000)
        self._last_sweep: dict[int, int] = {}  # partition -> received_at of its last sweep
        # practice -> head hash; id:<practice>/<event id> -> at; ckpt:<partition> -> pf.audit offset
        self.audit_heads = self.app.Table(
            "audit-heads", default=str, partitions=self.partitions, options=dict(table_options or {}) or None
        )
        self.counts: dict[str, int] = {}
        self.source_topics: set[str] = set()
        # raw topic name -> its normalize agent's Committer: the context barrier reads how far
        # a feed is normalized from its ledger, in process (streams/workflows/context.py)
        self.feed_committers: dict[str, Committer] = {}
        self._register_agents()
        if web_port is not None:
            self._register_pages()
        freeze_startup_heap()  # reference data loaded by the agents: out of the collector's scans

    # ------------------------------------------------------------------ helpers
    def register_schemas(self) -> dict[str, int]:
        """Register every topic's value schema up front so agents never block on HTTP."""
        return {
            spec.name(self.prefix): self.serde.register(f"{spec.name(self.prefix)}-value", spec.record_type)
            for spec in catalog.CATALOG
        }

    def outbox(self) -> Outbox:
        """A new Outbox on this worker's output producer (see ``streams/offsets.py``)."""
        return Outbox(self.producer)

    def handled(self, feed: str | None = None) -> int:
        """Raw messages this worker finished: normalized, dead-lettered or recognised as duplicates
        (counted once their outputs are confirmed; retries and crash replays are not outcomes)."""
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

    def close(self) -> None:
        """Release what outlives ``app.stop()``: the plain Kafka clients beside Faust's, and
        the RocksDB handles (Faust's store drops them without closing; a second Pipeline in
        the same process, a restart in a test or job, would find their locks still held)."""
        self.committed_offsets.close()
        self.producer.close()
        self.audit_tail.close()
        metrics.close(self)  # the scrape-time watermark client (streams/metrics.py)
        contexts = getattr(self, "contexts", None)  # streams/workflows/context.py, when registered
        if contexts is not None:
            contexts.close()
        # every table, the workflows' included (streams/workflows MODULES declare their own)
        for table in list(self.app.tables.values()):
            store = getattr(table, "_data", None)  # faust <0.16: the table's store, if it was opened
            for db in list(getattr(store, "_dbs", {}).values()):
                with contextlib.suppress(Exception):
                    db.close()
            if store is not None and hasattr(store, "_dbs"):
                store._dbs.clear()
        gc.collect()

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    # ------------------------------------------------------------------ processing
    async def normalize(self, raw: dict[str, Any]) -> NormalizeResult:
        raw = await claimcheck.resolve(raw, self.cfg)  # a large payload waits in the document store
        if raw["feed"] == "fax":
            if self.fax_handler is None:
                raise Rejected("fax_disabled", "this worker has no OCR handler configured")
            return await self.fax_handler(raw)
        return normalize_raw(raw, self.cfg.identity_policies)

    def batch_max(self, feed: str) -> int:
        """Messages per batch for a feed: faxes are OCRed one by one (seconds each), so
        their batches stay small (``fax_batch_max``); every other feed uses ``worker_batch_max``."""
        return self.cfg.fax_batch_max if feed == "fax" else self.cfg.worker_batch_max

    def batch_seconds(self, feed: str) -> float:
        """How long a feed's normalizer gathers a batch: the portal carries requests a person
        waits on (refills, intake), so it uses ``request_batch_seconds``; every other feed keeps
        ``worker_batch_seconds``, since shorter batches cost bulk throughput (bench/e2e_notes.md).
        The retry agents keep ``worker_batch_seconds`` for every feed: a retried message waits out
        its backoff anyway."""
        return self.cfg.request_batch_seconds if feed == "portal" else self.cfg.worker_batch_seconds

    def names_outputs(self, feed: str) -> bool:
        """Whether a feed's normalizer numbers its outputs (``pf-seq``), so the ClickHouse sink
        writes a replay's copies once (``Outbox.made_from``). Only where handling the same raw
        message again gives the same outputs: not faxes, whose OCR runs under a time limit and
        whose classifier may be unavailable on one pass, so a replay can carry a better version,
        which must replace the first in ClickHouse as it does in the compacted topics."""
        return feed != "fax"

    # ------------------------------------------------------------------ agents
    def _register_agents(self) -> None:
        app = self.app
        normalizer = Normalizer(self)
        for feed in catalog.FEEDS:
            topic = self.topics[f"raw.{feed}"]
            name = topic.get_topic_name()
            committer = self.feed_committers[name] = Committer(app, self.committed_offsets, name, topic.topics)
            size, within, named = self.batch_max(feed), self.batch_seconds(feed), self.names_outputs(feed)

            async def normalize_agent(stream, _committer=committer, _size=size, _within=within, _named=named):
                await normalizer.run(stream, _committer, batch_max=_size, batch_seconds=_within, name_outputs=_named)

            app.agent(topic, name=f"normalize-{name}")(normalize_agent)
            self.source_topics.add(name)
        register_retry_agents(self, normalizer)

        self.audit_tail = AuditTail(self.bootstrap, self.topics["audit"].get_topic_name(), self.serde.decode)
        chainer = AuditChainer(self, self.audit_tail)
        audit_committer = Committer(app, self.committed_offsets, "audit-chain", self.topics["audit.in"].topics)

        @app.agent(self.topics["audit.in"], name="audit-chain")
        async def audit_chain(stream):
            await chainer.run(stream, audit_committer)

        self.source_topics.add(self.topics["audit.in"].get_topic_name())
        register_workflows(self)  # streams/workflows/__init__.py MODULES: one module per workflow

        @app.timer(offsets.TAIL_PROBE_SECONDS, name="tail-probe")
        async def probe_tails() -> None:
            # messages fetched and never handed to an agent at a partition's tail (streams/offsets.py)
            for c in self.committed_offsets.committers:
                try:
                    await c.probe_tails()
                except Exception as exc:  # a partition revoked meanwhile, the broker away: next round
                    log.warning("tail probe of %s failed (%s)", c.name, type(exc).__name__)

    def _register_pages(self) -> None:
        app = self.app

        @app.page("/healthz")
        async def healthz(self_view, request):
            v = await probe(self)
            return web.json_response(
                {"live": v.live, "reasons": v.reasons, "lag": {k: n for k, n in v.lag.items() if n}},
                status=200 if v.live else 503,
            )

        @app.page("/readyz")
        async def readyz(self_view, request):
            v = await probe(self)
            return web.json_response({"ready": v.ready, "reasons": v.reasons}, status=200 if v.ready else 503)

        @app.page("/metrics")
        async def metrics_page(self_view, request):
            await metrics.refresh(self)  # lag, dead-letter depth, work items: read at scrape time
            return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
