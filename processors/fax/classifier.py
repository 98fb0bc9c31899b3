"""The embedded fax page classifier: TF-IDF word + character n-grams, a linear model, calibrated.

Why this model: it runs on one CPU core at hundreds of pages per second, installs from
PyPI (scikit-learn) with no downloaded weights, and character n-grams survive OCR noise
("Labcrat0ry" still shares most of its 3- to 5-grams with "Laboratory"). Its scores are
turned into honest probabilities by temperature scaling on a calibration split the model
never trained on, and it **abstains** when the top probability is below a threshold chosen
on that split (the lowest threshold at which the pages it keeps are >= ``TARGET_PRECISION``
correct): an abstained page goes to a person with the top three guesses, never routed on a
guess.

Reproducible: the training corpus is generated (:mod:`.corpus`, fixed seeds), so the same
code gives the same pages and the same :func:`.corpus.corpus_hash`; a model file is named by
that hash plus the hyper-parameters (:func:`model_id`), and :func:`load_or_train` trains once
per checkout (``./pf setup`` and ``practiceflow fax train`` do it) and reuses the file after.
The file is a joblib pickle the worker itself wrote into its state directory; it is never
read from anywhere else.

Pure apart from :func:`load_or_train` (files); classification reads no clock, no network.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import corpus

#: bump when features, model or corpus generation change in a way the hash would not see
MODEL_VERSION = "fax-tfidf-lr-1"
#: the kept (not abstained) calibration pages must be at least this precise
TARGET_PRECISION = 0.98
TRAIN_PER_KIND = 60
CALIBRATION_PER_KIND = 20
_PARAMS = {"word_ngrams": (1, 2), "char_ngrams": (3, 5), "word_max": 30000, "char_max": 60000, "C": 2.0}

__all__ = ["FaxClassifier", "PagePrediction", "train", "load_or_train", "model_id", "MODEL_VERSION"]


@dataclass(frozen=True, slots=True)
class PagePrediction:
    """One page's verdict: ``label`` None when the model abstained (``guesses`` still hold its top 3)."""

    label: str | None
    confidence: float
    guesses: tuple[tuple[str, float], ...]

    @property
    def abstained(self) -> bool:
        return self.label is None

    @property
    def best(self) -> str:
        return self.guesses[0][0]


def _normalise(text: str) -> str:
    # digits carry little class signal and explode the vocabulary (dates, ids, phone numbers)
    return "".join("0" if ch.isdigit() else ch for ch in text.lower())


def _build_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    preprocessor=_normalise,
                    ngram_range=_PARAMS["word_ngrams"],
                    token_pattern=r"(?u)\b[a-z][a-z]+\b",  # noqa: S106 - a regular expression, not a password
                    sublinear_tf=True,
                    min_df=2,
                    max_features=_PARAMS["word_max"],
                    dtype=np.float32,
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    preprocessor=_normalise,
                    analyzer="char_wb",
                    ngram_range=_PARAMS["char_ngrams"],
                    sublinear_tf=True,
                    min_df=2,
                    max_features=_PARAMS["char_max"],
                    dtype=np.float32,
                ),
            ),
        ]
    )
    return Pipeline([("features", features), ("model", LogisticRegression(C=_PARAMS["C"], max_iter=3000))])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood on the calibration split."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = _softmax(logits / math.exp(log_t))
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(math.exp(res.x))


