"""The ``cmd.llm`` executor: each LLM command is performed at most once, and always answered.

WHY commands: a workflow step is a pure function; calling a model is a side effect with
a price (GPU time) and a privacy weight (PHI leaves the worker's process). So a step
*asks* for a call by emitting a ``WorkflowCommand`` (``kind`` ``llm``, ``payload_type``
``llm.request``) whose ``command_id`` is an idempotency key, and this executor:

1. reads ``<prefix>.cmd.llm`` as its own consumer group (confluent-kafka, auto-commit off);
2. skips a command whose id already has a result on ``<prefix>.cmd.results`` - read to its
   end before every batch - so a replayed command (the workflow's log re-read, a
   redelivery after a crash, a resend) never reaches the model again;
3. runs the request (``sinks/llm/service.py``: guard, retries, breaker, validation, span
   check, embedded fallback), concurrently within a batch up to ``llm.concurrency``;
4. publishes one ``CommandResult`` per command and one ``AuditEvent`` per call (model,
   prompt version, input hash, latency, outcome; never text) and waits for the broker's
   acks=all;
5. only then commits the batch's offsets.

A crash before step 4 leaves the command uncommitted and without a result: it is run
again (the model may be called twice for it; the result is written once). A crash
between 4 and 5 re-reads the command and step 2 skips it. A command past its
``deadline_at`` is answered ``timeout`` without a call; an unreadable payload ``failed``.
A command whose bytes cannot be decoded at all is answered ``failed`` (``unreadable_command``)
from its message key (practice/command_id); when even the key is unusable, its bytes go to
``<prefix>.dlq.cmd`` with that reason. Either is confirmed before the offset is committed.
Results always carry ``needs_person`` and reasons, so nothing waits on a model forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.schema_registry.error import SchemaRegistryError
from prometheus_client import Counter
from pydantic import ValidationError

from practiceflow.processors.audit import audit_event
from practiceflow.processors.deadletter import dead_letter
from practiceflow.processors.llm.tasks import LLMRequest
from practiceflow.processors.llm.validate import LLMResult
from practiceflow.settings import Settings
from practiceflow.sinks.llm.service import CallRecord, LLMService
from practiceflow.streams import catalog
from practiceflow.streams.clock import now_ms
from practiceflow.streams.lifecycle import close_on_stop
from practiceflow.streams.metrics import COMMAND_RESULTS, init_command_outcomes
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, SerdeError

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.commands.llm")

COMMANDS = Counter("practiceflow_llm_commands_total", "cmd.llm commands by what became of them", ["outcome"])

KIND = "llm"
UNREADABLE = "unreadable_command"
UNKNOWN_PRACTICE = "unknown"  # a dead letter whose key named no practice


def command_key(practice_id: str, command_id: str) -> str:
    return f"{practice_id}/{command_id}"


class ResultsIndex:
    """Which commands already have a result: ``cmd.results`` read from the start, then tailed.

    Read with ``assign`` (no group): every executor instance sees every result, so a
    partition moving to another instance after a rebalance is still de-duplicated."""

    def __init__(self, bootstrap: str, topic: str, serde: AvroSerde, kind: str = KIND) -> None:
        self.topic = topic
        self.serde = serde
        self.kind = kind
        self.done: set[str] = set()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"practiceflow-results-index-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        self._assigned = False

    def _assign(self) -> None:
        meta = self.consumer.list_topics(self.topic, timeout=10)
        parts = meta.topics[self.topic].partitions
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        self._assigned = True

    def catch_up(self, timeout: float = 60.0) -> int:
        """Read to the current end of every partition; returns results newly seen.

        Raises TimeoutError when the end is not reached in time: the caller must not run
        commands against an index that may miss their results (it rewinds and tries again)."""
        if not self._assigned:
            self._assign()
        assignment = self.consumer.assignment()
        marks = {tp.partition: self._watermarks(tp) for tp in assignment}
        ends = {p: high for p, (low, high) in marks.items() if high > low}  # partitions with something to read
        new = 0
        deadline = time.monotonic() + timeout
        while True:
            positions = {tp.partition: tp.offset for tp in self.consumer.position(assignment)}
            if all(positions.get(p, -1) >= end for p, end in ends.items()):
                return new
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: results not read to their end within {timeout}s")
            for msg in self.consumer.consume(500, 0.5):
                if msg.error() is not None:
                    continue
                try:
                    value = self.serde.decode(msg.value() or b"", "CommandResult")
                except SerdeError:
                    continue
                if value.get("kind") == self.kind:
                    key = command_key(value["practice_id"], value["command_id"])
                    if key not in self.done:
                        self.done.add(key)
                        new += 1

    def _watermarks(self, tp: TopicPartition, attempts: int = 20) -> tuple[int, int]:
        """(low, high), waiting out a leader election (a new topic, a broker restart)."""
        for attempt in range(attempts):
            try:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=10)
                return low, high
            except KafkaException:  # not leader / leader not available / timed out: all pass on their own
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.consumer.close()


@dataclass
class BatchReport:
    handled: int = 0
    replayed: int = 0
    unreadable: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class LLMCommandExecutor:
    """Consumes ``cmd.llm``, answers on ``cmd.results``, audits on ``audit.in`` (module doc)."""

    def __init__(
        self,
        cfg: Settings,
        bootstrap: str,
        serde: AvroSerde,
        service: LLMService,
        *,
        group_id: str | None = None,
        producer: DurableProducer | None = None,
    ) -> None:
        self.cfg = cfg
        self.serde = serde
        self.service = service
        prefix = cfg.topic_prefix
        self.topic = catalog.BY_SUFFIX[f"cmd.{KIND}"].name(prefix)
        self.results_topic = catalog.BY_SUFFIX["cmd.results"].name(prefix)
        self.audit_topic = catalog.BY_SUFFIX["audit.in"].name(prefix)
        self.dead_letter_topic = catalog.BY_SUFFIX["dlq.cmd"].name(prefix)
        self.group_id = group_id or f"{cfg.consumer_group}-cmd-{KIND}"
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": self.group_id,
                "client.id": "practiceflow-cmd-llm",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        self.consumer.subscribe([self.topic])
        self.index = ResultsIndex(bootstrap, self.results_topic, serde)
        self._own_producer = producer is None
        self.producer = producer or DurableProducer(bootstrap, cfg.topic_partitions, client_id="practiceflow-cmd-llm")
        self.totals = BatchReport()
        init_command_outcomes(KIND)  # a failure rate of 0 reads 0, not "no data"

    def close(self) -> None:
        self.consumer.close()
        self.index.close()
        if self._own_producer:
            self.producer.close()

    async def run(self, stop: asyncio.Event, *, batch_size: int = 32, poll_seconds: float = 0.5) -> None:
        """Until ``stop`` is set. A batch whose outputs Kafka did not confirm is read again
        after a pause (transient: the broker, the registry); nothing is committed past it."""
        delay = 1.0
        while not stop.is_set():
            try:
                await self.run_once(batch_size=batch_size, poll_seconds=poll_seconds)
                delay = 1.0
            except Exception as exc:  # the batch was rewound; try again, slower each time
                log.warning("cmd.llm batch not finished (%s); again in %.0fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def run_once(self, *, batch_size: int = 32, poll_seconds: float = 0.5) -> BatchReport:
        """Poll one batch, answer it, commit it; on any failure rewind to the batch's start and raise."""
        msgs: list[Message] = await asyncio.to_thread(self.consumer.consume, batch_size, poll_seconds)
        msgs = [m for m in msgs if _usable(m)]
        if not msgs:
            return BatchReport()
        try:
            return await self._handle(msgs)
        except BaseException:
            await asyncio.to_thread(self._rewind, msgs)
            raise

    def _rewind(self, msgs: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for m in msgs:
            k = (m.topic() or "", m.partition() or 0)
            first[k] = min(first.get(k, m.offset() or 0), m.offset() or 0)
        for (t, p), o in first.items():
            try:
                self.consumer.seek(TopicPartition(t, p, o))
            except Exception as exc:  # partition revoked meanwhile: its new owner reads from the commit
                log.info("cmd.llm rewind of %s[%d] skipped: %s", t, p, type(exc).__name__)

    async def _handle(self, msgs: list[Message]) -> BatchReport:
        report = BatchReport()
        await asyncio.to_thread(self.index.catch_up)
        in_batch: set[str] = set()
        work = []
        dead: list[tuple[Message, str]] = []
        for msg in msgs:
            try:
                cmd = self.serde.decode(msg.value() or b"", "WorkflowCommand")
            except (SerdeError, SchemaRegistryError) as exc:
                if isinstance(exc, SchemaRegistryError) and exc.http_status_code != 404:
                    raise  # the registry is down or busy: transient, the batch is read again
                # a 404 is the registry's answer (no such schema id), as in streams/undecodable.py
                # not our wire format. The workflow still waits for an answer: when the key names
                # the command, it gets a ``failed`` result; otherwise the bytes go to dlq.cmd.
                log.error("cmd.llm %s:%s unreadable (%s)", msg.partition(), msg.offset(), type(exc).__name__)
                report.unreadable += 1
                COMMANDS.labels("unreadable").inc()
                ids = _ids_from_key(msg.key())
                if ids is None:
                    dead.append((msg, type(exc).__name__))
                    continue
                cmd = {"practice_id": ids[0], "command_id": ids[1], "unreadable": True}
            key = command_key(cmd["practice_id"], cmd["command_id"])
            if key in self.index.done or key in in_batch:
                report.replayed += 1
                COMMANDS.labels("replayed").inc()
                continue
            in_batch.add(key)
            work.append(cmd)
        answers = await asyncio.gather(*(self._answer(cmd) for cmd in work))
        sends = []
        for cmd, (result, audit) in zip(work, answers, strict=True):
            practice = cmd["practice_id"]
            key = command_key(practice, cmd["command_id"])
            sends.append(self._send(self.results_topic, key, "CommandResult", result, practice))
            sends.append(self._send(self.audit_topic, practice, "AuditEvent", audit, practice))
            report.outcomes[result["outcome"]] = report.outcomes.get(result["outcome"], 0) + 1
            COMMANDS.labels(result["outcome"]).inc()
            COMMAND_RESULTS.labels(KIND, result["outcome"]).inc()
        for msg, error in dead:
            sends.append(self._dead_letter(msg, error))
        await asyncio.gather(*sends)  # acks=all for every result and audit event, or raise (nothing committed)
        for cmd in work:
            self.index.done.add(command_key(cmd["practice_id"], cmd["command_id"]))
        await asyncio.to_thread(self._commit, msgs)
        report.handled = len(work)
        self._add(report)
        return report

    async def _dead_letter(self, msg: Message, error: str) -> None:
        """The original bytes of a command nobody can be told about (neither value nor key readable)."""
        value = msg.value() or b""
        raw_key = msg.key() or b""
        dl = dead_letter(
            UNKNOWN_PRACTICE,
            f"cmd.{KIND}",
            "process",
            UNREADABLE,
            f"cmd.{KIND} command could not be decoded ({error}) and its key is not practice/command_id",
            value,
            failed_at=now_ms(),
            message_id=hashlib.sha256(value).hexdigest(),
            source_topic=msg.topic(),
            source_partition=msg.partition(),
            source_offset=msg.offset(),
            details={"key_hex": raw_key.hex() if isinstance(raw_key, bytes) else str(raw_key).encode().hex()},
        )
        topic = self.dead_letter_topic
        await self._send(topic, f"{UNKNOWN_PRACTICE}/{dl['message_id']}", "DeadLetter", dl, UNKNOWN_PRACTICE)

    def _commit(self, msgs: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            k = (m.topic() or "", m.partition() or 0)
            last[k] = max(last.get(k, -1), m.offset() or 0)
        self.consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)

    async def _send(self, topic: str, key: str, record_type: str, value: dict[str, Any], practice: str) -> None:
        data = self.serde.encode(f"{topic}-value", record_type, value)
        await self.producer.send_async(topic, key, data, practice)

    async def _answer(self, cmd: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(CommandResult, AuditEvent) for one command that has none yet."""
        now = now_ms()
        deadline = cmd.get("deadline_at")
        if cmd.get("unreadable"):  # only its key could be read (see _handle)
            return self._result(cmd, "failed", UNREADABLE, None, None, now)
        if cmd.get("kind") != KIND:
            return self._result(cmd, "refused", "wrong_command_kind", None, None, now)
        if deadline is not None and now > deadline:
            return self._result(cmd, "timeout", "deadline_passed", None, None, now)
        try:
            if cmd.get("payload_type") != "llm.request":
                raise ValueError(f"payload_type {cmd.get('payload_type')!r}")
            request = LLMRequest.model_validate_json(cmd["payload"])
        except (ValidationError, ValueError):
            return self._result(cmd, "failed", "llm_bad_request", None, None, now)
        result, record = await self.service.run(request)
        if record.outcome == "refused":
            outcome = "refused"
        elif result.source == "none":
            outcome = "failed"
        else:
            outcome = "ok"
        return self._result(cmd, outcome, record.reason, result, record, now_ms())

    def _result(
        self,
        cmd: dict[str, Any],
        outcome: str,
        reason: str | None,
        result: LLMResult | None,
        record: CallRecord | None,
        at: int,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if result is None:
            result = LLMResult(task=_task_of(cmd), source="none", needs_person=True, reasons=[reason or outcome])
        value = {
            "practice_id": cmd["practice_id"],
            "command_id": cmd["command_id"],
            "kind": KIND,
            "workflow": cmd.get("workflow") or "",
            "outcome": outcome,
            "reason": reason,
            "payload_type": "llm.result",
            "payload": result.model_dump_json(),
            "attempts": record.attempts if record else 0,
            "latency_ms": record.latency_ms if record else None,
            "completed_at": at,
            # echoed, so the workflow reads its answer without looking the command up (the fax
            # workflow finds the document it asked about: processors/workflows/fax/assist.py)
            "params": dict(cmd.get("params") or {}),
        }
        details = {
            "task": result.task,
            "source": result.source,
            "call_outcome": record.outcome if record else outcome,
            "needs_person": str(result.needs_person).lower(),
            "workflow": cmd.get("workflow") or "",
        }
        if record is not None:
            details.update(
                {
                    "model": record.model or result.model or "",
                    "prompt": record.prompt or "",
                    "input_sha256": record.input_sha256 or "",
                    "latency_ms": f"{record.latency_ms:.1f}",
                    "attempts": str(record.attempts),
                }
            )
        if cmd.get("item_id"):
            details["item_id"] = cmd["item_id"]
        audit = audit_event(
            cmd["practice_id"],
            actor="practiceflow.llm",
            action="llm_call",
            entity_type="command",
            entity_id=cmd["command_id"],
            reason=reason or outcome,
            outcome=outcome,
            at=at,
            details=details,
            source=f"cmd.{KIND}/{cmd['command_id']}",
        )
        return value, audit

    def _add(self, report: BatchReport) -> None:
        t = self.totals
        t.handled += report.handled
        t.replayed += report.replayed
        t.unreadable += report.unreadable
        for k, v in report.outcomes.items():
            t.outcomes[k] = t.outcomes.get(k, 0) + v


def _task_of(cmd: dict[str, Any]) -> str:
    try:
        return str(json.loads(cmd.get("payload") or "{}").get("task") or "unknown")
    except (ValueError, AttributeError):
        return "unknown"


def _ids_from_key(key: bytes | str | None) -> tuple[str, str] | None:
    """(practice_id, command_id) from a ``practice/command_id`` message key, or None."""
    if key is None:
        return None
    try:
        text = key.decode("utf-8") if isinstance(key, bytes) else key
    except UnicodeDecodeError:
        return None
    practice, sep, command_id = text.partition("/")
    if not sep or not practice.strip() or not command_id.strip() or not text.isprintable():
        return None
    return practice, command_id


def _usable(msg: Message) -> bool:
    err = msg.error()
    if err is None:
        return True
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("cmd.llm consumer: %s", err.name())
    return False


def register_llm_executor(pipeline: Pipeline) -> LLMCommandExecutor:
    """Run the executor inside the worker, as a task of its Faust app (streams/workflows/fax_llm.py).

    Its own consumer group and plain Kafka clients (not a Faust agent): the same executor
    ``practiceflow llm executor`` runs as a process of its own. It starts with the app and
    stops with it (``streams/lifecycle.close_on_stop``); the clients are closed once the last
    poll has returned."""
    service = LLMService.from_settings(pipeline.cfg.llm)
    executor = LLMCommandExecutor(pipeline.cfg, pipeline.bootstrap, pipeline.serde, service)
    stop = asyncio.Event()
    finished = asyncio.Event()

    async def llm_executor() -> None:
        try:
            await executor.run(stop, batch_size=16, poll_seconds=0.5)
        finally:
            finished.set()

    async def close() -> None:  # when the app stops (streams/lifecycle.py), after its agents
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), 5.0)
        await asyncio.sleep(0.6)  # a poll still in its thread (0.5 s) returns before the consumer closes
        await asyncio.to_thread(executor.close)
        await service.aclose()

    pipeline.app.task(llm_executor)
    close_on_stop(pipeline.app, "cmd.llm executor", close)
    return executor
