"""Which patient identifier keys a record, and how the others are kept (pure).

Why this exists: a PID-3 (or ``Patient.identifier``) list mixes the practice's
medical record number with SSNs, driver's licences, passports and insurance member
ids, in any order. Keying by "the first repetition" put SSNs into Kafka keys,
ClickHouse sort keys and handoff text. Every normalizer now calls :func:`choose`,
which keys a record only by an identifier the practice's :class:`IdentityPolicy`
allows, and :func:`keep` / :func:`mask_ssn`, which keep an SSN only as its last
four digits unless the practice opted in.

Classification of one identifier (``classify``):

* **forbidden** (never a key): SSNs (type ``SS``/``SSN``, an SSA authority, the FHIR
  ``us-ssn`` system, or any value shaped ``123-45-6789``), driver's licences
  (``DL``/``DLN``), passports (``PPN``), insurance and national ids (``MB``, ``MI``,
  ``MC``, ``MA``, ``SN``, ``NI``, ``NH``, ``JHN``, ``HC``, ``INS``, ``NN<country>``, ...).
* **preferred**: the policy's types, in order (default ``MR``, ``MRN``, ``PI``, ``PT``),
  and, when the policy names assigning authorities, those authorities in order.
* **neutral**: anything else (no type, an unknown type such as ``PN``); used as the key
  only when no preferred identifier is present and ``policy.fallback`` is on.

When nothing is keyable the record is *unresolved*: it keeps its (masked)
identifiers and gets :func:`unresolved_id` as its patient id, unique per message
and never derived from the identifier values, so nothing is guessed and two
unresolved patients never share a key. The identity crosswalk
(``processors.identity.crosswalk``) resolves it later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_POLICY",
    "FORBIDDEN_TYPES",
    "UNRESOLVED_PREFIX",
    "IdentityPolicy",
    "choose",
    "classify",
    "is_unresolved",
    "keep",
    "looks_like_ssn",
    "mask_ssn",
    "policy_for",
    "scrub_ssn",
    "unresolved_id",
]

UNRESOLVED_PREFIX = "unresolved:"

#: identifier types (HL7 table 0203 and FHIR v2-0203 codes, upper case) never used as a key
FORBIDDEN_TYPES: frozenset[str] = frozenset(
    {
        "SS",
        "SSN",
        "SB",  # social security / social beneficiary numbers
        "DL",
        "DLN",
        "DR",  # driver's licence
        "PPN",
        "PPT",
        "PASSPORT",  # passport
        "MB",
        "MI",
        "MC",
        "MA",
        "SN",
        "MCN",
        "MCD",
        "MCR",
        "MBR",
        "MEMBER",
        "SUBSCRIBER",  # insurance member ids
        "NI",
        "NH",
        "NIIP",
        "JHN",
        "HC",
        "INS",
        "NCT",
        "CZ",
        "TAX",
        "TIN",
        "ITIN",  # national / tax ids
    }
)
_SSN_TYPES = frozenset({"SS", "SSN"})
SSN_SYSTEMS = frozenset({"ssa", "usssa", "us-ssa", "us ssa", "ssn", "us-ssn", "2.16.840.1.113883.4.1"})
_SSN_SHAPE = re.compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}")
_DIGIT = re.compile(r"[0-9]")
_SSN_IN_TEXT = re.compile(r"(?<![0-9])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9])")


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """One practice's rule for its canonical patient id (the MRN).

    ``types``: identifier types that make a record's key, best first.
    ``authorities``: assigning authorities / systems, best first; empty = any.
    ``fallback``: with no preferred identifier, key by the first neutral one
    (untyped or an unknown type) rather than leave the record unresolved.
    ``ssn_in_clear``: keep SSNs unmasked in ``Patient.identifiers`` (Kafka only; never
    keys, ClickHouse or handoff text). Off by default.
    """

    types: tuple[str, ...] = ("MR", "MRN", "PI", "PT")
    authorities: tuple[str, ...] = ()
    fallback: bool = True
    ssn_in_clear: bool = False

    def __post_init__(self) -> None:
        bad = [t for t in self.types if t.upper() in FORBIDDEN_TYPES]
        if bad:
            raise ValueError(f"identifier types {bad} can never key a patient")
        object.__setattr__(self, "types", tuple(t.upper() for t in self.types))
        object.__setattr__(self, "authorities", tuple(a.upper() for a in self.authorities))


DEFAULT_POLICY = IdentityPolicy()


def policy_for(policies: Mapping[str, IdentityPolicy] | None, practice_id: str) -> IdentityPolicy:
    """The practice's policy, else the ``"*"`` entry, else :data:`DEFAULT_POLICY`."""
    if not policies:
        return DEFAULT_POLICY
    return policies.get(practice_id) or policies.get("*") or DEFAULT_POLICY