def _threshold(conf: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The lowest confidence threshold whose kept pages are >= ``target`` precise (at least 0.5)."""
    order = np.argsort(-conf)
    c, ok = conf[order], correct[order].astype(float)
    precision = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    good = np.nonzero(precision >= target)[0]
    if len(good) == 0:
        return 0.99
    return float(max(0.5, c[good[-1]]))


@dataclass
class FaxClassifier:
    """A trained page classifier plus what its health metrics report about its training."""

    pipeline: Any
    classes: tuple[str, ...]
    temperature: float
    threshold: float
    training_hash: str
    training_counts: dict[str, int]
    calibration: dict[str, float] = field(default_factory=dict)
    version: str = MODEL_VERSION

    @property
    def model_id(self) -> str:
        return model_id(self.training_hash)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities, one row per text (columns in ``classes`` order)."""
        if not texts:
            return np.zeros((0, len(self.classes)))
        return _softmax(self.logits(texts) / self.temperature)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """The linear model's scores, computed from the fitted vectorizers' own vocabularies and
        idf weights without the per-call input validation of Pipeline / FeatureUnion /
        TfidfTransformer (half the time of one page; same numbers as ``decision_function``,
        which a test checks)."""
        import scipy.sparse as sp
        import sklearn
        from sklearn.feature_extraction.text import CountVectorizer

        parts = []
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            for _, vec in self.pipeline.named_steps["features"].transformer_list:
                x = CountVectorizer.transform(vec, list(texts)).astype(np.float64)
                if vec.sublinear_tf:
                    np.log(x.data, x.data)
                    x.data += 1.0
                x.data *= vec.idf_[x.indices]
                norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
                norms[norms == 0.0] = 1.0
                x = sp.diags(1.0 / norms) @ x
                parts.append(x)
        model = self.pipeline.named_steps["model"]
        out: np.ndarray = np.asarray(sp.hstack(parts, format="csr") @ model.coef_.T) + model.intercept_
        return out

    def predict(self, texts: Sequence[str]) -> list[PagePrediction]:
        """One :class:`PagePrediction` per text; an empty or blank page is abstained (confidence 0)."""
        out: list[PagePrediction] = []
        probs = self.probabilities(texts)
        for text, row in zip(texts, probs, strict=True):
            top = np.argsort(-row)[:3]
            guesses = tuple((self.classes[i], round(float(row[i]), 4)) for i in top)
            conf = guesses[0][1]
            if not text.strip():
                out.append(PagePrediction(None, 0.0, guesses))
                continue
            out.append(PagePrediction(guesses[0][0] if conf >= self.threshold else None, conf, guesses))
        return out


def model_id(training_hash: str) -> str:
    """The model file's name: version, hyper-parameters and training data in one short id."""
    h = hashlib.sha256(f"{MODEL_VERSION}|{json.dumps(_PARAMS, sort_keys=True)}|{training_hash}".encode())
    return f"{MODEL_VERSION}-{h.hexdigest()[:16]}"


def training_corpus() -> tuple[list[corpus.LabelledPage], list[corpus.LabelledPage]]:
    """(training pages, calibration pages) — both generated, neither from the public docs."""
    return (
        corpus.generate("train", TRAIN_PER_KIND, seed=0),
        corpus.generate("calibration", CALIBRATION_PER_KIND, seed=0, noise=1.5),
    )


def train(
    pages: Sequence[corpus.LabelledPage] | None = None,
    calibration: Sequence[corpus.LabelledPage] | None = None,
) -> FaxClassifier:
    """Fit the pipeline on ``pages``, then calibrate temperature and threshold on ``calibration``."""
    if pages is None or calibration is None:
        pages, calibration = training_corpus()
    classes = tuple(corpus.CLASSES)
    index = {c: i for i, c in enumerate(classes)}
    pipe = _build_pipeline()
    pipe.fit([p.text for p in pages], [index[p.label] for p in pages])
    logits = np.asarray(pipe.decision_function([p.text for p in calibration]), dtype=np.float64)
    y = np.array([index[p.label] for p in calibration])
    t = _fit_temperature(logits, y)
    probs = _softmax(logits / t)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    thr = _threshold(conf, correct, TARGET_PRECISION)
    kept = conf >= thr
    return FaxClassifier(
        pipeline=pipe,
        classes=classes,
        temperature=t,
        threshold=thr,
        training_hash=corpus.corpus_hash(list(pages)),
        training_counts=dict(sorted(Counter(p.label for p in pages).items())),
        calibration={
            "pages": float(len(calibration)),
            "accuracy": float(correct.mean()),
            "kept_precision": float(correct[kept].mean()) if kept.any() else 0.0,
            "abstain_rate": float(1 - kept.mean()),
            "mean_confidence": float(conf.mean()),
        },
    )


def load_or_train(model_dir: Path) -> FaxClassifier:
    """The model for this code's training corpus: read from ``model_dir`` or trained and saved there.

    Written to a temporary file and renamed, so a worker and ``./pf setup`` training at the
    same time never leave half a file."""
    import joblib

    pages, calibration = training_corpus()
    mid = model_id(corpus.corpus_hash(pages))
    path = Path(model_dir) / f"{mid}.joblib"
    if path.is_file():
        model: FaxClassifier = joblib.load(path)
        return model
    model = train(pages, calibration)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fax-model-", dir=path.parent)
    os.close(fd)
    joblib.dump(model, tmp, compress=3)
    os.replace(tmp, path)
    return model
