"""Fax OCR on synthetic pages whose true text is known (real Tesseract / OCRmyPDF).

Pages come from :mod:`practiceflow.processors.fax.synth` (DejaVu, fonts-dejavu-core):
typed US Letter letters, 1-bit G4 at fax fine resolution 204x196 dpi with speckle
and skew. Each OCR here is one or two pages, so the module stays well under a
minute on 2 cores.
"""

from __future__ import annotations

import io
from pathlib import Path

import pikepdf
import pytest
from fastavro.validation import validate
from PIL import Image

from practiceflow.processors.base import Rejected
from practiceflow.processors.fax import synth
from practiceflow.processors.fax.normalize import normalize_fax
from practiceflow.processors.fax.ocr import (
    IMAGES_VIA_OCRMYPDF,
    OcrResult,
    image_to_pdf,
    ocr_document,
    sniff,
    tsv_pages,
)
from practiceflow.schemas.avro_gen import load_parsed

DOCUMENT = load_parsed("Document")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fax-ocr")


@pytest.fixture(scope="module")
def fax_tiff_result(workdir):
    page = synth.render_page(7, "referral")  # 204x196 dpi, fax noise
    data = synth.to_tiff_g4(page)
    return data, page, ocr_document(data, "image/tiff", workdir=workdir / "tiff")


# --------------------------------------------------------------------------- images
def test_tiff_g4_fax_page_text_recovered(fax_tiff_result, workdir):
    _data, page, res = fax_tiff_result
    assert page.image.info["dpi"] == (204, 196)
    assert res.page_count == 1 and len(res.pages) == 1
    p = res.pages[0]
    assert p.page_no == 1 and p.ocr_used is True
    assert synth.word_accuracy(page.text, p.text) >= 0.9
    assert p.confidence is not None and 0.5 < p.confidence <= 1.0
    assert res.content_type == "image/tiff"
    assert res.producer["engine"] == "tesseract" and res.producer["tesseract"]
    assert res.seconds > 0
    assert list((workdir / "tiff").iterdir()) == []  # nothing left behind for image input


def test_multipage_tiff_two_jobs(workdir):
    doc = synth.render_document(21, pages=2, kinds=["lab_result", "prior_auth_response"])
    res = ocr_document(synth.to_tiff_g4(doc), None, workdir=workdir, jobs=2)
    assert [p.page_no for p in res.pages] == [1, 2]
    for want, got in zip(doc.pages, res.pages, strict=True):
        assert got.ocr_used and got.confidence is not None
        assert synth.word_accuracy(want.text, got.text) >= 0.9
    assert res.text.count("\f") == 1


def test_png_grayscale(workdir):
    page = synth.render_page(5, "lab_result", dpi=(200, 200))
    res = ocr_document(synth.to_png(page, mode="L"), "image/png", workdir=workdir)
    assert res.content_type == "image/png"
    assert res.pages[0].ocr_used
    assert synth.word_accuracy(page.text, res.text) >= 0.9


def test_png_transparent_background_is_flattened_onto_white(workdir):
    page = synth.render_page(6, "referral", dpi=(200, 200), noise=0)
    ink = page.image.convert("L").point(lambda v: 255 - v)  # text opaque, paper transparent
    rgba = Image.new("RGBA", page.image.size, (0, 0, 0, 0))
    rgba.putalpha(ink)
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")  # and no resolution: estimated as US Letter
    res = ocr_document(buf.getvalue(), None, workdir=workdir)
    assert synth.word_accuracy(page.text, res.text) >= 0.9
    assert any("resolution" in w for w in res.warnings)


def test_jpeg(workdir):
    page = synth.render_page(10, "prior_auth_response", dpi=(200, 200))
    res = ocr_document(synth.to_jpeg(page), "image/jpeg", workdir=workdir)
    assert res.content_type == "image/jpeg" and res.pages[0].ocr_used
    assert synth.word_accuracy(page.text, res.text) >= 0.9


def test_standard_resolution_fax_is_resampled_to_square_pixels(workdir):
    page = synth.render_page(204, "referral", dpi=synth.FAX_STANDARD_DPI)  # 204x98 dpi
    res = ocr_document(synth.to_tiff_g4(page), None, workdir=workdir)
    assert synth.word_accuracy(page.text, res.text) >= 0.85


