"""Seconds per fax page and word accuracy: OCRmyPDF defaults vs the tuned fax OCR.

``run()`` returns a dict; ``python bench/bench_ocr.py [--reps N] [--accuracy-pages N]
[lever ...]`` prints it as JSON (about 3-5 minutes for everything on 2 busy cores).

Input: fax-quality pages from :mod:`practiceflow.processors.fax.synth`: US Letter
typed letters (referral, lab result, prior-auth reply) in DejaVu 11 pt, 1-bit CCITT
G4 TIFF at 204x196 dpi (fax fine mode) with fax speckle and a slight skew; the true
text is known, so word accuracy = 1 - word-level edit distance / reference words.

Each configuration ("lever") OCRs every page ``reps`` times, interleaved with the
other configurations so that load from other processes hits them alike. Reported
per configuration: wall seconds per page and CPU seconds per page (this process plus
its children, i.e. Tesseract: the cost per core, steadier than wall time on a shared
machine), median and min; mean word accuracy; mean Tesseract confidence.

Levers, each adding one change to the previous (see ``LEVERS``): OCRmyPDF defaults
-> OMP_THREAD_LIMIT=1 -> skip_text/output_type=pdf/optimize=0 -> confidence plugin
(fpdf2) -> sandwich renderer -> Tesseract straight on the image (``tuned``, the
default for TIFF/PNG/JPEG) ; plus psm 6, jobs=1 vs 2 on a 3-page fax, and a page that
already has a text layer (not OCRed).

Target: tuned < 1 s per page per core (CPU seconds) with no loss of word accuracy.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ocrmypdf

from practiceflow.processors.fax import ocr as fax_ocr, synth
from practiceflow.processors.fax.ocr import OcrSettings, ocr_document, pdf_page_texts

TARGET_CPU_S_PER_PAGE = 1.0
PAGES = [(7, "referral"), (8, "lab_result"), (9, "prior_auth_response")]


def _cpu() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class _Env:
    """Set or unset OMP_THREAD_LIMIT for one configuration."""

    def __init__(self, omp: str | None):
        self.omp = omp

    def __enter__(self):
        self.old = os.environ.get("OMP_THREAD_LIMIT")
        if self.omp is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
        else:
            os.environ["OMP_THREAD_LIMIT"] = self.omp

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
        else:
            os.environ["OMP_THREAD_LIMIT"] = self.old


# --------------------------------------------------------------------------- configurations
# Each takes (tiff bytes, work folder) and returns (text, confidence or None).
def _plain_ocrmypdf(omp: str | None, **kw) -> Callable[[bytes, Path], tuple[str, float | None]]:
    def fn(tif: bytes, wd: Path):
        src, dst = wd / "in.tif", wd / "out.pdf"
        src.write_bytes(tif)
        with _Env(omp):
            ocrmypdf.ocr(src, dst, progress_bar=False, **kw)
        return "\f".join(pdf_page_texts(dst)), None

    return fn


def _ocr_document(settings: OcrSettings, jobs: int = 1):
    def fn(data: bytes, wd: Path):
        r = ocr_document(data, None, workdir=wd, settings=settings, jobs=jobs)
        confs = [p.confidence for p in r.pages if p.confidence is not None]
        return r.text, (sum(confs) / len(confs) if confs else None)

    return fn


VIA_OCRMYPDF = dict(image_engine="ocrmypdf", text_shortcut=False)

LEVERS: dict[str, tuple[str, Callable]] = {
    "ocrmypdf_defaults": (
        "baseline: ocrmypdf.ocr(tiff) with every default (PDF/A output, optimize=1, fpdf2 "
        "renderer, Tesseract OpenMP threads chosen by OCRmyPDF: 2 for a 1-page job on 2 cores)",
        _plain_ocrmypdf(None),
    ),
    "defaults_omp1": ("baseline + OMP_THREAD_LIMIT=1", _plain_ocrmypdf("1")),
    "options_only": (
        "img2pdf, then ocrmypdf.ocr with skip_text, output_type=pdf, optimize=0, "
        "OMP_THREAD_LIMIT=1 (fpdf2 renderer, builtin Tesseract plugin, no confidences)",
        _ocr_document(OcrSettings(name="options_only", pdf_renderer="auto", confidences=False, **VIA_OCRMYPDF)),
    ),
    "fpdf2_confidences": (
        "options_only + confidence plugin on OCRmyPDF's default fpdf2/hOCR path "
        "(generate_ocr API, x_wconf; Tesseract probes cached per process)",
        _ocr_document(OcrSettings(name="fpdf2_confidences", pdf_renderer="fpdf2", **VIA_OCRMYPDF)),
    ),
    "sandwich_confidences": (
        "fpdf2_confidences but sandwich renderer: Tesseract writes text-only PDF + txt + TSV "
        "in one run, no fpdf2 font subsetting (the route PDFs take)",
        _ocr_document(OcrSettings(name="sandwich_confidences", **VIA_OCRMYPDF)),
    ),
    "tuned": (
        "images: Tesseract on the image's own pixels (no PDF round trip, no re-rasterizing), "
        "txt + tsv in one run, OMP_THREAD_LIMIT=1, psm 4 + page quality signal (TUNED default; "
        "psm 3 until the fax-resolution work, see bench_ocr_fax.py)",
        _ocr_document(fax_ocr.TUNED),
    ),
    "tuned_psm6": (
        "tuned + --psm 6 (single uniform block instead of automatic layout)",
        _ocr_document(OcrSettings(name="tuned_psm6", tesseract_pagesegmode=6)),
    ),
}


def _measure(configs: dict[str, Callable], inputs: list[tuple[bytes, str, int]], reps: int) -> dict:
    """inputs: (bytes, true text, page count). Interleaved reps; per-page numbers."""
    res: dict[str, dict] = {n: {"wall": [], "cpu": [], "acc": [], "conf": []} for n in configs}
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        for rep in range(reps):
            for i, (data, truth, npages) in enumerate(inputs):
                for name, fn in configs.items():
                    wd = Path(tmp) / f"{name}-{rep}-{i}"
                    wd.mkdir()
                    c0, t0 = _cpu(), time.perf_counter()
                    text, conf = fn(data, wd)
                    wall, cpu = time.perf_counter() - t0, _cpu() - c0
                    r = res[name]
                    r["wall"].append(wall / npages)
                    r["cpu"].append(cpu / npages)
                    if rep == 0:
                        r["acc"].append(synth.word_accuracy(truth, text))
                        if conf is not None:
                            r["conf"].append(conf)
    out = {}
    for name, r in res.items():
        out[name] = {
            "wall_s_per_page_median": round(statistics.median(r["wall"]), 3),
            "wall_s_per_page_min": round(min(r["wall"]), 3),
            "cpu_s_per_page_median": round(statistics.median(r["cpu"]), 3),
            "cpu_s_per_page_min": round(min(r["cpu"]), 3),
            "word_accuracy_mean": round(sum(r["acc"]) / len(r["acc"]), 4),
            "word_accuracy": [round(a, 4) for a in r["acc"]],
            "confidence_mean": round(sum(r["conf"]) / len(r["conf"]), 4) if r["conf"] else None,
            "runs": len(r["wall"]),
        }
    return out


def run(reps: int = 3, levers: list[str] | None = None, accuracy_pages: int = 0) -> dict:
    reps = max(3, reps)
    load_start = round(os.getloadavg()[0], 2)
    pages = [synth.render_page(seed, kind) for seed, kind in PAGES]
    tiffs = [(synth.to_tiff_g4(p), p.text, 1) for p in pages]

    # Warm-up: imports, OCRmyPDF plugin installation, Tesseract probes (once per process).
    with tempfile.TemporaryDirectory() as tmp:
        ocr_document(tiffs[0][0], None, workdir=Path(tmp))

    names = levers or list(LEVERS)
    fax_page = _measure({n: LEVERS[n][1] for n in names}, tiffs, reps)
    for n in names:
        fax_page[n]["what"] = LEVERS[n][0]

    # Page parallelism: one 3-page fax as G4 TIFF (Tesseract route) and as an
    # image-only PDF (OCRmyPDF route), jobs=1 vs jobs=2.
    doc = synth.render_document(11, pages=3, kinds=list(synth.KINDS))
    jobs = _measure(
        {
            "tiff_tuned_jobs1": _ocr_document(fax_ocr.TUNED, jobs=1),
            "tiff_tuned_jobs2": _ocr_document(fax_ocr.TUNED, jobs=2),
        },
        [(synth.to_tiff_g4(doc), doc.text, 3)],
        reps,
    )
    jobs.update(
        _measure(
            {
                "image_pdf_jobs1": _ocr_document(fax_ocr.TUNED, jobs=1),
                "image_pdf_jobs2": _ocr_document(fax_ocr.TUNED, jobs=2),
            },
            [(synth.to_image_pdf(doc), doc.text, 3)],
            reps,
        )
    )

    # Word accuracy on more pages (once each): Tesseract route vs OCRmyPDF route.
    accuracy = None
    if accuracy_pages:
        acc_pages = [synth.render_page(1000 + i, synth.KINDS[i % 3]) for i in range(accuracy_pages)]
        acc = _measure(
            {"tuned": LEVERS["tuned"][1], "sandwich_confidences": LEVERS["sandwich_confidences"][1]},
            [(synth.to_tiff_g4(p), p.text, 1) for p in acc_pages],
            1,
        )
        accuracy = {
            n: {"word_accuracy_mean": r["word_accuracy_mean"], "pages": len(r["word_accuracy"])} for n, r in acc.items()
        }

    # A page that already has a text layer: not OCRed.
    text_doc = synth.render_document(12, pages=1, noise=0)
    text_pdf = [(synth.to_text_pdf(text_doc), text_doc.text, 1)]
    text_layer = _measure(
        {
            "tuned": _ocr_document(fax_ocr.TUNED),
            "through_ocrmypdf_skip_text": _ocr_document(OcrSettings(name="no_shortcut", text_shortcut=False)),
        },
        text_pdf,
        reps,
    )

    tuned = fax_page.get("tuned")
    base = fax_page.get("ocrmypdf_defaults")
    summary = {}
    if tuned:
        summary["tuned_cpu_s_per_page"] = tuned["cpu_s_per_page_median"]
        summary["tuned_wall_s_per_page"] = tuned["wall_s_per_page_median"]
        summary["meets_target"] = tuned["cpu_s_per_page_median"] < TARGET_CPU_S_PER_PAGE
        summary["tuned_word_accuracy"] = tuned["word_accuracy_mean"]
    via = fax_page.get("sandwich_confidences")
    if tuned and via:
        summary["ocrmypdf_route_cpu_s_per_page"] = via["cpu_s_per_page_median"]
        summary["ocrmypdf_route_word_accuracy"] = via["word_accuracy_mean"]
    if tuned and base:
        summary["baseline_cpu_s_per_page"] = base["cpu_s_per_page_median"]
        summary["baseline_wall_s_per_page"] = base["wall_s_per_page_median"]
        summary["baseline_word_accuracy"] = base["word_accuracy_mean"]
        summary["speedup_cpu"] = round(base["cpu_s_per_page_median"] / tuned["cpu_s_per_page_median"], 2)
    return {
        "bench": "fax_ocr",
        "python": platform.python_version(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_start": load_start,
            "load_avg_1m_end": round(os.getloadavg()[0], 2),
        },
        "engines": fax_ocr.engine_versions(),
        "input": f"US Letter typed page, 1-bit G4 TIFF 204x196 dpi, fax speckle + skew; seeds/kinds {PAGES}",
        "reps": reps,
        "target_cpu_s_per_page": TARGET_CPU_S_PER_PAGE,
        "summary": summary,
        "fax_page": fax_page,
        "multi_page_3p": jobs,
        "text_layer_pdf_page": text_layer,
        "accuracy_more_pages": accuracy,
    }


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--accuracy-pages",
        type=int,
        default=0,
        help="also score word accuracy on N more pages (Tesseract vs OCRmyPDF route)",
    )
    ap.add_argument("levers", nargs="*", help=f"default: all of {', '.join(LEVERS)}")
    a = ap.parse_args()
    unknown = set(a.levers) - set(LEVERS)
    if unknown:
        ap.error(f"unknown lever(s) {sorted(unknown)}; choose from {list(LEVERS)}")
    print(json.dumps(run(a.reps, a.levers or None, a.accuracy_pages), indent=2))
