"""The identifier crosswalk: one canonical patient id per practice, for every feed (pure).

State is a :class:`Crosswalk` per practice: ``identifier key -> canonical key``. A key
is ``<kind>|<value>`` (``pid|`` the practice's MRN, ``fhir|`` a FHIR logical id,
``mb|`` an insurance member id, ``pcn|`` a claim's patient control number CLM01/CLP01)
or ``<type>|<system>|<value>`` for any other typed identifier. SSNs never become keys
(they are masked on the records anyway), so the crosswalk holds no SSN.

Folding rules (:func:`apply`, one ``IdentityLink`` at a time, in topic order):

* ``link`` / ``merge``: every key of both sides is bound to one canonical key. An MRN
  (``pid|``) wins over a provisional key (a FHIR id or member id seen before any MRN),
  so a patient first seen through FHIR moves to its MRN when a link names it. A
  ``merge`` (A40) and an explicit ``link`` from two PIDs (A24) may join two MRNs: the
  first side survives and every key of the other follows it. A *derived* link (a
  Patient's own identifiers, a claim, a coverage) that would join two different MRNs
  is a conflict: the keys it disagrees on become ambiguous (think of a subscriber's
  member id shared by a family) and resolve to nobody, never to a guess.
* ``unlink`` (A37): the second side's keys go back to its own canonical key.

:func:`resolve` answers for a record's identifiers: ``resolved`` with the canonical
id, ``unresolved`` (no key known) or ``conflict`` (keys disagree, or a key is
ambiguous). The same links in the same order always give the same state, so a
streaming table built on this can be rebuilt from ``norm.identity``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from practiceflow.processors.identity.choose import classify, is_unresolved

__all__ = ["Crosswalk", "Resolution", "apply", "canonical_id", "fold", "identifier_key", "patient_keys", "resolve"]

#: identifier types with a kind of their own (values compare without the system:
#: payers and feeds spell member-id and claim-number systems differently)
TYPE_FHIR = "FHIR"
TYPE_MEMBER = "MB"
TYPE_PCN = "PCN"
TYPE_CANONICAL = "PID"
_KINDS = {TYPE_FHIR: "fhir", TYPE_MEMBER: "mb", "MI": "mb", "SN": "mb", TYPE_PCN: "pcn", TYPE_CANONICAL: "pid"}


@dataclass(slots=True)
class Crosswalk:
    """One practice's crosswalk state (data only; the rules are the functions here)."""

    practice_id: str
    ids: dict[str, str] = field(default_factory=dict)  # identifier key -> canonical key
    ambiguous: set[str] = field(default_factory=set)  # keys two patients claim

    def copy(self) -> Crosswalk:
        return Crosswalk(self.practice_id, dict(self.ids), set(self.ambiguous))


@dataclass(frozen=True, slots=True)
class Resolution:
    status: str  # resolved | unresolved | conflict
    patient_id: str | None = None
    provisional: bool = False  # resolved, but to a non-MRN id (no MRN linked yet)


def identifier_key(ident: Mapping[str, Any]) -> str | None:
    """The crosswalk key of one identifier dict; None for SSNs, masked or empty values."""
    value = (ident.get("value") or "").strip()
    if not value or value.startswith("***"):
        return None
    typ = (ident.get("type") or "").upper()
    kind = _KINDS.get(typ)
    if kind is not None:
        return f"{kind}|{value}"
    if classify(ident) == "forbidden" and typ not in ("MB", "MI", "MC", "MA", "SN"):
        return None  # SSN, licence, passport, national id: never a join key
    return f"{typ.lower() or 'id'}|{ident.get('system') or ''}|{value}"


def patient_keys(patient_id: str | None, identifiers: Iterable[Mapping[str, Any]]) -> list[str]:
    """Keys of one side of a link: its patient id (the practice's MRN; a FHIR logical id
    travels as an identifier of type ``FHIR``) and its identifiers, de-duplicated."""
    keys: list[str] = []
    if patient_id and not is_unresolved(patient_id):
        keys.append(f"pid|{patient_id}")
    for ident in identifiers:
        k = identifier_key(ident)
        if k is not None and k not in keys:
            keys.append(k)
    return keys