def test_image_to_pdf_keeps_fax_resolution():
    page = synth.render_page(1, "referral", noise=0)
    pdf_bytes, warnings = image_to_pdf(synth.to_tiff_g4(page), "tiff")
    assert warnings == []
    with pikepdf.open(io.BytesIO(pdf_bytes)) as pdf:
        assert len(pdf.pages) == 1
        box = [float(v) for v in pdf.pages[0].mediabox]
    assert box[2] == pytest.approx(612, abs=1) and box[3] == pytest.approx(792, abs=1)  # Letter


# --------------------------------------------------------------------------- PDFs
def test_pdf_with_text_layer_is_not_ocred(workdir):
    doc = synth.render_document(3, pages=2, noise=0)
    res = ocr_document(synth.to_text_pdf(doc), "application/pdf", workdir=workdir)
    assert res.page_count == 2
    assert all(not p.ocr_used and p.confidence is None for p in res.pages)
    assert [synth.word_accuracy(a.text, b.text) for a, b in zip(doc.pages, res.pages, strict=True)] == [1.0, 1.0]
    assert res.producer["engine"] == "pdf_text"
    assert res.seconds < 1.0
    assert res.output_pdf is None


def test_mixed_pdf_only_image_page_is_ocred(workdir):
    text_doc = synth.render_document(4, pages=1, noise=0)
    scan = synth.render_page(8, "prior_auth_response")
    mixed = pikepdf.new()
    for part in (synth.to_text_pdf(text_doc), synth.to_image_pdf(scan)):
        with pikepdf.open(io.BytesIO(part)) as src:
            mixed.pages.extend(src.pages)
    buf = io.BytesIO()
    mixed.save(buf)
    res = ocr_document(buf.getvalue(), "application/pdf", workdir=workdir)
    assert res.producer["engine"] == "ocrmypdf"
    first, second = res.pages
    assert not first.ocr_used and first.confidence is None
    assert synth.word_accuracy(text_doc.pages[0].text, first.text) == 1.0
    assert second.ocr_used and second.confidence is not None and 0.5 < second.confidence <= 1.0
    assert synth.word_accuracy(scan.text, second.text) >= 0.9
    assert res.output_pdf is not None and res.output_pdf.is_file()


def _scan_with_text(page, text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="letter")
    pdf.add_page()
    pdf.image(page.image.convert("L"), x=0, y=0, w=612, h=792)
    pdf.set_font("helvetica", size=8)
    pdf.text(20, 12, text)
    return bytes(pdf.output())


def test_scan_with_a_little_header_text_is_flagged_not_ocred(workdir):
    page = synth.render_page(12, "referral", noise=0)
    # a fax server's header line as real text: skip_text keeps the page as it is
    res = ocr_document(_scan_with_text(page, "FROM 555-0100 P. 1/1"), "application/pdf", workdir=workdir)
    assert not res.pages[0].ocr_used and "555-0100" in res.pages[0].text
    assert any("not OCRed" in w for w in res.warnings)


def test_scan_with_a_blank_text_layer_is_ocred(workdir):
    # Office tools that wrap a scan often add a text object holding one space
    page = synth.render_page(13, "lab_result")
    res = ocr_document(_scan_with_text(page, " "), "application/pdf", workdir=workdir)
    assert res.pages[0].ocr_used and res.pages[0].confidence is not None
    assert synth.word_accuracy(page.text, res.text) >= 0.9
    assert any("blank text layer removed" in w for w in res.warnings)


def test_tiff_through_ocrmypdf_route_gives_confidences(workdir):
    page = synth.render_page(9, "referral")
    res = ocr_document(synth.to_tiff_g4(page), None, workdir=workdir, settings=IMAGES_VIA_OCRMYPDF)
    assert res.producer["engine"] == "ocrmypdf"
    p = res.pages[0]
    assert p.ocr_used and p.confidence is not None
    assert synth.word_accuracy(page.text, p.text) >= 0.9


