"""Fax OCR at fax resolution: accuracy floors and an honest page quality signal.

Pages come from :mod:`practiceflow.processors.fax.evalset` (generated, true text
known; fonts from the Debian packages ./pf installs). Real Tesseract; a handful of
pages only (about 1-2 CPU-s each) because the machine is shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastavro.validation import validate

from practiceflow.processors.fax import evalset, synth
from practiceflow.processors.fax.normalize import normalize_fax
from practiceflow.processors.fax.ocr import ocr_document
from practiceflow.processors.fax.quality import NEEDS_HUMAN_READ_BELOW, WordBox, page_quality, text_ink
from practiceflow.schemas.avro_gen import load_parsed

DOCUMENT = load_parsed("Document")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fax-ocr-quality")


def _ocr(name: str, workdir: Path):
    page = evalset.render(evalset.spec(name))
    data = evalset.to_tiff_g4(page)
    return page, data, ocr_document(data, "image/tiff", workdir=workdir)


# --------------------------------------------------------------------------- the signal, pure
def _text_like(h: int, w: int) -> np.ndarray:
    """Rows of 'glyphs': 6x4 ink blocks with gaps, like lines of print."""
    ink = np.zeros((h, w), dtype=bool)
    for y in range(20, h - 20, 30):
        for x in range(20, w - 20, 8):
            ink[y : y + 6, x : x + 4] = True
    return ink


def test_unread_ink_lowers_the_page_confidence():
    ink = _text_like(400, 600)
    dpi = (200.0, 200.0)
    top = [WordBox(0, 0, 600, 200, 0.95)]  # the top half read well, the bottom half not at all
    both = top + [WordBox(0, 200, 600, 200, 0.95)]
    full = page_quality(ink, dpi, both)
    half = page_quality(ink, dpi, top)
    assert full.ink_coverage == pytest.approx(1.0) and full.ink_confidence == pytest.approx(0.95)
    assert not full.needs_human_read
    # the old number (mean word confidence) is still 0.95; the page's is not
    assert half.word_confidence == pytest.approx(0.95)
    assert half.ink_coverage == pytest.approx(0.5, abs=0.05)
    assert half.ink_confidence < NEEDS_HUMAN_READ_BELOW and half.needs_human_read
    low = page_quality(ink, dpi, [WordBox(0, 0, 600, 400, 0.4)])  # all read, badly
    assert low.ink_confidence == pytest.approx(0.4) and low.needs_human_read and low.low_confidence_words == 1.0


def test_rules_and_specks_are_not_text_ink_and_blank_pages_are_not_flagged():
    ink = _text_like(400, 600)
    ink[150, 10:590] = True  # a table rule, 580 px = 2.9 inch at 200 dpi
    ink[10:390, 300] = True  # a vertical one
    ink[5, 5] = ink[395, 595] = True  # two specks
    t = text_ink(ink, (200.0, 200.0))
    assert not t[150, 10:590].any() or t[150, 10:590].sum() < 10  # glyph pixels on the rule row may stay
    assert not t[5, 5] and not t[395, 595]
    assert t.sum() == pytest.approx(_text_like(400, 600).sum(), rel=0.05)
    blank = np.zeros((400, 600), dtype=bool)
    blank[5, 5] = True
    q = page_quality(blank, (200.0, 200.0), [])
    assert q.ink_confidence is None and not q.needs_human_read


# --------------------------------------------------------------------------- real OCR
def test_handwriting_like_page_is_flagged_and_clean_page_is_not(workdir):
    hand, hand_data, hand_res = _ocr("script_dkg_10", workdir)
    clean, _, clean_res = _ocr("letter_arial_8_fine", workdir)
    h, c = hand_res.pages[0], clean_res.pages[0]

    assert synth.word_accuracy(clean.text, c.text) >= 0.9
    assert c.needs_human_read is False and c.confidence >= 0.85 and c.ink_coverage >= 0.95

    assert synth.word_accuracy(hand.text, h.text) < 0.7  # Tesseract cannot read it ...
    assert h.needs_human_read is True  # ... and the page says so
    assert h.confidence < NEEDS_HUMAN_READ_BELOW <= c.confidence
    assert h.confidence <= h.word_confidence

    rec = normalize_fax(hand_data, {}, "p1", 0, ocr=hand_res, storage_uri="file:///x").records[0]
    assert rec.value["needs_human_read"] is True
    assert rec.value["pages"][0]["needs_human_read"] is True
    assert rec.value["pages"][0]["word_confidence"] == pytest.approx(h.word_confidence)
    assert validate(rec.value, DOCUMENT)
    res = normalize_fax(hand_data, {}, "p1", 0, ocr=hand_res, storage_uri="file:///x")
    assert any(w.startswith("ocr_low_quality") for w in res.warnings)


@pytest.mark.parametrize("name", ["lab_report_arial_9_skew", "lab_report_sans_8_dark"])
def test_lab_report_rows_read_in_order_at_fax_resolution(workdir, name):
    """Unruled lab result columns at 204x196: psm 3 read the columns as separate blocks
    (word accuracy 0.40 and 0.42 on main), separating each value from its test name."""
    page, _, res = _ocr(name, workdir)
    p = res.pages[0]
    assert synth.word_accuracy(page.text, p.text) >= 0.85
    assert p.needs_human_read is False


def test_image_only_pdf_route_reports_quality_too(workdir):
    """Fax servers often deliver image-only PDFs: OCRmyPDF's route carries the same signal."""
    hand = evalset.render(evalset.spec("script_dkg_10"))
    res = ocr_document(synth.to_image_pdf(hand), "application/pdf", workdir=workdir / "pdf")
    p = res.pages[0]
    assert res.producer["engine"] == "ocrmypdf" and p.ocr_used
    assert p.needs_human_read is True and p.confidence < NEEDS_HUMAN_READ_BELOW
    assert p.word_confidence is not None and p.ink_coverage is not None


def test_evaluation_pages_are_deterministic():
    s = evalset.spec("med_list_courier_10_std")
    a, b = evalset.render(s), evalset.render(s)
    assert a.dpi == (204, 98) and a.text == b.text
    assert evalset.to_tiff_g4(a) == evalset.to_tiff_g4(b)
    assert len({s.name for s in evalset.EVAL_SET}) == len(evalset.EVAL_SET)
    assert {s.layout for s in evalset.EVAL_SET} == set(evalset.LAYOUTS)
