"""Batch folder / SFTP drop: write the 270 to an outbox, wait for the 271 in an inbox.

Clearinghouses that do not offer real-time connectivity exchange files: the practice (or
its SFTP client, or an SFTP server the clearinghouse writes to) moves ``<outbox>/*.270`` out
and brings ``<inbox>/*.271`` back. This connector writes ``<outbox>/<PayloadID>.270``
atomically (write to ``.tmp``, then rename, so a sync never picks up half a file) and polls
``<inbox>/<PayloadID>.271``; once read, the answer is moved to ``<inbox>/done/``. The
PayloadID comes from the command's idempotency key, so a retry after a crash finds the
answer to the file it already sent instead of sending a second one (an existing outbox
file is not rewritten).

A 271 not there yet is :class:`Transient` (the client waits with backoff until the
command's deadline, then the check is "could not determine: timeout"). Batch
clearinghouses answer in minutes to hours: give such a practice a long
``eligibility_deadline_s``. SFTP itself is not implemented here (no SFTP server of ours):
point an SFTP client's sync at these folders.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from practiceflow.sinks.clearinghouse.base import EligibilityRequest, Transient

__all__ = ["FolderConnector"]


class FolderConnector:
    name = "folder"

    def __init__(self, outbox: Path, inbox: Path, poll_s: float = 0.2) -> None:
        self.outbox = Path(outbox)
        self.inbox = Path(inbox)
        self.poll_s = poll_s
        for d in (self.outbox, self.inbox, self.inbox / "done"):
            d.mkdir(parents=True, exist_ok=True)

    def _drop(self, request: EligibilityRequest) -> None:
        target = self.outbox / f"{request.payload_id}.270"
        sent_marker = self.outbox / "sent" / target.name
        if target.exists() or sent_marker.exists():
            return  # already handed over (a retry, or a restart): never send twice
        tmp = target.with_suffix(".270.tmp")
        tmp.write_bytes(request.x12_270)
        os.replace(tmp, target)

    async def exchange(self, request: EligibilityRequest, timeout_s: float) -> bytes:
        await asyncio.to_thread(self._drop, request)
        answer = self.inbox / f"{request.payload_id}.271"
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        while True:
            if answer.exists():
                body = await asyncio.to_thread(answer.read_bytes)
                await asyncio.to_thread(os.replace, answer, self.inbox / "done" / answer.name)
                return body
            if loop.time() + self.poll_s > until:
                raise Transient(f"no 271 in {self.inbox} yet for PayloadID {request.payload_id}")
            await asyncio.sleep(self.poll_s)

    async def close(self) -> None:
        return None
