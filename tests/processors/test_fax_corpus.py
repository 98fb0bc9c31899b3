"""Fax OCR + normalize over a few public sample faxes (``<shared>/data/fax``).

The folder comes from ``PRACTICEFLOW_SHARED_DATA`` (default ``<repo>/../shared/data``
when it exists). Only a handful of files, picked for coverage and kept small so the
run stays short: a born-digital text PDF (no OCR), a bilevel image-only scan PDF
(OCRmyPDF path) and a gray PNG fax cover sheet without a resolution (Tesseract
path). Files that are absent simply produce no test cases.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastavro.validation import validate

from practiceflow.processors.fax.normalize import normalize_fax
from practiceflow.processors.fax.ocr import ocr_document
from practiceflow.schemas.avro_gen import load_parsed
from tests.fixtures import require_corpus

pytestmark = pytest.mark.corpus

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = load_parsed("Document")


def _shared_data() -> Path | None:
    env = os.environ.get("PRACTICEFLOW_SHARED_DATA")
    if env:
        return Path(env)
    default = REPO.parent / "shared" / "data"
    return default if default.is_dir() else None


DATA = _shared_data()
FAX_DIR = DATA / "fax" if DATA is not None else None

# file -> (expects OCR on every page, words that must be read, case-insensitive)
PICKS = {
    "dictatemed_test_cardiology_referral_001.pdf": (False, ["referral", "cardiology"]),
    "roi_blank_proliance_surgeons_form1_scan.pdf": (True, ["authorization", "health"]),
    "funsd_fax_cover_sheet_83594639.png": (True, ["fax", "date"]),
}


def _files() -> list[Path]:
    if FAX_DIR is None or not FAX_DIR.is_dir():
        return []
    return [FAX_DIR / name for name in PICKS if (FAX_DIR / name).is_file()]


def test_sample_faxes_are_present():
    """The cases below are generated from the files found; without them this fails instead."""
    fax_dir = require_corpus("fax")
    assert [n for n in PICKS if not (fax_dir / n).is_file()] == []


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_sample_fax_ocr_and_normalize(path: Path, tmp_path: Path):
    data = path.read_bytes()
    res = ocr_document(data, None, workdir=tmp_path)
    want_ocr, words = PICKS[path.name]
    assert res.page_count == len(res.pages) >= 1
    assert all(p.ocr_used is want_ocr for p in res.pages)
    for p in res.pages:
        assert (p.confidence is not None) is (want_ocr and bool(p.text.split()))
        if p.confidence is not None:
            assert 0.0 <= p.confidence <= 1.0
    text = res.text.lower()
    for w in words:
        assert w in text, f"{w!r} not read from {path.name}"

    out = normalize_fax(
        data,
        {"fax_from": "+15550001111", "received_at_iso": "2024-01-02T03:04:05Z"},
        "practice-corpus",
        1704164645000,
        ocr=res,
        storage_uri=f"file://{path}",
    )
    (rec,) = out.records
    assert validate(rec.value, DOCUMENT, raise_errors=True)
    assert rec.value["page_count"] == res.page_count
    assert (rec.value["ocr_confidence"] is not None) is want_ocr
