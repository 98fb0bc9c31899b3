"""Patient matching for inputs that carry no known patient id (pure).

An intake form from a new patient, a fax, a pharmacy's refill request: the input names a
person, not a chart. Matching answers which chart, in two steps, and never guesses:

1. **Exact identifiers first.** The input's MRN or insurance member id is looked up in
   the practice's identity crosswalk (``processors/identity/crosswalk.py``). One canonical
   patient -> ``matched`` (method ``identifier``). A member id two patients share (a
   family plan) is a crosswalk *conflict*: it proves nothing, so step 2 decides.
2. **A scored demographic match** over the practice's demographic index, never over every
   patient: the index is blocked by date of birth, by (Soundex of the family name, birth
   year) and by phone number, so a typo in one of them still finds the chart through
   another, and a lookup reads a handful of candidates, not the practice. Each candidate
   is scored field by field with rapidfuzz (Jaro-Winkler on names, with nickname and
   swapped-name variants; DOB exact / day-month swapped / one digit off; sex; street and
   postal code; phone), and the weighted mean over the fields *both* sides have is the
   score. A chart whose name scores below ``name_min`` is another person (a sibling
   sharing a birthday and a phone), not a candidate.

The decision thresholds are data (``rules/matching/*.yaml``: id, version, source), and
the outcome is one of:

* ``matched``: one candidate at or above ``auto_match``, ahead of the next by ``margin``,
  compared on at least ``min_fields`` fields;
* ``ambiguous``: candidates at or above ``review_min`` but no clear winner. This never
  merges anything: the shell turns it into a front-desk work item
  (``processors/workflows/patient_match``) listing the candidates with their scores;
* ``new``: nobody close; the input is a new patient.

Everything here is deterministic: the same probe, index and rules give the same answer
(candidates are ordered by score, then patient id).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field
from rapidfuzz.distance import JaroWinkler, Levenshtein

from practiceflow.processors.identity.crosswalk import Crosswalk, identifier_key, resolve
from practiceflow.processors.rules import Rule

__all__ = [
    "FIELDS",
    "Candidate",
    "Demographics",
    "DemographicIndex",
    "MatchResult",
    "MatchRules",
    "MemoryIndex",
    "blocking_keys",
    "from_intake",
    "from_patient",
    "match",
    "nickname_table",
    "score",
    "soundex",
]

FIELDS = ("name", "birth_date", "sex", "address", "phone")


class MatchRules(Rule):
    """The thresholds and weights of the demographic match (one rule in rules/matching/)."""

    auto_match: float = Field(ge=0, le=1, description="a candidate scoring this or more may be matched")
    review_min: float = Field(ge=0, le=1, description="candidates scoring this or more go to a person")
    margin: float = Field(ge=0, le=1, description="how far the best must lead the next to be matched")
    min_fields: int = Field(ge=1, le=len(FIELDS), description="fields both sides must have to match automatically")
    max_candidates: int = Field(default=5, ge=1, description="candidates listed on an ambiguous item")
    weights: dict[str, float] = Field(description="field -> weight (name, birth_date, sex, address, phone)")
    require_birth_date: bool = Field(default=True, description="no automatic match without an agreeing DOB")
    name_min: float = Field(
        default=0.75,
        ge=0,
        le=1,
        description="a chart whose name scores below this is another person, whatever else agrees",
    )
    nicknames: dict[str, list[str]] = Field(default_factory=dict, description="canonical given name -> variants")


@dataclass(frozen=True, slots=True)
class Demographics:
    """What matching compares, normalized once (upper case ASCII letters, digits only)."""

    patient_id: str
    family: str = ""
    given: str = ""
    middle: str = ""
    birth_date: str = ""  # YYYYMMDD (or shorter when the source was partial)
    sex: str = ""  # M | F | O | U or ""
    street: str = ""
    postal: str = ""  # first 5 digits
    phone: str = ""  # last 10 digits
    identifiers: tuple[str, ...] = ()  # crosswalk keys (MRN, member id, ...)


@dataclass(frozen=True, slots=True)
class Candidate:
    patient_id: str
    score: float
    fields: Mapping[str, float] = field(default_factory=dict)  # per compared field, 0..1


@dataclass(frozen=True, slots=True)
class MatchResult:
    status: str  # matched | ambiguous | new
    patient_id: str | None = None
    method: str = ""  # identifier | demographics | ""
    candidates: tuple[Candidate, ...] = ()
    rule_id: str = ""
    rule_version: str = ""
    notes: tuple[str, ...] = ()  # why (no PHI): e.g. "member id shared by patients"


class DemographicIndex(Protocol):
    """The per-practice demographic index the matcher reads (a Faust table in the worker)."""

    def patients(self, block: str) -> Iterable[str]: ...

    def demographics(self, patient_id: str) -> Demographics | None: ...


# --------------------------------------------------------------------------- normalizing
_NON_ALPHA = re.compile(r"[^A-Z]")
_NON_DIGIT = re.compile(r"[^0-9]")
_STREET_WORDS = {
    "STREET": "ST",
    "AVENUE": "AVE",
    "ROAD": "RD",
    "DRIVE": "DR",
    "LANE": "LN",
    "BOULEVARD": "BLVD",
    "COURT": "CT",
    "PLACE": "PL",
    "APARTMENT": "APT",
    "NORTH": "N",
    "SOUTH": "S",
    "EAST": "E",
    "WEST": "W",
}


def _ascii_upper(text: str | None) -> str:
    if not text:
        return ""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()


def _name(text: str | None) -> str:
    return _NON_ALPHA.sub("", _ascii_upper(text))


def _digits(text: str | None) -> str:
    return _NON_DIGIT.sub("", text or "")


def _street(lines: Sequence[str] | None) -> str:
    words = " ".join(lines or []).replace(".", " ").replace(",", " ")
    return " ".join(_STREET_WORDS.get(w, w) for w in _ascii_upper(words).split())


def _sex(text: str | None) -> str:
    s = (text or "").strip().upper()[:1]
    return s if s in ("M", "F", "O") else ""


def _phone(phones: Iterable[str | None]) -> str:
    for p in phones:
        d = _digits(p)
        if len(d) >= 7:
            return d[-10:]
    return ""


def from_patient(record: Mapping[str, Any], patient_id: str | None = None) -> Demographics:
    """Demographics of a normalized ``Patient`` record (HL7 PID, FHIR Patient)."""
    given = list(record.get("given_names") or [])
    address = record.get("address") or {}
    idents = tuple(k for k in (identifier_key(i) for i in record.get("identifiers") or []) if k is not None)
    pid = patient_id or record.get("patient_id") or ""
    return Demographics(
        patient_id=pid,
        family=_name(record.get("family_name")),
        given=_name(given[0]) if given else "",
        middle=_name(given[1]) if len(given) > 1 else "",
        birth_date=_digits(record.get("birth_date"))[:8],
        sex=_sex(record.get("sex")),
        street=_street(address.get("line")),
        postal=_digits(address.get("postal_code"))[:5],
        phone=_phone(record.get("phones") or []),
        identifiers=(f"pid|{pid}", *idents) if pid else idents,
    )


def from_intake(record: Mapping[str, Any]) -> Demographics:
    """Demographics of an ``IntakeForm`` (portal): name, DOB, phone, member id, answers."""
    answers = record.get("answers") or {}
    member = record.get("insurance_member_id")
    idents: list[str] = []
    if member:
        k = identifier_key({"value": member, "type": "MB", "system": record.get("insurance_payer")})
        if k:
            idents.append(k)
    if record.get("patient_id"):
        idents.insert(0, f"pid|{record['patient_id']}")
    street = answers.get("address") or answers.get("address_line") or answers.get("street")
    return Demographics(
        patient_id=record.get("submission_id") or "",
        family=_name(record.get("family_name")),
        given=_name(record.get("given_name")),
        birth_date=_digits(record.get("birth_date"))[:8],
        sex=_sex(answers.get("sex") or answers.get("gender")),
        street=_street([street] if street else []),
        postal=_digits(answers.get("postal_code") or answers.get("zip"))[:5],
        phone=_phone([record.get("phone")]),
        identifiers=tuple(idents),
    )


# --------------------------------------------------------------------------- blocking
_SOUNDEX = str.maketrans("BFPVCGJKQSXZDTLMNR", "111122222222334556")


def soundex(name: str) -> str:
    """American Soundex (the US Census rule) of an upper-case ASCII name; "" for none."""
    name = _name(name)
    if not name:
        return ""
    first = name[0]
    out = []
    prev = first.translate(_SOUNDEX) if first in "BFPVCGJKQSXZDTLMNR" else ""
    for ch in name[1:]:
        if ch in "HW":
            continue  # H and W do not separate equal codes
        code = ch.translate(_SOUNDEX) if ch in "BFPVCGJKQSXZDTLMNR" else ""
        if code and code != prev:
            out.append(code)
        prev = code
    return (first + "".join(out) + "000")[:4]


def blocking_keys(d: Demographics) -> tuple[str, ...]:
    """The index keys a patient is filed under and a probe looks up (see module doc).

    Three independent keys, so one mistyped field still leaves two ways in."""
    keys: list[str] = []
    if len(d.birth_date) == 8:
        keys.append(f"dob:{d.birth_date}")
    if d.family and len(d.birth_date) >= 4:
        keys.append(f"sx:{soundex(d.family)}:{d.birth_date[:4]}")
    if len(d.phone) >= 7:
        keys.append(f"ph:{d.phone}")
    return tuple(keys)


class MemoryIndex:
    """An in-memory :class:`DemographicIndex` (tests, the benchmark, a rebuild)."""

    def __init__(self, people: Iterable[Demographics] = ()) -> None:
        self._blocks: dict[str, set[str]] = {}
        self._people: dict[str, Demographics] = {}
        for d in people:
            self.add(d)

    def add(self, d: Demographics) -> None:
        old = self._people.get(d.patient_id)
        if old is not None:
            for k in blocking_keys(old):
                self._blocks.get(k, set()).discard(d.patient_id)
        self._people[d.patient_id] = d
        for k in blocking_keys(d):
            self._blocks.setdefault(k, set()).add(d.patient_id)

    def patients(self, block: str) -> Iterable[str]:
        return self._blocks.get(block, ())

    def demographics(self, patient_id: str) -> Demographics | None:
        return self._people.get(patient_id)


# --------------------------------------------------------------------------- scoring
def nickname_table(rules: MatchRules) -> dict[str, str]:
    """variant -> canonical given name (BOB -> ROBERT), from the rule's nickname lists."""
    out: dict[str, str] = {}
    for canon, variants in rules.nicknames.items():
        c = _name(canon)
        out[c] = c
        for v in variants:
            out.setdefault(_name(v), c)
    return out


