"""OCR for inbound faxes: bytes in, per-page text + Tesseract confidence out.

This is the I/O half of the fax processor (files, subprocesses, clock). The pure
half, :func:`practiceflow.processors.fax.normalize.normalize_fax`, turns an
:class:`OcrResult` into a ``Document`` record. The streaming layer calls
``ocr_document`` and then ``normalize_fax``.

Pipeline
--------
1. Sniff the type from magic bytes (PDF, TIFF, PNG, JPEG); ``content_type`` is only
   a hint. Anything else is :class:`Rejected` (``unsupported_document_type``).
2. Images become an image-only PDF with img2pdf (TIFF G4 and JPEG are embedded
   as-is; DPI kept, including fax fine mode's non-square 204x196). Images img2pdf
   refuses (alpha channel, odd modes) are flattened onto white with Pillow first.
   PDFs are opened with pikepdf to reject encrypted / corrupt / empty files with a
   precise code (PDFs encrypted with an empty user password are decrypted).
3. If every page already carries text, the text is extracted and OCRmyPDF is not
   run at all (it would skip every page under ``skip_text`` anyway).
4. Otherwise ``ocrmypdf.ocr`` runs with ``skip_text=True`` (pages with a text layer
   are not OCRed), ``output_type="pdf"`` (no PDF/A), ``optimize=0``,
   ``progress_bar=False``, ``jobs`` pages in parallel and ``OMP_THREAD_LIMIT=1``
   (Tesseract's OpenMP threads made it several times slower on 2-core machines).
   The OCR engine is OCRmyPDF's Tesseract engine subclassed by
   :mod:`._ocrmypdf_plugin`, which records each OCRed page's Tesseract text and
   mean word confidence from the *same* Tesseract run (hOCR ``x_wconf`` or TSV
   ``conf``); nothing is OCRed twice.
5. Text of pages that were not OCRed comes from the PDF's own text layer via
   pypdfium2 (PDFium, a dependency of OCRmyPDF 17).

Confidence is the mean word confidence on a 0..1 scale (Tesseract's 0..100 / 100);
``None`` for pages whose text came from the PDF itself, and for OCRed pages on
which Tesseract found no words.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from ..base import Rejected

PLUGIN = "practiceflow.processors.fax._ocrmypdf_plugin"

CONTENT_TYPES = {
    "pdf": "application/pdf",
    "tiff": "image/tiff",
    "png": "image/png",
    "jpeg": "image/jpeg",
}

# PDFium is not thread-safe; share OCRmyPDF's lock for its pypdfium2 rasterizer so a
# text extraction here never overlaps a rasterization in another thread's OCR job.
try:  # pragma: no cover - depends on the OCRmyPDF version
    from ocrmypdf.builtin_plugins.pypdfium import _pdfium_lock as _PDFIUM_LOCK
except Exception:  # pragma: no cover
    _PDFIUM_LOCK = threading.Lock()


# --------------------------------------------------------------------------- results
class OcrPage(NamedTuple):
    page_no: int  # 1-based
    text: str
    confidence: float | None  # mean word confidence 0..1, None when not OCRed
    ocr_used: bool


@dataclass(slots=True)
class OcrResult:
    pages: list[OcrPage]
    page_count: int
    content_type: str  # detected from the bytes, e.g. "image/tiff"
    producer: dict[str, Any]  # engine versions and the settings used
    seconds: float
    output_pdf: Path | None = None  # searchable PDF (None when nothing was OCRed)
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\f".join(p.text for p in self.pages)


@dataclass(frozen=True, slots=True)
class OcrSettings:
    """How OCRmyPDF/Tesseract are driven. ``TUNED`` is the default; see bench/bench_ocr.py."""

    name: str = "tuned"
    pdf_renderer: str = "sandwich"  # Tesseract's own text-only PDF: no fpdf2 font work
    tesseract_pagesegmode: int | None = None  # 3 (auto layout): psm 6 lost accuracy
    tesseract_oem: int | None = None  # Debian eng.traineddata is LSTM-only (tessdata_fast)
    tesseract_timeout: float = 120.0  # seconds per page; the page is kept without text after
    tesseract_config: tuple[str, ...] = ()
    output_type: str = "pdf"
    optimize: int = 0
    confidences: bool = True  # use the confidence plugin
    text_shortcut: bool = True  # skip OCRmyPDF when every page already has text
    language: str = "eng"
    extra: Mapping[str, Any] = field(default_factory=dict)  # any other ocrmypdf.ocr kwargs


TUNED = OcrSettings()
#: OCRmyPDF's own defaults, except skip_text (needed for mixed PDFs): fpdf2 renderer,
#: PDF/A output, optimize=1. Used by the bench as the "before" number.
OCRMYPDF_DEFAULTS = OcrSettings(
    name="ocrmypdf_defaults", pdf_renderer="auto", output_type="pdfa", optimize=1,
    confidences=False, text_shortcut=False, tesseract_timeout=180.0,
)


# --------------------------------------------------------------------------- sniffing
def sniff(data: bytes) -> str | None:
    """"pdf" | "tiff" | "png" | "jpeg" from magic bytes, else None."""
    head = data[:8]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    # PDF readers accept junk before the header (Acrobat: within the first 1024 bytes)
    if b"%PDF-" in data[:1024]:
        return "pdf"
    return None


# --------------------------------------------------------------------------- images
_MIN_DPI = 50.0


def _estimate_dpi(size: tuple[int, int]) -> float:
    """An image without resolution is assumed to be a US Letter page."""
    w, h = size
    return max(72.0, min(600.0, max(w / 8.5, h / 11.0)))


def image_to_pdf(data: bytes, kind: str) -> tuple[bytes, list[str]]:
    """Image bytes (TIFF incl. multi-page G4, PNG, JPEG) -> image-only PDF bytes."""
    import img2pdf
    from PIL import Image, UnidentifiedImageError

    warnings: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            n_frames = getattr(im, "n_frames", 1)
            dpi = im.info.get("dpi")
            size = im.size
            has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    except Image.DecompressionBombError as e:
        raise Rejected("document_too_large", f"image too large to OCR: {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise Rejected("corrupt_image", f"{kind} image cannot be decoded: {e}") from e

    layout = None
    conv_kw: dict[str, Any] = {"nodate": True}
    if not dpi or min(float(dpi[0]), float(dpi[1])) < _MIN_DPI:
        est = _estimate_dpi(size)
        warnings.append(f"image has no usable resolution ({dpi}); assuming US Letter at {est:.0f} dpi")
        layout = img2pdf.get_fixed_dpi_layout_fun((est, est))
        conv_kw["layout_fun"] = layout

    if not has_alpha:
        try:
            return img2pdf.convert(data, **conv_kw), warnings
        except Exception as e:  # img2pdf refuses some modes/encodings; Pillow below
            warnings.append(f"img2pdf could not embed the image as-is ({type(e).__name__}); re-encoded")

    # Pillow fallback: flatten transparency onto white (a transparent background would
    # otherwise turn black), one PNG per frame, resolution kept.
    pngs: list[bytes] = []
    try:
        with Image.open(io.BytesIO(data)) as im:
            for i in range(n_frames):
                im.seek(i)
                fr = im.copy()
                fdpi = fr.info.get("dpi") or dpi
                if fr.mode in ("P", "PA") or (fr.mode not in ("1", "L", "RGB") and "transparency" in fr.info):
                    fr = fr.convert("RGBA")
                if fr.mode in ("RGBA", "LA", "La", "RGBa"):
                    bg = Image.new("RGB", fr.size, (255, 255, 255))
                    bg.paste(fr.convert("RGBA"), mask=fr.convert("RGBA").getchannel("A"))
                    fr = bg
                elif fr.mode not in ("1", "L", "RGB"):
                    fr = fr.convert("L" if fr.mode.startswith(("I", "F")) else "RGB")
                buf = io.BytesIO()
                save_kw = {"dpi": tuple(round(float(v)) for v in fdpi)} if fdpi and layout is None else {}
                fr.save(buf, format="PNG", **save_kw)
                pngs.append(buf.getvalue())
    except (OSError, ValueError) as e:
        raise Rejected("corrupt_image", f"{kind} image cannot be decoded: {e}") from e
    try:
        return img2pdf.convert(pngs, **conv_kw), warnings
    except Exception as e:
        raise Rejected("corrupt_image", f"{kind} image cannot be converted to PDF: {e}") from e


# --------------------------------------------------------------------------- PDFs
def _check_pdf(data: bytes, workdir: Path) -> tuple[Path, list[str]]:
    """Write a PDF ocrmypdf can read; Rejected for encrypted, corrupt or empty ones."""
    import pikepdf

    warnings: list[str] = []
    src = workdir / "input.pdf"
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            n = len(pdf.pages)
            if n == 0:
                raise Rejected("empty_pdf", "PDF has no pages")
            if pdf.is_encrypted:
                # Opened with the empty user password: readable, but OCRmyPDF refuses
                # encrypted input, so hand it a decrypted copy.
                pdf.save(src)
                warnings.append("PDF was encrypted with an empty user password; decrypted for OCR")
                return src, warnings
    except pikepdf.PasswordError as e:
        raise Rejected("encrypted_pdf", "PDF is encrypted and needs a password") from e
    except Rejected:
        raise
    except (pikepdf.PdfError, pikepdf.ForeignObjectError, ValueError, RuntimeError) as e:
        raise Rejected("corrupt_pdf", f"PDF cannot be parsed: {e}") from e
    src.write_bytes(data)
    return src, warnings


def _clean_text(s: str) -> str:
    s = s.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    s = s.replace("\ufffe", "").replace("\x02", "-")  # PDFium's soft hyphen marker
    return "\n".join(line.rstrip() for line in s.split("\n")).strip("\n")


def pdf_page_texts(path: Path) -> list[str]:
    """Text of every page's own text layer (PDFium via pypdfium2)."""
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        pdf = pdfium.PdfDocument(str(path))
        try:
            out = []
            for i in range(len(pdf)):
                page = pdf[i]
                tp = page.get_textpage()
                try:
                    out.append(_clean_text(tp.get_text_range()))
                finally:
                    tp.close()
                    page.close()
            return out
        finally:
            pdf.close()


