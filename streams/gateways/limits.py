"""Bounds that hold under hostile input: a byte budget for read buffers, connection limits.

The write back-pressure in :class:`~practiceflow.streams.gateways.base.GatewayCore`
counts bytes handed to Kafka, but a gateway holds bytes long before that: an MLLP frame
being assembled, an HTTP body being read. Thirty connections each holding an unfinished
15 MiB frame took about 535 MB on the old listener. :class:`ByteBudget` is charged
*before* bytes are buffered, so everything the gateways of one process hold in read
buffers stays under one number; :class:`ConnectionLimits` caps connections per listener
and per peer address, so one misbehaving host cannot take every slot.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

__all__ = ["ByteBudget", "ConnectionLimits"]


class ByteBudget:
    """Bytes that may sit in read buffers at once, across every connection of a process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    def try_reserve(self, size: int) -> bool:
        """Take ``size`` bytes now, or nothing (HTTP: answer 503 rather than wait holding a socket)."""
        if size < 0 or self.used + size > self.limit:
            return False
        self.used += size
        return True

    async def reserve(self, size: int, timeout: float) -> bool:
        """Take ``size`` bytes, waiting up to ``timeout`` s for others to free them (MLLP: stop reading)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.try_reserve(size):
            left = deadline - loop.time()
            if left <= 0 or size > self.limit:
                return False
            self._freed.clear()
            try:
                await asyncio.wait_for(self._freed.wait(), left)
            except TimeoutError:
                return False
        return True

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)
        self._freed.set()


@dataclass
class ConnectionLimits:
    """Open connections per listener and per peer address (IPv4/IPv6 host, port ignored)."""

    per_listener: int
    per_peer: int
    total: int = 0
    by_peer: dict[str, int] = field(default_factory=dict)

    def admit(self, peer: str) -> str | None:
        """Count a new connection in; returns why it is refused ("listener"/"peer"), or None."""
        if self.total >= self.per_listener:
            return "listener"
        if self.by_peer.get(peer, 0) >= self.per_peer:
            return "peer"
        self.total += 1
        self.by_peer[peer] = self.by_peer.get(peer, 0) + 1
        return None

    def leave(self, peer: str) -> None:
        self.total -= 1
        left = self.by_peer.get(peer, 1) - 1
        if left:
            self.by_peer[peer] = left
        else:
            self.by_peer.pop(peer, None)
