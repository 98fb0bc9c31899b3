"""Refill triage (issue 9): a refill request -> routine / needs_review / needs_visit, with evidence.

* ``drugs.py`` — which drug a request names (RxNorm ingredient, brand <-> generic,
  misspellings with rapidfuzz) and the DEA controlled list, matched by ingredient;
* ``rules.py`` — the protocol model and the loaded rule bundle (``rules/refill/*.yaml``);
* ``triage.py`` — the decision and its evidence (pure);
* ``step.py`` — the workflow step: the work item and, for routine requests, the renewal
  draft (FHIR MedicationRequest) awaiting a clinician's sign-off;
* ``evalset.py`` / ``evaluate.py`` — the generated evaluation set and ``practiceflow eval refills``.
"""