# --------------------------------------------------------------------------- versions
_VERSIONS: dict[str, str] = {}


def engine_versions() -> dict[str, str]:
    if not _VERSIONS:
        import importlib.metadata

        import ocrmypdf

        _VERSIONS["ocrmypdf"] = ocrmypdf.__version__
        try:
            from ocrmypdf._exec import tesseract

            _VERSIONS["tesseract"] = str(tesseract.version())
        except Exception:  # pragma: no cover
            _VERSIONS["tesseract"] = "unknown"
        _VERSIONS["text_extractor"] = f"pypdfium2 {importlib.metadata.version('pypdfium2')}"
    return dict(_VERSIONS)


# --------------------------------------------------------------------------- OCR
_EXC_CODES = {
    "EncryptedPdfError": "encrypted_pdf",
    "InputFileError": "corrupt_pdf",
    "DigitalSignatureError": "signed_pdf",
    "UnsupportedImageFormatError": "unsupported_document_type",
    "DpiError": "corrupt_image",
}


def _run_ocrmypdf(src: Path, dst: Path, sidecars: Path, jobs: int, settings: OcrSettings) -> None:
    import ocrmypdf
    from ocrmypdf import exceptions as ox
    from PIL import Image

    # Tesseract's OpenMP threading is much slower than one thread per page on small
    # machines; OCRmyPDF reads this and passes it to every Tesseract it starts.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    kw: dict[str, Any] = dict(
        language=[settings.language],
        skip_text=True,
        output_type=settings.output_type,
        optimize=settings.optimize,
        jobs=max(1, int(jobs)),
        progress_bar=False,
        pdf_renderer=settings.pdf_renderer,
        tesseract_timeout=settings.tesseract_timeout,
        invalidate_digital_signatures=True,  # we keep the original bytes; this copy is for text
    )
    if settings.tesseract_pagesegmode is not None:
        kw["tesseract_pagesegmode"] = settings.tesseract_pagesegmode
    if settings.tesseract_oem is not None:
        kw["tesseract_oem"] = settings.tesseract_oem
    if settings.tesseract_config:
        kw["tesseract_config"] = list(settings.tesseract_config)
    if settings.confidences:
        kw["plugins"] = [PLUGIN]
        kw["practiceflow_sidecar_dir"] = str(sidecars)
    kw.update(settings.extra)
    try:
        rc = ocrmypdf.ocr(src, dst, **kw)
    except Image.DecompressionBombError as e:
        raise Rejected("document_too_large", f"page image too large to OCR: {e}") from e
    except (ox.MissingDependencyError, ox.BadArgsError, ox.TesseractConfigError):
        raise  # our environment or configuration, not the document: do not dead-letter
    except ox.ExitCodeException as e:
        code = next((c for k, c in _EXC_CODES.items()
                     if k in {t.__name__ for t in type(e).__mro__}), "ocr_failed")
        raise Rejected(code, f"{type(e).__name__}: {e}".strip()) from e
    if rc not in (ox.ExitCode.ok, ox.ExitCode.pdfa_conversion_failed) or not dst.exists():
        raise Rejected("ocr_failed", f"ocrmypdf exited with {rc!r}")


