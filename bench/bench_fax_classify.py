"""Fax classification speed: pages per CPU-second without OCR, split into classification and
extraction, plus OCR per page and faxes per minute per core for the whole fax step.

Usage: .venv/bin/python bench/bench_fax_classify.py [--seconds S] [--ocr-pages N]

* classification: the embedded model (TF-IDF + linear) over held-out generated page texts,
  one page at a time (what the worker does per fax page) and in batches of 32;
* extraction: the rule extractor over the same pages;
* route: the whole pure fax step (classify, split, extract, match, route) per 3-page fax;
* OCR: ``--ocr-pages`` generated pages rendered at fax resolution and OCRed by the worker's
  OCR (0 skips it; the OCR benchmark proper is bench_ocr_fax.py);
* faxes per minute per core = 60 / (pages per fax x (OCR + classification + extraction) CPU-s per page).

Times are ``time.process_time`` (CPU of this process; OCR's Tesseract child processes are
measured by ``resource.getrusage(RUSAGE_CHILDREN)``). The end-to-end time from inbox to
work item is measured through the real broker by tests/streams/test_fax_workflow_e2e.py
and recorded in bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rate(fn, items: list, seconds: float) -> float:
    n, t0 = 0, time.process_time()
    while True:
        for it in items:
            fn(it)
            n += 1
        dt = time.process_time() - t0
        if dt >= seconds:
            return n / dt


def run(seconds: float = 2.0, ocr_pages: int = 3) -> dict:
    from practiceflow.processors.fax import corpus
    from practiceflow.processors.fax.classifier import load_or_train
    from practiceflow.processors.workflows.fax.extract import RuleExtractor
    from practiceflow.processors.workflows.fax.route import classify_fax

    model = load_or_train(ROOT / ".stack" / "models")
    pages = corpus.generate("heldout", 4, seed=7)
    texts = [p.text for p in pages]
    ext = RuleExtractor()
    one = _rate(lambda t: model.probabilities([t]), texts, seconds)
    batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    batched = _rate(lambda b: model.probabilities(b), batches, seconds) * 32
    labels = {p.text: p.label for p in pages}
    extract = _rate(lambda t: ext.extract(labels[t], [t], [1]), texts, seconds)
    faxes = [
        {
            "practice_id": "bench",
            "document_id": f"{i:064x}",
            "page_count": 3,
            "pages": [{"page": j + 1, "text": texts[(3 * i + j) % len(texts)]} for j in range(3)],
            "source": {"feed": "fax", "message_id": str(i)},
        }
        for i in range(40)
    ]
    route = _rate(lambda d: classify_fax(d, model), faxes, seconds) * 3
    out = {
        "pages": len(texts),
        "classify_pages_per_cpu_s": round(one),
        "classify_batched_pages_per_cpu_s": round(batched),
        "extract_pages_per_cpu_s": round(extract),
        "fax_step_pages_per_cpu_s": round(route),
        "model": model.model_id,
    }
    if ocr_pages:
        from practiceflow.processors.fax import synth
        from practiceflow.processors.fax.ocr import ocr_document

        doc = synth.render_lines_document(
            [p.text.split("\n") for p in corpus.generate("heldout", 1, seed=3, noise=0)[:ocr_pages]], seed=5
        )
        data = synth.to_tiff_g4(doc)
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            res = ocr_document(data, "image/tiff", workdir=Path(tmp))
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = time.process_time() - t0 + (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        ocr_per_page = cpu / max(1, res.page_count)
        per_page = ocr_per_page + 1 / one + 1 / extract
        out.update(
            {
                "ocr_cpu_s_per_page": round(ocr_per_page, 3),
                "faxes_per_minute_per_core_3_pages": round(60 / (3 * per_page), 1),
                "share_ocr": round(ocr_per_page / per_page, 4),
            }
        )
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--ocr-pages", type=int, default=3)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.seconds, args.ocr_pages), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
