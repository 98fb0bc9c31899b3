"""OCR accuracy at fax resolution, BEFORE and AFTER, with the honesty of the page confidence.

``run()`` returns a dict; ``python bench/bench_ocr_fax.py [config ...]`` prints it as
JSON (about 2-4 minutes on 2 busy cores). ``bench/run_all.py ocr_fax`` records it.

Pages
-----
* ``eval_set``: the 14 generated pages of :mod:`practiceflow.processors.fax.evalset`
  (dense consult letters, 7.5-9 pt letters, ruled and unruled lab tables, medication
  lists, two handwriting-like/script notes; 10 fonts; fine 204x196 and standard 204x98
  fax modes; skew, speckle, light/dark thresholding; 1-bit CCITT G4 TIFF). True text
  known exactly, in reading order.
* ``public_pages`` (only if ``PRACTICEFLOW_SHARED_DATA`` has ``fax/``): the 16 pages of
  the 8 text PDFs among the public fax samples (referral letters, progress note, lab
  tables, imaging report), rendered here the way a fax machine would send them (PDFium
  at 408 dpi gray, box-filtered to 204x196, threshold, G4). The reference is each
  page's own PDF text layer. Evaluation only: nothing is tuned on them.

Metrics
-------
* ``word_accuracy`` = 1 - word-level Levenshtein distance / reference words, floored at
  0 (:func:`synth.word_accuracy`): order-sensitive, so a lab table read column by column
  scores low (the value is no longer next to its test name).
* ``bag_recall`` = share of reference words found anywhere in the OCR text (multiset
  recall, order ignored). Used for the public pages, whose PDF text layer order is not
  the visual reading order.
* ``confidence``: what the page record reports; ``word_confidence``: Tesseract's mean
  word confidence (the only number BEFORE); ``needs_human_read``: the AFTER flag.
  ``confidence_gap`` = mean(confidence - word_accuracy) over the pages: how much the
  reported number over-promises.
* ``cpu_s_per_page``: this process + Tesseract children (CPU seconds), median.

Configurations: ``before`` = ``ocr.LEGACY`` (the image OCR on main before this work:
psm 3, mean word confidence); ``after`` = ``ocr.TUNED`` (psm 4, preserved interword
spaces, quality signal); ``after_upscale300`` = ``after`` with pages resampled to
300 dpi first (bilinear + threshold), the literature's recommendation, kept as a lever.
"""

from __future__ import annotations

import io
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from practiceflow.processors.fax import evalset, ocr as fax_ocr, synth
from practiceflow.processors.fax.ocr import OcrSettings, ocr_document

CONFIGS: dict[str, OcrSettings] = {
    "before": fax_ocr.LEGACY,
    "after": fax_ocr.TUNED,
    "after_upscale300": replace(fax_ocr.TUNED, name="tuned_upscale300", upscale_dpi=300.0),
}
PUBLIC_PDFS = (
    "dictatemed_test_cardiology_referral_001.pdf",
    "dictatemed_test_cardiology_referral_002_urgent.pdf",
    "navigator_specialist_referral_cardiology_doc1.pdf",
    "navigator_specialist_referral_gi_doc6.pdf",
    "navigator_urgent_neurology_referral_letter.pdf",
    "autoauth_progress_note_case002a.pdf",
    "autoauth_lab_results_case005a.pdf",
    "autoauth_imaging_report_case001a.pdf",
)


def _cpu() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def public_pages(shared: Path) -> list[tuple[str, bytes, str]]:
    """(name, G4 TIFF at 204x196, PDF text) per page of the public text PDFs present."""
    import pypdfium2 as pdfium
    from PIL import Image

    out = []
    for fn in PUBLIC_PDFS:
        path = shared / "fax" / fn
        if not path.is_file():
            continue
        pdf = pdfium.PdfDocument(str(path))
        try:
            for i in range(len(pdf)):
                page = pdf[i]
                text = page.get_textpage().get_text_range().replace("\r\n", "\n")
                w, h = page.get_size()
                im = page.render(scale=408 / 72, grayscale=True).to_pil().convert("L")
                im = im.resize((round(w / 72 * 204), round(h / 72 * 196)), Image.Resampling.BOX)
                im = im.point(lambda v: 255 if v >= 150 else 0, mode="1")
                buf = io.BytesIO()
                im.save(buf, format="TIFF", compression="group4", dpi=(204, 196))
                out.append((f"{fn[:-4]}_p{i + 1}", buf.getvalue(), text))
        finally:
            pdf.close()
    return out


