"""The worker's fax step: OCR in a child process with page and time limits, then the pure normalizer.

Why a child process per fax (``streams/ocr_job.py``) and not a thread: OCR starts
Ghostscript and Tesseract, which can hang on a hostile or broken document; a thread
cannot be stopped, a process group can. The event loop only awaits the child, so the
worker's other agents, its health page and its commits go on meanwhile. The children
are forked from a multiprocessing forkserver that imported the OCR modules once
(measured: a fresh interpreter per fax cost 1.2 CPU-s of imports, a 1-page fax's OCR
about 1 CPU-s); as with any multiprocessing start method but ``fork``, the program's
main module must be safe to import (``if __name__ == "__main__":``).

Limits, chosen so that every fax still reaches a person:

* ``max_pages``: only the first pages are OCRed; the Document keeps the true page
  count, the later pages without text, ``ocr_status="partial_page_limit"`` and a
  warning.
* ``timeout_s``: past it the child's whole process group is killed and the fax
  becomes a Document without text, ``ocr_status="timed_out"``. Keep it below the
  worker's ``stall_seconds`` or the liveness check reads a long OCR as a stall.

A child that dies on its own (killed by the OOM killer, a crash) raises
:class:`OcrFailed`: an infrastructure failure, worth a retry, not the document's fault.
When OCRmyPDF made a searchable PDF it is stored in the document store beside the
original and named on the Document (``searchable_pdf_uri``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.fax.ocr import CONTENT_TYPES, OcrPage, OcrResult, sniff
from practiceflow.settings import Settings
from practiceflow.sinks.docstore import DocumentStore
from practiceflow.streams import ocr_job
from practiceflow.streams.metrics import observe_ocr

log = logging.getLogger("practiceflow.worker.fax")

_CTX: multiprocessing.context.ForkServerContext | None = None


def _forkserver() -> multiprocessing.context.ForkServerContext:
    """A forkserver with the OCR modules imported once, so each fax's process starts warm."""
    global _CTX
    if _CTX is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["practiceflow.streams.ocr_job"])
        _CTX = ctx
    return _CTX


def _kill(proc: multiprocessing.process.BaseProcess) -> None:
    """SIGKILL the job's process group (the job, Ghostscript, Tesseract); the job alone if it
    had not made its group yet."""
    if proc.pid is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


__all__ = ["FaxOcr", "OcrFailed"]


class OcrFailed(RuntimeError):
    """The OCR process ended without a result (killed, crashed): infrastructure, retry."""