# --------------------------------------------------------------------------- rejections
@pytest.mark.parametrize(
    "data,ctype",
    [
        (b"", None),
        (b"hello, this is not a fax", "application/pdf"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"PK\x03\x04" + b"\x00" * 40, "application/zip"),
    ],
)
def test_garbage_is_rejected(workdir, data, ctype):
    with pytest.raises(Rejected) as e:
        ocr_document(data, ctype, workdir=workdir)
    assert e.value.reason_code == "unsupported_document_type"


def test_empty_pdf_is_rejected(workdir):
    buf = io.BytesIO()
    pikepdf.new().save(buf)
    with pytest.raises(Rejected) as e:
        ocr_document(buf.getvalue(), "application/pdf", workdir=workdir)
    assert e.value.reason_code == "empty_pdf"


def test_corrupt_pdf_is_rejected(workdir):
    with pytest.raises(Rejected) as e:
        ocr_document(b"%PDF-1.7\n1 0 obj << /Type /Catalog", "application/pdf", workdir=workdir)
    assert e.value.reason_code == "corrupt_pdf"


def _encrypted(user: str) -> bytes:
    doc = synth.render_document(2, pages=1, noise=0)
    with pikepdf.open(io.BytesIO(synth.to_text_pdf(doc))) as pdf:
        buf = io.BytesIO()
        pdf.save(buf, encryption=pikepdf.Encryption(user=user, owner="owner-secret"))
        return buf.getvalue()


def test_password_protected_pdf_is_rejected(workdir):
    with pytest.raises(Rejected) as e:
        ocr_document(_encrypted("letmein"), "application/pdf", workdir=workdir)
    assert e.value.reason_code == "encrypted_pdf"


def test_pdf_encrypted_without_user_password_is_read(workdir):
    res = ocr_document(_encrypted(""), "application/pdf", workdir=workdir)
    assert res.pages[0].text and not res.pages[0].ocr_used


def test_truncated_tiff_is_rejected(workdir):
    data = synth.to_tiff_g4(synth.render_page(1, "referral", noise=0))
    with pytest.raises(Rejected) as e:
        ocr_document(data[:60], "image/tiff", workdir=workdir)
    assert e.value.reason_code == "corrupt_image"


# --------------------------------------------------------------------------- helpers
def test_sniff_uses_magic_bytes():
    assert sniff(b"%PDF-1.4\n") == "pdf"
    assert sniff(b"\r\n%PDF-1.4\n") == "pdf"  # junk before the header is tolerated
    assert sniff(b"II*\x00rest") == sniff(b"MM\x00*rest") == "tiff"
    assert sniff(b"\x89PNG\r\n\x1a\n") == "png"
    assert sniff(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff(b"<html>") is None


def test_content_type_mismatch_is_a_warning_not_an_error(workdir):
    res = ocr_document(synth.to_text_pdf(synth.render_document(1, noise=0)), "image/tiff", workdir=workdir)
    assert res.content_type == "application/pdf"
    assert any("content type" in w for w in res.warnings)


def test_tsv_pages_reads_confidences_and_text():
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n"
        "5\t1\t1\t1\t1\t1\t0\t0\t5\t5\t90\tHello\n"
        "5\t1\t1\t1\t1\t2\t0\t0\t5\t5\t70\tworld\n"
        "5\t1\t1\t2\t1\t1\t0\t0\t5\t5\t80\tBye\n"
        "1\t2\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n"
    )
    pages = tsv_pages(tsv)
    confs, text = pages[1]
    assert confs == [0.9, 0.7, 0.8]
    assert text == "Hello world\n\nBye"
    assert pages[2] == ([], "")


# --------------------------------------------------------------------------- OCR -> record
def test_ocr_then_normalize_validates(fax_tiff_result):
    data, _, res = fax_tiff_result
    assert isinstance(res, OcrResult)
    out = normalize_fax(
        data,
        {"fax_from": "+15551230000", "fax_to": "+15559870000", "received_at_iso": "2024-05-01T12:00:00Z"},
        "practice-1",
        1714564800000,
        ocr=res,
        storage_uri="s3://faxes/x.tif",
    )
    (rec,) = out.records
    assert validate(rec.value, DOCUMENT, raise_errors=True)
    assert rec.value["pages"][0]["ocr"] is True
    assert rec.value["ocr_confidence"] == pytest.approx(res.pages[0].confidence)
    assert rec.value["content_type"] == "image/tiff"