def ocr_document(
    data: bytes,
    content_type: str | None,
    *,
    workdir: Path,
    jobs: int = 1,
    settings: OcrSettings = TUNED,
) -> OcrResult:
    """OCR a fax (PDF, TIFF, PNG or JPEG bytes). Files go under ``workdir``.

    Raises :class:`Rejected` for input that can never be read; other exceptions
    (missing Tesseract, disk full) are infrastructure failures worth a retry.
    The searchable PDF, when one was made, is left in a fresh subfolder of
    ``workdir`` (``OcrResult.output_pdf``); the caller owns ``workdir``.
    """
    t0 = time.perf_counter()
    kind = sniff(data)
    if kind is None:
        raise Rejected(
            "unsupported_document_type",
            f"not a PDF, TIFF, PNG or JPEG (content type {content_type!r}, "
            f"first bytes {data[:8]!r})",
        )
    warnings: list[str] = []
    detected = CONTENT_TYPES[kind]
    if content_type and content_type.split(";")[0].strip().lower() not in (detected, "application/octet-stream"):
        warnings.append(f"content type {content_type!r} but the bytes are {detected}")

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix="fax-", dir=workdir))
    sidecars = job / "sidecars"
    sidecars.mkdir()
    producer: dict[str, Any] = {**engine_versions(), "settings": settings.name, "input": kind}

    if kind == "pdf":
        src, w = _check_pdf(data, job)
    else:
        pdf_bytes, w = image_to_pdf(data, kind)
        src = job / "input.pdf"
        src.write_bytes(pdf_bytes)
    warnings += w

    try:
        native = pdf_page_texts(src)
    except Exception:
        # PDFium is stricter than qpdf with broken files; let pikepdf rewrite it.
        import pikepdf

        fixed = job / "input-repaired.pdf"
        try:
            with pikepdf.open(src) as pdf:
                pdf.save(fixed)
            native = pdf_page_texts(fixed)
        except Exception as e:
            raise Rejected("corrupt_pdf", f"PDF pages cannot be read: {e}") from e
        src = fixed
        warnings.append("PDF was repaired before reading")
    page_count = len(native)
    if page_count == 0:
        raise Rejected("empty_pdf", "PDF has no pages")

    if settings.text_shortcut and all(t.strip() for t in native):
        pages = [OcrPage(i + 1, t, None, False) for i, t in enumerate(native)]
        shutil.rmtree(job, ignore_errors=True)
        producer["ocrmypdf_run"] = False
        return OcrResult(pages, page_count, detected, producer,
                         time.perf_counter() - t0, None, warnings)

    out = job / "ocr.pdf"
    _run_ocrmypdf(src, out, sidecars, jobs, settings)
    producer["ocrmypdf_run"] = True

    ocred: dict[int, dict] = {}
    for f in sidecars.glob("page-*.json"):
        rec = json.loads(f.read_text(encoding="utf-8"))
        ocred[int(rec["page"])] = rec
    final = pdf_page_texts(out)
    pages = []
    for i in range(page_count):
        rec = ocred.get(i)
        if rec is not None:
            if rec.get("timed_out"):
                warnings.append(f"page {i + 1}: OCR timed out after {settings.tesseract_timeout:g}s; no text")
            conf = rec.get("confidence")
            pages.append(OcrPage(i + 1, _clean_text(rec.get("text") or ""),
                                 None if conf is None else round(float(conf), 4), True))
        elif settings.confidences:
            pages.append(OcrPage(i + 1, native[i], None, False))
        else:  # no plugin: tell OCRed pages by a text layer that was not there before
            txt = final[i] if i < len(final) else ""
            pages.append(OcrPage(i + 1, txt, None, not native[i].strip()))
    shutil.rmtree(sidecars, ignore_errors=True)
    for p in (job / "input.pdf", job / "input-repaired.pdf"):
        p.unlink(missing_ok=True)
    return OcrResult(pages, page_count, detected, producer, time.perf_counter() - t0, out, warnings)


__all__ = [
    "OcrPage", "OcrResult", "OcrSettings", "TUNED", "OCRMYPDF_DEFAULTS",
    "ocr_document", "sniff", "image_to_pdf", "pdf_page_texts",
]
