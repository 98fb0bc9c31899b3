"""The worker's fax OCR step: page limit, time limit, a dying OCR process, the searchable PDF.

Real OCR (ocrmypdf + Tesseract) in a real child process; no broker needed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from practiceflow.processors.base import Rejected
from practiceflow.processors.fax import synth
from practiceflow.sinks.docstore import LocalDocumentStore
from practiceflow.streams.fax import FaxOcr, OcrFailed

RAW = {"practice_id": "clinic-f", "feed": "fax", "message_id": "m", "received_at": 1_764_000_000_000, "headers": {}}


def _raw(data: bytes) -> dict:
    return {**RAW, "payload": data}


def test_page_limit_ocrs_the_first_pages_keeps_the_rest_and_stores_the_searchable_pdf(tmp_path):
    doc = synth.render_document(31, pages=3)
    pdf = synth.to_image_pdf(doc)
    store = LocalDocumentStore((tmp_path / "docs").as_uri())
    ocr = FaxOcr(tmp_path / "ocr", store=store, max_pages=1, timeout_s=300)
    result = asyncio.run(ocr(_raw(pdf)))
    value = result.records[0].value
    assert value["page_count"] == 3 and [p["ocr"] for p in value["pages"]] == [True, False, False]
    assert value["pages"][0]["text"].strip() and value["pages"][1]["text"] == ""
    assert value["ocr_status"] == "partial_page_limit"
    assert any("only the first 1 of 3 pages" in w for w in result.warnings)
    # pages nobody OCRed can only be read by a person: flagged, and so is the document
    assert value["pages"][2]["needs_human_read"] is True and value["needs_human_read"] is True
    searchable = store.get(value["searchable_pdf_uri"], "clinic-f")
    assert searchable.startswith(b"%PDF") and "/clinic-f/" in value["searchable_pdf_uri"]
    assert list((tmp_path / "ocr").iterdir()) == []  # the job folder is gone


def test_multipage_tiff_is_cut_to_the_page_limit(tmp_path):
    tiff = synth.to_tiff_g4(synth.render_document(32, pages=3))
    result = asyncio.run(FaxOcr(tmp_path / "ocr", max_pages=2, timeout_s=300)(_raw(tiff)))
    value = result.records[0].value
    assert value["page_count"] == 3 and [p["ocr"] for p in value["pages"]] == [True, True, False]
    assert value["ocr_status"] == "partial_page_limit" and value["searchable_pdf_uri"] is None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers signal 0; it is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _hang(argv: list[str]) -> int:
    """Stands in for an OCR that never ends, with a child of its own (like Ghostscript)."""
    job = Path(argv[0])
    child = subprocess.Popen(["sleep", "600"])
    (job.parent.parent / "grandchild.pid").write_text(str(child.pid))
    (job / "pages.json").write_text('{"total_pages": 2}')
    time.sleep(600)
    return 0


def _die(argv: list[str]) -> int:
    """Stands in for an OCR process the OOM killer ends."""
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def test_a_hung_ocr_is_killed_with_its_children_and_the_fax_kept_without_text(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    tiff = synth.to_tiff_g4(synth.render_document(33, pages=2))
    ocr = FaxOcr(tmp_path / "ocr", max_pages=5, timeout_s=3)
    ocr.target = _hang
    result = asyncio.run(ocr(_raw(tiff)))
    value = result.records[0].value
    assert value["ocr_status"] == "timed_out" and value["page_count"] == 2 and value["text"] == "\f"
    assert value["needs_human_read"] is True
    assert any("OCR stopped after 3s" in w for w in result.warnings)
    grandchild = int(pidfile.read_text())
    for _ in range(50):  # the kill is asynchronous; wait until the group is gone
        if not _pid_alive(grandchild):
            break
        time.sleep(0.1)
    assert not _pid_alive(grandchild), "the OCR process's own children must die with it"


def test_an_ocr_process_that_dies_is_an_infrastructure_failure_not_a_hang(tmp_path):
    ocr = FaxOcr(tmp_path / "ocr", timeout_s=60)
    ocr.target = _die
    with pytest.raises(OcrFailed):
        asyncio.run(ocr(_raw(synth.to_tiff_g4(synth.render_document(34, pages=1)))))


def test_a_document_that_cannot_be_read_is_still_rejected_with_its_reason(tmp_path):
    with pytest.raises(Rejected) as err:
        asyncio.run(FaxOcr(tmp_path / "ocr")(_raw(b"%PDF-1.4 not really a pdf")))
    assert err.value.reason_code in ("corrupt_pdf", "empty_pdf")
