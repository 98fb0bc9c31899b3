"""Clinical resources -> records: Encounter, Observation (one record per component),
Condition, MedicationRequest, ServiceRequest, Appointment, DocumentReference,
Immunization and AllergyIntolerance."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from practiceflow.processors.base import Normalized

from .._util import (
    cc_code,
    cc_codes,
    cc_coding,
    cc_text,
    d,
    f,
    first,
    i,
    is_true,
    lst,
    num_str,
    period_start,
    quantity_str,
    s,
)
from .context import LOINC, Ctx

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import (
        AppointmentDict,
        CodingDict,
        ConditionDict,
        DocumentDict,
        EncounterDict,
        ImmunizationDict,
        ImmunizationObservationDict,
        MedicationOrderDict,
        ObservationDict,
        OrderDict,
    )


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
