"""What every FHIR mapper shares: :class:`Ctx` (the resource, its scope, ids, source and
warnings), :class:`Unmappable`, and the identifier helpers the identity policy uses.

The choices all mappers follow are in the package docstring (``mappers/__init__.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from practiceflow.processors.base import Normalized, entity_key, typed_record
from practiceflow.processors.identity.choose import (
    DEFAULT_POLICY,
    IdentityPolicy,
    choose,
    classify,
    looks_like_ssn,
    unresolved_id,
)

from .._refs import Scope, Target
from .._util import (
    cc_code,
    d,
    display_name,
    lst,
    s,
)

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import (
        SourceRefDict,
    )


LOINC = "http://loinc.org"
NPI = "http://hl7.org/fhir/sid/us-npi"


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
