"""The fax workflow in the worker: after OCR, classify, split, extract, match and route each fax.

Why here and not in a separate agent: the fax's Document, its classifications and its
refill requests are produced from the same raw message, so they travel in the same
batch and share its commit (``streams/normalize_agent.py``): a crash can never leave a
Document without its routing, or route a fax twice under different keys. The work items
follow from the classifications as a handoff rule (``processors/workflows/fax/handoffs.py``).

The model is loaded (or trained, once per checkout, ~15 CPU-s) when the worker starts,
not on the first fax. Classification costs about a millisecond a page, so it runs on the
event loop.

Health (Prometheus, so the classifier cannot fail silently):
``practiceflow_fax_training_pages{class}`` (what the model learnt from),
``practiceflow_fax_pages_classified_total{label}`` (``abstained`` included),
``practiceflow_fax_abstain_rate`` (over the last ``WINDOW`` pages),
``practiceflow_fax_confidence_mean`` and ``practiceflow_fax_confidence_drift`` (the recent
mean confidence minus the calibration split's: a strongly negative drift means the faxes
no longer look like what the model was trained on), ``practiceflow_fax_documents_total{doc_class,queue}``
and ``practiceflow_fax_classifier_errors_total``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from practiceflow.processors.base import Normalized, NormalizeResult
from practiceflow.processors.fax import corpus
from practiceflow.processors.fax.classifier import FaxClassifier, load_or_train
from practiceflow.processors.workflows.fax.assist import llm_commands
from practiceflow.processors.workflows.fax.extract import Extractor, RuleExtractor
from practiceflow.processors.workflows.fax.match import IdentifierOnPage, Matcher
from practiceflow.processors.workflows.fax.route import FaxOutcome, Roster, classify_fax
from practiceflow.settings import Settings

log = logging.getLogger("practiceflow.worker.fax")

WINDOW = 500
TRAINING_PAGES = Gauge("practiceflow_fax_training_pages", "Training pages per class of the loaded model", ["class"])
PAGES = Counter("practiceflow_fax_pages_classified_total", "Fax pages classified, by label", ["label"])
DOCUMENTS = Counter("practiceflow_fax_documents_total", "Documents split out of faxes", ["doc_class", "queue"])
ABSTAIN_RATE = Gauge("practiceflow_fax_abstain_rate", "Share of the recent pages the classifier abstained on")
CONF_MEAN = Gauge("practiceflow_fax_confidence_mean", "Mean top-class probability over the recent pages")
CONF_DRIFT = Gauge(
    "practiceflow_fax_confidence_drift", "Recent mean confidence minus the calibration split's (negative: drifting)"
)
ERRORS = Counter("practiceflow_fax_classifier_errors_total", "Faxes whose classification raised (sent to triage)")
MODEL_LOADED = Gauge(
    "practiceflow_fax_model_loaded",
    "1 once the fax classifier is loaded; 0 before the first fax loads it, or while it cannot be loaded",
)
LOAD_FAILURES = Counter(
    "practiceflow_fax_model_load_failures_total", "Fax classifier loads that failed (faxes go to triage meanwhile)"
)
#: after a failed load, faxes go to triage without trying again for this long (a load that
#: trains can take ~15 CPU-s; every fax must not pay it again)
LOAD_RETRY_SECONDS = 300.0

__all__ = ["FaxWorkflow", "Health"]


class Health:
    """Rolling abstain rate and confidence over the last ``window`` pages, exported as gauges."""

    def __init__(self, model: FaxClassifier | None = None, window: int = WINDOW) -> None:
        self.model: FaxClassifier | None = None
        self.recent: deque[tuple[float, bool]] = deque(maxlen=window)
        if model is not None:
            self.use(model)

    def use(self, model: FaxClassifier) -> None:
        """The model whose pages are observed (set when the workflow loads it)."""
        self.model = model
        for cls, n in model.training_counts.items():
            TRAINING_PAGES.labels(cls).set(n)

    def observe(self, outcome: FaxOutcome) -> None:
        for label, conf in zip(outcome.page_labels, outcome.page_confidences, strict=True):
            PAGES.labels("abstained" if label == "?" else label).inc()
            self.recent.append((conf, label == "?"))
        for rec in outcome.records:
            if rec.record_type == "FaxClassification":
                DOCUMENTS.labels(rec.value["doc_class"], rec.value["queue"]).inc()
        if self.recent:
            confs = [c for c, _ in self.recent]
            mean = float(np.mean(confs))
            ABSTAIN_RATE.set(sum(a for _, a in self.recent) / len(self.recent))
            CONF_MEAN.set(mean)
            if self.model is not None:
                CONF_DRIFT.set(mean - float(self.model.calibration.get("mean_confidence", mean)))

    def snapshot(self) -> dict[str, float]:
        if not self.recent:
            return {"pages": 0.0}
        confs = [c for c, _ in self.recent]
        return {
            "pages": float(len(self.recent)),
            "abstain_rate": sum(a for _, a in self.recent) / len(self.recent),
            "confidence_mean": float(np.mean(confs)),
        }


class _Undecided:
    """Stands in when the model raised or could not be loaded: every page abstains, so the fax
    goes to a person."""

    def __init__(self, model: FaxClassifier | None) -> None:
        self.classes = tuple(model.classes) if model is not None else tuple(corpus.CLASSES)
        self.threshold = 1.01
        self.model_id = f"{model.model_id}+error" if model is not None else "unavailable"

    def probabilities(self, texts: Sequence[str]) -> Any:
        return np.full((len(texts), len(self.classes)), 1.0 / len(self.classes))


def _given(model: FaxClassifier) -> FaxClassifier:
    return model


class FaxWorkflow:
    """Callable the fax handler runs on each normalized fax (adds classifications + refill requests).

    The worker builds it with ``load`` instead of a model: reading the classifier (scikit-learn's
    import and the pickle, ~1.5-2 CPU-s) at start-up was a fifth of a restart (issue 8: a
    restarted worker resumes within 10 s), and most restarts see no fax for a while. The fax
    handler awaits ``ready()`` before the first classification, which loads it in a thread, off
    the event loop; code that calls the workflow directly loads it on first use.

    A model that cannot be loaded (a damaged file, a folder it cannot train into) does not stop
    the worker and does not lose faxes: every page abstains and the fax goes to triage, where a
    person reads it; ``practiceflow_fax_model_loaded`` is 0, the error is logged, and the load
    is tried again after ``LOAD_RETRY_SECONDS``, not for every fax."""

    def __init__(
        self,
        model: FaxClassifier | None = None,
        *,
        load: Callable[[], FaxClassifier] | None = None,
        extractor: Extractor | None = None,
        matcher: Matcher | None = None,
        rosters: dict[str, Roster] | None = None,
        ask_llm: bool = False,
    ) -> None:
        if load is None:
            if model is None:
                raise ValueError("FaxWorkflow needs a model or a way to load one")
            load = partial(_given, model)
        self._model: FaxClassifier | None = None
        self._load: Callable[[], FaxClassifier] = load
        self._pending: concurrent.futures.Future[FaxClassifier | None] | None = None  # the load in flight
        self._guard = threading.Lock()
        self._failed_at: float | None = None  # monotonic time of the last failed load
        self.health = Health()
        #: ask the practice's language model (cmd.llm) about abstained pages and missing fields;
        #: on when ``llm.base_url`` is set (processors/workflows/fax/assist.py)
        self.ask_llm = ask_llm
        self.extractor = extractor or RuleExtractor()
        self.matcher = matcher or IdentifierOnPage()
        self.rosters = rosters or {}
        if model is not None:
            self._use(model)
        else:
            MODEL_LOADED.set(0)  # exported from the start: "not loaded yet" (loaded at the first fax)

    def _use(self, model: FaxClassifier) -> FaxClassifier:
        self._model = model
        self._failed_at = None
        self.health.use(model)
        MODEL_LOADED.set(1)
        return model

    def _may_try(self) -> bool:
        return self._failed_at is None or time.monotonic() - self._failed_at >= LOAD_RETRY_SECONDS

    def _try_load(self) -> FaxClassifier | None:
        try:
            model = self._load()
            if self._model is not None:  # replaced (the setter) while this loaded: keep that one
                return self._model
        except Exception as exc:
            self._failed_at = time.monotonic()
            MODEL_LOADED.set(0)
            LOAD_FAILURES.inc()
            log.error(
                "the fax model could not be loaded (%s); faxes go to triage until it loads (tried again in %.0fs)",
                type(exc).__name__,
                LOAD_RETRY_SECONDS,
            )
            return None
        return self._use(model)

    def current(self) -> FaxClassifier | None:
        """The model, loaded here if no load failed recently; None while it cannot be loaded."""
        if self._model is None and self._may_try():
            self._try_load()
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> FaxClassifier:
        model = self.current()
        if model is None:
            raise RuntimeError("the fax model could not be loaded (see the worker log)")
        return model

    @model.setter
    def model(self, model: FaxClassifier) -> None:
        """Replace the model (tests wrap it; a new training run could swap it in)."""
        self._use(model)

    async def ready(self) -> None:
        """Load the model in a thread if it is not loaded yet (once, however many faxes wait;
        after a failure, not again before ``LOAD_RETRY_SECONDS``). Never raises.

        One load in a thread of its own, shared by every waiter on any event loop; a waiter that
        is cancelled (a rebalance during the first fax) leaves the load running for the next."""
        with self._guard:
            if self._model is not None or not self._may_try():
                return
            if self._pending is None or self._pending.done():
                fut: concurrent.futures.Future[FaxClassifier | None] = concurrent.futures.Future()

                def load() -> None:
                    try:
                        fut.set_result(self._try_load())
                    except BaseException as exc:  # _try_load catches Exception; this is the rest
                        fut.set_exception(exc)

                threading.Thread(target=load, name="fax-model-load", daemon=True).start()
                self._pending = fut
            pending = self._pending
        await asyncio.shield(asyncio.wrap_future(pending))

    @classmethod
    def from_settings(cls, cfg: Settings, *, matcher: Matcher | None = None) -> FaxWorkflow:
        """Loads (or trains, once) the model at the first fax, not here (see the class)."""
        model_dir = Path(cfg.fax_model_dir or (Path(cfg.state_dir) / "models"))
        rosters = {practice: Roster(tuple(r.names), tuple(r.providers)) for practice, r in cfg.fax_roster.items()}
        ask = cfg.llm.base_url is not None
        return cls(load=partial(load_or_train, model_dir), matcher=matcher, rosters=rosters, ask_llm=ask)

    def __call__(self, result: NormalizeResult, received_at: int | None = None) -> NormalizeResult:
        """Classify the Documents of one fax; ``received_at`` (epoch ms) dates refill requests."""
        docs = [r for r in result.records if r.record_type == "Document"]
        model = self.current() if docs else None
        for doc in docs:
            roster = self.rosters.get(doc.value["practice_id"]) or self.rosters.get("*")
            try:
                if model is None:
                    raise RuntimeError("the fax model is not loaded")
                outcome = classify_fax(
                    doc.value,
                    model,
                    extractor=self.extractor,
                    matcher=self.matcher,
                    roster=roster,
                    received_at=received_at,
                )
            except Exception as exc:  # the fax must still reach a person: every page abstains
                ERRORS.inc()
                log.error("fax classification failed (%s); the fax goes to triage", type(exc).__name__)
                outcome = classify_fax(
                    doc.value,
                    _Undecided(model),
                    extractor=self.extractor,
                    matcher=self.matcher,
                    roster=roster,
                    received_at=received_at,
                )
            self.health.observe(outcome)
            result.records.extend(outcome.records)
            if self.ask_llm and received_at:
                classified = [r.value for r in outcome.records if r.record_type == "FaxClassification"]
                for cmd in llm_commands(doc.value, classified, now=received_at):
                    key = f"{cmd['practice_id']}/{cmd['command_id']}"
                    result.records.append(Normalized("WorkflowCommand", key, dict(cmd)))
        return result
