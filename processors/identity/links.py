"""``IdentityLink`` records derived from normalized records (pure).

One rule for every feed, applied by ``processors.dispatch`` after the normalizer, so
no normalizer repeats it: a record that names its patient by more than one
identifier links them. Patient (its id + its identifiers; ``merged_from`` -> a
``merge``), Coverage (+ member id), Claim (X12 CLM01 as patient control number +
member id), ClaimAdjudication (CLP01 + member id + REF*EA), EligibilityResponse
(member id), IntakeForm (insurance member id). A record naming one identifier links
nothing and yields no record. Explicit links (ADT^A24 / A37) come from the HL7
normalizer.

A link's ``patient_id`` is always in the canonical namespace (the practice's MRN) or
None; a FHIR logical id travels as an identifier of type ``FHIR``, so a FHIR Patient
with an MR identifier links ``fhir|<id>`` to that MRN. :func:`record_keys` gives the
crosswalk keys of any record, to resolve it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from practiceflow.processors.base import Normalized, NormalizeResult, entity_key
from practiceflow.processors.identity.choose import DEFAULT_POLICY, IdentityPolicy, choose, is_unresolved
from practiceflow.processors.identity.crosswalk import (
    TYPE_FHIR,
    TYPE_MEMBER,
    TYPE_PCN,
    identifier_key,
    patient_keys,
)

__all__ = ["identity_link", "links_for", "record_keys"]


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def identity_link(
    practice_id: str,
    action: str,
    source: dict[str, Any],
    patient_id: str | None,
    identifiers: list[dict[str, Any]],
    *,
    other_patient_id: str | None = None,
    other_identifiers: list[dict[str, Any]] | None = None,
    record_type: str | None = None,
    basis: str = "",
) -> Normalized:
    """One IdentityLink record and its key (``practice/patient/link_id``)."""
    others = other_identifiers or []
    link_id = _hash(
        source.get("message_id") or "",
        action,
        basis,
        patient_id or "",
        other_patient_id or "",
        *(f"{i.get('type')}|{i.get('system')}|{i.get('value')}" for i in identifiers + others),
    )
    value = {
        "practice_id": practice_id,
        "link_id": link_id,
        "action": action,
        "patient_id": patient_id,
        "identifiers": identifiers,
        "other_patient_id": other_patient_id,
        "other_identifiers": others,
        "record_type": record_type,
        "source": dict(source),
    }
    return Normalized("IdentityLink", entity_key(practice_id, patient_id, link_id), value)


def _ident(typ: str, value: str | None, system: str | None = None) -> dict[str, Any] | None:
    return {"value": value, "system": system, "type": typ} if value else None


def _side(rt: str, v: dict[str, Any], policy: IdentityPolicy) -> tuple[str | None, list[dict[str, Any]]]:
    """(canonical patient id or None, the other identifiers) a record names."""
    feed = (v.get("source") or {}).get("feed")
    pid = v.get("patient_id")
    if pid is not None and is_unresolved(pid):
        pid = None
    out: list[dict[str, Any] | None] = []
    if feed == "fhir" and pid is not None:
        out.append(_ident(TYPE_FHIR, pid))  # a logical id, not an MRN
        pid = None
    if rt == "Patient":
        ids = list(v.get("identifiers") or [])
        if feed == "fhir":
            i = choose(ids, policy)
            pid = ids[i]["value"] if i is not None else None
        out += [i for i in ids if i.get("value") != pid]  # the chosen one is the patient id itself
    elif rt == "Coverage":
        out.append(_ident(TYPE_MEMBER, v.get("member_id"), v.get("payer_id")))
    elif rt == "Claim" or rt == "ClaimAdjudication":
        # CLM01 / CLP01 is the patient control number only in X12 (a FHIR Claim id is not)
        pcn = v.get("claim_id") if feed == "x12" else None
        out += [_ident(TYPE_PCN, pcn), _ident(TYPE_MEMBER, v.get("member_id"), v.get("payer_id"))]
    elif rt == "EligibilityResponse":
        out.append(_ident(TYPE_MEMBER, v.get("member_id"), v.get("payer_id")))
    elif rt == "IntakeForm":
        out.append(_ident(TYPE_MEMBER, v.get("insurance_member_id"), v.get("insurance_payer")))
    return pid, [i for i in out if i is not None and identifier_key(i) is not None]


def record_keys(record_type: str, value: dict[str, Any], policy: IdentityPolicy = DEFAULT_POLICY) -> list[str]:
    """The crosswalk keys of any normalized record (for ``crosswalk.resolve``)."""
    pid, idents = _side(record_type, value, policy)
    return patient_keys(pid, idents)


def links_for(result: NormalizeResult, practice_id: str, policy: IdentityPolicy = DEFAULT_POLICY) -> list[Normalized]:
    """The IdentityLink records that one normalized message implies."""
    links: list[Normalized] = []
    seen: set[str] = set()

    def add(link: Normalized) -> None:
        if link.key not in seen:
            seen.add(link.key)
            links.append(link)

    for rec in result.records:
        if rec.record_type == "IdentityLink":
            continue
        v = rec.value
        if v.get("practice_id") != practice_id:
            continue
        source = v.get("source") or {}
        pid, idents = _side(rec.record_type, v, policy)
        if len(patient_keys(pid, idents)) >= 2:
            add(identity_link(practice_id, "link", source, pid, idents, record_type=rec.record_type))
        if rec.record_type == "Patient":
            for merged in v.get("merged_from") or []:
                if source.get("feed") == "fhir":  # Patient.link "replaces": logical ids on both sides
                    me = [i for i in (_ident(TYPE_FHIR, v.get("patient_id")),) if i]
                    other = [{"value": merged, "system": None, "type": TYPE_FHIR}]
                    add(
                        identity_link(
                            practice_id, "merge", source, pid, me, other_identifiers=other, record_type="Patient"
                        )
                    )
                else:
                    add(
                        identity_link(
                            practice_id, "merge", source, pid, [], other_patient_id=merged, record_type="Patient"
                        )
                    )
    return links