def _jw(a: str, b: str) -> float:
    return float(JaroWinkler.normalized_similarity(a, b))


def _given(a: str, b: str, nick: Mapping[str, str]) -> float:
    if not a or not b:
        return 0.0
    if a == b or nick.get(a, a) == nick.get(b, b):
        return 1.0
    if len(a) == 1 or len(b) == 1:  # an initial
        return 0.8 if a[0] == b[0] else 0.0
    return _jw(a, b)


def _name_score(p: Demographics, c: Demographics, nick: Mapping[str, str]) -> float | None:
    if not (p.family or p.given) or not (c.family or c.given):
        return None
    straight = 0.5 * _jw(p.family, c.family) + 0.5 * _given(p.given, c.given, nick)
    swapped = 0.5 * _jw(p.family, c.given) + 0.5 * _jw(p.given, c.family)
    # a hyphenated / double family name that kept one part
    if (
        p.family
        and c.family
        and (p.family in c.family or c.family in p.family)
        and min(len(p.family), len(c.family)) >= 3
    ):
        straight = max(straight, 0.5 * 0.95 + 0.5 * _given(p.given, c.given, nick))
    return max(straight, 0.9 * swapped)


def _dob_score(a: str, b: str) -> float | None:
    if len(a) != 8 or len(b) != 8:
        return None if not a or not b else (1.0 if a[:4] == b[:4] and (a.startswith(b) or b.startswith(a)) else 0.0)
    if a == b:
        return 1.0
    if a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]:
        return 0.8  # day and month swapped (US vs European writing)
    d = Levenshtein.distance(a, b)
    if d == 1:
        return 0.7  # one digit off
    if d == 2 and sorted(a) == sorted(b):
        return 0.6  # two digits transposed
    return 0.0


