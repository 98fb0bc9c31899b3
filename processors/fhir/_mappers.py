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

import base64
import binascii
import hashlib
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from practiceflow.processors.base import Normalized, entity_key, typed_record
from practiceflow.processors.identity.choose import (
    DEFAULT_POLICY,
    IdentityPolicy,
    choose,
    classify,
    keep,
    looks_like_ssn,
    unresolved_id,
)

from ._refs import Scope, Target
from ._util import (
    EMPTY_CODING,
    cc_code,
    cc_codes,
    cc_coding,
    cc_text,
    coding,
    d,
    display_name,
    f,
    first,
    i,
    is_true,
    lst,
    name_parts,
    num_str,
    period_start,
    quantity_str,
    s,
)

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import (
        AddressDict,
        AdjustmentDict,
        AppointmentDict,
        BenefitDict,
        ClaimAdjudicationDict,
        ClaimDict,
        CodingDict,
        ConditionDict,
        CoverageDict,
        DocumentDict,
        EligibilityResponseDict,
        EncounterDict,
        IdentifierDict,
        ImmunizationDict,
        ImmunizationObservationDict,
        MedicationOrderDict,
        ObservationDict,
        OrderDict,
        PatientDict,
        ServiceLineDict,
        SourceRefDict,
    )

LOINC = "http://loinc.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
_CARC_SYSTEMS = ("claim-adjustment-reason", "/carc", "x12.org/codes/claim-adjustment")


class Unmappable(Exception):
    """A valid resource that cannot become a record (e.g. no patient)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Ctx:
    """Everything one mapper needs: the resource, its scope, ids, source and warnings."""

    __slots__ = ("r", "rtype", "scope", "practice_id", "entity_id", "event", "source", "warnings", "policy")

    def __init__(
        self,
        resource: dict[str, Any],
        rtype: str,
        scope: Scope,
        practice_id: str,
        entity_id: str,
        event: str | None,
        source: SourceRefDict,
        warnings: list[str],
        policy: IdentityPolicy = DEFAULT_POLICY,
    ) -> None:
        self.policy = policy
        self.r = resource
        self.rtype = rtype
        self.scope = scope
        self.practice_id = practice_id
        self.entity_id = entity_id
        self.event = event
        self.source = source
        self.warnings = warnings

    # ---------------------------------------------------------------- helpers
    def warn(self, msg: str) -> None:
        self.warnings.append(f"{self.rtype}/{self.entity_id}: {msg}")

    def rec(self, record_type: str, patient_id: str | None, entity: str, value: Mapping[str, Any]) -> Normalized:
        """``value``: the record, built as its TypedDict with ``"source": c.source.copy()`` last."""
        return typed_record(record_type, entity_key(self.practice_id, patient_id, entity), value)

    def resolve(self, ref: Any) -> Target:
        return self.scope.resolve(ref)

    @overload
    def patient_id(self, ref: Any, field: str, required: Literal[True] = True) -> str: ...
    @overload
    def patient_id(self, ref: Any, field: str, required: bool) -> str | None: ...
    def patient_id(self, ref: Any, field: str, required: bool = True) -> str | None:
        """The record's patient id; None only when not ``required`` (else Unmappable is raised)."""
        if not isinstance(ref, dict):
            if required:
                raise Unmappable("missing_patient", f"{self.rtype}/{self.entity_id}: no {field}")
            return None
        t = self.resolve(ref)
        if t.rtype and t.rtype != "Patient":
            if required:
                raise Unmappable(
                    "missing_patient", f"{self.rtype}/{self.entity_id}: {field} is a {t.rtype}, not a Patient"
                )
            return None
        if t.contained and t.resource is not None:
            ids = [d(x) for x in lst(t.resource.get("identifier")) if s(d(x).get("value"))]
            if ids and patient_identifier(t.resource, self.policy) is None:
                self.warn(f"{field}: the contained Patient has no identifier that may key a patient")
                return unresolved_id(self.source.get("message_id") or self.entity_id)
            return patient_identifier(t.resource, self.policy) or f"{self.entity_id}{t.raw}"
        if t.rid:
            if looks_like_ssn(t.rid):  # a server that uses SSNs as logical ids: never a key
                self.warn(f"{field}: the Patient's logical id is written like an SSN; not used as a key")
                return unresolved_id(self.source.get("message_id") or self.entity_id)
            return t.rid
        if t.ident_value:
            ident = {"value": t.ident_value, "system": t.ident_system, "type": None}
            if classify(ident, self.policy) == "forbidden":
                self.warn(f"{field} identifies the patient only by an identifier that may not key a patient")
                return unresolved_id(self.source.get("message_id") or self.entity_id)
            self.warn(
                f"{field} identifies the patient only by identifier "
                f"{t.ident_system or ''}|{t.ident_value}; patient_id is the identifier value"
            )
            return t.ident_value
        if required:
            raise Unmappable("missing_patient", f"{self.rtype}/{self.entity_id}: {field} has no usable reference")
        return None

    def party(self, ref: Any) -> str | None:
        """A person or place, for display: Reference.display, the resolved name, else the reference."""
        if not isinstance(ref, dict):
            return None
        t = self.resolve(ref)
        if t.display:
            return t.display
        res = t.resource
        if res is not None:
            rt = s(res.get("resourceType"))
            if rt in ("Practitioner", "Patient", "RelatedPerson", "Person"):
                n = display_name(res.get("name"))
                if n:
                    return n
            elif rt == "PractitionerRole":
                role_scope = self.scope.scope_for(t)
                inner = (
                    role_scope.resolve(res.get("practitioner")) if isinstance(res.get("practitioner"), dict) else None
                )
                if inner is not None:
                    name = inner.display or (display_name(inner.resource.get("name")) if inner.resource else None)
                    if name:
                        return name
            else:
                n = s(res.get("name"))
                if n:
                    return n
        return t.raw or t.ident_value

    def org(self, ref: Any) -> tuple[str | None, str | None]:
        """(identifier, name) of an Organization reference (payer / insurer)."""
        if not isinstance(ref, dict):
            return None, None
        t = self.resolve(ref)
        name, ident = t.display, t.ident_value
        if t.resource is not None:
            name = name or s(t.resource.get("name"))
            ids = [d(x) for x in lst(t.resource.get("identifier"))]
            ident = ident or next((s(x.get("value")) for x in ids if s(x.get("value"))), None)
        return ident or t.rid, name

    def npi(self, ref: Any) -> str | None:
        if not isinstance(ref, dict):
            return None
        t = self.resolve(ref)
        if t.ident_system == NPI and t.ident_value:
            return t.ident_value
        if t.resource is not None:
            for x in lst(t.resource.get("identifier")):
                if s(d(x).get("system")) == NPI and s(d(x).get("value")):
                    return s(d(x).get("value"))
        return None


