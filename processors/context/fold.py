"""Which patient context a normalized record belongs to, and how contexts merge (pure).

The context table is keyed by ``practice_id/canonical patient id``. Feeds name patients
their own way (HL7 by MRN, FHIR by logical id, X12 by member id), so a record is filed
under the id the practice's identity crosswalk (``processors/identity/crosswalk.py``)
resolves its identifiers to:

* resolved -> that canonical id (the MRN, or a provisional key such as ``fhir|abc``
  while no link has named the patient's MRN yet);
* unresolved -> the record's own first key, as the crosswalk would name it
  (``canonical_id``): an HL7 record's MRN, a FHIR record's ``fhir|<id>``;
* conflict (a member id two patients share), or no identifier at all
  (``unresolved:...``) -> nowhere: :func:`context_patient` answers None and the shell
  counts the record as unfiled rather than guess whose chart it is.

When a later ``IdentityLink`` moves a canonical key (a FHIR patient's logical id linked
to its MRN, an ADT^A40 merge of two MRNs), :func:`moved` names the contexts that must
follow and :func:`merge` folds one into the other, so nothing filed under the old id is
lost. Both are deterministic: the same links in the same order give the same contexts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from practiceflow.processors.context.snapshot import OBSERVATIONS_PER_CODE, PatientContext
from practiceflow.processors.identity.choose import DEFAULT_POLICY, IdentityPolicy, is_unresolved
from practiceflow.processors.identity.crosswalk import Crosswalk, canonical_id, resolve
from practiceflow.processors.identity.links import record_keys

__all__ = ["context_patient", "merge", "moved"]

_MAPS = (
    "coverages",
    "encounters",
    "appointments",
    "medication_orders",
    "orders",
    "conditions",
    "allergies",
    "immunizations",
)


def _obs_time(o: Mapping[str, Any]) -> str:
    return str(o.get("effective_at") or "")


#: record types that name their patient by ``patient_id`` alone (no member id, claim number...)
_PATIENT_ID_ONLY = frozenset(
    {
        "Encounter",
        "Appointment",
        "Observation",
        "MedicationOrder",
        "Order",
        "Condition",
        "AllergyIntolerance",
        "Immunization",
    }
)


def context_patient(
    record_type: str,
    record: Mapping[str, Any],
    crosswalk: Crosswalk | None,
    policy: IdentityPolicy = DEFAULT_POLICY,
) -> str | None:
    """The canonical patient id whose context ``record`` is folded into, or None (see module doc)."""
    if record_type in _PATIENT_ID_ONLY:
        # the hot path (most records): one key, so resolve() reduces to one lookup
        pid = record.get("patient_id")
        if not pid or is_unresolved(pid):
            return None
        feed = (record.get("source") or {}).get("feed")
        key = f"fhir|{pid}" if feed == "fhir" else f"pid|{pid}"
        if crosswalk is None:
            return canonical_id(key)[0]
        if key in crosswalk.ambiguous:
            return None
        return canonical_id(crosswalk.ids.get(key, key))[0]
    keys = record_keys(record_type, dict(record), policy)
    if not keys:
        return None
    if crosswalk is not None:
        r = resolve(crosswalk, keys)
        if r.status == "resolved":
            return r.patient_id
        if r.status == "conflict":
            return None
    return canonical_id(keys[0])[0]


def moved(before: Mapping[str, str], after: Crosswalk) -> list[tuple[str, str]]:
    """(old canonical id, new canonical id) for every canonical key a link moved, in a stable order.

    ``before`` is the crosswalk's ``ids`` before the link (a copy). A key the crosswalk did
    not hold before was its own canonical key (an MRN never linked, a FHIR id seen alone):
    records may be filed under it, so it counts as moved too when the link binds it."""
    out: dict[str, str] = {}
    for key in before.keys() | after.ids.keys():
        if before.get(key, key) != key:
            continue  # only canonical keys own a context
        now = after.ids.get(key, key)
        if now != key:
            out[canonical_id(key)[0]] = canonical_id(now)[0]
    return sorted(out.items())


def merge(into: PatientContext, other: PatientContext) -> PatientContext:
    """``other``'s records folded into ``into`` (same practice): by record id, ``into`` wins a tie.

    Used when the crosswalk says two contexts are one patient. ``into``'s demographics stay
    unless it has none; observations are merged per code, newest first, capped as in
    :func:`~practiceflow.processors.context.snapshot.apply`."""
    if into.practice_id != other.practice_id:
        raise ValueError("contexts of two practices are never merged")
    changes: dict[str, Any] = {}
    for attr in _MAPS:
        a: Mapping[str, Mapping[str, Any]] = getattr(into, attr)
        b: Mapping[str, Mapping[str, Any]] = getattr(other, attr)
        if b:
            combined: dict[str, Mapping[str, Any]] = {k: dict(v, patient_id=into.patient_id) for k, v in b.items()}
            combined.update(a)
            changes[attr] = MappingProxyType(combined)
    if other.observations:
        obs = dict(into.observations)
        for code, theirs in other.observations.items():
            mine = list(obs.get(code, ()))
            ids = {o.get("observation_id") for o in mine}
            mine += [dict(o, patient_id=into.patient_id) for o in theirs if o.get("observation_id") not in ids]
            mine.sort(key=lambda o: (_obs_time(o), str(o.get("observation_id") or "")), reverse=True)
            obs[code] = tuple(mine[:OBSERVATIONS_PER_CODE])
        changes["observations"] = MappingProxyType(obs)
    if into.patient is None and other.patient is not None:
        changes["patient"] = MappingProxyType(dict(other.patient, patient_id=into.patient_id))
    changes["records_applied"] = into.records_applied + other.records_applied
    return replace(into, **changes)
