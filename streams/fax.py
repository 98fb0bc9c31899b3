"""The worker's fax step: OCR (subprocesses, slow) off the event loop, then the pure normalizer."""

from __future__ import annotations

import asyncio
import tempfile
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from practiceflow.processors.base import NormalizeResult


class FaxOcr:
    """Callable the Pipeline uses as ``fax_handler``; one OCR job per worker thread."""

    def __init__(self, workdir: Path, executor: Executor | None = None, jobs: int = 1) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr")
        self.jobs = jobs

    def _ocr(self, data: bytes, content_type: str | None):
        from practiceflow.processors.fax.ocr import ocr_document

        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            return ocr_document(data, content_type, workdir=Path(tmp), jobs=self.jobs)

    async def __call__(self, raw: dict[str, Any]) -> NormalizeResult:
        from practiceflow.processors.fax.normalize import normalize_fax

        headers = raw.get("headers") or {}
        loop = asyncio.get_running_loop()
        ocr = await loop.run_in_executor(self.executor, self._ocr, raw["payload"], headers.get("content_type"))
        meta = dict(headers)
        meta["received_at_iso"] = datetime.fromtimestamp(raw["received_at"] / 1000, tz=UTC).isoformat()
        return normalize_fax(
            raw["payload"],
            meta,
            raw["practice_id"],
            raw["received_at"],
            ocr=ocr,
            storage_uri=headers.get("storage_uri") or "",
        )

    def close(self) -> None:
        self.executor.shutdown(wait=False)
