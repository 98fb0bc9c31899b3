"""What every ingest gateway shares: durable write, dead letters, audit, metrics, back-pressure.

A gateway's promise to its sender: "accepted" means the raw bytes are in Kafka with
acks=all. Anything it cannot accept is dead-lettered with the original bytes and a
precise reason, and the sender is told why. Back-pressure: at most
``max_in_flight`` writes (and ``max_in_flight_bytes``) are pending at once; past
that the gateway stops reading from the sender (MLLP) or answers 503 (HTTP) rather
than let memory grow without bound.

Large payloads (over ``claim_check_bytes``) are claim-checked here, once for every
gateway: the bytes go to the document store and the raw record carries their
reference (``streams/claimcheck.py``), so nothing the gateways accept is refused by
the broker's record size limit. A record the broker still refuses as too large is a
permanent refusal (dead letter + "never resend"), never "retry later": resending the
same bytes could only fail again and, on MLLP, would stall the sender's whole feed.
A dead letter keeps at most ``claim_check_bytes`` of the original (its head) and,
when the document store is there, a reference to the whole original.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from practiceflow.processors.audit import audit_event
from practiceflow.processors.deadletter import dead_letter
from practiceflow.sinks.docstore import DocumentStore, DocumentStoreUnavailable
from practiceflow.streams import catalog
from practiceflow.streams.claimcheck import check_in
from practiceflow.streams.clock import now_ms
from practiceflow.streams.gateways.limits import ByteBudget
from practiceflow.streams.metrics import PRACTICE_INPUTS, practice_label
from practiceflow.streams.producer import DeliveryFailed, DurableProducer
from practiceflow.streams.serde import AvroSerde

log = logging.getLogger("practiceflow.gateway")

ACCEPTED = Counter("practiceflow_gateway_accepted_total", "Inputs written to a raw topic", ["gateway", "feed"])
REJECTED = Counter(
    "practiceflow_gateway_rejected_total", "Inputs dead-lettered at the gateway", ["gateway", "feed", "reason_code"]
)
UNAVAILABLE = Counter(
    "practiceflow_gateway_unavailable_total", "Inputs refused because Kafka did not confirm", ["gateway", "feed"]
)
LATENCY = Histogram(
    "practiceflow_gateway_seconds",
    "Receive-to-durable-write time",
    ["gateway", "feed"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
IN_FLIGHT = Gauge("practiceflow_gateway_in_flight", "Writes pending acknowledgement", ["gateway"])

CONTENT_TYPES = {
    "hl7v2": "application/hl7-v2",
    "x12": "application/edi-x12",
    "fhir": "application/fhir+json",
    "portal": "application/json",
    "fax": "application/octet-stream",
}


class Unavailable(RuntimeError):
    """Kafka did not confirm the write; the sender should retry (nothing was lost)."""


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    message_id: str
    reason_code: str | None = None
    reason: str | None = None
    duplicate: bool = False


class GatewayCore:
    """Shared by the MLLP, HTTP and folder gateways of one process."""

    def __init__(
        self,
        producer: DurableProducer,
        serde: AvroSerde,
        prefix: str,
        *,
        name: str,
        max_in_flight: int = 256,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
        recent_ids: int = 10000,
        docstore: DocumentStore | None = None,
        claim_check_bytes: int = 512 * 1024,
    ) -> None:
        """``docstore``: where payloads over ``claim_check_bytes`` go (claim check); without
        one they are written inline and the broker's size limit applies."""
        self.producer = producer
        self.serde = serde
        self.prefix = prefix
        self.name = name
        self._slots = asyncio.Semaphore(max_in_flight)
        self.max_in_flight_bytes = max_in_flight_bytes
        self._bytes = 0
        self._bytes_free = asyncio.Condition()
        self._waiting = 0
        # bytes held in read buffers (MLLP frames, HTTP bodies) before they become writes
        self.read_budget = ByteBudget(max_in_flight_bytes)
        self._recent: dict[str, None] = {}
        self._recent_max = recent_ids
        self.stats: dict[str, int] = {}
        self.docstore = docstore
        self.claim_check_bytes = claim_check_bytes

    def _stat(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def saturated(self) -> bool:
        """True while a write is waiting for a slot or for bytes: new input would only queue behind it."""
        return self._slots.locked() or self._bytes >= self.max_in_flight_bytes or self._waiting > 0

    async def _reserve(self, size: int) -> None:
        self._waiting += 1
        try:
            await self._slots.acquire()
            async with self._bytes_free:
                await self._bytes_free.wait_for(
                    lambda: self._bytes == 0 or self._bytes + size <= self.max_in_flight_bytes
                )
                self._bytes += size
        finally:
            self._waiting -= 1
        IN_FLIGHT.labels(self.name).inc()

    async def _release(self, size: int) -> None:
        self._slots.release()
        async with self._bytes_free:
            self._bytes -= size
            self._bytes_free.notify_all()
        IN_FLIGHT.labels(self.name).dec()

    async def _write(self, suffix: str, key: str, value: dict[str, Any], practice_id: str) -> None:
        topic = catalog.BY_SUFFIX[suffix].name(self.prefix)
        data = self.serde.encode(f"{topic}-value", catalog.BY_SUFFIX[suffix].record_type, value)
        await self.producer.send_async(topic, key, data, practice_id)

    async def accept(
        self,
        feed: str,
        practice_id: str,
        payload: bytes,
        message_id: str,
        *,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
        stored: tuple[str, str] | None = None,
    ) -> Outcome:
        """Write the raw bytes durably; raises Unavailable when Kafka (or, for a claim-checked
        payload, the document store) does not confirm. A record the broker refuses for its size
        is dead-lettered and returned as a refusal (``accepted=False``, ``too_large``).

        ``stored``: (sha256, uri) when the caller already put these bytes in the document store.
        """
        started = time.perf_counter()
        recent_key = f"{practice_id}/{feed}/{message_id}"
        duplicate = recent_key in self._recent
        refused: DeliveryFailed | None = None
        checked: dict[str, Any] = {}
        await self._reserve(len(payload))
        try:
            raw = {
                "practice_id": practice_id,
                "feed": feed,
                "message_id": message_id,
                "received_at": now_ms(),
                "content_type": content_type or CONTENT_TYPES[feed],
                "payload": payload,
                "headers": dict(headers or {}),
            }
            if self.docstore is not None and len(payload) > self.claim_check_bytes:
                # off the event loop: S3 is a network round trip
                checked = await asyncio.to_thread(check_in, self.docstore, practice_id, payload, stored)
                raw.update(checked, payload=b"")
            # A resend is still written: the worker's de-duplication table recognises it, and
            # writing it keeps the sender's view ("accepted") and Kafka's in step.
            await self._write(f"raw.{feed}", f"{practice_id}/{message_id}", raw, practice_id)
        except DocumentStoreUnavailable as exc:
            UNAVAILABLE.labels(self.name, feed).inc()
            self._stat(f"{feed}.unavailable")
            raise Unavailable(f"document store: {exc}") from exc
        except DeliveryFailed as exc:
            if not exc.too_large:
                UNAVAILABLE.labels(self.name, feed).inc()
                self._stat(f"{feed}.unavailable")
                raise Unavailable(str(exc)) from exc
            refused = exc
        finally:
            await self._release(len(payload))
        if refused is not None:
            return await self.reject(
                feed,
                practice_id,
                payload,
                "too_large",
                f"record of {len(payload)} bytes refused by the broker as too large ({refused.error.name()}); "
                "resending it cannot succeed",
                message_id=message_id,
            )
        self._remember(recent_key)
        ACCEPTED.labels(self.name, feed).inc()
        PRACTICE_INPUTS.labels(practice_label(practice_id), feed, "accepted").inc()
        LATENCY.labels(self.name, feed).observe(time.perf_counter() - started)
        self._stat(f"{feed}.accepted")
        if duplicate:
            self._stat(f"{feed}.resent")
        if checked:
            self._stat(f"{feed}.claim_checked")
        await self._audit(
            practice_id,
            "accepted",
            feed,
            message_id,
            "received and written durably",
            {"bytes": str(len(payload)), "resend": str(duplicate).lower(), "claim_check": str(bool(checked)).lower()},
        )
        return Outcome(True, message_id, duplicate=duplicate)

    async def reject(
        self,
        feed: str,
        practice_id: str,
        payload: bytes,
        reason_code: str,
        reason: str,
        *,
        message_id: str | None = None,
        details: dict[str, str] | None = None,
    ) -> Outcome:
        """Dead-letter what cannot be accepted, with the original bytes.

        Raises Unavailable when the dead letter or its audit event is not confirmed by Kafka:
        the sender must then get a "retry" (AE / 503 / file left in the inbox), never a final
        refusal, or the input would exist nowhere.

        A payload over ``claim_check_bytes`` keeps only its head in the dead letter (so the
        record fits the topic); the whole original goes to the document store when there is
        one and the input is not itself over the size limit (``too_large``); a store that does
        not confirm is Unavailable too.
        """
        from practiceflow.processors.base import content_id

        mid = message_id or content_id(payload)
        head, ref = payload, {}
        if len(payload) > self.claim_check_bytes:
            head = payload[: self.claim_check_bytes]
            details = {**(details or {}), "head_only": "true", "original_bytes": str(len(payload))}
            if self.docstore is not None and reason_code != "too_large":
                try:
                    ref = await asyncio.to_thread(check_in, self.docstore, practice_id, payload)
                except DocumentStoreUnavailable as exc:
                    log.error("could not store the original of a rejected %s input: document store unavailable", feed)
                    self._stat(f"{feed}.dlq_unavailable")
                    raise Unavailable(f"document store: {exc}") from exc
        dl = dead_letter(
            practice_id,
            feed,
            "gateway",
            reason_code,
            reason,
            head,
            failed_at=now_ms(),
            message_id=mid,
            details={"gateway": self.name, **(details or {})},
            **ref,
        )
        REJECTED.labels(self.name, feed, reason_code).inc()
        PRACTICE_INPUTS.labels(practice_label(practice_id), feed, "rejected").inc()
        self._stat(f"{feed}.rejected")
        try:
            try:
                await self._write(f"dlq.{feed}", f"{practice_id}/{mid}", dl, practice_id)
            except DeliveryFailed as exc:
                if not exc.too_large:
                    raise
                # the dead-letter topic's own size limit (a smaller max.message.bytes): the
                # reason and the reference still fit, the head does not
                dl = {**dl, "payload": b"", "details": {**dl["details"], "head_dropped": "too_large"}}
                await self._write(f"dlq.{feed}", f"{practice_id}/{mid}", dl, practice_id)
        except DeliveryFailed as exc:
            log.error("could not dead-letter a rejected %s input (reason %s): Kafka unavailable", feed, reason_code)
            self._stat(f"{feed}.dlq_unavailable")
            raise Unavailable(str(exc)) from exc
        await self._audit(practice_id, "rejected", feed, mid, reason_code, {"gateway": self.name}, "rejected")
        return Outcome(False, mid, reason_code, reason)

    async def _audit(
        self,
        practice_id: str,
        action: str,
        feed: str,
        message_id: str,
        reason: str,
        details: dict[str, str],
        outcome: str = "ok",
    ) -> None:
        ev = audit_event(
            practice_id,
            actor=f"gateway:{self.name}",
            action=action,
            entity_type=f"{feed}-message",
            entity_id=message_id,
            reason=reason,
            at=now_ms(),
            outcome=outcome,
            details=details,
        )
        try:
            await self._write("audit.in", practice_id, ev, practice_id)
        except DeliveryFailed as exc:
            # an unaudited acceptance or refusal is not allowed: the request fails and is retried
            log.error("audit event for %s could not be written", message_id)
            self._stat(f"{feed}.audit_unavailable")
            raise Unavailable(str(exc)) from exc

    def accepted_recently(self, feed: str, practice_id: str, message_id: str) -> bool:
        """Whether this process accepted the same message lately (portal replay protection)."""
        return f"{practice_id}/{feed}/{message_id}" in self._recent

    def _remember(self, key: str) -> None:
        self._recent[key] = None
        if len(self._recent) > self._recent_max:
            self._recent.pop(next(iter(self._recent)))
