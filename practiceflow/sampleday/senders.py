"""Clients that talk to the gateways the way real senders do (used by the day job and tests)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"


class MllpClient:
    """One persistent connection; send a message, wait for its ACK (original mode)."""

    def __init__(self, host: str, port: int, ssl=None) -> None:
        self.host, self.port = host, port
        self.ssl = ssl
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> MllpClient:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.writer:
            self.writer.close()
            await self.writer.wait_closed()

    async def send(self, message: bytes, *, raw_frame: bytes | None = None, timeout: float = 30.0) -> bytes:
        if self.writer is None or self.reader is None:
            raise RuntimeError("MLLP sender used outside `async with`")
        self.writer.write(raw_frame if raw_frame is not None else VT + message + FS + CR)
        await self.writer.drain()
        ack = await asyncio.wait_for(self.reader.readuntil(FS + CR), timeout)
        return ack[1:-2]


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK, whatever its field separator."""
    text = ack.decode("utf-8", "replace")
    fs = text[3] if text.startswith("MSH") else "|"
    for seg in text.replace("\n", "\r").split("\r"):
        if seg.startswith("MSA"):
            return seg.split(fs)[1]
    return ""


def sign_portal(secret: bytes, body: bytes, event: str, ts: float | None = None) -> dict[str, str]:
    """Headers the portal sends: see the webhook contract in processors/portal/normalize.py."""
    stamp = str(int(ts if ts is not None else time.time()))
    sig = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "X-Portal-Event": event,
        "X-Portal-Timestamp": stamp,
        "X-Portal-Signature": f"sha256={sig}",
        "Content-Type": "application/json",
    }