def _address_score(p: Demographics, c: Demographics) -> float | None:
    if not (p.street or p.postal) or not (c.street or c.postal):
        return None
    parts: list[float] = []
    if p.postal and c.postal:
        parts.append(1.0 if p.postal == c.postal else 0.0)
    if p.street and c.street:
        parts.append(float(Levenshtein.normalized_similarity(p.street, c.street)))
    return sum(parts) / len(parts) if parts else None


def score(probe: Demographics, cand: Demographics, rules: MatchRules, nick: Mapping[str, str]) -> Candidate:
    """One candidate's score: the weighted mean of its field scores over the fields both sides have."""
    fields: dict[str, float] = {}
    ns = _name_score(probe, cand, nick)
    if ns is not None:
        fields["name"] = ns
    ds = _dob_score(probe.birth_date, cand.birth_date)
    if ds is not None:
        fields["birth_date"] = ds
    if probe.sex and cand.sex:
        fields["sex"] = 1.0 if probe.sex == cand.sex else 0.0
    ad = _address_score(probe, cand)
    if ad is not None:
        fields["address"] = ad
    if probe.phone and cand.phone:
        fields["phone"] = 1.0 if probe.phone[-7:] == cand.phone[-7:] else 0.0
    weights = rules.weights
    total = sum(weights.get(f, 0.0) for f in fields)
    value = sum(weights.get(f, 0.0) * s for f, s in fields.items()) / total if total else 0.0
    return Candidate(cand.patient_id, round(value, 4), {f: round(s, 4) for f, s in fields.items()})


