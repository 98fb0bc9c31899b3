"""``practiceflow eval fax``: how well the embedded fax classifier does, recorded in the repo.

Two sets, never used for training:

* **held-out generated**: :func:`practiceflow.processors.fax.corpus.generate` ``heldout``
  split (senders from the other half of every name list, other seeds, OCR noise), scored
  per page (the classifier's unit) and per document (after splitting a packet);
* **public documents** in ``<shared data>/fax`` (labels from its ``SOURCES.md``): every
  PDF/PNG/JPEG is OCRed by the worker's own OCR (cached under ``<state_dir>/fax-eval``
  by content hash, so a re-run costs seconds) and every ``text/*.txt`` read as is; each
  file is one labelled document, predicted as the arg-max of its pages' summed
  probabilities.

Printed: accuracy, macro-F1, per-class precision / recall / F1, the confusion matrix,
abstain rate and routing accuracy (the queue a document reached vs the queue its true
class routes to, with the patient match held fixed so only the classifier is measured),
and every public miss by file. ``--record`` writes it all to ``bench/FAX_EVAL.md`` and
``bench/fax_eval.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from practiceflow.processors.fax import corpus
from practiceflow.processors.fax.classifier import FaxClassifier, load_or_train
from practiceflow.settings import Settings

MEDIA = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
TARGETS = {"heldout_macro_f1": 0.95, "public_macro_f1": 0.90}


def public_labels(root: Path) -> dict[str, str]:
    """file name (relative to ``root``) -> label, from the tables of ``SOURCES.md``."""
    out: dict[str, str] = {}
    labels = set(corpus.CLASSES)
    for line in (root / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and (root / cells[0]).is_file():
            label = next((c for c in cells[1:] if c in labels), None)
            if label:
                out[cells[0]] = label
    return out


def _ocr_pages(path: Path, cache: Path, workdir: Path) -> list[str]:
    if path.suffix.lower() == ".txt":
        return path.read_text(encoding="utf-8", errors="replace").split("\f")
    data = path.read_bytes()
    key = cache / f"{hashlib.sha256(data).hexdigest()}.json"
    if key.is_file():
        pages: list[str] = json.loads(key.read_text())
        return pages
    from practiceflow.processors.fax.ocr import ocr_document

    result = ocr_document(data, None, workdir=workdir)
    pages = [p.text for p in result.pages]
    cache.mkdir(parents=True, exist_ok=True)
    key.write_text(json.dumps(pages))
    return pages


def scores(y: Sequence[str], yhat: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over ``labels`` present in ``y``, per-class P/R/F1, confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    present = [c for c in labels if c in set(y)]
    p, r, f, n = precision_recall_fscore_support(y, yhat, labels=present, zero_division=0)
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, yhat)),
        "macro_f1": float(f1_score(y, yhat, labels=present, average="macro", zero_division=0)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
            for i, c in enumerate(present)
        },
        "labels": list(labels) + (["abstained"] if "abstained" in set(yhat) else []),
        "confusion": confusion_matrix(
            y, yhat, labels=list(labels) + (["abstained"] if "abstained" in set(yhat) else [])
        ).tolist(),
    }


def _queue_for(doc_class: str, text: str) -> str:
    from practiceflow.processors.workflows.fax.route import _INSURANCE, QUEUE_BY_CLASS

    if doc_class == "other_clinical" and _INSURANCE.search(text):
        return "billing"
    return QUEUE_BY_CLASS[doc_class]


def evaluate_heldout(model: FaxClassifier, n_per_kind: int = 20) -> dict[str, Any]:
    from practiceflow.processors.workflows.fax.split import PageVerdict, split_pages

    pages = corpus.generate("heldout", n_per_kind, seed=0)
    t0 = time.process_time()
    probs = model.probabilities([p.text for p in pages])
    cpu = time.process_time() - t0
    y, best, kept = [], [], []
    for p, row in zip(pages, probs, strict=True):
        i = int(row.argmax())
        y.append(p.label)
        best.append(model.classes[i])
        kept.append(model.classes[i] if row[i] >= model.threshold else "abstained")
    out: dict[str, Any] = {
        "pages": scores(y, best, model.classes),
        "pages_abstain_rate": kept.count("abstained") / len(kept),
        "pages_kept_accuracy": sum(a == b for a, b in zip(y, kept, strict=True) if b != "abstained")
        / max(1, sum(k != "abstained" for k in kept)),
        "pages_per_cpu_second": len(pages) / cpu if cpu else None,
    }
    # documents: split each generated document's pages as the worker would, score the first segment
    by_doc: dict[int, list[int]] = {}
    doc_of = 0
    for i, p in enumerate(pages):
        if p.page_no == 1:
            doc_of = i
        by_doc.setdefault(doc_of, []).append(i)
    dy, dhat, routed_ok, triaged = [], [], 0, 0
    for idxs in by_doc.values():
        verdicts = [
            PageVerdict(pages[i].page_no, pages[i].text, tuple(float(x) for x in probs[i]), False) for i in idxs
        ]
        segs = split_pages(verdicts, model.classes)
        seg = segs[0]
        truth = pages[idxs[0]].label
        dy.append(truth)
        dhat.append(seg.doc_class)
        text = "\n".join(pages[i].text for i in idxs)
        if seg.confidence < model.threshold:
            triaged += 1
        elif _queue_for(seg.doc_class, text) == _queue_for(truth, text) and len(segs) == 1:
            routed_ok += 1
    out["documents"] = scores(dy, dhat, model.classes)
    out["documents_split_into_one"] = None
    out["routing_accuracy"] = routed_ok / len(dy)
    out["routing_to_triage"] = triaged / len(dy)
    return out


def evaluate_public(model: FaxClassifier, root: Path, cache: Path, workdir: Path) -> dict[str, Any]:
    labels = public_labels(root)
    y: list[str] = []
    yhat: list[str] = []
    rows: list[dict[str, Any]] = []
    for name, label in sorted(labels.items()):
        pages = [t for t in _ocr_pages(root / name, cache, workdir) if t.strip()] or [""]
        probs = model.probabilities(pages)
        mean = probs.mean(axis=0)
        i = int(mean.argmax())
        pred = model.classes[i]
        y.append(label)
        yhat.append(pred)
        top = sorted(range(len(mean)), key=lambda k: -mean[k])[:3]
        rows.append(
            {
                "file": name,
                "label": label,
                "predicted": pred,
                "confidence": round(float(mean[i]), 3),
                "abstained": bool(mean[i] < model.threshold),
                "pages": len(pages),
                "top3": [(model.classes[k], round(float(mean[k]), 3)) for k in top],
                "routed_ok": _queue_for(pred, "\n".join(pages)) == _queue_for(label, "\n".join(pages)),
            }
        )
    out = scores(y, yhat, model.classes)
    out["abstain_rate"] = sum(r["abstained"] for r in rows) / max(1, len(rows))
    out["routing_accuracy"] = sum(r["routed_ok"] and not r["abstained"] for r in rows) / max(1, len(rows))
    out["files"] = rows
    return out


def _table(s: dict[str, Any]) -> list[str]:
    lines = ["| class | precision | recall | F1 | n |", "|---|---|---|---|---|"]
    for c, m in s["per_class"].items():
        lines.append(f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    return lines


def _confusion(s: dict[str, Any]) -> list[str]:
    labels = s["labels"]
    short = [re.sub(r"[aeiou_]", "", lab)[:6] for lab in labels]
    lines = ["| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, s["confusion"], strict=True):
        if any(row):
            lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def report(model: FaxClassifier, held: dict[str, Any], pub: dict[str, Any] | None) -> str:
    lines = [
        "# Fax classifier evaluation (`practiceflow eval fax --record`)",
        "",
        f"Model `{model.model_id}`: TF-IDF word 1-2-grams + char 3-5-grams, logistic regression, temperature "
        f"{model.temperature:.3f}, abstain below {model.threshold:.3f}; trained on "
        f"{sum(model.training_counts.values())} generated pages (training data sha256 `{model.training_hash[:16]}`).",
        f"Calibration split: {json.dumps({k: round(v, 4) for k, v in model.calibration.items()})}",
        "",
        "## Held-out generated set",
        "",
        f"Pages: accuracy **{held['pages']['accuracy']:.3f}**, macro-F1 **{held['pages']['macro_f1']:.3f}** "
        f"(target {TARGETS['heldout_macro_f1']}), abstain rate {held['pages_abstain_rate']:.3f}, accuracy of kept "
        f"pages {held['pages_kept_accuracy']:.3f}; documents: macro-F1 {held['documents']['macro_f1']:.3f}; "
        f"routing accuracy {held['routing_accuracy']:.3f} ({held['routing_to_triage']:.3f} to triage); "
        f"{held['pages_per_cpu_second']:.0f} pages per CPU-second (batch).",
        "",
        *_table(held["pages"]),
        "",
        *_confusion(held["pages"]),
        "",
    ]
    if pub is not None:
        lines += [
            "## Public documents (`shared/data/fax`, never used for training)",
            "",
            f"{pub['n']} documents: accuracy **{pub['accuracy']:.3f}**, macro-F1 **{pub['macro_f1']:.3f}** "
            f"(target {TARGETS['public_macro_f1']}), abstain rate {pub['abstain_rate']:.3f}, routing accuracy "
            f"{pub['routing_accuracy']:.3f} (abstained documents count as not routed).",
            "",
            *_table(pub),
            "",
            *_confusion(pub),
            "",
            "| file | label | predicted | confidence | top 3 |",
            "|---|---|---|---|---|",
        ]
        for r in pub["files"]:
            mark = "" if r["label"] == r["predicted"] else " ✘"
            top = ", ".join(f"{c} {p:.2f}" for c, p in r["top3"])
            lines.append(
                f"| {r['file']} | {r['label']} | {r['predicted']}{mark}{' (abstained)' if r['abstained'] else ''} "
                f"| {r['confidence']:.3f} | {top} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str], cfg: Settings) -> int:
    ap = argparse.ArgumentParser(prog="practiceflow eval fax")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default PRACTICEFLOW_SHARED_DATA)")
    ap.add_argument("--no-public", action="store_true", help="only the held-out generated set")
    ap.add_argument("--record", action="store_true", help="write bench/FAX_EVAL.md and bench/fax_eval.json")
    args = ap.parse_args(argv)
    import os

    model = load_or_train(cfg.fax_model_dir or Path(cfg.state_dir) / "models")
    held = evaluate_heldout(model)
    pub = None
    if not args.no_public:
        data = args.data or Path(os.environ.get("PRACTICEFLOW_SHARED_DATA", "../shared/data"))
        root = data / "fax"
        if not (root / "SOURCES.md").is_file():
            print(f"no public fax documents at {root} (set PRACTICEFLOW_SHARED_DATA or --data)", file=sys.stderr)
            return 2
        state = Path(cfg.state_dir)
        pub = evaluate_public(model, root, state / "fax-eval" / "ocr", state / "fax-eval" / "work")
    text = report(model, held, pub)
    print(text)
    if args.record:
        bench = Path(__file__).resolve().parents[2] / "bench"
        if not bench.is_dir():  # installed as practiceflow.jobs: the checkout is two levels up
            bench = Path.cwd() / "bench"
        (bench / "FAX_EVAL.md").write_text(text, encoding="utf-8")
        (bench / "fax_eval.json").write_text(
            json.dumps({"model": model.model_id, "heldout": held, "public": pub}, indent=1, default=str) + "\n",
            encoding="utf-8",
        )
    ok = held["pages"]["macro_f1"] >= TARGETS["heldout_macro_f1"] and (
        pub is None or pub["macro_f1"] >= TARGETS["public_macro_f1"]
    )
    return 0 if ok else 1
