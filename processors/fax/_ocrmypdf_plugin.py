"""OCRmyPDF plugin: Tesseract with per-page word confidences, in the same single run.

OCRmyPDF keeps Tesseract's word confidences (hOCR ``x_wconf``) only inside its
temporary folder and drops them once the text layer is drawn; the sidecar text has
none. This plugin replaces the OCR engine with a subclass of OCRmyPDF's own
``TesseractOcrEngine`` that runs Tesseract exactly once per page, as OCRmyPDF
would, but also reads the confidences out of that run's output and writes one small
JSON file per OCRed page into a folder the caller names:

* ``pdf_renderer="fpdf2"`` / ``"auto"`` (OCRmyPDF's default): the engine implements
  OCRmyPDF 17's ``generate_ocr()`` API. Tesseract writes hOCR + text; the hOCR is
  parsed with OCRmyPDF's ``HocrParser`` into the ``OcrElement`` tree OCRmyPDF draws
  the text layer from, and the mean of the words' confidences is recorded.
* ``pdf_renderer="sandwich"``: Tesseract writes its own text-only PDF + text + TSV
  in one run (``pdf txt tsv``); confidences come from the TSV ``conf`` column. This
  skips OCRmyPDF's fpdf2 text-layer rendering (font subsetting), which is the
  faster path for a one-page fax.

The plugin stands in for OCRmyPDF's builtin Tesseract plugin (blocked in the
documented ``initialize`` hook) and delegates every hook to it, except that the
Tesseract version / language probes run once per process instead of on every job
(four ``tesseract --version``/``--list-langs`` subprocesses, about 0.1 s per
document on a 2-core machine).

The folder is passed as the extra OCRmyPDF option ``practiceflow_sidecar_dir``
(OCRmyPDF keeps unknown keyword arguments in ``options.extra_attrs`` and ships
them to its workers). Without it the engine behaves like the builtin one.

Each JSON file: ``{"page": <0-based>, "text": ..., "confidence": <0..1 or null>,
"words": <n>, "timed_out": <bool>}``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import subprocess
from argparse import ArgumentParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocrmypdf import hookimpl
from ocrmypdf.builtin_plugins import tesseract_ocr as _builtin
from ocrmypdf.builtin_plugins.tesseract_ocr import TesseractOcrEngine
from ocrmypdf.exceptions import SubprocessOutputError
from ocrmypdf.hocrtransform import HocrParseError, HocrParser
from ocrmypdf.models.ocr_element import BoundingBox, OcrClass, OcrElement
from PIL import Image

from .ocr import image_quality, tsv_pages
from .quality import PageQuality, tsv_words

if TYPE_CHECKING:  # OCRmyPDF's own annotations for the hooks (the upper bound in pyproject pins this API)
    import pluggy
    from ocrmypdf._options import OcrOptions
    from ocrmypdf.pluginspec import OcrEngine
    from pydantic import BaseModel

log = logging.getLogger(__name__)

SIDECAR_OPTION = "practiceflow_sidecar_dir"
_PAGE_PREFIX = re.compile(r"^(\d{6})_")


def _sidecar_dir(options: OcrOptions) -> Path | None:
    extra = getattr(options, "extra_attrs", None) or {}
    d = extra.get(SIDECAR_OPTION)
    return Path(d) if d else None


def _write_sidecar(
    options: OcrOptions, page: int, text: str, confs: list[float], timed_out: bool, quality: PageQuality | None = None
) -> None:
    d = _sidecar_dir(options)
    if d is None:
        return
    rec = {
        "page": page,
        "text": text,
        "confidence": (sum(confs) / len(confs)) if confs else None,
        "words": len(confs),
        "timed_out": timed_out,
    }
    if quality is not None:
        rec["word_confidence"] = quality.word_confidence
        rec["ink_coverage"] = quality.ink_coverage
        rec["ink_confidence"] = quality.ink_confidence
        rec["needs_human_read"] = quality.needs_human_read
    tmp = d / f".page-{page:06d}.json.tmp"
    tmp.write_text(json.dumps(rec), encoding="utf-8")
    tmp.replace(d / f"page-{page:06d}.json")


def _tess_args(options: OcrOptions) -> list[str]:
    t = options.tesseract
    args = ["tesseract"]
    if options.languages:
        args += ["-l", "+".join(options.languages)]
    if t.oem is not None:
        args += ["--oem", str(t.oem)]
    if t.pagesegmode is not None:
        args += ["--psm", str(t.pagesegmode)]
    if int(t.thresholding) != 0:
        args += ["-c", f"thresholding_method={int(t.thresholding)}"]
    if t.user_words:
        args += ["--user-words", str(t.user_words)]
    if t.user_patterns:
        args += ["--user-patterns", str(t.user_patterns)]
    return args


def _run_tesseract(args: list[str], options: OcrOptions) -> str:
    """Run Tesseract: "ok", "timeout", or "empty" (nothing it could read)."""
    t = options.tesseract
    env = os.environ.copy()
    env["OMP_THREAD_LIMIT"] = str(t.omp_thread_limit or 1)
    try:
        subprocess.run(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=t.timeout or None, check=True, env=env
        )
    except subprocess.TimeoutExpired:
        log.warning("[tesseract] took too long to OCR - skipping")
        return "timeout"
    except subprocess.CalledProcessError as e:
        out = e.output or b""
        if b"Image too large" in out or b"Empty page!!" in out:
            return "empty"
        raise SubprocessOutputError(out.decode(errors="replace")) from e
    return "ok"


def _empty_page(input_file: Path, page_number: int) -> OcrElement:
    with Image.open(input_file) as im:
        w, h = im.size
        dpi = im.info.get("dpi", (72, 72))
    return OcrElement(
        ocr_class=OcrClass.PAGE,
        bbox=BoundingBox(left=0, top=0, right=w, bottom=h),
        dpi=float(dpi[0] if isinstance(dpi, tuple) else dpi),
        page_number=page_number,
    )


def _page_from_name(path: Path) -> int:
    """OCRmyPDF names per-page work files ``{pageno+1:06d}_<name>``."""
    m = _PAGE_PREFIX.match(path.name)
    if not m:
        raise SubprocessOutputError(f"cannot tell the page number of {path.name}")
    return int(m.group(1)) - 1


class ConfidenceTesseractEngine(TesseractOcrEngine):
    """OCRmyPDF's Tesseract engine, plus confidences; still one Tesseract run per page."""

    @staticmethod
    @functools.cache
    def version() -> str:  # OCRmyPDF asks for this on every job; the binary does not change
        return str(TesseractOcrEngine.version())

    @staticmethod
    @functools.cache
    def _languages() -> frozenset[str]:
        return frozenset(TesseractOcrEngine.languages(None))

    @staticmethod
    def languages(options: OcrOptions | None) -> set[str]:
        return set(ConfidenceTesseractEngine._languages())

    @staticmethod
    def creator_tag(options: OcrOptions) -> str:
        renderer = "sandwich" if options.pdf_renderer == "sandwich" else "fpdf2"
        return f"OCRmyPDF {renderer} + Tesseract OCR {ConfidenceTesseractEngine.version()} (practiceflow)"

    def __str__(self) -> str:
        return f"Tesseract OCR {ConfidenceTesseractEngine.version()}"

    @staticmethod
    def supports_generate_ocr() -> bool:
        return True

    @staticmethod
    def generate_ocr(input_file: Path, options: OcrOptions, page_number: int = 0) -> tuple[OcrElement, str]:
        work = Path(input_file).parent
        prefix = work / f"pf_{page_number + 1:06d}_ocr"
        args = _tess_args(options) + [os.fspath(input_file), os.fspath(prefix), "hocr", "txt"]
        args += list(options.tesseract.config)
        status = _run_tesseract(args, options)
        hocr = prefix.with_suffix(".hocr")
        if status != "ok" or not hocr.exists() or hocr.stat().st_size == 0:
            _write_sidecar(options, page_number, "", [], timed_out=status == "timeout")
            return _empty_page(input_file, page_number), ""
        try:
            tree = HocrParser(hocr).parse()
        except HocrParseError:
            _write_sidecar(options, page_number, "", [], timed_out=False)
            return _empty_page(input_file, page_number), ""
        tree.page_number = page_number
        txt = prefix.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8") if txt.exists() else tree.get_text_recursive()
        confs = [w.confidence for w in tree.words if w.confidence is not None and w.text.strip()]
        _write_sidecar(options, page_number, text, confs, timed_out=False)
        return tree, text

    @staticmethod
    def generate_pdf(input_file: Path, output_pdf: Path, output_text: Path, options: OcrOptions) -> None:
        page_number = _page_from_name(Path(output_pdf))
        prefix = Path(output_pdf).parent / Path(output_pdf).stem
        args = _tess_args(options) + [
            "-c",
            "textonly_pdf=1",
            os.fspath(input_file),
            os.fspath(prefix),
            "pdf",
            "txt",
            "tsv",
        ]
        args += list(options.tesseract.config)
        status = _run_tesseract(args, options)
        if status != "ok":
            # Same fallback as OCRmyPDF's: a 0-byte PDF means "graft nothing".
            Path(output_pdf).write_bytes(b"")
            Path(output_text).write_text("[skipped page]", encoding="utf-8")
            _write_sidecar(options, page_number, "", [], timed_out=status == "timeout")
            return
        if not Path(output_pdf).exists():
            raise SubprocessOutputError(f"Tesseract did not write {output_pdf}")
        txt = prefix.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8") if txt.exists() else ""
        if txt.exists() and txt != Path(output_text):
            txt.replace(output_text)
        tsv = prefix.with_suffix(".tsv")
        tsv_text = tsv.read_text(encoding="utf-8") if tsv.exists() else ""
        pages = tsv_pages(tsv_text)
        confs = next(iter(pages.values()), ([], ""))[0]
        quality = None
        if tsv.exists() and (_sidecar_dir(options) is not None):
            # the page image OCRmyPDF rasterized for Tesseract, in the TSV's coordinates
            quality = image_quality(Path(input_file), next(iter(tsv_words(tsv_text).values()), []))
        _write_sidecar(options, page_number, text, confs, timed_out=False, quality=quality)