def typed_identifiers(res: dict[str, Any]) -> list[dict[str, Any]]:
    """``Patient.identifier`` -> Identifier dicts (value, system, type code or text)."""
    out = []
    for x in lst(res.get("identifier")):
        x = d(x)
        v = s(x.get("value"))
        if v:
            t = d(x.get("type"))
            out.append({"value": v, "system": s(x.get("system")), "type": cc_code(t) or s(t.get("text"))})
    return out


def patient_identifier(res: dict[str, Any], policy: IdentityPolicy = DEFAULT_POLICY) -> str | None:
    """The identifier the identity policy lets key this Patient (never an SSN, licence,
    passport or member id), or None."""
    ids = typed_identifiers(res)
    i = choose(ids, policy)
    return ids[i]["value"] if i is not None else None


def _interaction(method: str | None) -> str | None:
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "read", "HEAD": "read"}.get(
        method or ""
    )


interaction = _interaction


# --------------------------------------------------------------------------- Patient
def map_patient(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.entity_id
    if looks_like_ssn(pid):
        c.warn("logical id is written like an SSN; not used as a key")
        pid = unresolved_id(c.source.get("message_id") or "")
    # keep() (processors/identity, shared with HL7) returns a plain dict of the Identifier shape
    identifiers = cast("list[IdentifierDict]", [keep(x, c.policy) for x in typed_identifiers(r)])
    family, given = name_parts(r.get("name"))
    address: AddressDict | None = None
    addrs = [a for a in lst(r.get("address")) if isinstance(a, dict)]
    a = next((a for a in addrs if a.get("use") == "home"), None) or next(
        (a for a in addrs if a.get("use") != "old"), addrs[0] if addrs else None
    )
    if a is not None:
        address = {
            "line": [x for x in (s(y) for y in lst(a.get("line"))) if x],
            "city": s(a.get("city")),
            "state": s(a.get("state")),
            "postal_code": s(a.get("postalCode")),
            "country": s(a.get("country")),
        }
    telecom = [t for t in lst(r.get("telecom")) if isinstance(t, dict)]
    telecom.sort(key=lambda t: i(t.get("rank")) or 1_000_000)
    phones = [
        v for t in telecom if t.get("system") in ("phone", "sms") and t.get("use") != "old" and (v := s(t.get("value")))
    ]
    deceased = is_true(r.get("deceasedBoolean")) or bool(s(r.get("deceasedDateTime")))
    merged_from = []
    for link in lst(r.get("link")):
        link = d(link)
        if link.get("type") == "replaces":
            replaced = c.resolve(link.get("other"))
            other = replaced.rid or replaced.ident_value
            if other:
                merged_from.append(other)
    value: PatientDict = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "identifiers": identifiers,
        "family_name": family,
        "given_names": given,
        "birth_date": s(r.get("birthDate")),
        "sex": s(r.get("gender")),
        "address": address,
        "phones": phones,
        "deceased": deceased,
        "merged_from": merged_from,
        "event": c.event,
        "source": c.source.copy(),
    }
    return [c.rec("Patient", pid, pid, value)]


