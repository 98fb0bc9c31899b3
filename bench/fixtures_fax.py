"""Synthetic fax fixtures with known text, for tests, ``bench_ocr.py`` and sample days.

Thin, file-oriented wrappers over :mod:`practiceflow.processors.fax.synth` (which
holds the renderer so tests can import it from the installed package). Everything is
deterministic given ``seed``: same seed, same bytes.

    >>> from bench.fixtures_fax import fax_tiff
    >>> data, truth = fax_tiff(seed=1, pages=2)      # 1-bit G4 TIFF, 204x196 dpi

Formats:
* ``fax_tiff``       multi-page 1-bit CCITT G4 TIFF at 204x196 dpi (fax fine mode)
* ``fax_image_pdf``  image-only PDF (one G4 image per page), like a fax server's PDF
* ``fax_text_pdf``   born-digital PDF with a real text layer (fpdf2, DejaVu Sans)
* ``fax_png`` / ``fax_jpeg``  one page as an image
* ``fax_ocred_pdf``  image PDF plus an OCR text layer made by running OCRmyPDF once

Kinds: ``referral``, ``lab_result``, ``prior_auth_response`` (``None``: chosen by seed).
Fonts: DejaVu from the Debian package ``fonts-dejavu-core``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from practiceflow.processors.fax import synth
from practiceflow.processors.fax.synth import (  # noqa: F401  (re-exported)
    FAX_FINE_DPI,
    FAX_STANDARD_DPI,
    KINDS,
    SyntheticDocument,
    SyntheticPage,
    render_document,
    render_page,
    word_accuracy,
)


def _doc(seed: int, pages: int, kinds: Sequence[str] | None, dpi, noise) -> SyntheticDocument:
    return render_document(seed, pages, kinds, dpi=dpi, noise=noise)


def fax_tiff(
    seed: int = 0,
    pages: int = 1,
    kinds: Sequence[str] | None = None,
    *,
    dpi: tuple[int, int] = FAX_FINE_DPI,
    noise: float = 1.0,
) -> tuple[bytes, SyntheticDocument]:
    doc = _doc(seed, pages, kinds, dpi, noise)
    return synth.to_tiff_g4(doc), doc


def fax_image_pdf(
    seed: int = 0,
    pages: int = 1,
    kinds: Sequence[str] | None = None,
    *,
    dpi: tuple[int, int] = FAX_FINE_DPI,
    noise: float = 1.0,
) -> tuple[bytes, SyntheticDocument]:
    doc = _doc(seed, pages, kinds, dpi, noise)
    return synth.to_image_pdf(doc), doc


def fax_text_pdf(seed: int = 0, pages: int = 1, kinds: Sequence[str] | None = None) -> tuple[bytes, SyntheticDocument]:
    doc = _doc(seed, pages, kinds, FAX_FINE_DPI, 0.0)
    return synth.to_text_pdf(doc), doc


def fax_png(
    seed: int = 0, kind: str | None = None, *, dpi: tuple[int, int] = (200, 200), noise: float = 1.0, mode: str = "L"
) -> tuple[bytes, SyntheticPage]:
    page = render_page(seed, kind, dpi=dpi, noise=noise)
    return synth.to_png(page, mode=mode), page


def fax_jpeg(
    seed: int = 0, kind: str | None = None, *, dpi: tuple[int, int] = (200, 200), noise: float = 1.0
) -> tuple[bytes, SyntheticPage]:
    page = render_page(seed, kind, dpi=dpi, noise=noise)
    return synth.to_jpeg(page), page


def fax_ocred_pdf(seed: int = 0, pages: int = 1, kinds: Sequence[str] | None = None) -> tuple[bytes, SyntheticDocument]:
    """Image PDF with an invisible OCR text layer (OCRmyPDF run once, ~1 s/page).

    Like faxes that arrive already OCRed by the sender's fax server. The text layer
    is OCR output, so it is close to, not equal to, the true text, and the bytes are
    not deterministic (OCRmyPDF stamps dates and a document ID).
    """
    from practiceflow.processors.fax.ocr import ocr_document

    data, doc = fax_image_pdf(seed, pages, kinds)
    with tempfile.TemporaryDirectory() as tmp:
        res = ocr_document(data, "application/pdf", workdir=Path(tmp))
        assert res.output_pdf is not None
        return res.output_pdf.read_bytes(), doc


def write_samples(folder: Path, seed: int = 0) -> list[Path]:
    """One file of each format into ``folder`` (for eyeballing / sample days)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (data, _) in {
        "fax.tif": fax_tiff(seed, pages=2),
        "fax-image.pdf": fax_image_pdf(seed + 1),
        "fax-text.pdf": fax_text_pdf(seed + 2),
        "fax.png": fax_png(seed + 3),
        "fax.jpg": fax_jpeg(seed + 4),
    }.items():
        p = folder / name
        p.write_bytes(data)
        out.append(p)
    return out


if __name__ == "__main__":  # pragma: no cover
    import sys

    for p in write_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "fax-samples")):
        print(p)