def canonical_id(key: str) -> tuple[str, bool]:
    """(patient id, provisional) for a canonical key: an MRN's value, else the key."""
    if key.startswith("pid|"):
        return key[4:], False
    return key, True


def resolve(cw: Crosswalk, keys: Sequence[str]) -> Resolution:
    """The canonical patient of a record's keys (see :func:`patient_keys`)."""
    found: set[str] = set()
    for k in keys:
        if k in cw.ambiguous:
            return Resolution("conflict")
        c = cw.ids.get(k)
        if c is not None:
            found.add(c)
        elif k.startswith("pid|"):
            found.add(k)  # an MRN is its own canonical id until a link says otherwise
    if not found:
        return Resolution("unresolved")
    if len(found) > 1:
        return Resolution("conflict")
    pid, provisional = canonical_id(found.pop())
    return Resolution("resolved", pid, provisional)


def _canonical_of(cw: Crosswalk, key: str) -> str:
    return cw.ids.get(key, key)


def _bind(cw: Crosswalk, keys: Sequence[str], explicit: bool) -> None:
    keys = [k for k in keys if k not in cw.ambiguous]
    if not keys:
        return
    current = [_canonical_of(cw, k) for k in keys]
    mrns = list(dict.fromkeys(c for c in current if c.startswith("pid|")))
    if len(mrns) > 1 and not explicit:
        # A derived link (a record's own identifiers) naming keys that already belong to
        # another patient's MRN: those keys are ambiguous from now on (a member id shared
        # by a family), the other MRNs are left alone, the rest binds to the link's MRN.
        own = mrns[0]
        kept: list[tuple[str, str]] = []
        for k, c in zip(keys, current, strict=True):
            if c.startswith("pid|") and c != own:
                if not k.startswith("pid|"):
                    cw.ambiguous.add(k)
                    cw.ids.pop(k, None)
                continue
            kept.append((k, c))
        keys = [k for k, _ in kept]
        current = [c for _, c in kept]
        mrns = [own]
    existing = [c for c in current if cw.ids.get(c) == c]  # canonical keys already in use
    target = mrns[0] if mrns else (existing[0] if existing else current[0])
    # Only a key already in use can have followers (every canonical key maps to itself; a key
    # dropped as ambiguous may still be followed): a key new to the crosswalk needs no scan,
    # which keeps a practice's usual link (a new patient's MRN + member id) O(1), not O(size).
    moving = {c for c in set(current) - {target} if c in cw.ids or c in cw.ambiguous}
    for k in keys:
        cw.ids[k] = target
    if moving:  # everything that followed a provisional (or, explicitly, merged) id follows on
        for k, c in list(cw.ids.items()):
            if c in moving:
                cw.ids[k] = target
    cw.ids[target] = target


def apply(cw: Crosswalk, link: Mapping[str, Any], *, in_place: bool = False) -> Crosswalk:
    """The state after one ``IdentityLink`` record: a new object (``cw`` unchanged), or
    ``cw`` itself updated with ``in_place=True`` (a table that owns its state)."""
    if link["practice_id"] != cw.practice_id:
        raise ValueError("an identity link never crosses practices")
    a = patient_keys(link.get("patient_id"), link.get("identifiers") or [])
    b = patient_keys(link.get("other_patient_id"), link.get("other_identifiers") or [])
    out = cw if in_place else cw.copy()
    action = link["action"]
    if action in ("link", "merge"):
        _bind(out, a + b, explicit=bool(b))
    elif action == "unlink":
        if a and b:
            a_canon = _canonical_of(out, a[0])
            own = b[0]
            for k in b:
                if _canonical_of(out, k) == a_canon:
                    out.ids[k] = own
            out.ids[own] = own
    else:
        raise ValueError(f"unknown identity link action {action!r}")
    return out


def fold(practice_id: str, links: Iterable[Mapping[str, Any]]) -> Crosswalk:
    """The crosswalk built from a practice's links, in order."""
    cw = Crosswalk(practice_id)
    for link in links:
        apply(cw, link, in_place=True)
    return cw
