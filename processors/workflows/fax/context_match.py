"""Match a faxed document to a chart through the patient context (pure mapping + a Matcher).

The fax step (``route.classify_fax``) asks a :class:`~.match.Matcher` whose chart a
document is about, from what the extractor read off the page: a name, a date of birth,
an MRN, a member id. The patient context (``processors/context/matching.py``) already
answers that question for intake forms: identifiers through the practice's crosswalk,
else a scored demographic match over its index, with thresholds that are data
(``rules/matching/``). :class:`ContextMatcher` puts the fax's fields into that shape
(:func:`probe`) and maps the answer back (:func:`to_patient_match`); the function that
reads the worker's tables is given to it (``streams/workflows/fax_match.py``), so this
module stays pure and testable without a broker.

A fax uses its own rule, ``patient_match.fax`` (``rules/matching/default.yaml``): a page
usually carries only a name and a date of birth (the two identifiers of The Joint
Commission's NPSG.01.01.01), so it is matched automatically on two agreeing fields where an
intake form, which also has a phone and an address, needs three.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from practiceflow.processors.context.matching import Demographics, MatchResult, from_intake
from practiceflow.processors.workflows.fax.match import PatientMatch, normalise_date

__all__ = ["FAX_RULE", "ContextMatcher", "probe", "split_name", "to_patient_match"]

FAX_RULE = "patient_match.fax"
#: candidates named in an ambiguous answer's reason (the work item lists them for a person)
TOP = 3
_TITLES = {"MR", "MRS", "MS", "MISS", "DR", "JR", "SR", "II", "III", "IV", "MD", "DO"}


def split_name(name: str | None) -> tuple[str, str]:
    """(given, family) of a name as a fax prints it: ``Last, First M`` or ``First M. Last``.

    Titles and suffixes (Mr, Jr, III) are dropped; a middle name or initial is not
    compared (matching scores given and family names, with swapped-name variants)."""
    if not name:
        return "", ""
    if "," in name:
        family, _, rest = name.partition(",")
        given = [w for w in re.split(r"[\s.]+", rest) if w and w.upper() not in _TITLES]
        return (given[0] if given else ""), family.strip()
    words = [w for w in re.split(r"[\s.]+", name) if w and w.upper().strip(",") not in _TITLES]
    if len(words) < 2:
        return "", words[0] if words else ""
    return words[0], words[-1]


def probe(
    name: str | None,
    dob: str | None,
    mrn: str | None,
    member_id: str | None,
    *,
    sex: str | None = None,
    phone: str | None = None,
    street: str | None = None,
    postal_code: str | None = None,
) -> Demographics:
    """The fax's patient as the context's matcher compares people (``matching.from_intake``'s
    normalization: an MRN is the practice's canonical id, ``pid|<mrn>``; a member id ``mb|<id>``)."""
    given, family = split_name(name)
    answers = {"sex": sex, "address": street, "postal_code": postal_code}
    return from_intake(
        {
            "submission_id": "fax",
            "patient_id": (mrn or "").strip() or None,
            "family_name": family,
            "given_name": given,
            "birth_date": normalise_date(dob) or "",
            "phone": phone,
            "insurance_member_id": (member_id or "").strip() or None,
            "answers": {k: v for k, v in answers.items() if v},
        }
    )


def to_patient_match(result: MatchResult, *, mrn: str | None = None) -> PatientMatch:
    """The context's answer as the fax step routes on it.

    ``matched`` -> matched (its chart); ``ambiguous`` -> ambiguous, the top three candidates
    with their scores in the reason (ids and scores only, no demographics); ``new`` -> none,
    except that an MRN printed on the page that no chart holds stays ``unverified`` (a
    practice whose charts the worker has not seen yet keeps today's behaviour: the id is
    shown, and a person checks it)."""
    rule = f"{result.rule_id} v{result.rule_version}" if result.rule_id else "matching"
    if result.status == "matched" and result.patient_id:
        how = "identifier on the page" if result.method == "identifier" else "name and date of birth"
        score = f", score {result.candidates[0].score:.2f}" if result.candidates else ""
        return PatientMatch("matched", result.patient_id, (result.patient_id,), f"{how} ({rule}{score})")
    if result.status == "ambiguous" and result.candidates:
        top = result.candidates[:TOP]
        listed = ", ".join(f"{c.patient_id} {c.score:.2f}" for c in top)
        return PatientMatch(
            "ambiguous", None, tuple(c.patient_id for c in top), f"several charts could fit ({rule}): {listed}"
        )
    notes = "; ".join(result.notes)
    if mrn and mrn.strip():
        why = f"MRN on the page, no chart in the patient context holds it ({rule})"
        return PatientMatch("unverified", mrn.strip(), (mrn.strip(),), f"{why}; {notes}" if notes else why)
    why = f"no chart fits the name, date of birth and identifiers on the fax ({rule})"
    return PatientMatch("none", reason=f"{why}; {notes}" if notes else why)


class ContextMatcher:
    """A :class:`~.match.Matcher` over the patient context.

    ``match_fn(practice_id, probe)`` reads the worker's tables (``PatientContexts.match`` with
    the fax rule); ``known(practice_id, patient_id)`` says whether the context holds that chart.
    It is needed because an MRN is the practice's canonical id: the crosswalk resolves any
    MRN to itself, so an MRN no chart holds (a typo, another practice's number) would
    otherwise count as matched. Such a page is matched on its name and date of birth instead;
    when those fit another chart, the two disagree and a person decides (ambiguous)."""

    def __init__(
        self,
        match_fn: Callable[[str, Demographics], MatchResult],
        known: Callable[[str, str], bool] = lambda practice_id, patient_id: True,
    ) -> None:
        self.match_fn = match_fn
        self.known = known

    def match(
        self, practice_id: str, name: str | None, dob: str | None, mrn: str | None, member_id: str | None
    ) -> PatientMatch:
        p = probe(name, dob, mrn, member_id)
        if not (p.identifiers or (p.family and p.birth_date)):
            return PatientMatch("none", reason="no name with a date of birth and no identifier on the fax")
        result = self.match_fn(practice_id, p)
        if result.status == "matched" and result.patient_id and not self.known(practice_id, result.patient_id):
            without = dataclasses.replace(p, identifiers=tuple(i for i in p.identifiers if not i.startswith("pid|")))
            result = (
                self.match_fn(practice_id, without) if without.identifiers or without.family else MatchResult("new")
            )
            if result.status == "matched" and result.patient_id and self.known(practice_id, result.patient_id):
                pid = result.patient_id
                return PatientMatch(
                    "ambiguous",
                    None,
                    (pid,),
                    f"the MRN on the page is in no chart; the name and date of birth fit {pid}",
                )
            if result.status == "matched":
                result = MatchResult("new", rule_id=result.rule_id, rule_version=result.rule_version)
        return to_patient_match(result, mrn=mrn)
