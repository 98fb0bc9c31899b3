"""Whose chart a faxed document belongs to: the matcher interface and two embedded matchers.

The patient context (``processors/context``, the ``patient-context`` workflow) owns
matching a name, birth date and identifiers to a chart; the fax step only needs an
answer it can route on, so it depends on this small protocol. Until the worker has the
context's tables, it uses :class:`IdentifierOnPage` (an MRN printed on the page is the
practice's canonical id — ``processors/identity`` keys patients by MRN — but nobody
checked it against a chart, so the status says ``unverified``). :class:`Directory` matches
against a given list of patients (tests, the evaluation, a practice's export) by MRN,
member id, or name + birth date, and says ``ambiguous`` when more than one chart fits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["PatientMatch", "Matcher", "IdentifierOnPage", "Directory", "DirectoryEntry", "normalise_date"]


@dataclass(frozen=True, slots=True)
class PatientMatch:
    """``status``: matched | unverified | ambiguous | none."""

    status: str
    patient_id: str | None = None
    candidates: tuple[str, ...] = ()
    reason: str = ""


class Matcher(Protocol):
    def match(
        self, practice_id: str, name: str | None, dob: str | None, mrn: str | None, member_id: str | None
    ) -> PatientMatch: ...


class IdentifierOnPage:
    """The MRN on the page, unverified; nothing else is guessed."""

    def match(
        self, practice_id: str, name: str | None, dob: str | None, mrn: str | None, member_id: str | None
    ) -> PatientMatch:
        if mrn:
            return PatientMatch("unverified", mrn, (mrn,), "MRN on the page, not checked against a chart")
        return PatientMatch("none", reason="no MRN on the page and no patient directory to match the name against")


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    patient_id: str
    name: str
    dob: str
    identifiers: tuple[str, ...] = ()


_MONTHS = {
    m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
}


def normalise_date(text: str | None) -> str | None:
    """``MM/DD/YYYY``, ``YYYY-MM-DD``, ``Month D, YYYY`` or ``D Month YYYY`` -> ``YYYY-MM-DD``."""
    if not text:
        return None
    t = text.strip().lower().replace(",", " ")
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", t)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif m := re.fullmatch(r"(\d{1,2})[/\-.](\d{1,2})[/\-.](\d{2,4})", t):
        mo, d, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        y += 1900 if 30 <= y < 100 else 2000 if y < 30 else 0
    elif m := re.fullmatch(r"([a-z]{3})[a-z]*\.?\s+(\d{1,2})\s+(\d{4})", t):
        mo, d, y = _MONTHS.get(m.group(1), 0), int(m.group(2)), int(m.group(3))
    elif m := re.fullmatch(r"(\d{1,2})\s+([a-z]{3})[a-z]*\s+(\d{4})", t):
        d, mo, y = int(m.group(1)), _MONTHS.get(m.group(2), 0), int(m.group(3))
    else:
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}"


def _name_key(name: str) -> tuple[str, ...]:
    parts = re.sub(r"[^a-z ]", " ", name.lower().replace(",", " ")).split()
    return tuple(sorted(p for p in parts if len(p) > 1))


class Directory:
    """Exact matching against known patients of one or more practices."""

    def __init__(self, patients: dict[str, Iterable[DirectoryEntry]]) -> None:
        self._by_practice = {p: list(es) for p, es in patients.items()}

    def match(
        self, practice_id: str, name: str | None, dob: str | None, mrn: str | None, member_id: str | None
    ) -> PatientMatch:
        entries = self._by_practice.get(practice_id, [])
        for ident in (mrn, member_id):
            if ident:
                hits = [e for e in entries if ident == e.patient_id or ident in e.identifiers]
                if len(hits) == 1:
                    return PatientMatch("matched", hits[0].patient_id, (hits[0].patient_id,), "identifier")
        d = normalise_date(dob)
        if name and d:
            key = _name_key(name)
            hits = [e for e in entries if normalise_date(e.dob) == d and _name_key(e.name) == key]
            if len(hits) == 1:
                return PatientMatch("matched", hits[0].patient_id, (hits[0].patient_id,), "name and date of birth")
            if len(hits) > 1:
                return PatientMatch("ambiguous", None, tuple(h.patient_id for h in hits[:3]), "several charts fit")
            same_dob = [e for e in entries if normalise_date(e.dob) == d]
            if same_dob:
                return PatientMatch(
                    "ambiguous", None, tuple(e.patient_id for e in same_dob[:3]), "date of birth fits, name does not"
                )
        return PatientMatch("none", reason="no chart fits the name, date of birth and identifiers on the fax")
