"""An honest page quality signal for OCR: how much of the page's ink was read, and how well.

Why: Tesseract's mean word confidence only averages over the words it *did* read. A
page of handwriting where Tesseract reads the fax header line and three words of the
note still reports 0.9, and a classifier or a person trusting that number would file
a page nobody has read. So the page's ink is compared with the word boxes Tesseract
returned (its TSV output):

* ``text_ink``: ink pixels of the image Tesseract read, without isolated specks (a
  pixel with no inked 8-neighbour: fax line noise) and without ruling lines (ink
  runs longer than 0.6 inch across or down: table grids, underlines, borders), which
  are not text and would otherwise lower every table page.
* ``ink_coverage``: share of ``text_ink`` inside the boxes of recognised words.
* ``ink_confidence``: the same sum, each word's ink weighted by its confidence, so
  unread ink counts as confidence 0 and a word read at 40 % counts 0.4. This is the
  page's reported ``confidence``: about "the share of the page's text read
  correctly", which is what a reader of the number assumes it means.
* ``low_confidence_words``: share of words below :data:`LOW_WORD_CONFIDENCE`.
* ``needs_human_read``: ``ink_confidence < NEEDS_HUMAN_READ_BELOW`` (or a page with
  ink but no words). Set on the page and on the ``Document`` (any page); the fax
  classifier must not act on such a page's text alone, and staff see it flagged.

Thresholds come from ``bench/bench_ocr_fax.py`` on the generated evaluation set
(:mod:`.evalset`): clean typed pages score 0.85-0.95; the handwriting-like page
scores well below 0.75. Pictures (logos, signatures, stamps) also count as unread
ink, so a page that is mostly picture is flagged too; that is intended (someone
should look at it), and ordinary letterhead logos cost a few points only.

Pure: numpy arrays and word boxes in, numbers out; no files, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

#: Page ``confidence`` (ink-weighted) below which a page is flagged ``needs_human_read``.
NEEDS_HUMAN_READ_BELOW = 0.75
#: A word read with less than this confidence counts as a low-confidence word.
LOW_WORD_CONFIDENCE = 0.6
#: Ink runs at least this long (inches) are rules/borders, not text.
RULE_MIN_INCHES = 0.6
#: Pages with fewer text-ink pixels than this (per square inch of page) are blank.
_BLANK_INK_PER_SQ_INCH = 40.0


class WordBox(NamedTuple):
    left: int
    top: int
    width: int
    height: int
    confidence: float  # 0..1


@dataclass(frozen=True, slots=True)
class PageQuality:
    word_confidence: float | None  # mean word confidence, 0..1 (Tesseract's own number)
    ink_coverage: float | None  # share of text ink inside recognised word boxes
    ink_confidence: float | None  # text ink weighted by word confidence; None on a blank page
    low_confidence_words: float | None  # share of words below LOW_WORD_CONFIDENCE
    words: int
    text_ink_pixels: int
    needs_human_read: bool


def _long_runs(ink: np.ndarray, length: int) -> np.ndarray:
    """True where a pixel lies inside a horizontal run of >= ``length`` ink pixels.

    A morphological opening with a 1 x ``length`` line, as two sliding-window sums
    (cumulative sums, no Python loop): erosion marks windows that are all ink,
    dilation spreads each such window back over its pixels.
    """
    rows, n = ink.shape
    if length > n:
        return np.zeros_like(ink, dtype=bool)
    c = np.zeros((rows, n + 1), dtype=np.int32)
    np.cumsum(ink, axis=1, dtype=np.int32, out=c[:, 1:])
    full = (c[:, length:] - c[:, :-length]) == length  # (rows, n - length + 1): window at j all ink
    g = np.zeros((rows, n + length), dtype=np.int32)
    np.cumsum(np.pad(full, ((0, 0), (length - 1, length - 1))), axis=1, dtype=np.int32, out=g[:, 1:])
    runs: np.ndarray = (g[:, length:] - g[:, :n]) > 0
    return runs


def text_ink(ink: np.ndarray, dpi: tuple[float, float]) -> np.ndarray:
    """Ink without isolated specks and without ruling lines (see the module docstring)."""
    ink = np.asarray(ink, dtype=bool)
    p = np.pad(ink, 1)
    neighbours = (
        p[:-2, :-2] | p[:-2, 1:-1] | p[:-2, 2:] | p[1:-1, :-2] | p[1:-1, 2:] | p[2:, :-2] | p[2:, 1:-1] | p[2:, 2:]
    )
    ink = ink & neighbours
    rules = _long_runs(ink, max(8, round(dpi[0] * RULE_MIN_INCHES)))
    rules |= _long_runs(ink.T, max(8, round(dpi[1] * RULE_MIN_INCHES))).T
    out: np.ndarray = ink & ~rules
    return out


def page_quality(ink: np.ndarray, dpi: tuple[float, float], words: Iterable[WordBox]) -> PageQuality:
    """Quality of one OCRed page from its ink mask (True = ink) and Tesseract's word boxes.

    ``ink`` must be in the coordinates of the image Tesseract read (the boxes are).
    """
    words = [w for w in words if w.width > 0 and w.height > 0]
    ink = np.asarray(ink, dtype=bool)
    f = 2 if min(dpi) >= 150 else 1  # 2x2 bins (any ink): a quarter of the work, same shares
    if f > 1:
        h2, w2 = ink.shape[0] // f * f, ink.shape[1] // f * f
        ink = np.asarray(ink[:h2, :w2].reshape(h2 // f, f, w2 // f, f).any(axis=(1, 3)), dtype=bool)
    t = text_ink(ink, (dpi[0] / f, dpi[1] / f))
    h, w = t.shape
    col = np.zeros((h + 1, w), dtype=np.int32)  # column-wise prefix sums: ink in a box = 2 slices
    np.cumsum(t, axis=0, dtype=np.int32, out=col[1:])
    total = int(col[-1].sum())
    covered = 0.0
    weighted = 0.0
    for wb in words:
        x0, y0 = min(max(wb.left // f, 0), w), min(max(wb.top // f, 0), h)
        x1, y1 = min(max(-(-(wb.left + wb.width) // f), 0), w), min(max(-(-(wb.top + wb.height) // f), 0), h)
        n = int((col[y1, x0:x1] - col[y0, x0:x1]).sum()) if x1 > x0 and y1 > y0 else 0
        covered += n
        weighted += n * wb.confidence
    confs = [wb.confidence for wb in words]
    word_conf = round(sum(confs) / len(confs), 4) if confs else None
    low = round(sum(c < LOW_WORD_CONFIDENCE for c in confs) / len(confs), 4) if confs else None
    blank = total < _BLANK_INK_PER_SQ_INCH * (w * f / dpi[0]) * (h * f / dpi[1]) / (f * f)
    if blank:
        coverage = ink_conf = None
    else:  # overlapping boxes can count ink twice: cap at 1
        coverage = round(min(1.0, covered / total), 4)
        ink_conf = round(min(1.0, weighted / total), 4)
    flagged = (not blank) and (ink_conf is None or ink_conf < NEEDS_HUMAN_READ_BELOW)
    return PageQuality(word_conf, coverage, ink_conf, low, len(words), total, flagged)


def tsv_words(tsv_text: str) -> dict[int, list[WordBox]]:
    """Tesseract TSV -> {page_num (1-based): word boxes with text}."""
    import csv
    import io

    out: dict[int, list[WordBox]] = {}
    rows = csv.reader(io.StringIO(tsv_text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, None)
    if not header:
        return out
    col = {name: i for i, name in enumerate(header)}
    for r in rows:
        if len(r) < len(header):
            continue
        page = out.setdefault(int(r[col["page_num"]]), [])
        if r[col["level"]] != "5" or not r[col["text"]].strip():
            continue
        conf = float(r[col["conf"]])
        if conf < 0:
            continue
        page.append(
            WordBox(int(r[col["left"]]), int(r[col["top"]]), int(r[col["width"]]), int(r[col["height"]]), conf / 100.0)
        )
    return out


def ink_mask(image: object, threshold: int = 128) -> np.ndarray:
    """Pillow image -> bool array, True where the pixel is darker than ``threshold``."""
    from PIL import Image

    im = image if isinstance(image, Image.Image) else None
    if im is None:
        raise TypeError("a Pillow image is required")
    if im.mode == "1":
        return ~np.asarray(im, dtype=bool)
    return np.asarray(im.convert("L"), dtype=np.uint8) < threshold


__all__ = [
    "LOW_WORD_CONFIDENCE",
    "NEEDS_HUMAN_READ_BELOW",
    "PageQuality",
    "WordBox",
    "ink_mask",
    "page_quality",
    "text_ink",
    "tsv_words",
]
