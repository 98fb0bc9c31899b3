"""normalize_fax: OcrResult + bytes + metadata -> one Avro-valid Document (pure, no OCR)."""

from __future__ import annotations

import copy
import hashlib

import pytest
from fastavro.validation import validate
from hypothesis import given, settings, strategies as st

from practiceflow.processors.base import Rejected, content_id
from practiceflow.processors.fax.normalize import normalize_fax
from practiceflow.processors.fax.ocr import OcrPage, OcrResult
from practiceflow.schemas.avro_gen import load_parsed

DOCUMENT = load_parsed("Document")
DATA = b"%PDF-1.4 pretend fax bytes"
META = {"fax_from": "+1 (555) 123-0000", "fax_to": "+15559870000", "received_at_iso": "2024-05-01T12:00:00.000Z"}


def _ocr(pages: list[OcrPage], ctype: str = "application/pdf", warnings=None) -> OcrResult:
    return OcrResult(
        pages=pages,
        page_count=len(pages),
        content_type=ctype,
        producer={"ocrmypdf": "x", "tesseract": "y"},
        seconds=0.5,
        warnings=list(warnings or []),
    )


MIXED = _ocr(
    [
        OcrPage(1, "FAX COVER\nTo: Dr. Smith", None, False),
        OcrPage(2, "Lab results\nGlucose 105 mg/dL", 0.9, True),
        OcrPage(3, "Page three", 0.8, True),
        OcrPage(4, "", None, True),  # OCRed, no words found
    ]
)


def _norm(ocr=MIXED, meta=META, data=DATA):
    return normalize_fax(data, meta, "practice-9", 1714564800000, ocr=ocr, storage_uri="s3://fax/abc.pdf")


def test_document_record_fields_and_avro():
    out = _norm()
    assert out.message_type == "fax"
    sha = hashlib.sha256(DATA).hexdigest()
    assert out.message_id == content_id(DATA)
    (rec,) = out.records
    assert rec.record_type == "Document"
    assert rec.key == f"practice-9/-/{sha}"
    v = rec.value
    assert validate(v, DOCUMENT, raise_errors=True)
    assert v["document_id"] == v["sha256"] == sha
    assert v["kind"] == "fax"
    assert v["page_count"] == 4
    assert v["text"] == "FAX COVER\nTo: Dr. Smith\fLab results\nGlucose 105 mg/dL\fPage three\f"
    assert v["pages"][0] == {"page": 1, "text": "FAX COVER\nTo: Dr. Smith", "confidence": None, "ocr": False}
    assert v["pages"][1]["ocr"] is True and v["pages"][1]["confidence"] == 0.9
    assert v["ocr_confidence"] == pytest.approx(0.85)  # OCRed pages with words only
    assert v["fax_from"] == "+1 (555) 123-0000" and v["fax_to"] == "+15559870000"
    assert v["content_type"] == "application/pdf"
    assert v["storage_uri"] == "s3://fax/abc.pdf"
    assert v["patient_id"] is None
    assert v["source"] == {
        "feed": "fax",
        "message_id": content_id(DATA),
        "raw_topic": None,
        "message_type": "fax",
        "sent_at": "2024-05-01T12:00:00.000Z",
    }


def test_text_only_pdf_has_no_ocr_confidence():
    out = _norm(_ocr([OcrPage(1, "typed", None, False)]))
    v = out.records[0].value
    assert v["ocr_confidence"] is None and v["pages"][0]["ocr"] is False
    assert validate(v, DOCUMENT, raise_errors=True)


def test_meta_aliases_and_missing_meta():
    v = _norm(meta={"caller_id": "5551112222", "dnis": "5553334444"}).records[0].value
    assert (v["fax_from"], v["fax_to"]) == ("5551112222", "5553334444")
    assert v["source"]["sent_at"] is None
    v = _norm(meta={}).records[0].value
    assert v["fax_from"] is None and v["fax_to"] is None
    assert validate(v, DOCUMENT, raise_errors=True)


def test_blank_fax_warns_and_ocr_warnings_are_kept():
    out = _norm(_ocr([OcrPage(1, "", None, True)], warnings=["page 1: OCR timed out"]))
    assert "no_text_found" in out.warnings
    assert "ocr: page 1: OCR timed out" in out.warnings


def test_pure_and_deterministic():
    meta = copy.deepcopy(META)
    a, b = _norm(meta=meta), _norm(meta=meta)
    assert a.records == b.records and meta == META


def test_same_bytes_same_document_id_different_bytes_different():
    a = _norm().records[0].value["document_id"]
    b = _norm(data=DATA + b" ").records[0].value["document_id"]
    assert a == _norm().records[0].value["document_id"] and a != b


def test_rejections():
    with pytest.raises(Rejected) as e:
        _norm(data=b"")
    assert e.value.reason_code == "empty_document"
    bad = _ocr([OcrPage(1, "x", None, False)])
    bad.page_count = 2
    with pytest.raises(Rejected) as e:
        _norm(bad)
    assert e.value.reason_code == "ocr_result_inconsistent"


page_st = st.builds(
    lambda text, conf, ocr: (text, conf if ocr else None, ocr),
    st.text(max_size=200),
    st.one_of(st.none(), st.floats(0, 1)),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(page_st, min_size=1, max_size=6),
    st.dictionaries(
        st.sampled_from(["fax_from", "fax_to", "from", "to", "received_at_iso", "title"]), st.text(max_size=30)
    ),
)
def test_any_ocr_result_validates(pages, meta):
    ocr = _ocr([OcrPage(i + 1, t, c, o) for i, (t, c, o) in enumerate(pages)])
    v = _norm(ocr, meta=meta).records[0].value
    assert validate(v, DOCUMENT, raise_errors=True)
    assert v["text"].split("\f") == [t for t, _, _ in pages] or "\f" in "".join(t for t, _, _ in pages)
