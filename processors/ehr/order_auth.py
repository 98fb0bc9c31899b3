"""The payer's authorization number on the EHR's order (pure): a Da Vinci CRD coverage-information
extension on the ServiceRequest (or MedicationRequest) the authorization was drafted for.

WHY this extension: it is where the HL7 standard (Da Vinci CRD, ``ext-coverage-information``,
usable on ServiceRequest, MedicationRequest, DeviceRequest...) carries a prior authorization that
satisfies the order: ``pa-needed`` ``satisfied`` with ``satisfied-pa-id`` the payer's number. Its
required parts are ``coverage`` (a Reference), ``covered``, ``date`` and ``coverage-assertion-id``
(our authorization id: the assertion is ours, so a changed number replaces our extension and
never another system's). Everything else of the EHR's order is kept as the EHR holds it.

The writer (:func:`practiceflow.streams.commands.ehr_write.attach_authorization`) reads the
order, lays this over it and writes it with ``If-Match`` on the version it read; an order the EHR
does not hold (or one that came from an HL7 v2 message, which is no FHIR resource there) is
answered ``failed``, never created.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

#: the ``action`` of the ``ehr_write`` command that attaches the number to the EHR's order
#: (``processors/workflows/prior_auth/step.py`` ``order_number_command``)
ATTACH_NUMBER: Final = "prior_auth.authorization_number"
COVERAGE_INFORMATION: Final = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
#: practiceflow's order type -> the EHR's FHIR resource for it
ORDER_RESOURCE: Final = {"Order": "ServiceRequest", "MedicationOrder": "MedicationRequest"}


def _assertion_id(ext: Mapping[str, Any]) -> str | None:
    for sub in ext.get("extension") or ():
        if isinstance(sub, Mapping) and sub.get("url") == "coverage-assertion-id":
            return str(sub.get("valueString") or "")
    return None


def coverage_information(payload: Mapping[str, Any], coverage: Mapping[str, Any]) -> dict[str, Any]:
    """The extension for an authorization command's payload (``prior_auth.step.order_number_command``);
    ``coverage``: the Reference to the patient's Coverage (a reference when the EHR holds it, else a
    display of the payer)."""
    return {
        "url": COVERAGE_INFORMATION,
        "extension": [
            {"url": "coverage", "valueReference": dict(coverage)},
            {"url": "covered", "valueCode": "covered"},
            {"url": "pa-needed", "valueCode": "satisfied"},
            {"url": "satisfied-pa-id", "valueString": str(payload["authorization_number"])},
            {"url": "date", "valueDate": str(payload.get("decided_on") or "")},
            {"url": "coverage-assertion-id", "valueString": str(payload["authorization_id"])},
        ],
    }


def with_authorization(order: Mapping[str, Any], extension: Mapping[str, Any]) -> dict[str, Any]:
    """The EHR's order with our coverage-information extension: an earlier one of ours (same
    ``coverage-assertion-id``: the same authorization, an earlier number) replaced, every other
    element and extension kept as it is. ``meta`` and ``text`` stay the server's."""
    out = copy.deepcopy(dict(order))
    ours = _assertion_id(extension)
    kept = [
        e
        for e in out.get("extension") or []
        if not (isinstance(e, Mapping) and e.get("url") == COVERAGE_INFORMATION and _assertion_id(e) == ours)
    ]
    out["extension"] = [*kept, copy.deepcopy(dict(extension))]
    return out


__all__ = ["ATTACH_NUMBER", "COVERAGE_INFORMATION", "ORDER_RESOURCE", "coverage_information", "with_authorization"]
