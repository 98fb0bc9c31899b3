"""HL7 v2 over MLLP: <VT> message <FS><CR>, one ACK per message, after the durable write.

- AA only once the raw bytes are in Kafka with acks=all.
- AR (with ERR and a reason) for what can never be accepted: not HL7, missing MSH-10,
  unsupported message type, oversize; the original bytes go to the dead-letter topic.
- AE when Kafka did not confirm the write: nothing was stored, the sender must resend
  (the worker's de-duplication makes a resend after a lost ACK harmless).
Messages on one connection are handled in order; connections are concurrent. When
the gateway is saturated it stops reading from sockets, which pushes back on the
sender through TCP instead of buffering in memory.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import datetime, timezone
from typing import Callable

from practiceflow.processors.base import Rejected
from practiceflow.processors.hl7.ack import build_ack
from practiceflow.processors.hl7.normalize import normalize_hl7
from practiceflow.processors.hl7.parser import split_batch
from practiceflow.streams.clock import now_ms
from practiceflow.streams.gateways.base import GatewayCore, Unavailable

log = logging.getLogger("practiceflow.gateway.mllp")

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
END = FS + CR


def frame(payload: bytes) -> bytes:
    return VT + payload + END


def _now_hl7() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S+0000")


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
        practice_for: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.core = core
        self.practice_id = practice_id
        self.host, self.port = host, port
        self.ssl = ssl_context
        self.max_message_bytes = max_message_bytes
        self.practice_for = practice_for
        self.server: asyncio.base_events.Server | None = None
        self.connections = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(
            self._client, self.host, self.port, ssl=self.ssl, limit=self.max_message_bytes + 16
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    chunk = await reader.readuntil(END)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        await self.core.reject(
                            "hl7v2",
                            self.practice_id,
                            exc.partial,
                            "mllp_incomplete_frame",
                            "connection closed before <FS><CR> ended the frame",
                        )
                    return
                except asyncio.LimitOverrunError:
                    await self._oversize(reader, writer)
                    continue
                ack = await self.handle_frame(chunk)
                writer.write(frame(ack))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self.connections -= 1
            writer.close()

    async def _oversize(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.read(self.max_message_bytes)
        while True:  # discard the rest of the frame
            try:
                await reader.readuntil(END)
                break
            except asyncio.LimitOverrunError as e:
                await reader.readexactly(e.consumed)
            except asyncio.IncompleteReadError:
                break
        reason = f"message larger than {self.max_message_bytes} bytes; first bytes kept"
        await self.core.reject("hl7v2", self.practice_id, head, "too_large", reason)
        writer.write(frame(build_ack(head, "AR", reason, error_code="100", now=_now_hl7())))
        await writer.drain()

    async def handle_frame(self, chunk: bytes) -> bytes:
        """One frame -> its ACK. A dead letter or audit event Kafka did not confirm is an AE
        (resend), never an AA or AR: the sender keeps the message until it is recorded."""
        try:
            return await self._handle_frame(chunk)
        except Unavailable:
            payload = chunk[1:-2] if chunk[:1] == VT else chunk
            return build_ack(
                payload,
                "AE",
                "message not recorded (storage unavailable); please resend",
                error_code="207",
                now=_now_hl7(),
            )

    async def _handle_frame(self, chunk: bytes) -> bytes:
        """One frame in, one ACK out (the gateway's whole contract, testable without sockets)."""
        start = chunk.find(VT)
        if start != 0:
            junk = chunk if start < 0 else chunk[:start]
            if start < 0 or junk.strip():
                payload = chunk[:-2] if start < 0 else chunk[start + 1 : -2]
                await self.core.reject(
                    "hl7v2", self.practice_id, chunk, "mllp_framing", "bytes outside an <VT>...<FS><CR> frame"
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
            await self.core.reject("hl7v2", self.practice_id, chunk, "empty_message", "empty MLLP frame")
            return build_ack(payload, "AR", "empty frame", error_code="100", now=_now_hl7())
        results = [await self._one(m) for m in messages]
        # one ACK per frame: the first refusal if any (the sender must act on it), else the last AA
        return next((ack for ok, ack in results if not ok), results[-1][1])

    async def _one(self, payload: bytes) -> tuple[bool, bytes]:
        practice = self.practice_id
        try:
            result = normalize_hl7(payload, practice, now_ms())
        except Rejected as rej:
            await self.core.reject("hl7v2", practice, payload, rej.reason_code, rej.reason)
            return False, build_ack(payload, "AR", rej.reason, error_code=rej.reason_code, now=_now_hl7())
        try:
            await self.core.accept(
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
        return True, build_ack(payload, "AA", "", now=_now_hl7())