# --------------------------------------------------------------------------- Coverage
def _coverage_class(r: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cl in lst(r.get("class")):
        cl = d(cl)
        if kind in cc_codes(cl.get("type")):
            return cl
    return None


def coverage_member_id(r: dict[str, Any]) -> str | None:
    sid = s(r.get("subscriberId"))
    if sid:
        return sid
    for x in lst(r.get("identifier")):
        x = d(x)
        if "MB" in cc_codes(x.get("type")) and s(x.get("value")):
            return s(x.get("value"))
    return None


def map_coverage(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("beneficiary"), "beneficiary")
    payer_id, payer_name = c.org(first(r.get("payor")))
    plan = _coverage_class(r, "plan")
    group = _coverage_class(r, "group")
    period = d(r.get("period"))
    value: CoverageDict = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "coverage_id": c.entity_id,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "plan_name": (s(plan.get("name")) or s(plan.get("value"))) if plan else None,
        "member_id": coverage_member_id(r),
        "group_number": s(group.get("value")) if group else None,
        "subscriber_relationship": cc_code(r.get("relationship")) or cc_text(r.get("relationship")),
        "period_start": s(period.get("start")),
        "period_end": s(period.get("end")),
        "status": s(r.get("status")),
        "source": c.source.copy(),
    }
    return [c.rec("Coverage", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- Encounter
def map_encounter(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("subject"), "subject")
    attending = None
    parts = [d(p) for p in lst(r.get("participant"))]
    for p in parts:
        if any("ATND" in cc_codes(t) for t in lst(p.get("type"))) and p.get("individual"):
            attending = c.party(p.get("individual"))
            break
    if attending is None:
        attending = next((c.party(p.get("individual")) for p in parts if p.get("individual")), None)
    loc = first(r.get("location"))
    reason = cc_text(first(r.get("reasonCode")))
    if reason is None and r.get("reasonReference"):
        reason = c.party(first(r.get("reasonReference")))
    period = d(r.get("period"))
    klass = r.get("class")
    value: EncounterDict = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "encounter_id": c.entity_id,
        "status": s(r.get("status")),
        "encounter_class": s(d(klass).get("code")) or s(d(klass).get("display")),
        "event": c.event,
        "location": c.party(d(loc).get("location")) if loc else None,
        "attending_provider": attending,
        "admit_at": s(period.get("start")),
        "discharge_at": s(period.get("end")),
        "reason": reason,
        "source": c.source.copy(),
    }
    return [c.rec("Encounter", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- Observation
_VALUE_TYPES = {
    "valueQuantity": "Quantity",
    "valueCodeableConcept": "CodeableConcept",
    "valueString": "string",
    "valueBoolean": "boolean",
    "valueInteger": "integer",
    "valueRange": "Range",
    "valueRatio": "Ratio",
    "valueSampledData": "SampledData",
    "valueTime": "time",
    "valueDateTime": "dateTime",
    "valuePeriod": "Period",
}
_VALUE_KEYS = tuple(_VALUE_TYPES)


def _obs_value(node: dict[str, Any]) -> tuple[str | None, str | None, float | None, str | None]:
    """(value_type, value, value_numeric, units) of an Observation or component."""
    for key in _VALUE_KEYS:
        if key not in node:
            continue
        v = node[key]
        vt = _VALUE_TYPES[key]
        if key == "valueQuantity":
            q = d(v)
            num = f(q.get("value"))
            units = s(q.get("unit")) or s(q.get("code"))
            comp = s(q.get("comparator")) or ""
            txt = (comp + num_str(num)) if num is not None else None
            return vt, txt, num, units
        if key == "valueCodeableConcept":
            return vt, cc_text(v), None, None
        if key == "valueBoolean":
            return vt, "true" if is_true(v) else "false", None, None
        if key == "valueInteger":
            n = i(v)
            return vt, s(v), float(n) if n is not None else None, None
        if key == "valueRange":
            lo, hi = d(d(v).get("low")), d(d(v).get("high"))
            units = s(hi.get("unit")) or s(lo.get("unit")) or s(hi.get("code")) or s(lo.get("code"))
            return vt, f"{s(lo.get('value')) or ''}-{s(hi.get('value')) or ''}", None, units
        if key == "valueRatio":
            return (
                vt,
                f"{quantity_str(d(v).get('numerator')) or ''}/{quantity_str(d(v).get('denominator')) or ''}",
                None,
                None,
            )
        if key == "valueSampledData":
            return vt, s(d(v).get("data")), None, None
        if key == "valuePeriod":
            p = d(v)
            return vt, f"{s(p.get('start')) or ''}/{s(p.get('end')) or ''}", None, None
        return vt, s(v), None, None
    return None, None, None, None


def _ref_range(node: dict[str, Any]) -> str | None:
    rr = d(first(node.get("referenceRange")))
    if not rr:
        return None
    t = s(rr.get("text"))
    lo, hi = d(rr.get("low")), d(rr.get("high"))
    lv, hv = s(lo.get("value")), s(hi.get("value"))
    unit = s(hi.get("unit")) or s(lo.get("unit")) or s(hi.get("code")) or s(lo.get("code"))
    if lv is None and hv is None:
        return t
    if lv is not None and hv is not None:
        out = f"{lv}-{hv}"
    elif lv is not None:
        out = f">={lv}"
    else:
        out = f"<={hv}"
    return f"{out} {unit}" if unit else out


def _flags(node: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for cc in lst(node.get("interpretation")):
        codes = cc_codes(cc)
        if codes:
            out.extend(codes)
        elif cc_text(cc):
            out.append(cc_text(cc))  # type: ignore[arg-type]
    return out


def map_observation(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("subject"), "subject")
    effective = s(r.get("effectiveDateTime")) or s(r.get("effectiveInstant")) or period_start(r.get("effectivePeriod"))
    performer = c.party(first(r.get("performer")))
    based_on = first(r.get("basedOn"))
    order_id = None
    if isinstance(based_on, dict):
        t = c.resolve(based_on)
        order_id = t.rid or t.ident_value
    notes = [t for t in (s(d(n).get("text")) for n in lst(r.get("note"))) if t]
    status = s(r.get("status"))
    parent_flags = _flags(r)

    def build(node: dict[str, Any], obs_id: str, flags_fallback: list[str]) -> Normalized:
        vt, val, num, units = _obs_value(node)
        n_notes = list(notes)
        dar = node.get("dataAbsentReason")
        if dar and val is None:
            n_notes.append(f"data absent: {cc_text(dar) or 'unknown'}")
        value: ObservationDict = {
            "practice_id": c.practice_id,
            "patient_id": pid,
            "observation_id": obs_id,
            "order_id": order_id,
            "code": cc_coding(node.get("code"), LOINC),
            "value_type": vt,
            "value": val,
            "value_numeric": num,
            "units": units,
            "reference_range": _ref_range(node),
            "abnormal_flags": _flags(node) or flags_fallback,
            "status": status,
            "effective_at": effective,
            "performer": performer,
            "notes": n_notes,
            "source": c.source.copy(),
        }
        return c.rec("Observation", pid, obs_id, value)

    out: list[Normalized] = []
    components = [x for x in lst(r.get("component")) if isinstance(x, dict)]
    has_value = any(k in r for k in _VALUE_KEYS)
    if has_value or not components:
        out.append(build(r, c.entity_id, []))
    seen: set[str] = set()
    for n, comp in enumerate(components):
        code = cc_coding(comp.get("code"), LOINC)["code"] or str(n)
        cid = f"{c.entity_id}/{code}"
        if cid in seen:
            cid = f"{cid}/{n}"
        seen.add(cid)
        out.append(build(comp, cid, parent_flags))
    return out


# --------------------------------------------------------------------------- Condition
def map_condition(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("subject"), "subject")
    onset = (
        s(r.get("onsetDateTime"))
        or period_start(r.get("onsetPeriod"))
        or s(r.get("onsetString"))
        or quantity_str(r.get("onsetAge"))
    )
    if onset is None and r.get("onsetRange"):
        lo, hi = quantity_str(d(r["onsetRange"]).get("low")), quantity_str(d(r["onsetRange"]).get("high"))
        onset = f"{lo or ''}-{hi or ''}"
    value: ConditionDict = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "condition_id": c.entity_id,
        "code": cc_coding(r.get("code")),
        "clinical_status": cc_code(r.get("clinicalStatus")) or cc_text(r.get("clinicalStatus")),
        "verification_status": cc_code(r.get("verificationStatus")) or cc_text(r.get("verificationStatus")),
        "onset": onset,
        "recorded_at": s(r.get("recordedDate")),
        "source": c.source.copy(),
    }
    return [c.rec("Condition", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- MedicationRequest
def _frequency(timing: dict[str, Any]) -> str | None:
    code = d(timing.get("code"))
    if code:
        return cc_code(code) or cc_text(code)
    rep = d(timing.get("repeat"))
    freq, period, unit = s(rep.get("frequency")), s(rep.get("period")), s(rep.get("periodUnit"))
    out = None
    if freq and period and unit:
        fmax, pmax = s(rep.get("frequencyMax")), s(rep.get("periodMax"))
        out = f"{freq}{'-' + fmax if fmax else ''} per {period}{'-' + pmax if pmax else ''} {unit}"
    elif period and unit:
        out = f"every {period} {unit}"
    when = [w for w in (s(x) for x in lst(rep.get("when"))) if w]
    tod = [w for w in (s(x) for x in lst(rep.get("timeOfDay"))) if w]
    extra = " ".join(x for x in (" ".join(when), " ".join(tod)) if x)
    if extra:
        out = f"{out} {extra}" if out else extra
    return out


def map_medication_request(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("subject"), "subject")
    med: CodingDict
    if r.get("medicationCodeableConcept") is not None:
        med = cc_coding(r.get("medicationCodeableConcept"))
    else:
        t = c.resolve(r.get("medicationReference"))
        if t.resource is not None and s(t.resource.get("resourceType")) == "Medication":
            med = cc_coding(t.resource.get("code"))
            if med["display"] is None:
                med["display"] = t.display
        else:
            med = {"system": None, "code": None, "display": t.display or t.raw or t.ident_value}
            c.warn(f"medicationReference {t.raw or t.ident_value!r} not in the payload; medication code unknown")
    dosages = [x for x in lst(r.get("dosageInstruction")) if isinstance(x, dict)]
    dosages.sort(key=lambda x: i(x.get("sequence")) or 0)
    dose = dose_units = route = frequency = None
    if dosages:
        d0 = dosages[0]
        dr = d(first(d0.get("doseAndRate")))
        if dr.get("doseQuantity"):
            q = d(dr.get("doseQuantity"))
            dv = f(q.get("value"))
            dose = num_str(dv) if dv is not None else None
            dose_units = s(q.get("unit")) or s(q.get("code"))
        elif dr.get("doseRange"):
            lo, hi = d(d(dr["doseRange"]).get("low")), d(d(dr["doseRange"]).get("high"))
            dose = f"{s(lo.get('value')) or ''}-{s(hi.get('value')) or ''}"
            dose_units = s(hi.get("unit")) or s(lo.get("unit"))
        route = cc_text(d0.get("route"))
        frequency = _frequency(d(d0.get("timing")))
    texts = []
    for x in dosages:
        text = s(x.get("text"))
        if text:
            texts.append(text)
        pi = s(x.get("patientInstruction"))
        if pi and pi not in texts:
            texts.append(pi)
    disp = d(r.get("dispenseRequest"))
    value: MedicationOrderDict = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "order_id": c.entity_id,
        "medication": med,
        "dose": dose,
        "dose_units": dose_units,
        "route": route,
        "frequency": frequency,
        "quantity": quantity_str(disp.get("quantity")),
        "refills": i(disp.get("numberOfRepeatsAllowed")),
        "prescriber": c.party(r.get("requester")),
        "status": s(r.get("status")),
        "written_at": s(r.get("authoredOn")),
        "instructions": "; ".join(texts) or None,
        "source": c.source.copy(),
    }
    return [c.rec("MedicationOrder", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- ServiceRequest
def _identifier_of_type(r: dict[str, Any], code: str) -> str | None:
    for x in lst(r.get("identifier")):
        x = d(x)
        if code in cc_codes(x.get("type")) and s(x.get("value")):
            return s(x.get("value"))
    return None


def map_service_request(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("subject"), "subject")
    value: OrderDict = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "order_id": c.entity_id,
        "placer_order_number": _identifier_of_type(r, "PLAC") or s(d(r.get("requisition")).get("value")),
        "filler_order_number": _identifier_of_type(r, "FILL"),
        "control": None,
        "status": s(r.get("status")),
        "code": cc_coding(r.get("code")) if r.get("code") else None,
        "ordering_provider": c.party(r.get("requester")),
        "ordered_at": s(r.get("authoredOn")),
        "priority": s(r.get("priority")),
        "diagnoses": [cc_coding(cc) for cc in lst(r.get("reasonCode")) if isinstance(cc, dict)],
        "source": c.source.copy(),
    }
    return [c.rec("Order", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- Appointment
def _minutes_between(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
        return int((b - a).total_seconds() // 60)
    except (ValueError, TypeError):
        return None


def map_appointment(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = provider = location = None
    for p in lst(r.get("participant")):
        actor = d(d(p).get("actor"))
        if not actor:
            continue
        t = c.resolve(actor)
        if t.rtype == "Patient" and pid is None:
            pid = c.patient_id(actor, "participant.actor", required=False)
        elif t.rtype in ("Practitioner", "PractitionerRole") and provider is None:
            provider = c.party(actor)
        elif t.rtype == "Location" and location is None:
            location = c.party(actor)
    start, end = s(r.get("start")), s(r.get("end"))
    duration = i(r.get("minutesDuration"))
    if duration is None:
        duration = _minutes_between(start, end)
    reason = cc_text(first(r.get("reasonCode"))) or s(r.get("description"))
    value: AppointmentDict = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "appointment_id": c.entity_id,
        "event": c.event,
        "status": s(r.get("status")),
        "start": start,
        "duration_minutes": duration,
        "appointment_type": cc_text(r.get("appointmentType")) or cc_text(first(r.get("serviceType"))),
        "reason": reason,
        "provider": provider,
        "location": location,
        "source": c.source.copy(),
    }
    return [c.rec("Appointment", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- DocumentReference
def _media_type(ct: str | None) -> tuple[str, str | None]:
    if not ct:
        return "", None
    main, _, params = ct.partition(";")
    charset = None
    for p in params.split(";"):
        k, _, v = p.strip().partition("=")
        if k.lower() == "charset" and v:
            charset = v.strip().strip('"')
    return main.strip().lower(), charset


def map_document_reference(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("subject"), "subject", required=False) if r.get("subject") else None
    attachments = [d(d(x).get("attachment")) for x in lst(r.get("content"))]
    attachments = [a for a in attachments if a]
    chosen = attachments[0] if attachments else {}
    text = sha = None
    storage_uri = next((s(a.get("url")) for a in attachments if s(a.get("url"))), None)
    for a in attachments:
        data = s(a.get("data"))
        if not data:
            continue
        try:
            blob = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            c.warn("attachment.data is not valid base64; not decoded")
            continue
        media, charset = _media_type(s(a.get("contentType")))
        if sha is None:
            sha = hashlib.sha256(blob).hexdigest()
            chosen = a
        if media == "text/plain" and text is None:
            try:
                text = blob.decode(charset or "utf-8")
            except (LookupError, UnicodeDecodeError):
                text = blob.decode("utf-8", errors="replace")
                c.warn(f"text/plain attachment is not valid {charset or 'utf-8'}; undecodable bytes replaced")
            chosen, sha = a, hashlib.sha256(blob).hexdigest()
        elif media != "text/plain" and text is None:
            c.warn(
                f"inline attachment of type {media or 'unknown'!r} ({len(blob)} bytes) is not text/plain; "
                "kept only as sha256 (the raw message keeps the bytes)"
            )
    value: DocumentDict = {
        "practice_id": c.practice_id,
        "document_id": c.entity_id,
        "patient_id": pid,
        "kind": cc_text(r.get("type")) or cc_text(first(r.get("category"))),
        "title": s(chosen.get("title")) or s(r.get("description")),
        "status": s(r.get("status")),
        "content_type": s(chosen.get("contentType")),
        "storage_uri": storage_uri,
        "sha256": sha,
        "page_count": None,
        "text": text,
        "pages": [],
        "ocr_confidence": None,
        "fax_from": None,
        "fax_to": None,
        "authored_at": s(r.get("date")) or period_start(d(r.get("context")).get("period")),
        "source": c.source.copy(),
    }
    return [c.rec("Document", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- Claim
def _item_service_date(item: dict[str, Any]) -> str | None:
    return s(item.get("servicedDate")) or period_start(item.get("servicedPeriod"))


def _money(m: Any) -> float | None:
    return f(d(m).get("value"))


def map_claim(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("patient"), "patient", required=False)
    payer_id, payer_name = c.org(r.get("insurer")) if r.get("insurer") else (None, None)
    if payer_id is None and payer_name is None:
        payer_id, payer_name = _payer_from_insurance(c, r)
    diagnoses: list[CodingDict] = []
    for dx in lst(r.get("diagnosis")):
        dx = d(dx)
        if dx.get("diagnosisCodeableConcept"):
            diagnoses.append(cc_coding(dx.get("diagnosisCodeableConcept")))
        elif dx.get("diagnosisReference"):
            t = c.resolve(dx.get("diagnosisReference"))
            if t.resource is not None:
                diagnoses.append(cc_coding(t.resource.get("code")))
    lines: list[ServiceLineDict] = []
    items = [d(x) for x in lst(r.get("item"))]
    for item in items:
        net, up, qty = _money(item.get("net")), _money(item.get("unitPrice")), f(d(item.get("quantity")).get("value"))
        charge = net if net is not None else (up * (qty or 1.0) if up is not None else None)
        lines.append(_line(item, charge=charge, paid=None, adjustments=[], remarks=[]))
    total = _money(r.get("total"))
    if total is None and lines and all(ln["charge"] is not None for ln in lines):
        total = _sum([ch for ln in lines if (ch := ln["charge"]) is not None])
    dates = sorted(x for x in (_item_service_date(it) for it in items) if x)
    value: ClaimDict = {
        "practice_id": c.practice_id,
        "claim_id": c.entity_id,
        "patient_id": pid,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "total_charge": total,
        "service_date": period_start(r.get("billablePeriod")) or (dates[0] if dates else None),
        "diagnoses": diagnoses,
        "lines": lines,
        "status": s(r.get("status")),
        "use": s(r.get("use")),
        "member_id": None,
        "source": c.source.copy(),
    }
    return [c.rec("Claim", pid, c.entity_id, value)]


def _payer_from_insurance(c: Ctx, r: dict[str, Any]) -> tuple[str | None, str | None]:
    ins = [d(x) for x in lst(r.get("insurance"))]
    focal = next((x for x in ins if is_true(x.get("focal"))), ins[0] if ins else None)
    if not focal:
        return None, None
    t = c.resolve(focal.get("coverage"))
    if t.resource is None:
        return None, None
    sub = Ctx(t.resource, "Coverage", c.scope.scope_for(t), c.practice_id, c.entity_id, None, c.source, c.warnings)
    return sub.org(first(t.resource.get("payor")))


def _line(
    item: dict[str, Any],
    *,
    charge: float | None,
    paid: float | None,
    adjustments: list[AdjustmentDict],
    remarks: list[str],
    procedure: CodingDict | None = None,
    allowed: float | None = None,
) -> ServiceLineDict:
    seq = i(item.get("sequence"))
    if seq is None:
        seq = i(item.get("itemSequence"))
    return {
        "procedure": procedure or cc_coding(item.get("productOrService")),
        "modifiers": [m for cc in lst(item.get("modifier")) for m in cc_codes(cc)],
        "charge": charge,
        "paid": paid,
        "units": f(d(item.get("quantity")).get("value")),
        "service_date": _item_service_date(item),
        "adjustments": adjustments,
        "remark_codes": remarks,
        "control_number": str(seq) if seq is not None else None,
        "allowed": allowed,
    }


# --------------------------------------------------------------------------- ClaimResponse / EOB
_CATEGORY_ALIASES = {
    # Blue Button 2.0 (CMS) line-level adjudication variables
    "line_sbmtd_chrg_amt": "submitted",
    "line_alowd_chrg_amt": "eligible",
    "line_prvdr_pmt_amt": "paidtoprovider",
    "line_bene_pmt_amt": "paidtopatient",
    "line_nch_pmt_amt": "benefit",
    "line_coinsrnc_amt": "coinsurance",
    "line_bene_ptb_ddctbl_amt": "deductible",
    "line_bene_prmry_pyr_pd_amt": "priorpayerpaid",
    # CARIN BB / base synonyms
    "allowed": "eligible",
    "paid": "benefit",
}
_PR_CARC = {"deductible": "1", "coinsurance": "2", "copay": "3"}
_PATIENT_RESP = ("memberliability",)
_INFO_CATEGORIES = frozenset(
    {
        "submitted",
        "eligible",
        "eligpercent",
        "benefit",
        "paidtoprovider",
        "paidtopatient",
        "priorpayerpaid",
        "tax",
        "unallocdeduct",
    }
)


def _category(adj: dict[str, Any]) -> str | None:
    code = cc_code(adj.get("category"))
    if code is None:
        return None
    key = code.rstrip("/").rsplit("/", 1)[-1].lower()
    return _CATEGORY_ALIASES.get(key, key)


def _is_carc(coding_: CodingDict) -> bool:
    sys_ = (coding_.get("system") or "").lower()
    return any(x in sys_ for x in _CARC_SYSTEMS)


def _review_actions(adjs: list[dict[str, Any]]) -> list[str]:
    out = []
    for adj in adjs:
        for ext in lst(adj.get("extension")):
            ext = d(ext)
            if not str(ext.get("url", "")).endswith("extension-reviewAction"):
                continue
            for sub in lst(ext.get("extension")):
                sub = d(sub)
                if str(sub.get("url", "")).endswith("reviewActionCode"):
                    for code in cc_codes(sub.get("valueCodeableConcept")):
                        out.append(f"HCR01:{code}")
    return out


def _review_numbers(items: list[dict[str, Any]]) -> list[str]:
    """The payer's authorization numbers in PAS reviewAction extensions (``number``, X12 HCR02), in item order.

    WHY: a PAS response may carry the number only there (no ``preAuthRef``): the Da Vinci
    test kit's approved response does."""
    out: list[str] = []
    for item in items:
        for adj in lst(item.get("adjudication")):
            for ext in lst(d(adj).get("extension")):
                ext = d(ext)
                if not str(ext.get("url", "")).endswith("extension-reviewAction"):
                    continue
                for sub in lst(ext.get("extension")):
                    sub = d(sub)
                    if sub.get("url") == "number" and s(sub.get("valueString")) and sub["valueString"] not in out:
                        out.append(str(sub["valueString"]))
    return out


def _adjudicate(adjs: list[dict[str, Any]]) -> tuple[dict[str, float], list[AdjustmentDict], list[str]]:
    """Amounts by category, adjustments, remark codes of one adjudication list."""
    parts: dict[str, list[float]] = {}
    adjustments: list[AdjustmentDict] = []
    remarks: list[str] = []
    for adj in adjs:
        cat = _category(adj)
        amt = _money(adj.get("amount"))
        if cat and amt is not None:
            parts.setdefault(cat, []).append(amt)
        reason_cc = d(adj.get("reason"))
        reason_codings = [coding(x) for x in lst(reason_cc.get("coding")) if isinstance(x, dict)]
        reason_code = next((x["code"] for x in reason_codings if x["code"]), None)
        carc = next((x["code"] for x in reason_codings if x["code"] and _is_carc(x)), None)
        if cat in _PR_CARC and amt is not None and amt != 0:
            adjustments.append({"group": "PR", "reason": carc or _PR_CARC[cat], "amount": amt, "quantity": None})
        elif reason_code and amt is not None and cat not in _INFO_CATEGORIES:
            group = "PR" if cat in _PATIENT_RESP else ("CO" if carc else "OA")
            adjustments.append({"group": group, "reason": reason_code, "amount": amt, "quantity": None})
        elif reason_code:
            remarks.append(reason_code)
    remarks.extend(_review_actions(adjs))
    return {k: _sum(v) for k, v in parts.items()}, adjustments, remarks


def _sum(values: list[float]) -> float:
    """Amounts pass through as sent; only a computed sum is rounded (to cents, dropping float noise)."""
    return values[0] if len(values) == 1 else round(math.fsum(values), 2)


def _patient_resp(amounts: dict[str, float]) -> float | None:
    if "memberliability" in amounts:
        return amounts["memberliability"]
    parts = [amounts[k] for k in ("copay", "deductible", "coinsurance") if k in amounts]
    return _sum(parts) if parts else None


def _pas_detail_procedure(item: dict[str, Any]) -> CodingDict | None:
    for ext in lst(item.get("extension")):
        ext = d(ext)
        if str(ext.get("url", "")).endswith("extension-itemAuthorizedDetail"):
            for sub in lst(ext.get("extension")):
                sub = d(sub)
                if sub.get("url") == "productOrServiceCode":
                    return cc_coding(sub.get("valueCodeableConcept"))
    return None


def map_claim_adjudication(c: Ctx) -> list[Normalized]:
    r = c.r
    is_eob = c.rtype == "ExplanationOfBenefit"
    pid = c.patient_id(r.get("patient"), "patient", required=False)
    patient_name = None
    if r.get("patient"):
        t = c.resolve(r.get("patient"))
        if t.resource is not None:
            patient_name = display_name(t.resource.get("name"))
        patient_name = patient_name or t.display
    # claim id: the Claim this answers
    claim_ref = r.get("claim") if is_eob else r.get("request")
    claim_items: dict[int, dict[str, Any]] = {}
    claim_id = None
    if isinstance(claim_ref, dict):
        t = c.resolve(claim_ref)
        claim_id = t.rid or t.ident_value
        if t.resource is not None:
            for it in lst(t.resource.get("item")):
                seq = i(d(it).get("sequence"))
                if seq is not None:
                    claim_items[seq] = d(it)
    if claim_id is None:
        ident = s(d(first(r.get("identifier"))).get("value"))
        claim_id = ident or c.entity_id
        c.warn(
            f"no {'claim' if is_eob else 'request'} reference; claim_id taken from "
            f"{'identifier' if ident else 'the resource id'} ({claim_id})"
        )
    payer_id, payer_name = c.org(r.get("insurer")) if r.get("insurer") else (None, None)
    payee = r.get("provider") if is_eob else r.get("requestor")
    if is_eob and not payee:
        payee = d(r.get("payee")).get("party")
    member_id = None
    ins = [d(x) for x in lst(r.get("insurance"))]
    focal = next((x for x in ins if is_true(x.get("focal"))), ins[0] if ins else None)
    if focal:
        t = c.resolve(focal.get("coverage"))
        if t.resource is not None:
            member_id = coverage_member_id(t.resource)
    # lines
    lines: list[ServiceLineDict] = []
    line_pr: list[float] = []
    for item in [d(x) for x in lst(r.get("item"))] + [d(x) for x in lst(r.get("addItem"))]:
        amounts, adjustments, remarks = _adjudicate([d(a) for a in lst(item.get("adjudication"))])
        seq = i(item.get("itemSequence"))
        claim_item = claim_items.get(seq) if seq is not None else None
        procedure: CodingDict | None = None
        if not item.get("productOrService"):
            if claim_item is not None:
                procedure = cc_coding(claim_item.get("productOrService"))
            else:
                procedure = _pas_detail_procedure(item) or EMPTY_CODING.copy()
        charge = amounts.get("submitted")
        if charge is None:
            charge = _money(item.get("net"))
        if charge is None and claim_item is not None:
            charge = _money(claim_item.get("net"))
        paid = amounts.get("paidtoprovider", amounts.get("benefit"))
        line = _line(
            item,
            charge=charge,
            paid=paid,
            adjustments=adjustments,
            remarks=remarks,
            procedure=procedure,
            allowed=amounts.get("eligible"),
        )
        if claim_item is not None and line["service_date"] is None:
            line["service_date"] = _item_service_date(claim_item)
        lines.append(line)
        line_pr.extend(a["amount"] for a in adjustments if a["group"] == "PR")
    # header
    h_amounts, h_adjustments, h_remarks = _adjudicate([d(a) for a in lst(r.get("adjudication"))])
    totals, _, _ = _adjudicate([d(t) for t in lst(r.get("total"))])
    totals = {**h_amounts, **totals}
    payment = d(r.get("payment"))
    paid = _money(payment.get("amount"))
    if paid is None:
        paid = totals.get("paidtoprovider", totals.get("benefit"))
    if paid is None and lines and all(ln["paid"] is not None for ln in lines):
        paid = _sum([p for ln in lines if (p := ln["paid"]) is not None])
    total_charge = totals.get("submitted")
    if total_charge is None and lines and all(ln["charge"] is not None for ln in lines):
        total_charge = _sum([ch for ln in lines if (ch := ln["charge"]) is not None])
    pr = _patient_resp(totals)
    if pr is None and line_pr:
        pr = _sum(line_pr)
    dates = sorted(x for x in (ln["service_date"] for ln in lines) if x)
    value: ClaimAdjudicationDict = {
        "practice_id": c.practice_id,
        "claim_id": claim_id,
        "adjudication_id": c.entity_id,
        "patient_id": pid,
        "patient_name": patient_name,
        "member_id": member_id,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "payee_npi": c.npi(payee),
        "status_code": None,
        "outcome": s(r.get("outcome")),
        "authorization_number": s(
            first(r.get("preAuthRef")) if isinstance(r.get("preAuthRef"), list) else r.get("preAuthRef")
        )
        or next(
            iter(_review_numbers([d(x) for x in lst(r.get("item"))] + [d(x) for x in lst(r.get("addItem"))])), None
        ),
        "total_charge": total_charge,
        "paid": paid,
        "patient_responsibility": pr,
        "payer_claim_control_number": s(d(first(r.get("identifier"))).get("value")),
        "reversal": r.get("status") == "cancelled",
        "adjustments": h_adjustments,
        "remark_codes": h_remarks,
        "lines": lines,
        "payment_trace": s(d(payment.get("identifier")).get("value")),
        "payment_date": s(payment.get("date")),
        "service_date": period_start(r.get("billablePeriod")) or (dates[0] if dates else None),
        "source": c.source.copy(),
        "use": s(r.get("use")),
    }
    return [c.rec("ClaimAdjudication", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- CoverageEligibilityResponse
_EB01 = {"deductible": "C", "copay": "B", "copay-percent": "A", "copay-maximum": "G"}


def map_eligibility_response(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("patient"), "patient", required=False)
    patient_name = birth_date = None
    if r.get("patient"):
        t = c.resolve(r.get("patient"))
        if t.resource is not None:
            patient_name = display_name(t.resource.get("name"))
            birth_date = s(t.resource.get("birthDate"))
        patient_name = patient_name or t.display
    payer_id, payer_name = c.org(r.get("insurer"))
    member_id = None
    benefits: list[BenefitDict] = []
    inforce: list[bool] = []
    for ins in [d(x) for x in lst(r.get("insurance"))]:
        plan = None
        t = c.resolve(ins.get("coverage"))
        if t.resource is not None:
            member_id = member_id or coverage_member_id(t.resource)
            pl = _coverage_class(t.resource, "plan")
            plan = (s(pl.get("name")) or s(pl.get("value"))) if pl else None
        plan = plan or t.display
        if "inforce" in ins and isinstance(ins.get("inforce"), bool):
            inforce.append(ins["inforce"])
            benefits.append(_benefit("1" if ins["inforce"] else "6", plan_description=plan))
        for item in [d(x) for x in lst(ins.get("item"))]:
            service_types = cc_codes(item.get("category")) + cc_codes(item.get("productOrService"))
            network = cc_code(item.get("network"))
            in_network = {"in": "Y", "out": "N"}.get(network or "", network)
            msgs = [m for m in (s(item.get("description")), s(item.get("name"))) if m]
            if is_true(item.get("authorizationRequired")):
                msgs.append("authorization required")
            if is_true(item.get("excluded")):
                msgs.append("excluded")
            level = cc_code(item.get("unit"))
            period = cc_code(item.get("term"))
            bens = [d(b) for b in lst(item.get("benefit"))]
            if not bens:
                benefits.append(
                    _benefit(
                        "1",
                        coverage_level=level,
                        service_types=service_types,
                        time_period=period,
                        in_network=in_network,
                        messages=msgs,
                        plan_description=plan,
                    )
                )
            for b in bens:
                btype = cc_code(b.get("type")) or "benefit"
                amount = _money(b.get("allowedMoney"))
                if amount is None:
                    amount = _money(b.get("usedMoney"))
                percent = None
                if amount is None:
                    n = f(b.get("allowedUnsignedInt"))
                    if n is None:
                        n = f(b.get("usedUnsignedInt"))
                    if n is not None and btype.endswith("percent"):
                        percent = n
                    elif n is not None:
                        amount = n
                benefits.append(
                    _benefit(
                        _EB01.get(btype, btype),
                        coverage_level=level,
                        service_types=service_types,
                        time_period=period,
                        amount=amount,
                        percent=percent,
                        in_network=in_network,
                        messages=msgs,
                        plan_description=plan,
                    )
                )
    rejections = [code for e in lst(r.get("error")) for code in cc_codes(d(e).get("code"))]
    value: EligibilityResponseDict = {
        "practice_id": c.practice_id,
        "response_id": c.entity_id,
        "trace_number": s(d(first(r.get("identifier"))).get("value")),
        "payer_id": payer_id,
        "payer_name": payer_name,
        "member_id": member_id,
        "patient_name": patient_name,
        "birth_date": birth_date,
        "active": (any(inforce) if inforce else None),
        "benefits": benefits,
        "rejections": rejections,
        "patient_id": pid,
        "source": c.source.copy(),
    }
    return [c.rec("EligibilityResponse", pid, c.entity_id, value)]


def _benefit(
    info_code: str,
    *,
    coverage_level: str | None = None,
    service_types: list[str] | None = None,
    time_period: str | None = None,
    amount: float | None = None,
    percent: float | None = None,
    in_network: str | None = None,
    messages: list[str] | None = None,
    plan_description: str | None = None,
) -> BenefitDict:
    return {
        "info_code": info_code,
        "coverage_level": coverage_level,
        "service_types": service_types or [],
        "insurance_type": None,
        "plan_description": plan_description,
        "time_period": time_period,
        "amount": amount,
        "percent": percent,
        "in_network": in_network,
        "messages": messages or [],
    }


# --------------------------------------------------------------------------- Immunization
_FHIR_FUNDING_SOURCE = "30963-3"
_FHIR_FUNDING_ELIGIBILITY = "64994-7"


def _cc_or_none(cc: Any) -> CodingDict | None:
    c = cc_coding(cc)
    return c if c["code"] or c["display"] else None


def map_immunization(c: Ctx) -> list[Normalized]:
    """Immunization -> the same Immunization record VXU^V04 gives. programEligibility,
    fundingSource and education (VIS) become the nested observations with the LOINC
    codes an HL7 feed uses for them, so both feeds read alike."""
    r = c.r
    pid = c.patient_id(r.get("patient"), "patient")
    dose = d(r.get("doseQuantity"))
    performer = None
    for p in lst(r.get("performer")):
        performer = c.party(d(p).get("actor"))
        if performer:
            break
    eligibility = _cc_or_none(first(r.get("programEligibility")))
    funding = _cc_or_none(r.get("fundingSource"))
    observations: list[ImmunizationObservationDict] = []
    for code, display, value in (
        (_FHIR_FUNDING_ELIGIBILITY, "Vaccine funding program eligibility category", eligibility),
        (_FHIR_FUNDING_SOURCE, "Vaccine funding source", funding),
    ):
        if value is not None:
            observations.append(
                {
                    "code": {"system": LOINC, "code": code, "display": display},
                    "value_type": "CodeableConcept",
                    "value": value["display"] or value["code"],
                    "value_code": value,
                    "sub_id": None,
                    "effective_at": None,
                }
            )
    for k, edu in enumerate(lst(r.get("education")), 1):
        edu = d(edu)
        for code, display, key, vt in (
            ("69764-9", "Document type", "documentType", "string"),
            ("29768-9", "Date vaccine information statement published", "publicationDate", "dateTime"),
            ("29769-7", "Date vaccine information statement presented", "presentationDate", "dateTime"),
        ):
            v = s(edu.get(key))
            if v:
                observations.append(
                    {
                        "code": {"system": LOINC, "code": code, "display": display},
                        "value_type": vt,
                        "value": v,
                        "value_code": None,
                        "sub_id": str(k),
                        "effective_at": None,
                    }
                )
    primary = r.get("primarySource")
    record: ImmunizationDict = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "immunization_id": c.entity_id,
        "vaccine": cc_coding(r.get("vaccineCode")),
        "status": s(r.get("status")),
        "completion_status": None,
        "status_reason": cc_text(r.get("statusReason")) or cc_code(r.get("statusReason")),
        "administered_at": s(r.get("occurrenceDateTime")) or s(r.get("occurrenceString")),
        "amount": f(dose.get("value")),
        "amount_units": s(dose.get("unit")) or s(dose.get("code")),
        "lot_number": s(r.get("lotNumber")),
        "expiration_date": s(r.get("expirationDate")),
        "manufacturer": (
            {"system": None, "code": None, "display": c.party(r.get("manufacturer"))}
            if isinstance(r.get("manufacturer"), dict) and c.party(r.get("manufacturer"))
            else None
        ),
        "site": cc_text(r.get("site")) or cc_code(r.get("site")),
        "route": cc_text(r.get("route")) or cc_code(r.get("route")),
        "performer": performer,
        "ordering_provider": None,
        "location": c.party(r.get("location")),
        "primary_source": primary if isinstance(primary, bool) else None,
        "information_source": cc_text(r.get("reportOrigin")),
        "funding_eligibility": eligibility,
        "funding_source": funding,
        "observations": observations,
        "notes": [t for t in (s(d(n).get("text")) for n in lst(r.get("note"))) if t],
        "source": c.source.copy(),
    }
    return [c.rec("Immunization", pid, c.entity_id, record)]


# --------------------------------------------------------------------------- AllergyIntolerance
def map_allergy_intolerance(c: Ctx) -> list[Normalized]:
    """AllergyIntolerance -> the record HL7 AL1 gives (first reaction's severity)."""
    r = c.r
    pid = c.patient_id(r.get("patient"), "patient")
    reactions: list[str] = []
    severity = None
    for rx in lst(r.get("reaction")):
        rx = d(rx)
        severity = severity or s(rx.get("severity"))
        for m in lst(rx.get("manifestation")):
            t = cc_text(m) or cc_code(m)
            if t and t not in reactions:
                reactions.append(t)
    categories = [s(x) for x in lst(r.get("category")) if s(x)]
    value = {
        "practice_id": c.practice_id,
        "patient_id": pid,
        "allergy_id": c.entity_id,
        "allergen": cc_coding(r.get("code")),
        "allergen_type": s(r.get("type")),
        "category": categories[0] if categories else None,
        "severity": severity,
        "criticality": s(r.get("criticality")),
        "reactions": reactions,
        "identified_at": s(r.get("onsetDateTime")) or s(r.get("recordedDate")),
        "clinical_status": cc_code(r.get("clinicalStatus")) or cc_text(r.get("clinicalStatus")),
        "verification_status": cc_code(r.get("verificationStatus")) or cc_text(r.get("verificationStatus")),
        "source": c.source.copy(),
    }
    return [c.rec("AllergyIntolerance", pid, c.entity_id, value)]


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
