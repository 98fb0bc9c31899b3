"""FHIR R4 resource -> practiceflow record value dicts (one function per resource type).

Every value dict carries every field of its Avro schema (fastavro needs them all).
Choices worth knowing (see also the module docstring of ``normalize``):

* ``patient_id`` is the FHIR logical id of the Patient (``Patient.id``; for a Bundle
  entry without an id, the id part of its ``fullUrl``). A Patient known only through
  an identifier (logical or conditional reference) gets that identifier's value, with
  a warning. MRNs and other identifiers travel in ``Patient.identifiers`` (typed; an SSN
  -- type SS or system ``http://hl7.org/fhir/sid/us-ssn`` -- masked to its last four
  unless the practice opts in). A contained Patient is keyed by the identifier the
  practice's identity policy chooses (``processors/identity``); a reference by an
  identifier that may not key a patient (SSN, licence, member id) leaves the record
  ``unresolved:<message>`` instead of keying it by that value. The crosswalk maps
  logical ids to MRNs (``IdentityLink`` records, see ``processors/identity``).
* Observation components (a blood-pressure panel) become one Observation record
  each, ``observation_id = <observation id>/<component code>``, inheriting status,
  effective time, performer and (when the component has none) interpretation from
  the panel. The panel itself becomes a record only when it has its own value (or
  has no components at all). One record per component keeps ``value_numeric``
  numeric and each code queryable; a combined "120/80" string would not be.
* ``value_type`` is the FHIR ``value[x]`` type name (Quantity, CodeableConcept,
  string, boolean, integer, Range, Ratio, SampledData, time, dateTime, Period).
* ClaimResponse/EOB adjudications: ``copay``/``deductible``/``coinsurance`` amounts
  become patient-responsibility adjustments (group PR, CARC 3 / 1 / 2); a reason
  code on such an adjustment-type category becomes the adjustment's reason; a reason
  code on a ``benefit``/``eligible``/``submitted`` adjudication explains the benefit
  rather than an amount taken off it, so it goes to ``remark_codes``. Da Vinci PAS
  review actions (X12 HCR01) go to the line's ``remark_codes`` as ``HCR01:<code>``.
  ``outcome`` carries ``ClaimResponse.outcome`` (queued|complete|error|partial; ``status_code`` is the X12 CLP02 vocabulary and stays empty);
  the model has no separate outcome field.
"""

from __future__ import annotations

from collections.abc import Callable

from practiceflow.processors.base import Normalized

from .billing import map_claim, map_claim_adjudication, map_eligibility_response
from .clinical import (
    map_allergy_intolerance,
    map_appointment,
    map_condition,
    map_document_reference,
    map_encounter,
    map_immunization,
    map_medication_request,
    map_observation,
    map_service_request,
)
from .context import Ctx, Unmappable, interaction, patient_identifier, typed_identifiers
from .people import coverage_member_id, map_coverage, map_patient

__all__ = [
    "MAPPERS",
    "Ctx",
    "Unmappable",
    "coverage_member_id",
    "interaction",
    "patient_identifier",
    "typed_identifiers",
]

MAPPERS: dict[str, Callable[[Ctx], list[Normalized]]] = {
    "Patient": map_patient,
    "Coverage": map_coverage,
    "Encounter": map_encounter,
    "Observation": map_observation,
    "Condition": map_condition,
    "Immunization": map_immunization,
    "AllergyIntolerance": map_allergy_intolerance,
    "MedicationRequest": map_medication_request,
    "ServiceRequest": map_service_request,
    "Appointment": map_appointment,
    "DocumentReference": map_document_reference,
    "Claim": map_claim,
    "ClaimResponse": map_claim_adjudication,
    "ExplanationOfBenefit": map_claim_adjudication,
    "CoverageEligibilityResponse": map_eligibility_response,
}
