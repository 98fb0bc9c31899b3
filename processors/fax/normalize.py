"""Inbound fax -> one ``Document`` record (the pure half of the fax processor).

The streaming layer first runs :func:`practiceflow.processors.fax.ocr.ocr_document`
(files, Tesseract, clock), then calls :func:`normalize_fax` with its result. This
function does no I/O and reads no clock: the same bytes, metadata and OCR result
give the same record, so replays are safe.

Record (``schemas/avro/Document.avsc``):

* ``document_id`` = sha256 of the fax bytes (content-addressed: the same fax
  delivered twice is the same document), also in ``sha256``; the Kafka key is
  ``<practice>/-/<document_id>`` (a fax has no patient until someone files it).
* ``kind`` "fax"; ``pages`` [{page, text, confidence, ocr}] from the OCR result;
  ``text`` = page texts joined with form feeds; ``ocr_confidence`` = mean of the
  OCRed pages' confidences (0..1), ``None`` when no page was OCRed or none had words.
  A page's ``confidence`` is the ink-weighted word confidence (unread ink counts 0,
  :mod:`.quality`), with ``word_confidence`` (Tesseract's mean), ``ink_coverage`` and
  ``needs_human_read`` beside it; ``needs_human_read`` on the record is True when any
  page is flagged (a warning ``ocr_low_quality`` names the pages): the fax classifier
  must not route on such text alone, staff see the fax flagged for reading.
* ``fax_from`` / ``fax_to`` from ``meta`` (several spellings accepted, see
  ``_META_FROM``/``_META_TO``), ``content_type`` as detected from the bytes.
* ``source`` {"feed": "fax", "message_id": content_id(bytes), "message_type": "fax",
  "sent_at": meta["received_at_iso"]}.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ..base import Normalized, NormalizeResult, Rejected, content_id, entity_key
from .ocr import OcrResult

FEED = "fax"
MESSAGE_TYPE = "fax"

_META_FROM = ("fax_from", "from", "caller_id", "ani", "remote_csid", "sender")
_META_TO = ("fax_to", "to", "dnis", "called_number", "recipient")
_META_TITLE = ("title", "subject")

__all__ = ["normalize_fax", "FEED", "MESSAGE_TYPE"]


def _meta_str(meta: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = meta.get(k)
        if v is None:
            continue
        s = str(v).strip()
        if s:
            return s
    return None


def normalize_fax(
    data: bytes,
    meta: dict[str, Any],
    practice_id: str,
    received_at_ms: int,
    *,
    ocr: OcrResult,
    storage_uri: str,
    searchable_pdf_uri: str | None = None,
    ocr_status: str | None = None,
) -> NormalizeResult:
    """One fax (its bytes, gateway metadata, OCR result) -> one Document record.

    ``received_at_ms`` is accepted for the common normalizer signature; the
    Document schema has no field for it, and ``source.sent_at`` is
    ``meta["received_at_iso"]`` exactly as the gateway supplied it.
    ``searchable_pdf_uri`` (OCRmyPDF's output in the document store) and ``ocr_status``
    (complete / partial_page_limit / timed_out) come from the worker's OCR step.
    """
    if not data:
        raise Rejected("empty_document", "fax has no bytes")
    if not practice_id:
        raise Rejected("missing_practice_id", "practice id is required")
    if ocr.page_count != len(ocr.pages):
        raise Rejected("ocr_result_inconsistent", f"OCR result says {ocr.page_count} pages but has {len(ocr.pages)}")
    meta = meta or {}
    sha = hashlib.sha256(data).hexdigest()
    message_id = content_id(data)
    warnings = [f"ocr: {w}" for w in ocr.warnings]

    pages = []
    confs = []
    flagged = []
    for p in ocr.pages:
        conf = None if p.confidence is None else float(p.confidence)
        page: dict[str, Any] = {"page": int(p.page_no), "text": p.text, "confidence": conf, "ocr": bool(p.ocr_used)}
        if p.needs_human_read is not None:
            page["word_confidence"] = p.word_confidence
            page["ink_coverage"] = p.ink_coverage
            page["needs_human_read"] = bool(p.needs_human_read)
            if p.needs_human_read:
                flagged.append(int(p.page_no))
        pages.append(page)
        if p.ocr_used and conf is not None:
            confs.append(conf)
    text = "\f".join(p.text for p in ocr.pages)
    if not text.strip():
        warnings.append("no_text_found")
    ocr_confidence = round(sum(confs) / len(confs), 4) if confs else None
    assessed = any(p.needs_human_read is not None for p in ocr.pages)
    if flagged:
        warnings.append(f"ocr_low_quality: pages {flagged} need a human read (OCR text not trustworthy)")

    sent_at = meta.get("received_at_iso")
    source = {
        "feed": FEED,
        "message_id": message_id,
        "raw_topic": meta.get("raw_topic"),
        "message_type": MESSAGE_TYPE,
        "sent_at": None if sent_at is None else str(sent_at),
    }
    value = {
        "practice_id": practice_id,
        "document_id": sha,
        "patient_id": None,
        "kind": "fax",
        "title": _meta_str(meta, _META_TITLE),
        "status": None,
        "content_type": ocr.content_type or meta.get("content_type"),
        "storage_uri": storage_uri,
        "sha256": sha,
        "page_count": int(ocr.page_count),
        "text": text,
        "pages": pages,
        "ocr_confidence": ocr_confidence,
        "fax_from": _meta_str(meta, _META_FROM),
        "fax_to": _meta_str(meta, _META_TO),
        "authored_at": None,
        "source": source,
        "needs_human_read": bool(flagged) if assessed else None,
        "searchable_pdf_uri": searchable_pdf_uri,
        "ocr_status": ocr_status,
    }
    return NormalizeResult(
        message_id=message_id,
        message_type=MESSAGE_TYPE,
        records=[Normalized("Document", entity_key(practice_id, None, sha), value)],
        warnings=warnings,
    )
