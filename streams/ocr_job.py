"""One fax's OCR in a process of its own (:func:`entry`, forked from a warm forkserver).

Why a process per document: OCR runs Ghostscript and Tesseract subprocesses that can
hang or be killed, and the worker must stay responsive whatever they do. The worker
(:mod:`practiceflow.streams.fax`) forks :func:`entry` from a forkserver that has this
module (and so OCRmyPDF) imported already — a fresh interpreter per fax cost about
1.2 CPU-s of imports, as much as OCRing a page — waits at most ``ocr_timeout_seconds``
without blocking its event loop, and kills the job's whole process group (it starts
a session of its own) when the time is up. Files in ``JOB_DIR``:

* ``input`` (written by the worker): the fax bytes.
* ``pages.json`` (written first): ``{"total_pages": M}``, so a killed job still tells
  the worker how many pages the fax has.
* ``result.json``: the :class:`OcrResult` as JSON, or ``{"rejected": [code, reason]}``
  for a document that can never be read, or ``{"error": "..."}`` with a non-zero exit
  when OCR itself failed (Tesseract missing, disk full). A kill leaves no result.

Only the first ``MAX_PAGES`` pages are OCRed; the others are kept as pages without
text, and a warning says so.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from practiceflow.processors.base import Rejected
from practiceflow.processors.fax.ocr import OcrPage, OcrResult, ocr_document, sniff


def count_pages(data: bytes, kind: str | None) -> int | None:
    """Pages in a PDF / frames in a TIFF (1 for PNG/JPEG); None when the file cannot tell."""
    try:
        if kind == "pdf":
            import pikepdf

            with pikepdf.open(io.BytesIO(data)) as pdf:
                return len(pdf.pages)
        if kind in ("tiff", "png", "jpeg"):
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                return int(getattr(im, "n_frames", 1))
    except Exception:
        return None
    return None


def first_pages(data: bytes, kind: str, n: int) -> bytes:
    """The document cut to its first ``n`` pages (PDF with pikepdf, TIFF with Pillow)."""
    out = io.BytesIO()
    if kind == "pdf":
        import pikepdf

        with pikepdf.open(io.BytesIO(data)) as pdf:
            del pdf.pages[n:]
            pdf.save(out)
        return out.getvalue()
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as im:
        frames = [f.copy() for _, f in zip(range(n), ImageSequence.Iterator(im), strict=False)]  # the first n
        dpi = im.info.get("dpi")
    first = frames[0]
    opts: dict[str, Any] = {"compression": "group4" if all(f.mode == "1" for f in frames) else "tiff_deflate"}
    if dpi:
        opts["dpi"] = dpi
    first.save(out, format="TIFF", save_all=True, append_images=frames[1:], **opts)
    return out.getvalue()


def run(job: Path, content_type: str | None, jobs: int, max_pages: int) -> dict[str, Any]:
    data = (job / "input").read_bytes()
    kind = sniff(data)
    total = count_pages(data, kind)
    (job / "pages.json").write_text(json.dumps({"total_pages": total}))
    limited = kind is not None and total is not None and total > max_pages
    if limited and kind is not None:  # (kind is always set when limited)
        data = first_pages(data, kind, max_pages)
    try:
        res = ocr_document(data, content_type, workdir=job / "work", jobs=jobs)
    except Rejected as rej:
        return {"rejected": [rej.reason_code, rej.reason]}
    pages = [list(p) for p in res.pages]
    warnings = list(res.warnings)
    if limited and total is not None:
        # not OCRed, so only a person can read them: flagged like an unreadable page
        pages += [[i, "", None, False, None, None, True] for i in range(len(pages) + 1, total + 1)]
        warnings.append(f"page limit: only the first {max_pages} of {total} pages were OCRed (ocr_max_pages)")
    return {
        "pages": pages,
        "page_count": len(pages),
        "content_type": res.content_type,
        "producer": {k: str(v) for k, v in res.producer.items()},
        "seconds": res.seconds,
        "output_pdf": str(res.output_pdf) if res.output_pdf else None,
        "warnings": warnings,
        "limited": limited,
    }


def result_from_json(doc: dict[str, Any]) -> OcrResult:
    """The worker's side of ``result.json``."""
    return OcrResult(
        pages=[OcrPage(int(p[0]), str(p[1]), p[2], bool(p[3]), *p[4:]) for p in doc["pages"]],
        page_count=int(doc["page_count"]),
        content_type=doc["content_type"],
        producer=dict(doc.get("producer") or {}),
        seconds=float(doc.get("seconds") or 0.0),
        output_pdf=Path(doc["output_pdf"]) if doc.get("output_pdf") else None,
        warnings=list(doc.get("warnings") or []),
    )


def _write(job: Path, result: dict[str, Any]) -> None:
    tmp = job / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    tmp.replace(job / "result.json")


def main(argv: list[str]) -> int:
    job, content_type, jobs, max_pages = Path(argv[0]), argv[1] or None, int(argv[2]), int(argv[3])
    try:
        result = run(job, content_type, jobs, max_pages)
    except Exception as exc:
        _write(job, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        return 1
    _write(job, result)
    return 0


def entry(target: Callable[[list[str]], int], argv: list[str]) -> None:
    """The forked job: a session (process group) of its own, so the worker can kill it and
    every Ghostscript/Tesseract it started at once; then ``target`` (:func:`main`)."""
    os.setsid()
    os._exit(target(argv))  # no atexit / multiprocessing clean-up inherited from the worker


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