def _measure(settings: OcrSettings, pages: list[tuple[str, bytes, str]], tmp: Path) -> dict[str, Any]:
    rows = []
    for name, data, truth in pages:
        wd = tmp / f"{settings.name}-{name}"
        c0 = _cpu()
        res = ocr_document(data, "image/tiff", workdir=wd, settings=settings)
        cpu = _cpu() - c0
        p = res.pages[0]
        rows.append(
            {
                "page": name,
                "word_accuracy": round(synth.word_accuracy(truth, p.text), 4),
                "bag_recall": round(evalset.bag_recall(truth, p.text), 4),
                "confidence": p.confidence,
                "word_confidence": p.word_confidence,
                "ink_coverage": p.ink_coverage,
                "needs_human_read": p.needs_human_read,
                "cpu_s": round(cpu, 3),
            }
        )

    def mean(k: str) -> float | None:
        xs = [r[k] for r in rows if r[k] is not None]
        return round(sum(xs) / len(xs), 4) if xs else None

    gaps = [r["confidence"] - r["word_accuracy"] for r in rows if r["confidence"] is not None]
    return {
        "word_accuracy_mean": mean("word_accuracy"),
        "bag_recall_mean": mean("bag_recall"),
        "confidence_mean": mean("confidence"),
        "confidence_gap_mean": round(sum(gaps) / len(gaps), 4) if gaps else None,
        "flagged_pages": [r["page"] for r in rows if r["needs_human_read"]],
        "cpu_s_per_page_median": round(statistics.median(r["cpu_s"] for r in rows), 3),
        "cpu_s_per_page_mean": round(sum(r["cpu_s"] for r in rows) / len(rows), 3),
        "pages": rows,
    }


def run(configs: list[str] | None = None) -> dict[str, Any]:
    names = configs or list(CONFIGS)
    load_start = round(os.getloadavg()[0], 2)
    eval_pages = [(s.name, evalset.to_tiff_g4(p), p.text) for s, p in evalset.render_all()]
    shared = Path(os.environ.get("PRACTICEFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    pub = public_pages(shared) if (shared / "fax").is_dir() else []
    out: dict[str, Any] = {"eval_set": {}, "public_pages": {}}
    with tempfile.TemporaryDirectory(prefix="bench-ocr-fax-") as tmp:
        ocr_document(eval_pages[0][1], None, workdir=Path(tmp))  # warm-up: imports, probes
        for n in names:
            out["eval_set"][n] = _measure(CONFIGS[n], eval_pages, Path(tmp))
            if pub:
                out["public_pages"][n] = _measure(CONFIGS[n], pub, Path(tmp))
    summary = {}
    for n in names:
        e = out["eval_set"][n]
        summary[n] = {
            "eval_word_accuracy": e["word_accuracy_mean"],
            "eval_bag_recall": e["bag_recall_mean"],
            "eval_confidence": e["confidence_mean"],
            "eval_confidence_gap": e["confidence_gap_mean"],
            "eval_flagged": e["flagged_pages"],
            "cpu_s_per_page": e["cpu_s_per_page_median"],
        }
        if pub:
            p = out["public_pages"][n]
            summary[n]["public_bag_recall"] = p["bag_recall_mean"]
            summary[n]["public_word_accuracy"] = p["word_accuracy_mean"]
            summary[n]["public_flagged"] = p["flagged_pages"]
    return {
        "bench": "fax_ocr_resolution",
        "python": platform.python_version(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_start": load_start,
            "load_avg_1m_end": round(os.getloadavg()[0], 2),
        },
        "engines": fax_ocr.engine_versions(),
        "configs": {n: CONFIGS[n].name for n in names},
        "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "summary": summary,
        **out,
    }


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="*", help=f"default: all of {', '.join(CONFIGS)}")
    a = ap.parse_args()
    unknown = set(a.configs) - set(CONFIGS)
    if unknown:
        ap.error(f"unknown config(s) {sorted(unknown)}; choose from {list(CONFIGS)}")
    print(json.dumps(run(a.configs or None), indent=2))
