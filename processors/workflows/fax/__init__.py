"""The fax workflow (pure): split a transmission into documents, extract, match and route each.

* :mod:`.split` — per-page classes -> documents; the cover sheet's announced page count;
* :mod:`.extract` — the :class:`~.extract.Extractor` interface and the embedded rules;
* :mod:`.match` — the patient matcher interface and two embedded matchers;
* :mod:`.route` — the step: Document -> FaxClassification records (+ RefillRequest);
* :mod:`.handoffs` — the work items that follow from the classifications.

The classifier itself is :mod:`practiceflow.processors.fax.classifier`, trained on
:mod:`practiceflow.processors.fax.corpus`.
"""