# --------------------------------------------------------------------------- matching
def _by_identifier(probe: Demographics, crosswalk: Crosswalk | None) -> tuple[str | None, list[str]]:
    """(canonical patient id or None, notes) from the probe's identifiers alone."""
    if crosswalk is None or not probe.identifiers:
        return None, []
    notes: list[str] = []
    found: set[str] = set()
    for key in probe.identifiers:
        r = resolve(crosswalk, [key])
        if r.status == "resolved" and r.patient_id is not None:
            found.add(r.patient_id)
        elif r.status == "conflict":
            notes.append(f"identifier {key.split('|', 1)[0]} is shared by patients; not used")
    if len(found) == 1:
        return found.pop(), notes
    if len(found) > 1:
        notes.append("identifiers name different patients; not used")
    return None, notes


def match(
    probe: Demographics,
    index: DemographicIndex,
    rules: MatchRules,
    crosswalk: Crosswalk | None = None,
    *,
    nicknames: Mapping[str, str] | None = None,
) -> MatchResult:
    """The chart ``probe`` belongs to: matched, ambiguous (candidates for a person) or new."""
    rid, rver = rules.id, rules.version
    pid, notes = _by_identifier(probe, crosswalk)
    if pid is not None:
        return MatchResult("matched", pid, "identifier", notes=tuple(notes), rule_id=rid, rule_version=rver)
    nick = nicknames if nicknames is not None else nickname_table(rules)
    seen: set[str] = set()
    scored: list[Candidate] = []
    for block in blocking_keys(probe):
        for cid in index.patients(block):
            if cid in seen:
                continue
            seen.add(cid)
            cand = index.demographics(cid)
            if cand is not None:
                c = score(probe, cand, rules, nick)
                if c.fields.get("name", 1.0) >= rules.name_min:
                    scored.append(c)
    scored.sort(key=lambda c: (-c.score, c.patient_id))
    listed = tuple(c for c in scored if c.score >= rules.review_min)[: rules.max_candidates]
    if not listed:
        return MatchResult("new", None, "demographics", notes=tuple(notes), rule_id=rid, rule_version=rver)
    best = listed[0]
    second = scored[1].score if len(scored) > 1 else 0.0
    clear = (
        best.score >= rules.auto_match
        and best.score - second >= rules.margin
        and len(best.fields) >= rules.min_fields
        and (not rules.require_birth_date or best.fields.get("birth_date") == 1.0)
    )
    if clear:
        return MatchResult(
            "matched", best.patient_id, "demographics", listed, notes=tuple(notes), rule_id=rid, rule_version=rver
        )
    return MatchResult("ambiguous", None, "demographics", listed, notes=tuple(notes), rule_id=rid, rule_version=rver)
