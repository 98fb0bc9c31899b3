"""Patient and Coverage -> records: who the patient is, by which identifiers, and their insurance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from practiceflow.processors.base import Normalized
from practiceflow.processors.identity.choose import (
    keep,
    looks_like_ssn,
    unresolved_id,
)

from .._util import (
    cc_code,
    cc_codes,
    cc_text,
    d,
    first,
    i,
    is_true,
    lst,
    name_parts,
    s,
)
from .context import Ctx, typed_identifiers

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import (
        AddressDict,
        CoverageDict,
        IdentifierDict,
        PatientDict,
    )


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
def coverage_class(r: dict[str, Any], kind: str) -> dict[str, Any] | None:
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
    plan = coverage_class(r, "plan")
    group = coverage_class(r, "group")
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