# --------------------------------------------------------------------------- hooks
# Replace the builtin Tesseract plugin (same options, same behaviour) so that its
# per-job probes can be cached; everything else is delegated to it.
_BUILTIN_NAME = _builtin.__name__
_checked = False


@hookimpl
def initialize(plugin_manager: pluggy.PluginManager) -> None:
    if not plugin_manager.is_blocked(_BUILTIN_NAME):
        plugin_manager.set_blocked(_BUILTIN_NAME)


@hookimpl
def register_options() -> dict[str, type[BaseModel]]:
    return _builtin.register_options()  # type: ignore[no-any-return]  # OCRmyPDF's builtin plugin is unannotated


@hookimpl
def add_options(parser: ArgumentParser) -> None:
    _builtin.add_options(parser)


@hookimpl
def check_options(options: OcrOptions) -> None:
    global _checked
    if not _checked:  # Tesseract present, version supported: once per process
        _builtin.check_options(options)
        _checked = True


@hookimpl
def validate(pdfinfo: Any, options: OcrOptions) -> None:
    _builtin.validate(pdfinfo, options)


@hookimpl
def filter_ocr_image(page: Any, image: Image.Image) -> Image.Image:
    return _builtin.filter_ocr_image(page, image)


@hookimpl
def get_ocr_engine(options: OcrOptions | None) -> OcrEngine | None:
    if options is not None and getattr(options, "ocr_engine", "auto") not in ("auto", "tesseract"):
        return None
    return ConfidenceTesseractEngine()
