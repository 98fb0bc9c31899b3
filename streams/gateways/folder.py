"""Folder drops: HL7 batch files (FHS/BHS), X12 files (an SFTP server writing here), faxes.

Layout under the drop root: ``<root>/<practice>/<feed>/inbox/*``. A file is handled
once it has not changed for ``settle_seconds`` (so half-written uploads are left
alone), then moved to ``done/`` or ``rejected/`` next to ``inbox/``. A file moved to
``done/`` had every message in it written durably or dead-lettered; a file whose
write Kafka did not confirm stays in ``inbox/`` and is retried on the next scan.

A drop folder is written by other programs (an SFTP server, a fax service), so what
lies there is not trusted: a file is opened with ``O_NOFOLLOW`` after an ``lstat``, so
a symlink (to ``/etc/shadow``, or to another practice's inbox) is refused and moved
aside, never followed; an inbox whose real path leaves ``<root>/<practice>/`` (a
symlinked practice or feed folder) is not scanned at all; a file's size is taken from
``fstat`` before it is read, and one over the limit is dead-lettered with its first MiB
without the rest ever being read into memory.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import time
from pathlib import Path

from practiceflow.processors.base import Rejected
from practiceflow.sinks.docstore import DocumentStore, DocumentStoreUnavailable
from practiceflow.streams.clock import now_ms
from practiceflow.streams.gateways.base import GatewayCore, Unavailable
from practiceflow.streams.gateways.http import sniff_document

log = logging.getLogger("practiceflow.gateway.folder")

FEEDS = ("hl7v2", "x12", "fax")
HEAD_BYTES = 1024 * 1024  # what the dead letter of an oversize file keeps


class _Refused(Exception):
    """A drop entry that is not a regular file of this inbox (symlink, device, ...)."""


class FolderDrop:
    def __init__(
        self,
        core: GatewayCore,
        root: Path,
        practices: set[str],
        docstore: DocumentStore,
        *,
        settle_seconds: float = 1.0,
        interval: float = 1.0,
        max_file_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.core = core
        self.root = Path(root)
        self.practices = practices
        self.docstore = docstore
        self.settle = settle_seconds
        self.interval = interval
        self.max_file_bytes = max_file_bytes
        self._task: asyncio.Task[None] | None = None
        for practice in practices:
            for feed in FEEDS:
                (self.root / practice / feed / "inbox").mkdir(parents=True, exist_ok=True)

    def inbox(self, practice: str, feed: str) -> Path:
        return self.root / practice / feed / "inbox"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            try:
                await self.scan_once()
            except Exception:
                log.exception("folder scan failed")
            await asyncio.sleep(self.interval)

    def _safe_inbox(self, practice: str, feed: str) -> Path | None:
        """The inbox, if its real path is where it should be (no symlinked folder leads elsewhere)."""
        inbox = self.inbox(practice, feed)
        expected = self.root.resolve() / practice / feed / "inbox"
        try:
            if inbox.resolve(strict=True) != expected:
                raise OSError(errno.EXDEV, "inbox leaves its practice's folder")
        except OSError as e:
            log.error("not scanning %s/%s: %s", practice, feed, e.strerror or type(e).__name__)
            self.core._stat(f"{feed}.unsafe_inbox")
            return None
        return inbox

    async def scan_once(self) -> int:
        handled = 0
        now = time.time()
        for practice in sorted(self.practices):
            for feed in FEEDS:
                inbox = self._safe_inbox(practice, feed)
                if inbox is None:
                    continue
                for path in sorted(inbox.iterdir()):
                    if path.name.startswith("."):
                        continue
                    st = path.lstat()
                    if stat.S_ISDIR(st.st_mode) or now - st.st_mtime < self.settle:
                        continue
                    try:
                        try:
                            ok = await self._file(practice, feed, path)
                        except _Refused as why:
                            await self.core.reject(
                                feed,
                                practice,
                                b"",
                                "unsafe_file",
                                f"{path.name}: {why}; not followed, not read",
                                details={"file": path.name},
                            )
                            ok = False
                    except Unavailable:
                        break  # it stays in inbox; so do this feed's other files until the next scan
                    except Exception as exc:
                        log.error(
                            "%s %s drop: a file failed (%s); left in the inbox", practice, feed, type(exc).__name__
                        )
                        continue
                    self._move(path, "done" if ok else "rejected")
                    handled += 1
        return handled

    def _read(self, path: Path) -> tuple[bytes, int]:
        """(bytes, size): the whole file, or only its head when it is over the limit. Never follows a link."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _Refused("a symbolic link") from e
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise _Refused("not a regular file")
            if st.st_size > self.max_file_bytes:
                return f.read(HEAD_BYTES), st.st_size
            data = f.read(self.max_file_bytes + 1)  # grew since fstat: still bounded
            return data, len(data)

    def _move(self, path: Path, where: str) -> None:
        dest = path.parent.parent / where
        dest.mkdir(exist_ok=True)
        os.replace(path, dest / path.name)

    async def _file(self, practice: str, feed: str, path: Path) -> bool:
        data, size = self._read(path)
        if size > self.max_file_bytes:
            await self.core.reject(
                feed,
                practice,
                data[:HEAD_BYTES],
                "too_large",
                f"{path.name}: {size} bytes, larger than {self.max_file_bytes}; first bytes kept, the rest not read",
                details={"file": path.name, "bytes": str(size)},
            )
            return False
        if feed == "hl7v2":
            return await self._hl7(practice, path, data)
        if feed == "x12":
            from practiceflow.processors.x12.normalize import normalize_x12

            try:
                result = normalize_x12(data, practice, now_ms())
            except Rejected as rej:
                await self.core.reject("x12", practice, data, rej.reason_code, rej.reason, details={"file": path.name})
                return False
            outcome = await self.core.accept("x12", practice, data, result.message_id, headers={"file": path.name})
            return outcome.accepted
        kind = sniff_document(data)
        if kind is None:
            await self.core.reject(
                "fax",
                practice,
                data,
                "unsupported_document_type",
                f"{path.name}: not a PDF, TIFF, PNG or JPEG",
                details={"file": path.name},
            )
            return False
        try:  # off the event loop: S3 is a network round trip
            sha, uri = await asyncio.to_thread(self.docstore.put, data, practice)
        except DocumentStoreUnavailable as e:
            log.warning("document store unavailable, %s fax files stay in the inbox: %s", practice, e)
            raise Unavailable(str(e)) from e
        outcome = await self.core.accept(
            "fax",
            practice,
            data,
            sha,
            content_type=kind,
            headers={"file": path.name, "storage_uri": uri, "sha256": sha, "content_type": kind},
            stored=(sha, uri),
        )
        return outcome.accepted

    async def _hl7(self, practice: str, path: Path, data: bytes) -> bool:
        from practiceflow.processors.hl7.normalize import normalize_hl7
        from practiceflow.processors.hl7.parser import split_batch

        try:
            messages = split_batch(data)
        except Rejected as rej:
            await self.core.reject("hl7v2", practice, data, rej.reason_code, rej.reason, details={"file": path.name})
            return False
        if not messages:
            await self.core.reject(
                "hl7v2",
                practice,
                data,
                "empty_batch",
                f"{path.name}: no MSH segment found",
                details={"file": path.name},
            )
            return False
        all_ok = True
        for i, msg in enumerate(messages):
            try:
                result = normalize_hl7(msg, practice, now_ms())
            except Rejected as rej:
                await self.core.reject(
                    "hl7v2", practice, msg, rej.reason_code, rej.reason, details={"file": path.name, "index": str(i)}
                )
                all_ok = False
                continue
            outcome = await self.core.accept(
                "hl7v2",
                practice,
                msg,
                result.message_id,
                headers={"file": path.name, "index": str(i), "message_type": result.message_type},
            )
            all_ok = all_ok and outcome.accepted
        return all_ok