class FaxOcr:
    """Callable the Pipeline uses as ``fax_handler``."""

    def __init__(
        self,
        workdir: Path,
        *,
        store: DocumentStore | None = None,
        max_pages: int = 30,
        timeout_s: float = 50.0,
        jobs: int = 1,
        concurrency: int = 1,
        classify: Callable[[NormalizeResult, int], NormalizeResult] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.max_pages = max_pages
        self.timeout_s = timeout_s
        self.jobs = jobs
        self._slots = asyncio.Semaphore(concurrency)
        self.timed_out = 0
        #: the fax workflow (streams/workflows/fax.py): classify, split, extract, match, route
        self.classify = classify
        #: awaited with the practice id before ``classify``: the patient context's barrier, so a
        #: chart registered before the fax is matched (set by streams/workflows/fax_match.py)
        self.before_classify: Callable[[str], Awaitable[None]] | None = None
        #: what the forked job runs (``ocr_job.main``; tests replace it to simulate hangs and crashes)
        self.target: Callable[[list[str]], int] = ocr_job.main

    @classmethod
    def from_settings(cls, cfg: Settings, store: DocumentStore | None, *, classify: bool = True) -> FaxOcr:
        """The production handler: limits from the settings, searchable PDFs into ``store``, and
        the fax workflow after OCR (its model loaded, or trained once, at the first fax)."""
        from practiceflow.streams.workflows.fax import FaxWorkflow

        return cls(
            cfg.state_dir / "ocr",
            store=store,
            max_pages=cfg.ocr_max_pages,
            timeout_s=cfg.ocr_timeout_seconds,
            jobs=cfg.ocr_jobs,
            classify=FaxWorkflow.from_settings(cfg) if classify else None,
        )

    async def _child(self, job: Path, content_type: str | None) -> dict[str, Any] | None:
        """Run the OCR job; its result.json, or None when it ran out of time (and was killed)."""
        argv = [str(job), content_type or "", str(self.jobs), str(self.max_pages)]
        # not a daemon: OCRmyPDF may start worker processes of its own
        proc = _forkserver().Process(target=ocr_job.entry, args=(self.target, argv), name="ocr-job")
        await asyncio.to_thread(proc.start)
        try:
            await asyncio.to_thread(proc.join, self.timeout_s)
        except asyncio.CancelledError:
            _kill(proc)
            raise
        if proc.exitcode is None:  # still running: out of time
            _kill(proc)
            await asyncio.to_thread(proc.join)
            return None
        result = job / "result.json"
        doc = json.loads(result.read_text(encoding="utf-8")) if result.exists() else None
        if proc.exitcode != 0 or doc is None or "error" in doc:
            # the error text may quote document content: it travels in the exception (a dead
            # letter or a retry inside Kafka), not in the plain log
            log.error("OCR process ended without a result (exit %s)", proc.exitcode)
            raise OcrFailed(f"OCR process exited with {proc.exitcode}: {(doc or {}).get('error', 'no result')}")
        return doc

    def _timed_out(self, data: bytes, job: Path) -> OcrResult:
        total = None
        with contextlib.suppress(OSError, ValueError):
            total = json.loads((job / "pages.json").read_text())["total_pages"]
        kind = sniff(data)
        n = int(total or 0)
        return OcrResult(
            # no text: only a person can read these pages
            pages=[OcrPage(i, "", None, False, needs_human_read=True) for i in range(1, n + 1)],
            page_count=n,
            content_type=CONTENT_TYPES.get(kind or "", "application/octet-stream"),
            producer={"engine": "none"},
            seconds=self.timeout_s,
            warnings=[
                f"OCR stopped after {self.timeout_s:g}s (ocr_timeout_seconds); the document is kept without text"
            ],
        )

    async def ocr(self, data: bytes, content_type: str | None, practice_id: str) -> tuple[OcrResult, str, str | None]:
        """(OCR result, ocr_status, uri of the searchable PDF in the document store or None)."""
        async with self._slots:
            job = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="job-", dir=self.workdir))
            try:
                await asyncio.to_thread((job / "input").write_bytes, data)
                doc = await self._child(job, content_type)
                if doc is None:
                    self.timed_out += 1
                    timed_out = self._timed_out(data, job)
                    observe_ocr(timed_out, "timed_out")
                    return timed_out, "timed_out", None
                if "rejected" in doc:
                    raise Rejected(*doc["rejected"])
                result = ocr_job.result_from_json(doc)
                status = "partial_page_limit" if doc.get("limited") else "complete"
                observe_ocr(result, status)
                pdf_uri = None
                if result.output_pdf is not None and self.store is not None:
                    pdf = await asyncio.to_thread(result.output_pdf.read_bytes)
                    _, pdf_uri = await asyncio.to_thread(self.store.put, pdf, practice_id, ".pdf")
                return result, status, pdf_uri
            finally:
                await asyncio.to_thread(shutil.rmtree, job, True)

    async def __call__(self, raw: dict[str, Any]) -> NormalizeResult:
        from practiceflow.processors.fax.normalize import normalize_fax

        headers = raw.get("headers") or {}
        ocr, status, pdf_uri = await self.ocr(raw["payload"], headers.get("content_type"), raw["practice_id"])
        meta = dict(headers)
        meta["received_at_iso"] = datetime.fromtimestamp(raw["received_at"] / 1000, tz=UTC).isoformat()
        result = normalize_fax(
            raw["payload"],
            meta,
            raw["practice_id"],
            raw["received_at"],
            ocr=ocr,
            storage_uri=headers.get("storage_uri") or raw.get("payload_uri") or "",
            searchable_pdf_uri=pdf_uri,
            ocr_status=status,
        )
        if self.classify is None:
            return result
        if self.before_classify is not None:
            await self.before_classify(raw["practice_id"])
        prepare = getattr(self.classify, "ready", None)
        if prepare is not None:  # the fax workflow's model: loaded in a thread at the first fax
            await prepare()
        return self.classify(result, int(raw["received_at"]))

    def close(self) -> None:
        """Nothing to release: each document's OCR process ends with its document."""