def looks_like_ssn(value: str) -> bool:
    """A value written like an SSN (``123-45-6789``): never a key, whatever its type says."""
    value = value.strip()
    return len(value) == 11 and _SSN_SHAPE.fullmatch(value) is not None


def _is_ssn(ident: Mapping[str, Any]) -> bool:
    typ = ident.get("type")
    if typ and typ.upper() in _SSN_TYPES:
        return True
    system = ident.get("system")
    if system and (system.lower() in SSN_SYSTEMS or system.endswith("/us-ssn")):
        return True
    value = ident.get("value")
    return value is not None and len(value) == 11 and _SSN_SHAPE.fullmatch(value) is not None


def classify(ident: Mapping[str, Any], policy: IdentityPolicy = DEFAULT_POLICY) -> str:
    """``"forbidden"``, ``"preferred"`` or ``"neutral"`` for one identifier dict
    (``value``/``system``/``type``, the shape of ``schemas.models.Identifier``)."""
    if _is_ssn(ident):
        return "forbidden"
    typ = (ident.get("type") or "").upper()
    if typ in FORBIDDEN_TYPES or (len(typ) == 5 and typ.startswith("NN")):  # NNxxx: national person id
        return "forbidden"
    if typ in policy.types:
        return "preferred"
    return "neutral"


def _rank(ident: Mapping[str, Any], policy: IdentityPolicy) -> tuple[int, int] | None:
    kind = classify(ident, policy)
    if kind == "forbidden":
        return None
    n = len(policy.types)
    type_rank = policy.types.index((ident.get("type") or "").upper()) if kind == "preferred" else n
    if kind == "neutral" and not policy.fallback:
        return None
    if not policy.authorities:
        return type_rank, 0
    system = (ident.get("system") or "").upper()
    auth_rank = policy.authorities.index(system) if system in policy.authorities else len(policy.authorities)
    return type_rank, auth_rank


def choose(identifiers: Sequence[Mapping[str, Any]], policy: IdentityPolicy = DEFAULT_POLICY) -> int | None:
    """Index of the identifier that keys the record, or None (unresolved).

    Best = lowest (type rank, authority rank), then the earliest position. Fast path:
    a first identifier of the policy's first type with no authority preference.
    """
    if not identifiers:
        return None
    first = identifiers[0]
    if not policy.authorities and (first.get("type") or "").upper() == policy.types[0] and not _is_ssn(first):
        return 0
    best: tuple[int, int] | None = None
    best_i: int | None = None
    for i, ident in enumerate(identifiers):
        r = _rank(ident, policy)
        if r is not None and (best is None or r < best):
            best, best_i = r, i
    return best_i


def mask_ssn(value: str) -> str:
    """``***-**-6789``: the last four digits only (what staff need to confirm a patient)."""
    return "***-**-" + "".join(_DIGIT.findall(value)[-4:]).rjust(4, "*")


def keep(ident: dict[str, Any], policy: IdentityPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """The identifier as a record may carry it: an SSN masked (typed ``SS``) unless the
    policy opts in; anything else unchanged. Returns a new dict when it changes."""
    if not _is_ssn(ident):
        return ident
    typ = ident.get("type") or "SS"
    if policy.ssn_in_clear:
        return ident if ident.get("type") else {**ident, "type": typ}
    return {"value": mask_ssn(ident.get("value") or ""), "system": ident.get("system"), "type": typ}


def scrub_ssn(text: str) -> str:
    """Mask every SSN-shaped number in free text (titles, reasons) to its last four."""
    if "-" not in text:
        return text
    return _SSN_IN_TEXT.sub(lambda m: "***-**-" + m.group(3), text)


def unresolved_id(message_id: str, n: int = 1) -> str:
    """The patient id of a record whose patient no keyable identifier names: unique per
    message (and per patient within it), derived from no identifier value."""
    base = f"{UNRESOLVED_PREFIX}{message_id[:16]}"
    return base if n <= 1 else f"{base}-{n}"


def is_unresolved(patient_id: str | None) -> bool:
    return patient_id is None or patient_id.startswith(UNRESOLVED_PREFIX)
