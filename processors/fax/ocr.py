"""OCR for inbound faxes: bytes in, per-page text + Tesseract confidence out.

This is the I/O half of the fax processor (files, subprocesses, clock). The pure
half, :func:`practiceflow.processors.fax.normalize.normalize_fax`, turns an
:class:`OcrResult` into a ``Document`` record. The streaming layer calls
``ocr_document`` and then ``normalize_fax``.

Pipeline
--------
1. Sniff the type from magic bytes (PDF, TIFF, PNG, JPEG); ``content_type`` is only
   a hint. Anything else is :class:`Rejected` (``unsupported_document_type``).
2. **PDF**: opened with pikepdf first, so encrypted / corrupt / empty files are
   rejected with a precise code (PDFs encrypted with an empty user password are
   decrypted). If every page already carries text, that text is extracted with
   pypdfium2 and OCRmyPDF is not run at all (under ``skip_text`` it would skip every
   page anyway). Otherwise ``ocrmypdf.ocr`` runs with ``skip_text=True`` (pages with
   a text layer are not OCRed, their own text is extracted), ``output_type="pdf"``
   (no PDF/A), ``optimize=0``, ``progress_bar=False``, ``jobs`` pages in parallel,
   ``pdf_renderer="sandwich"`` and ``OMP_THREAD_LIMIT=1``. The OCR engine is
   OCRmyPDF's Tesseract engine subclassed by :mod:`._ocrmypdf_plugin`, which keeps
   each OCRed page's Tesseract text and mean word confidence from the *same*
   Tesseract run (TSV ``conf``; hOCR ``x_wconf`` on the fpdf2 renderer).
3. **TIFF / PNG / JPEG** (default ``image_engine="tesseract"``): Tesseract reads the
   image's own pixels, one process per ``jobs`` share of the pages, with ``txt`` and
   ``tsv`` output (text + word confidences, one run). Converting to PDF and letting
   OCRmyPDF re-rasterize the page resamples the bitmap (PDFium renders a 204x196 dpi
   fax page at 204x204) and measurably cost word accuracy on fax-quality pages, and
   was slower; see ``bench/bench_ocr.py``. Frames that need it are normalised with
   Pillow first: transparency flattened onto white (a transparent background would
   read as black), odd modes converted, a missing resolution estimated as US
   Letter, and strongly non-square faxes (standard mode, 204x98 dpi) resampled to
   square pixels. ``image_engine="ocrmypdf"`` instead converts the image to PDF
   with img2pdf (TIFF G4 / JPEG embedded as-is, DPI kept) and runs step 2.

Recognition: ``--psm 4`` (one column of text of variable sizes), so a lab table's row
stays one line (psm 3 read unruled result columns as separate blocks), and
``preserve_interword_spaces=1`` so column gaps survive in the text. Resampling fax pages
to 300 dpi (``OcrSettings.upscale_dpi``) is available but off: on the generated fax
evaluation set it helped fine-mode print a little, hurt standard mode, and cost 65 %
more CPU (``bench/bench_ocr_fax.py``).

Confidence is on a 0..1 scale. With ``OcrSettings.quality`` (default) each OCRed
page's ``confidence`` is the ink-weighted word confidence of :mod:`.quality` (ink that
no recognised word covers counts 0), ``word_confidence`` is Tesseract's mean word
confidence, and ``needs_human_read`` flags pages below
``quality.NEEDS_HUMAN_READ_BELOW``; on both routes (Tesseract on images, OCRmyPDF's
sandwich renderer on PDFs). ``None`` for pages whose text came from the PDF itself and
for OCRed pages on which Tesseract found no words (those are flagged when they carry ink).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..base import Rejected
from .quality import PageQuality, WordBox, ink_mask, page_quality, tsv_words

if TYPE_CHECKING:
    from PIL import Image as PILImage

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
    #: 0..1; with the quality signal (default) the ink-weighted word confidence, unread
    #: ink counting 0 (see :mod:`.quality`), else Tesseract's mean word confidence;
    #: None when not OCRed / no words
    confidence: float | None
    ocr_used: bool
    word_confidence: float | None = None  # Tesseract's mean word confidence 0..1
    ink_coverage: float | None = None  # share of the page's text ink inside recognised words
    needs_human_read: bool | None = None  # confidence below quality.NEEDS_HUMAN_READ_BELOW; None: not assessed


@dataclass(slots=True)
class OcrResult:
    pages: list[OcrPage]
    page_count: int
    content_type: str  # detected from the bytes, e.g. "image/tiff"
    producer: dict[str, Any]  # engine versions, path taken, settings name
    seconds: float  # wall time of ocr_document
    output_pdf: Path | None = None  # OCRmyPDF's searchable PDF (PDF inputs that needed OCR)
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\f".join(p.text for p in self.pages)


@dataclass(frozen=True, slots=True)
class OcrSettings:
    """How OCRmyPDF / Tesseract are driven; ``TUNED`` is the default (bench/bench_ocr.py)."""

    name: str = "tuned"
    image_engine: str = "tesseract"  # "tesseract": OCR the image's own pixels; "ocrmypdf"
    pdf_renderer: str = "sandwich"  # Tesseract's text-only PDF: no fpdf2 font subsetting
    # psm 4, one column of text of variable sizes: table rows stay together (a lab value
    # stays on the line of its test name; psm 3 read result columns as separate blocks).
    # bench/bench_ocr_fax.py: word accuracy 0.718 -> 0.782 on the fax evaluation set.
    tesseract_pagesegmode: int | None = 4
    tesseract_oem: int | None = None  # Debian's eng.traineddata is LSTM-only (tessdata_fast)
    tesseract_timeout: float = 120.0  # seconds per page; the page is kept without text after
    tesseract_config: tuple[str, ...] = ()  # extra Tesseract config files / -c pairs
    preserve_interword_spaces: bool = True  # column gaps kept as runs of spaces (tables stay legible)
    #: Resample image pages below this resolution up to it (bilinear + threshold for
    #: 1-bit pages). Off: on the fax evaluation set 300 dpi gained nothing on fine mode
    #: and lost on standard mode, for 30 % more CPU (bench/bench_ocr_fax.py).
    upscale_dpi: float | None = None
    quality: bool = True  # page quality signal from ink vs word boxes (processors/fax/quality.py)
    output_type: str = "pdf"  # no PDF/A: Ghostscript work nobody reads
    optimize: int = 0
    confidences: bool = True  # OCRmyPDF path: use the confidence plugin
    text_shortcut: bool = True  # PDFs whose every page has text skip OCRmyPDF
    language: str = "eng"
    extra: Mapping[str, Any] = field(default_factory=dict)  # other ocrmypdf.ocr kwargs


TUNED = OcrSettings()
#: The image OCR before the fax-resolution work: psm 3, no quality signal (the bench's BEFORE).
LEGACY = OcrSettings(name="legacy_psm3", tesseract_pagesegmode=None, preserve_interword_spaces=False, quality=False)
#: The brief's original route for images: img2pdf, then OCRmyPDF (tuned options).
IMAGES_VIA_OCRMYPDF = OcrSettings(name="images_via_ocrmypdf", image_engine="ocrmypdf")


# --------------------------------------------------------------------------- sniffing
def sniff(data: bytes) -> str | None:
    """ "pdf" | "tiff" | "png" | "jpeg" from magic bytes, else None."""
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


# --------------------------------------------------------------------------- text utils
def _clean_text(s: str) -> str:
    s = s.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").replace("\f", "\n")
    s = s.replace("\ufffe", "").replace("\x02", "-")  # PDFium's soft-hyphen markers
    return "\n".join(line.rstrip() for line in s.split("\n")).strip("\n")


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def tsv_pages(tsv_text: str) -> dict[int, tuple[list[float], str]]:
    """Tesseract TSV -> {page_num (1-based): (word confidences 0..1, text)}."""
    out: dict[int, tuple[list[float], list[str]]] = {}
    rows = csv.reader(io.StringIO(tsv_text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, None)
    if not header:
        return {}
    col = {name: i for i, name in enumerate(header)}
    last_line: dict[int, tuple[Any, ...]] = {}
    for r in rows:
        if len(r) < len(header):
            continue
        page = int(r[col["page_num"]])
        confs, lines = out.setdefault(page, ([], []))
        if r[col["level"]] != "5" or not r[col["text"]].strip():
            continue
        c = float(r[col["conf"]])
        if c >= 0:
            confs.append(c / 100.0)
        line_id = (r[col["block_num"]], r[col["par_num"]], r[col["line_num"]])
        if last_line.get(page) == line_id:
            lines[-1] += " " + r[col["text"]]
        else:
            if last_line.get(page) is not None and last_line[page][:2] != line_id[:2]:
                lines.append("")  # paragraph break
            lines.append(r[col["text"]])
            last_line[page] = line_id
    return {p: (confs, "\n".join(lines)) for p, (confs, lines) in out.items()}


# --------------------------------------------------------------------------- images
_MIN_DPI = 50.0
_MAX_ASPECT = 1.15  # resolution x/y ratio above which pixels are resampled to square


def _estimate_dpi(size: tuple[int, int]) -> float:
    """An image without a usable resolution is taken to be a US Letter page."""
    w, h = size
    return float(max(72, min(600, round(max(w / 8.5, h / 11.0)))))


@contextlib.contextmanager
def _decoded_image(data: bytes, kind: str) -> Iterator[Any]:
    """An open Pillow image; any decode failure, on open or later, is ``Rejected("corrupt_image")``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise Rejected("document_too_large", f"image too large to OCR: {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise Rejected("corrupt_image", f"{kind} image cannot be decoded: {e}") from e
    try:
        yield im
    except Rejected:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise Rejected("corrupt_image", f"{kind} image cannot be decoded: {e}") from e
    finally:
        im.close()


def _frame_dpi(fr: PILImage.Image, fallback: Any) -> tuple[float, float] | None:
    dpi = fr.info.get("dpi") or fallback
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return None
    return (x, y) if min(x, y) >= _MIN_DPI else None


def _normalise_frame(
    fr: PILImage.Image,
    dpi: tuple[float, float] | None,
    warnings: list[str],
    page_no: int,
    upscale_dpi: float | None = None,
) -> tuple[PILImage.Image, tuple[float, float]]:
    """-> (image in mode 1/L/RGB with square pixels, (dpi, dpi))."""
    from PIL import Image

    if dpi is None:
        est = _estimate_dpi(fr.size)
        warnings.append(f"page {page_no}: no usable resolution; assuming US Letter at {est:.0f} dpi")
        dpi = (est, est)
    if fr.mode in ("P", "PA") or (fr.mode not in ("1", "L", "RGB") and "transparency" in fr.info):
        fr = fr.convert("RGBA")
    if fr.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = fr.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        fr = bg
    elif fr.mode == "CMYK" or fr.mode.startswith(("YCbCr", "LAB", "HSV")):
        fr = fr.convert("RGB")
    elif fr.mode.startswith(("I", "F")):
        fr = fr.convert("L")
    dx, dy = dpi
    if upscale_dpi and min(dx, dy) < upscale_dpi:
        # 1-bit: bilinear on gray, then threshold: smooth edges, still bitonal for Tesseract
        size = (round(fr.width * upscale_dpi / dx), round(fr.height * upscale_dpi / dy))
        if fr.mode == "1":
            fr = (
                fr.convert("L")
                .resize(size, Image.Resampling.BILINEAR)
                .point(lambda v: 255 if v >= 128 else 0, mode="1")
            )
        else:
            fr = fr.resize(size, Image.Resampling.BICUBIC)
        dx = dy = float(upscale_dpi)
    elif max(dx, dy) / min(dx, dy) > _MAX_ASPECT:
        # e.g. fax standard mode 204x98: without this Tesseract sees half-height glyphs.
        # NEAREST row doubling == bilinear + threshold for a 2x 1-bit resize.
        m = max(dx, dy)
        size = (round(fr.width * m / dx), round(fr.height * m / dy))
        fr = fr.resize(size, Image.Resampling.NEAREST if fr.mode == "1" else Image.Resampling.BICUBIC)
        dx = dy = m
    return fr, (dx, dy)


def _image_files(
    data: bytes, kind: str, folder: Path, warnings: list[str], upscale_dpi: float | None = None
) -> list[Path]:
    """One file per page that Tesseract (Leptonica) reads, pixels untouched if possible."""
    with _decoded_image(data, kind) as im:
        n = getattr(im, "n_frames", 1)
        first_dpi = im.info.get("dpi")
        files: list[Path] = []
        for i in range(n):
            im.seek(i)
            dpi = _frame_dpi(im, first_dpi)
            ok_as_is = (
                n == 1
                and kind in ("png", "jpeg")
                and im.mode in ("1", "L", "RGB")
                and "transparency" not in im.info
                and dpi is not None
                and max(dpi) / min(dpi) <= _MAX_ASPECT
                and not (upscale_dpi and min(dpi) < upscale_dpi)
            )
            if ok_as_is:  # Leptonica reads the original file
                path = folder / f"page-{i + 1:04d}.{'jpg' if kind == 'jpeg' else 'png'}"
                path.write_bytes(data)
                files.append(path)
                continue
            fr, fdpi = _normalise_frame(im.copy(), dpi, warnings, i + 1, upscale_dpi)
            if fr.mode == "1":
                path = folder / f"page-{i + 1:04d}.tif"
                fr.save(path, format="TIFF", compression="group4", dpi=fdpi)
            else:
                path = folder / f"page-{i + 1:04d}.png"
                fr.save(path, format="PNG", dpi=tuple(round(v) for v in fdpi), compress_level=1)
            files.append(path)
        return files


def _tesseract_args(settings: OcrSettings) -> list[str]:
    args = ["tesseract"]
    if settings.language:
        args += ["-l", settings.language]
    if settings.tesseract_oem is not None:
        args += ["--oem", str(settings.tesseract_oem)]
    if settings.tesseract_pagesegmode is not None:
        args += ["--psm", str(settings.tesseract_pagesegmode)]
    if settings.preserve_interword_spaces:
        args += ["-c", "preserve_interword_spaces=1"]
    return args


def _tesseract_env() -> dict[str, str]:
    env = os.environ.copy()
    env["OMP_THREAD_LIMIT"] = "1"
    return env


def image_quality(path: Path, words: list[WordBox]) -> PageQuality:
    """The quality signal for one page image Tesseract read and its TSV word boxes."""
    from PIL import Image

    with Image.open(path) as im:
        dpi = _frame_dpi(im, None) or (300.0, 300.0)
        return page_quality(ink_mask(im), dpi, words)


def _page_result(
    text: str, confs: list[float], path: Path, words: list[WordBox] | None, settings: OcrSettings
) -> tuple[str, float | None, bool, PageQuality | None]:
    q = image_quality(path, words or []) if settings.quality and words is not None else None
    return (_clean_text(text), _mean(confs), False, q)


def _tesseract_chunk(
    files: list[Path], base: Path, settings: OcrSettings
) -> list[tuple[str, float | None, bool, PageQuality | None]]:
    """Run one Tesseract over ``files`` -> per page (text, confidence, timed_out, quality)."""
    if len(files) == 1:
        src = files[0]
    else:  # Tesseract reads a list of image files: one start-up for several pages
        src = base.with_suffix(".list.txt")
        src.write_text("".join(f"{f}\n" for f in files), encoding="utf-8")
    args = _tesseract_args(settings) + [str(src), str(base), "txt", "tsv", *settings.tesseract_config]
    try:
        subprocess.run(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=settings.tesseract_timeout * len(files),
            env=_tesseract_env(),
        )
    except subprocess.TimeoutExpired:
        if len(files) > 1:  # find the slow page(s); keep the others
            out = []
            for i, f in enumerate(files):
                out += _tesseract_chunk([f], base.with_name(f"{base.name}-{i}"), settings)
            return out
        return [("", None, True, None)]
    except subprocess.CalledProcessError as e:
        msg = (e.output or b"").decode(errors="replace").strip()[-500:]
        raise Rejected("ocr_failed", f"tesseract failed on the image: {msg}") from e
    tsv = base.with_suffix(".tsv").read_text(encoding="utf-8")
    by_page = tsv_pages(tsv)
    boxes = tsv_words(tsv) if settings.quality else {}
    txt = base.with_suffix(".txt").read_text(encoding="utf-8")
    parts = txt.split("\f")
    if len(parts) > len(files) and not parts[-1].strip():
        parts = parts[:-1]
    out = []
    for i in range(len(files)):
        confs, tsv_text = by_page.get(i + 1, ([], ""))
        text = parts[i] if len(parts) == len(files) else tsv_text
        out.append(_page_result(text, confs, files[i], boxes.get(i + 1, []), settings))
    return out


def _ocr_images(
    data: bytes, kind: str, job: Path, jobs: int, settings: OcrSettings, warnings: list[str]
) -> list[OcrPage]:
    folder = job / "pages"
    folder.mkdir()
    files = _image_files(data, kind, folder, warnings, settings.upscale_dpi)
    k = max(1, min(int(jobs), len(files)))
    size = -(-len(files) // k)
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    bases = [job / f"ocr-{c}" for c in range(len(chunks))]
    if len(chunks) == 1:
        results = [_tesseract_chunk(chunks[0], bases[0], settings)]
    else:
        with ThreadPoolExecutor(len(chunks)) as ex:
            results = list(ex.map(lambda cb: _tesseract_chunk(cb[0], cb[1], settings), zip(chunks, bases, strict=True)))
    pages: list[OcrPage] = []
    for text, conf, timed_out, q in (r for chunk in results for r in chunk):
        n = len(pages) + 1
        if timed_out:
            warnings.append(f"page {n}: OCR timed out after {settings.tesseract_timeout:g}s; no text")
        pages.append(_ocr_page(n, text, conf, q))
    return pages


def _ocr_page(n: int, text: str, conf: float | None, q: PageQuality | None) -> OcrPage:
    """An OCRed page; with a quality signal, ``confidence`` is the ink-weighted one."""
    if q is None:
        return OcrPage(n, text, conf, True, conf)
    if q.ink_confidence is None:  # blank page: no text ink, nothing to distrust
        return OcrPage(n, text, conf, True, q.word_confidence, None, False)
    if conf is None:  # ink but not one word read: no confidence to report, and flagged
        return OcrPage(n, text, None, True, None, q.ink_coverage, True)
    return OcrPage(n, text, q.ink_confidence, True, q.word_confidence, q.ink_coverage, q.needs_human_read)


def image_to_pdf(data: bytes, kind: str) -> tuple[bytes, list[str]]:
    """Image bytes (TIFF incl. multi-page G4, PNG, JPEG) -> image-only PDF bytes (img2pdf).

    TIFF G4 and JPEG data are embedded as they are, resolution kept (non-square too);
    images img2pdf refuses (alpha channel, odd modes) are normalised with Pillow first.
    """
    import img2pdf

    warnings: list[str] = []
    with _decoded_image(data, kind) as im:
        n = getattr(im, "n_frames", 1)
        first_dpi = im.info.get("dpi")
        dpi = _frame_dpi(im, first_dpi)
        has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
        size = im.size
        conv_kw: dict[str, Any] = {"nodate": True}
        if dpi is None:
            est = _estimate_dpi(size)
            warnings.append(f"no usable resolution; assuming US Letter at {est:.0f} dpi")
            conv_kw["layout_fun"] = img2pdf.get_fixed_dpi_layout_fun((est, est))
        if not has_alpha:
            try:
                return img2pdf.convert(data, **conv_kw), warnings
            except Exception as e:  # img2pdf refuses some modes/encodings: Pillow below
                warnings.append(f"img2pdf could not embed the image as-is ({type(e).__name__}); re-encoded")
        pngs = []
        for i in range(n):
            im.seek(i)
            fr, fdpi = _normalise_frame(im.copy(), _frame_dpi(im, first_dpi) or dpi, [], i + 1)
            buf = io.BytesIO()
            fr.save(buf, format="PNG", dpi=tuple(round(v) for v in fdpi))
            pngs.append(buf.getvalue())
    try:
        return img2pdf.convert(pngs, nodate=True), warnings
    except Exception as e:
        raise Rejected("corrupt_image", f"{kind} image cannot be converted to PDF: {e}") from e


# --------------------------------------------------------------------------- PDFs
def _check_pdf(data: bytes, workdir: Path) -> tuple[Path, list[bool], list[str]]:
    """Write a PDF OCRmyPDF can read; Rejected for encrypted, corrupt or empty ones.

    Also returns, per page, whether the page draws an image (for a warning below).
    """
    import pikepdf

    warnings: list[str] = []
    src = workdir / "input.pdf"
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            if len(pdf.pages) == 0:
                raise Rejected("empty_pdf", "PDF has no pages")
            has_image = []
            for page in pdf.pages:
                try:
                    get = getattr(page, "get_images", None)  # pikepdf >= 10; .images before
                    has_image.append(bool(get() if get else page.images))
                except Exception:  # damaged resources: only a hint
                    has_image.append(False)
            if pdf.is_encrypted:
                # Opened with the empty user password: readable, but OCRmyPDF refuses
                # encrypted input, so it gets a decrypted copy.
                pdf.save(src)
                warnings.append("PDF was encrypted with an empty user password; decrypted for OCR")
                return src, has_image, warnings
    except pikepdf.PasswordError as e:
        raise Rejected("encrypted_pdf", "PDF is encrypted and needs a password") from e
    except Rejected:
        raise
    except Exception as e:  # pikepdf.PdfError and friends: qpdf could not repair it
        raise Rejected("corrupt_pdf", f"PDF cannot be parsed: {e}") from e
    src.write_bytes(data)
    return src, has_image, warnings


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


_EXC_CODES = {  # OCRmyPDF exception class -> reason code
    "EncryptedPdfError": "encrypted_pdf",
    "DigitalSignatureError": "signed_pdf",
    "InputFileError": "corrupt_pdf",
    "UnsupportedImageFormatError": "unsupported_document_type",
    "DpiError": "corrupt_image",
}


def _run_ocrmypdf(src: Path, dst: Path, sidecars: Path, jobs: int, settings: OcrSettings) -> None:
    import ocrmypdf
    from ocrmypdf import exceptions as ox
    from PIL import Image

    # Tesseract's OpenMP threads are far slower than one thread per page on small
    # machines; OCRmyPDF reads this variable and passes it to every Tesseract.
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
        invalidate_digital_signatures=True,  # the original bytes are kept; this copy is for text
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
        names = {t.__name__ for t in type(e).__mro__}
        code = next((c for k, c in _EXC_CODES.items() if k in names), "ocr_failed")
        raise Rejected(code, f"{type(e).__name__}: {e}".strip()) from e
    if rc not in (ox.ExitCode.ok, ox.ExitCode.pdfa_conversion_failed) or not dst.exists():
        raise Rejected("ocr_failed", f"ocrmypdf exited with {rc!r}")


_FEW_WORDS = 12


def _drop_blank_text_layers(src: Path, pages: list[int], job: Path, warnings: list[str]) -> Path:
    """Remove text objects from pages whose text layer reads as nothing but blanks.

    ``skip_text`` skips any page with a text object, and office tools that wrap a
    scan often add one holding a single space (a Word-made scan PDF in the shared
    samples does), so the scan would never be OCRed. Only the working copy given to
    OCRmyPDF is changed, and only top-level ``BT ... ET`` blocks of those pages.
    """
    if not pages:
        return src
    import pikepdf

    changed = []
    with pikepdf.open(src) as pdf:
        for i in pages:
            page = pdf.pages[i]
            try:
                ops = pikepdf.parse_content_stream(page)
            except Exception:  # noqa: S112 - unparseable content: leave the page to OCRmyPDF
                continue
            kept, depth = [], 0
            for inst in ops:
                name = str(inst.operator)
                if name == "BT":
                    depth += 1
                elif name == "ET" and depth:
                    depth -= 1
                elif not depth:
                    kept.append(inst)
            if len(kept) != len(ops):
                page.Contents = pdf.make_stream(pikepdf.unparse_content_stream(kept))
                changed.append(i + 1)
        if not changed:
            return src
        out = job / "input-ocr.pdf"
        pdf.save(out)
    warnings.append(f"pages {changed}: blank text layer removed so the page is OCRed")
    return out


def _ocr_pdf(
    src: Path,
    job: Path,
    jobs: int,
    settings: OcrSettings,
    warnings: list[str],
    producer: dict[str, Any],
    has_image: list[bool] | None = None,
) -> tuple[list[OcrPage], Path | None]:
    try:
        native = pdf_page_texts(src)
    except Exception:
        # PDFium is stricter than qpdf with damaged files; let pikepdf rewrite it.
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
    if not native:
        raise Rejected("empty_pdf", "PDF has no pages")

    for i, t in enumerate(native):
        # skip_text trusts any text layer. A scan whose only text is, say, a fax
        # server's header line is therefore not OCRed: say so, so it can be triaged.
        n = len(t.split())
        if 0 < n < _FEW_WORDS and has_image and i < len(has_image) and has_image[i]:
            warnings.append(f"page {i + 1}: image page with only {n} words of text layer; not OCRed (skip_text)")
    if settings.text_shortcut and all(t.strip() for t in native):
        producer["engine"] = "pdf_text"
        return [OcrPage(i + 1, t, None, False) for i, t in enumerate(native)], None

    producer["engine"] = "ocrmypdf"
    blank = [i for i, t in enumerate(native) if not t.strip()]
    src = _drop_blank_text_layers(src, blank, job, warnings)
    sidecars = job / "sidecars"
    sidecars.mkdir()
    out = job / "ocr.pdf"
    _run_ocrmypdf(src, out, sidecars, jobs, settings)
    ocred: dict[int, dict[str, Any]] = {}
    for f in sidecars.glob("page-*.json"):
        rec = json.loads(f.read_text(encoding="utf-8"))
        ocred[int(rec["page"])] = rec
    final = None if settings.confidences else pdf_page_texts(out)
    pages = []
    for i, own in enumerate(native):
        rec = ocred.get(i)
        if rec is not None:
            if rec.get("timed_out"):
                warnings.append(f"page {i + 1}: OCR timed out after {settings.tesseract_timeout:g}s; no text")
            conf = rec.get("confidence")
            conf = None if conf is None else round(float(conf), 4)
            text = _clean_text(rec.get("text") or "")
            if settings.quality and "ink_coverage" in rec:
                q = PageQuality(
                    rec.get("word_confidence"),
                    rec.get("ink_coverage"),
                    rec.get("ink_confidence"),
                    None,
                    int(rec.get("words") or 0),
                    0,
                    bool(rec.get("needs_human_read")),
                )
                pages.append(_ocr_page(i + 1, text, conf, q))
            else:
                pages.append(OcrPage(i + 1, text, conf, True, conf))
        elif final is not None:  # no plugin: OCRed pages are those that had no text before
            pages.append(OcrPage(i + 1, final[i] if i < len(final) else "", None, not own.strip()))
        else:
            if not own.strip():
                warnings.append(f"page {i + 1}: has a text layer that yields no text; not OCRed (skip_text)")
            pages.append(OcrPage(i + 1, own, None, False))
    return pages, out


# --------------------------------------------------------------------------- versions
_VERSIONS: dict[str, str] = {}


def engine_versions() -> dict[str, str]:
    if not _VERSIONS:
        import importlib.metadata

        import ocrmypdf

        from ._ocrmypdf_plugin import ConfidenceTesseractEngine

        _VERSIONS["ocrmypdf"] = ocrmypdf.__version__
        try:
            _VERSIONS["tesseract"] = str(ConfidenceTesseractEngine.version())
        except Exception:  # pragma: no cover - Tesseract missing: OCR will say so
            _VERSIONS["tesseract"] = "unknown"
        _VERSIONS["text_extractor"] = f"pypdfium2 {importlib.metadata.version('pypdfium2')}"
    return dict(_VERSIONS)


# --------------------------------------------------------------------------- entry point
def ocr_document(
    data: bytes,
    content_type: str | None,
    *,
    workdir: Path,
    jobs: int = 1,
    settings: OcrSettings = TUNED,
) -> OcrResult:
    """OCR a fax (PDF, TIFF, PNG or JPEG bytes); temporary files go under ``workdir``.

    Raises :class:`Rejected` for input that can never be read; other exceptions
    (Tesseract missing, disk full) are infrastructure failures worth a retry.
    ``jobs``: pages OCRed in parallel (one single-threaded Tesseract each).
    When OCRmyPDF made a searchable PDF it is left in a fresh subfolder of
    ``workdir`` (``OcrResult.output_pdf``); everything else is removed.
    """
    t0 = time.perf_counter()
    kind = sniff(data)
    if kind is None:
        raise Rejected(
            "unsupported_document_type",
            f"not a PDF, TIFF, PNG or JPEG (content type {content_type!r}, first bytes {data[:8]!r})",
        )
    warnings: list[str] = []
    detected = CONTENT_TYPES[kind]
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared and declared not in (detected, "application/octet-stream", "image/jpg", "image/tif"):
        warnings.append(f"content type {content_type!r} but the bytes are {detected}")

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix="fax-", dir=workdir))
    producer: dict[str, Any] = {**engine_versions(), "settings": settings.name, "input": kind}
    output_pdf = None
    try:
        if kind != "pdf" and settings.image_engine == "tesseract":
            producer["engine"] = "tesseract"
            pages = _ocr_images(data, kind, job, jobs, settings, warnings)
        else:
            has_image = None
            if kind == "pdf":
                src, has_image, w = _check_pdf(data, job)
            else:
                pdf_bytes, w = image_to_pdf(data, kind)
                src = job / "input.pdf"
                src.write_bytes(pdf_bytes)
            warnings += w
            pages, output_pdf = _ocr_pdf(src, job, jobs, settings, warnings, producer, has_image)
    finally:
        if output_pdf is None:
            shutil.rmtree(job, ignore_errors=True)
        else:
            for p in job.iterdir():
                if p != output_pdf:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return OcrResult(pages, len(pages), detected, producer, time.perf_counter() - t0, output_pdf, warnings)


__all__ = [
    "IMAGES_VIA_OCRMYPDF",
    "LEGACY",
    "TUNED",
    "OcrPage",
    "OcrResult",
    "OcrSettings",
    "engine_versions",
    "image_quality",
    "image_to_pdf",
    "ocr_document",
    "pdf_page_texts",
    "sniff",
    "tsv_pages",
]
