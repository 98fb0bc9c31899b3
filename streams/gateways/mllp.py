"""HL7 v2 over MLLP: <VT> message <FS><CR>, one ACK per message, after the durable write.

- AA only once the raw bytes are in Kafka with acks=all.
- AR (with ERR and a reason) for what can never be accepted: not HL7, missing MSH-10,
  unsupported message type, oversize; the original bytes go to the dead-letter topic.
- AE when Kafka did not confirm the write: nothing was stored, the sender must resend
  (the worker's de-duplication makes a resend after a lost ACK harmless).
Messages on one connection are handled in order; connections are concurrent. When
the gateway is saturated it stops reading from sockets, which pushes back on the
sender through TCP instead of buffering in memory.

Which practice a message belongs to
-----------------------------------
With mutual TLS (``client_practices`` given, the TLS context requiring a client
certificate signed by the configured CA) the *certificate* names the practice: its
SHA-256 fingerprint, a subjectAltName or its subject CN is looked up in
``client_practices``. Nothing inside the message chooses the tenant: MSH-4 (sending
facility) names the lab or EHR, not us, and any field a sender writes can be forged.
MSH-6 (receiving facility) is checked only to refuse: a message whose MSH-6 is another
configured practice's id gets AR ``forbidden`` (a certificate of practice A cannot send
as B). A certificate valid for the CA but mapped to no practice gets AR
``unauthenticated`` and the connection is closed. Both dead letters keep no message
bytes (the bytes may be another tenant's, or an unknown party's) - the sender keeps its
message and its AR. Without mutual TLS the listener serves one practice
(``practice_id``): plain MLLP is for a loopback or a trusted network segment.

Bounds under hostile input
--------------------------
Frames are assembled here, not in asyncio's StreamReader (whose buffer grew to the
frame limit per connection: 30 connections with an unfinished 15 MiB frame held about
535 MB). Every byte buffered is first charged to the process's read budget
(``GatewayCore.read_budget``); a connection waits (TCP back-pressure) while the budget is
spent. A connection idle for ``idle_timeout_s`` between frames is closed; a frame not
complete ``frame_timeout_s`` after its first byte is dead-lettered (its head) and the
connection closed (slowloris). Connections are capped per listener and per peer
address; one over the cap is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from practiceflow.processors.auth import (
    UNKNOWN_PRACTICE,
    cert_fingerprint,
    claimed_receiving_facility,
    practice_for_certificate,
    safe_label,
)
from practiceflow.processors.base import Rejected
from practiceflow.processors.hl7.ack import build_ack
from practiceflow.processors.hl7.normalize import normalize_hl7
from practiceflow.processors.hl7.parser import split_batch
from practiceflow.streams.clock import now_ms
from practiceflow.streams.gateways.base import GatewayCore, Unavailable
from practiceflow.streams.gateways.limits import ConnectionLimits

log = logging.getLogger("practiceflow.gateway.mllp")

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
END = FS + CR
READ_CHUNK = 64 * 1024  # one socket read; asyncio's own buffer stays within twice this per connection
HEAD_BYTES = 1024 * 1024  # what the dead letter of an oversize or timed-out frame keeps


def frame(payload: bytes) -> bytes:
    return VT + payload + END


def _now_hl7() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")


class MllpGateway:
    def __init__(
        self,
        core: GatewayCore,
        practice_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 2575,
        ssl_context: ssl.SSLContext | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        client_practices: Mapping[str, str] | None = None,
        practices: Iterable[str] | None = None,
        idle_timeout_s: float = 120.0,
        frame_timeout_s: float = 30.0,
        max_connections: int = 256,
        max_connections_per_peer: int = 16,
    ) -> None:
        self.core = core
        self.practice_id = practice_id
        self.host, self.port = host, port
        self.ssl = ssl_context
        self.max_message_bytes = max_message_bytes
        self.client_practices = dict(client_practices) if client_practices is not None else None
        self.practices = set(practices) if practices is not None else {practice_id}
        if self.client_practices is None and practice_id not in self.practices:
            # WHY: without client certificates every frame is written as practice_id; a tenant
            # the gateways do not accept must not be reachable through the plain listener.
            raise ValueError(f"MLLP listener practice {practice_id!r} is not one of the configured practices")
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.limits = ConnectionLimits(max_connections, max_connections_per_peer)
        self.server: asyncio.base_events.Server | None = None
        self.connections = 0
        self.stats: dict[str, int] = {}

    def _stat(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    async def start(self) -> int:
        self.server = await asyncio.start_server(
            self._client,
            self.host,
            self.port,
            ssl=self.ssl,
            limit=READ_CHUNK,
            ssl_handshake_timeout=min(self.frame_timeout_s, 10.0) if self.ssl else None,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    def _connection_practice(self, writer: asyncio.StreamWriter) -> tuple[str | None, dict[str, str]]:
        """The practice this connection speaks for (None: unauthenticated) and what identified it."""
        if self.client_practices is None:
            return self.practice_id, {}
        ssl_obj = writer.get_extra_info("ssl_object")
        cert = ssl_obj.getpeercert() if ssl_obj is not None else None
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
        who = {"certificate": cert_fingerprint(der)} if der else {"certificate": "none"}
        practice = practice_for_certificate(cert, der, self.client_practices)
        if practice is None or practice not in self.practices:
            return None, who
        return practice, who

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        refused = self.limits.admit(host)
        if refused:
            self._stat(f"refused_connection.{refused}")
            writer.close()
            return
        self.connections += 1
        budget = self.core.read_budget
        held = 0  # bytes of ``buf`` charged to the read budget
        buf = bytearray()
        loop = asyncio.get_running_loop()
        try:
            practice, who = self._connection_practice(writer)
            frame_started: float | None = None
            while True:
                end = buf.find(END)
                if end >= 0:
                    chunk = bytes(buf[: end + 2])
                    del buf[: end + 2]
                    frame_started = loop.time() if buf.strip() else None
                    if len(chunk) > self.max_message_bytes + 2:
                        await self._oversize(writer, chunk[:HEAD_BYTES], practice)
                    elif practice is None:
                        await self._unauthenticated(writer, chunk, who)
                        return
                    else:
                        ack = await self.handle_frame(chunk, practice)
                        writer.write(frame(ack))
                        await asyncio.wait_for(writer.drain(), self.idle_timeout_s)
                    budget.release(len(chunk))
                    held -= len(chunk)
                    continue
                if len(buf) > self.max_message_bytes + 2:  # no end in sight: keep the head, drop the rest
                    head = bytes(buf[:HEAD_BYTES])
                    try:
                        rest = await self._discard_frame(reader, bytes(buf[-1:]), frame_started or loop.time())
                    except TimeoutError:
                        await self._frame_timeout(head, practice)
                        return
                    budget.release(held)
                    held = 0
                    buf = bytearray()
                    await self._oversize(writer, head, practice)
                    frame_started = None
                    if rest:
                        if not await budget.reserve(len(rest), self.frame_timeout_s):
                            self._stat("busy_closed")
                            return
                        held += len(rest)
                        buf += rest
                    continue
                if frame_started is None and buf.strip():
                    frame_started = loop.time()
                wait = (
                    self.idle_timeout_s if frame_started is None else frame_started + self.frame_timeout_s - loop.time()
                )
                try:
                    if wait <= 0:
                        raise TimeoutError
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), wait)
                except TimeoutError:
                    if frame_started is None:
                        self._stat("idle_closed")
                        return
                    await self._frame_timeout(bytes(buf[:HEAD_BYTES]), practice)
                    return
                if not data:
                    if buf.strip():
                        await self.core.reject(
                            "hl7v2",
                            practice or UNKNOWN_PRACTICE,
                            bytes(buf[:HEAD_BYTES]) if practice else b"",
                            "mllp_incomplete_frame",
                            "connection closed before <FS><CR> ended the frame",
                            message_id=None if practice else f"refused-{uuid.uuid4().hex}",
                        )
                    return
                if frame_started is None and data.strip():
                    frame_started = loop.time()
                left = (
                    self.idle_timeout_s if frame_started is None else frame_started + self.frame_timeout_s - loop.time()
                )
                # charge the budget before buffering; while it is spent, stop reading (TCP pushes back)
                if not await budget.reserve(len(data), max(left, 0.001)):
                    if frame_started is not None:
                        await self._frame_timeout(bytes((buf + data)[:HEAD_BYTES]), practice)
                    self._stat("busy_closed")
                    return
                held += len(data)
                buf += data
        except (ConnectionError, asyncio.CancelledError, TimeoutError, ssl.SSLError):
            return
        except Unavailable:  # a dead letter Kafka did not confirm: no ACK at all, so the sender resends
            self._stat("closed_unrecorded")
            return
        finally:
            budget.release(held)
            self.limits.leave(host)
            self.connections -= 1
            writer.close()

    async def _frame_timeout(self, head: bytes, practice: str | None) -> None:
        """Dead-letter the head of a frame that did not end in time (a slowloris, or a stuck sender)."""
        self._stat("frame_timeout")
        head = head[1:] if head.startswith(VT) else head
        await self.core.reject(
            "hl7v2",
            practice or UNKNOWN_PRACTICE,
            head if practice else b"",
            "mllp_frame_timeout",
            f"frame not complete within {self.frame_timeout_s} s; connection closed, first bytes kept",
            message_id=None if practice else f"refused-{uuid.uuid4().hex}",
        )

    async def _discard_frame(self, reader: asyncio.StreamReader, tail: bytes, started: float) -> bytes:
        """Read and drop the rest of an oversize frame (until <FS><CR>, EOF or the frame deadline).

        Returns the bytes after the frame's end (the start of the next frame), if any.
        """
        loop = asyncio.get_running_loop()
        carry = tail
        while True:
            wait = started + self.frame_timeout_s - loop.time()
            if wait <= 0:
                raise TimeoutError
            data = await asyncio.wait_for(reader.read(READ_CHUNK), wait)
            if not data:
                return b""
            joined = carry + data
            end = joined.find(END)
            if end >= 0:
                return joined[end + 2 :]
            carry = joined[-1:]

    async def _oversize(self, writer: asyncio.StreamWriter, head: bytes, practice: str | None) -> None:
        reason = f"message larger than {self.max_message_bytes} bytes; first bytes kept"
        head = head[1:] if head.startswith(VT) else head
        if practice is None:
            await self._unauthenticated(writer, head, {})
            return
        await self.core.reject("hl7v2", practice, head, "too_large", reason)
        writer.write(frame(build_ack(head, "AR", reason, error_code="100", now=_now_hl7())))
        await asyncio.wait_for(writer.drain(), self.idle_timeout_s)

    async def _unauthenticated(self, writer: asyncio.StreamWriter, chunk: bytes, who: dict[str, str]) -> None:
        """AR + a dead letter (no message bytes: nobody we can name sent them) for an unmapped certificate."""
        reason = "client certificate is not mapped to a practice"
        self._stat("unauthenticated")
        await self.core.reject(
            "hl7v2",
            UNKNOWN_PRACTICE,
            b"",
            "unauthenticated",
            reason,
            message_id=f"refused-{uuid.uuid4().hex}",
            details={**who, "frame_bytes": str(len(chunk))},
        )
        payload = chunk[1:-2] if chunk.startswith(VT) else chunk
        writer.write(frame(build_ack(payload, "AR", reason, error_code="207", now=_now_hl7())))
        await asyncio.wait_for(writer.drain(), self.idle_timeout_s)

    async def handle_frame(self, chunk: bytes, practice: str | None = None) -> bytes:
        """One frame -> its ACK. A dead letter or audit event Kafka did not confirm is an AE
        (resend), never an AA or AR: the sender keeps the message until it is recorded."""
        try:
            return await self._handle_frame(chunk, practice or self.practice_id)
        except Unavailable:
            payload = chunk[1:-2] if chunk[:1] == VT else chunk
            return build_ack(
                payload,
                "AE",
                "message not recorded (storage unavailable); please resend",
                error_code="207",
                now=_now_hl7(),
            )

    async def _handle_frame(self, chunk: bytes, practice: str) -> bytes:
        """One frame in, one ACK out (the gateway's whole contract, testable without sockets)."""
        start = chunk.find(VT)
        if start != 0:
            junk = chunk if start < 0 else chunk[:start]
            if start < 0 or junk.strip():
                payload = chunk[:-2] if start < 0 else chunk[start + 1 : -2]
                await self.core.reject(
                    "hl7v2", practice, chunk, "mllp_framing", "bytes outside an <VT>...<FS><CR> frame"
                )
                return build_ack(
                    payload,
                    "AR",
                    "MLLP framing error: expected <VT> at the start of the frame",
                    error_code="100",
                    now=_now_hl7(),
                )
        payload = chunk[start + 1 : -2]
        messages = split_batch(payload) if payload.count(b"MSH") > 1 else [payload]
        if not messages:
            await self.core.reject("hl7v2", practice, chunk, "empty_message", "empty MLLP frame")
            return build_ack(payload, "AR", "empty frame", error_code="100", now=_now_hl7())
        results = [await self._one(m, practice) for m in messages]
        # one ACK per frame: the first refusal if any (the sender must act on it), else the last AA
        return next((ack for ok, ack in results if not ok), results[-1][1])

    async def _one(self, payload: bytes, practice: str) -> tuple[bool, bytes]:
        claimed = claimed_receiving_facility(payload)
        if claimed != practice and claimed.lower() in {p.lower() for p in self.practices - {practice}}:
            reason = "MSH-6 names another practice than this connection's certificate"
            await self.core.reject(
                "hl7v2",
                practice,
                b"",
                "forbidden",
                reason,
                message_id=f"refused-{uuid.uuid4().hex}",
                details={"claimed_practice": safe_label(claimed)},
            )
            return False, build_ack(payload, "AR", reason, error_code="207", now=_now_hl7())
        try:
            result = normalize_hl7(payload, practice, now_ms())
        except Rejected as rej:
            await self.core.reject("hl7v2", practice, payload, rej.reason_code, rej.reason)
            return False, build_ack(payload, "AR", rej.reason, error_code=rej.reason_code, now=_now_hl7())
        try:
            outcome = await self.core.accept(
                "hl7v2", practice, payload, result.message_id, headers={"message_type": result.message_type}
            )
        except Unavailable:
            return False, build_ack(
                payload,
                "AE",
                "message not stored (storage unavailable); please resend",
                error_code="207",
                now=_now_hl7(),
            )
        if not outcome.accepted:  # permanent (e.g. too large for the broker): AR, never "resend"
            return False, build_ack(payload, "AR", outcome.reason or "", error_code="100", now=_now_hl7())
        return True, build_ack(payload, "AA", "", now=_now_hl7())
