"""The eligibility executor: ``cmd.eligibility`` -> a clearinghouse (270 -> 271) -> ``cmd.results``.

Each command id (the idempotency key) is sent at most once, ever:

1. The batch's new commands are first marked ``sending`` in the ``eligibility-sent`` table,
   and the changelog writes are confirmed, *before* any 270 leaves.
2. The checks run concurrently (retries, timeouts and the per-payer rate limit are
   :class:`~practiceflow.sinks.clearinghouse.base.EligibilityClient`'s), each bounded by
   the command's ``deadline_at``.
3. Their ``CommandResult`` s are sent and confirmed; then the table records each result
   (``done``), and only then are the input offsets committed.

A command seen again (a replayed batch, the workflow re-emitting it) is answered from the
table: a ``done`` result is published again unchanged. A ``sending`` mark without a result
means the worker died after step 1 — either while the 270 was out, or after its result was
published and before the table recorded it. So ``cmd.results`` is looked up first (read to
its end, as the LLM executor's ``ResultsIndex`` does): a result found there is the answer
(the same one again, never a contradicting second one); only when there is none is the
command answered ``failed`` with reason ``interrupted`` — the 270 is *not* sent again and
the workflow makes that a "could not determine" for a person to re-check. Either answer is
then recorded ``done``, so a later replay repeats it. Nothing is dropped: every command
ends in a result.

The clearinghouse is chosen by settings (``sinks/clearinghouse``). The executor starts the
local clearinghouse simulator process only when the settings point at it
(:func:`points_at_local_simulator`) and nothing listens on ``clearinghouse_sim_port``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from confluent_kafka import KafkaException

from practiceflow.processors.workflows.commands import COMMAND_KINDS
from practiceflow.sinks.clearinghouse import EligibilityClient, EligibilityRequest, client_from_settings, payload_id_for
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.clock import now_ms
from practiceflow.streams.lifecycle import close_on_stop
from practiceflow.streams.metrics import COMMAND_RESULTS, init_command_outcomes
from practiceflow.streams.offsets import Committer, Outbox, in_event
from practiceflow.streams.topic_reader import read_spans, reader_consumer, spans_to_end

if TYPE_CHECKING:
    from practiceflow.schemas.typed import CommandResultDict
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.eligibility")
assert "eligibility" in COMMAND_KINDS  # noqa: S101 - the catalog must declare cmd.eligibility

INTERRUPTED = "interrupted: the 270 was handed to the clearinghouse before a restart and is not sent twice; re-check"

# keys ("practice/command_id") -> the eligibility CommandResult already on cmd.results for each found
ResultsLookup = Callable[[set[str]], Awaitable[dict[str, dict[str, Any]]]]


def published_results(
    bootstrap: str, topic: str, decode: Callable[[bytes, str], dict[str, Any]], partitions: set[int], keys: set[str]
) -> dict[str, dict[str, Any]]:
    """The eligibility results for ``keys`` on ``topic`` (``cmd.results``), read from the start
    of ``partitions`` to their current end (blocking; only after a crash left ``sending`` marks).

    Raises TimeoutError when the end is not reached: the caller must not answer "interrupted"
    from a partial read (the batch fails and is read again)."""
    consumer = reader_consumer(bootstrap, "eligibility-lookup")
    found: dict[str, dict[str, Any]] = {}
    try:
        spans = spans_to_end(consumer, topic, 10, partitions=partitions)
        for msg in read_spans(consumer, spans, 60):
            try:
                value = decode(msg.value() or b"", "CommandResult")
            except Exception:  # noqa: S112 - not a CommandResult: not ours to answer from
                continue
            key = f"{value.get('practice_id')}/{value.get('command_id')}"
            if value.get("kind") == "eligibility" and key in keys:
                found[key] = value
    except TimeoutError as exc:
        raise TimeoutError(f"{topic}: not read to its end within 60s") from exc
    except KafkaException as exc:
        raise TimeoutError(f"{topic}: lookup failed ({exc})") from exc
    finally:
        consumer.close()
    return found


def points_at_local_simulator(cfg: Any) -> bool:
    """Whether the settings send eligibility checks to the local simulator, the only case in
    which the worker may start it: ``clearinghouse = "simulator"`` and no ``clearinghouse_url``
    (or one on this machine's loopback at ``clearinghouse_sim_port``). A real clearinghouse
    (``core`` with its URL, ``folder``) or no clearinghouse (``none``) never starts it."""
    if cfg.clearinghouse != "simulator":
        return False
    if cfg.clearinghouse_url is None:
        return True
    from urllib.parse import urlsplit

    url = urlsplit(cfg.clearinghouse_url)
    return url.hostname in ("127.0.0.1", "localhost", "::1") and url.port == cfg.clearinghouse_sim_port


class EligibilityExecutor:
    def __init__(
        self, pipeline: Pipeline, client: EligibilityClient | None = None, lookup: ResultsLookup | None = None
    ) -> None:
        self.p = pipeline
        self._client = client
        self._lookup = lookup
        self._sim: Any = None
        self._beat: asyncio.Task[None] | None = None
        opts = {"driver": "rocksdict"} if pipeline.cfg.table_store.startswith("rocksdb") else None
        # command id -> {"state": "sending"|"done", "result": CommandResult | None}
        self.sent = pipeline.app.Table("eligibility-sent", default=None, partitions=pipeline.partitions, options=opts)

    # ------------------------------------------------------------------ connector
    async def client(self) -> EligibilityClient:
        if self._client is None:
            cfg = self.p.cfg
            if points_at_local_simulator(cfg):
                await asyncio.to_thread(self._ensure_simulator)
            self._client = client_from_settings(cfg)
        return self._client

    def _ensure_simulator(self) -> None:
        from practiceflow.localstack.clearinghouse import SimulatorProcess
        from practiceflow.localstack.ports import wait_for_port

        port = self.p.cfg.clearinghouse_sim_port
        if wait_for_port("127.0.0.1", port, time.monotonic() + 0.3):
            return  # one is running (the day job's, another worker's)
        self._sim = SimulatorProcess(port).start()
        atexit.register(self._sim.stop)
        log.info("started the clearinghouse simulator on port %s (settings: clearinghouse = simulator)", port)

    async def close(self) -> None:
        """Close the connector's HTTP session (the app's stop awaits this: streams/lifecycle.py)."""
        if self._client is not None:
            await self._client.close()

    async def published(self, keys: set[str]) -> dict[str, dict[str, Any]]:
        """Results already on ``cmd.results`` for these command keys (see :func:`published_results`)."""
        if self._lookup is not None:
            return await self._lookup(keys)
        parts = {catalog.partition_for(k.split("/", 1)[0], self.p.partitions) for k in keys}
        topic = self.p.topics["cmd.results"].get_topic_name()
        return await asyncio.to_thread(published_results, self.p.bootstrap, topic, self.p.serde.decode, parts, keys)

    # ------------------------------------------------------------------ batches
    async def run(self, stream: Any, committer: Committer) -> None:
        await run_batches(self.p, stream, lambda events: self.process_batch(events, committer), "eligibility")

    def _result(self, cmd: dict[str, Any], outcome: str, **kw: Any) -> CommandResultDict:
        return {
            "practice_id": cmd["practice_id"],
            "command_id": cmd["command_id"],
            "kind": "eligibility",
            "workflow": cmd["workflow"],
            "outcome": outcome,
            "reason": kw.get("reason"),
            "payload_type": "x12.271" if kw.get("payload") else None,
            "payload": kw.get("payload", ""),
            "attempts": kw.get("attempts", 0),
            "latency_ms": kw.get("latency_ms"),
            "completed_at": now_ms(),
            "params": dict(cmd.get("params") or {}),
        }

    async def _mark(self, marks: list[tuple[Any, str, dict[str, Any]]]) -> None:
        writes = self.p.outbox()
        for ev, key, value in marks:
            writes.table_write(self.sent, ev, key, value)
        await writes.confirm()

    async def process_batch(self, events: list[Any], committer: Committer) -> None:
        admitted = await committer.admit(events)
        if not admitted:
            return
        outbox = Outbox()
        answers: list[tuple[Any, dict[str, Any], CommandResultDict]] = []
        to_send: list[tuple[Any, dict[str, Any]]] = []
        seen_now: set[str] = set()
        interrupted: list[tuple[Any, dict[str, Any]]] = []  # marked sending, no result recorded
        for ev in admitted:
            cmd = ev.value
            key = f"{cmd['practice_id']}/{cmd['command_id']}"
            with in_event(ev):
                prior = self.sent.get(key)
            if prior is not None or key in seen_now:
                outbox.after(self.p._count, "eligibility.deduplicated")
                if prior is not None and prior.get("state") == "done" and prior.get("result"):
                    answers.append((ev, cmd, prior["result"]))  # answered before: the same answer again
                elif prior is not None and key not in seen_now:
                    interrupted.append((ev, cmd))
                    seen_now.add(key)
                continue
            seen_now.add(key)
            to_send.append((ev, cmd))
        if interrupted:
            # the result may be on cmd.results already (a crash after it was confirmed, before
            # the table recorded it): that result is the answer, never a contradicting second one
            found = await self.published({f"{c['practice_id']}/{c['command_id']}" for _, c in interrupted})
            for ev, cmd in interrupted:
                published = found.get(f"{cmd['practice_id']}/{cmd['command_id']}")
                if published is not None:
                    outbox.after(self.p._count, "eligibility.recovered")
                    answers.append((ev, cmd, cast("CommandResultDict", published)))
                else:
                    answers.append((ev, cmd, self._result(cmd, "failed", reason=INTERRUPTED)))
        if to_send:
            await self._mark([(ev, f"{c['practice_id']}/{c['command_id']}", {"state": "sending"}) for ev, c in to_send])
            client = await self.client()
            beat_tps = {ev.message.tp for ev, _ in to_send}
            self._beat = asyncio.create_task(self._heartbeat(beat_tps))
            try:
                results = await asyncio.gather(*(self._check(client, cmd) for _, cmd in to_send))
            finally:
                self._beat.cancel()
            for (ev, cmd), res in zip(to_send, results, strict=True):
                answers.append((ev, cmd, res))
        for _ev, cmd, res in answers:
            partition = catalog.partition_for(cmd["practice_id"], self.p.partitions)
            await outbox.send(
                self.p.topics["cmd.results"], f"{cmd['practice_id']}/{cmd['command_id']}", dict(res), partition
            )
        await outbox.confirm()
        sent_now = {id(ev) for ev, _ in to_send} | {id(ev) for ev, _ in interrupted}  # recorded done below
        done = [
            (ev, f"{cmd['practice_id']}/{cmd['command_id']}", {"state": "done", "result": dict(res)})
            for ev, cmd, res in answers
            if id(ev) in sent_now
        ]
        if done:
            await self._mark(done)
        for _ev, _cmd, res in answers:
            self.p._count(f"eligibility.{res['outcome']}")
            COMMAND_RESULTS.labels("eligibility", res["outcome"]).inc()
        await committer.commit(admitted)

    async def _heartbeat(self, tps: set[Any]) -> None:
        """Report progress while checks wait on the clearinghouse (latency, backoff, the rate
        limit): a batch of slow checks is work, not a stall, for ``/healthz``."""
        every = max(0.5, self.p.cfg.stall_seconds / 4)
        while True:
            for tp in tps:
                self.p.sensor.touch(tp)
            await asyncio.sleep(every)

    async def _check(self, client: EligibilityClient, cmd: dict[str, Any]) -> CommandResultDict:
        if self.p.cfg.clearinghouse == "none":
            return self._result(
                cmd, "refused", reason="no clearinghouse configured (settings: clearinghouse = none); nothing sent"
            )
        if cmd.get("payload_type") != "x12.270":
            return self._result(cmd, "refused", reason=f"payload_type {cmd.get('payload_type')!r} is not x12.270")
        deadline = cmd.get("deadline_at")
        budget = (deadline - now_ms()) / 1000 if deadline else self.p.cfg.eligibility_deadline_s
        if budget <= 0:
            return self._result(cmd, "timeout", reason="the command's deadline passed before it could be sent")
        req = EligibilityRequest(
            command_id=cmd["command_id"],
            practice_id=cmd["practice_id"],
            payer_id=(cmd.get("params") or {}).get("payer_id", ""),
            x12_270=cmd["payload"].encode(),
            payload_id=payload_id_for(cmd["command_id"]),
        )
        answer = await client.check(req, budget)
        return self._result(
            cmd,
            answer.outcome,
            reason=answer.reason,
            payload=answer.x12_271.decode("utf-8", "replace"),
            attempts=answer.attempts,
            latency_ms=round(answer.latency_ms, 1),
        )


def register_eligibility_executor(pipeline: Pipeline, client: EligibilityClient | None = None) -> EligibilityExecutor:
    """The executor agent on ``cmd.eligibility`` (committed by the agent, like the raw topics)."""
    executor = EligibilityExecutor(pipeline, client)
    init_command_outcomes("eligibility")  # a failure rate of 0 reads 0, not "no data"
    topic = pipeline.topics["cmd.eligibility"]
    committer = Committer(pipeline.app, pipeline.committed_offsets, "eligibility-executor", topic.topics)

    async def eligibility_executor(stream: Any) -> None:
        await executor.run(stream, committer)

    pipeline.app.agent(topic, name="eligibility-executor")(eligibility_executor)
    close_on_stop(pipeline.app, "eligibility connector", executor.close)
    pipeline.source_topics.add(topic.get_topic_name())
    return executor
