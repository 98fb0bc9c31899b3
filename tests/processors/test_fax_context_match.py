"""The fax step's patient match through the patient context (pure): the probe, the mapping
of the context's answer, and the fax rule on name + date of birth (issue 10)."""

from __future__ import annotations

from practiceflow.processors.context.matching import (
    Candidate,
    MatchResult,
    MemoryIndex,
    from_patient,
    match,
)
from practiceflow.processors.fax import synth  # noqa: F401  (the fax package imports cleanly)
from practiceflow.processors.identity.crosswalk import Crosswalk, apply as apply_link
from practiceflow.processors.workflows.fax.context_match import (
    FAX_RULE,
    ContextMatcher,
    probe,
    split_name,
    to_patient_match,
)
from practiceflow.processors.workflows.fax.match import IdentifierOnPage
from practiceflow.processors.workflows.patient_match import load_match_rules

FAX = load_match_rules(None, FAX_RULE)
INTAKE = load_match_rules()


def _patient(mrn, family, given, dob, sex="F", phone="5551234567", member=None):
    rec = {
        "patient_id": mrn,
        "family_name": family,
        "given_names": [given],
        "birth_date": dob,
        "sex": sex,
        "phones": [phone],
        "address": {"line": ["1 Main St"], "postal_code": "02139"},
        "identifiers": [{"value": member, "type": "MB", "system": "60054"}] if member else [],
    }
    return from_patient(rec, mrn)


CHARTS = [
    _patient("MRN-1", "Lopez", "Maria", "1961-04-05", member="W123"),
    _patient("MRN-2", "Grant", "Peter", "1955-02-03", sex="M"),
    _patient("MRN-3", "Fox", "Lena", "1970-08-09"),
    # twins: same family name, birth date, phone
    _patient("MRN-4", "Reyes", "Ana", "1990-01-02"),
    _patient("MRN-5", "Reyes", "Anna", "1990-01-02"),
]


def _crosswalk() -> Crosswalk:
    cw = Crosswalk("demo")
    for d in CHARTS:
        idents = [{"value": i.split("|", 1)[1], "type": "MB"} for i in d.identifiers if i.startswith("mb|")]
        apply_link(
            cw,
            {"practice_id": "demo", "action": "link", "patient_id": d.patient_id, "identifiers": idents},
            in_place=True,
        )
    return cw


def _matcher(rules=FAX) -> ContextMatcher:
    index, cw = MemoryIndex(CHARTS), _crosswalk()
    charts = {d.patient_id for d in CHARTS}
    return ContextMatcher(lambda practice, p: match(p, index, rules, cw), lambda practice, pid: pid in charts)


def test_split_name_reads_both_orders_and_drops_titles():
    assert split_name("Maria Lopez") == ("Maria", "Lopez")
    assert split_name("LOPEZ, MARIA A") == ("MARIA", "LOPEZ")
    assert split_name("Mr. Peter J. Grant Jr.") == ("Peter", "Grant")
    assert split_name("Lopez") == ("", "Lopez")
    assert split_name(None) == ("", "")


def test_probe_normalizes_like_the_context():
    p = probe("Lopez, Maria", "04/05/1961", " MRN-1 ", "W123")
    assert (p.family, p.given, p.birth_date) == ("LOPEZ", "MARIA", "19610405")
    assert p.identifiers == ("pid|MRN-1", "mb|W123")


def test_name_and_birth_date_match_a_chart_the_old_matcher_never_did():
    m = _matcher().match("demo", "Maria Lopez", "04/05/1961", None, None)
    assert (m.status, m.patient_id, m.candidates) == ("matched", "MRN-1", ("MRN-1",))
    assert "patient_match.fax v1" in m.reason and "name and date of birth" in m.reason
    assert m.reason.endswith("score 1.00)")
    # the old matcher: no MRN on the page -> no match
    assert IdentifierOnPage().match("demo", "Maria Lopez", "04/05/1961", None, None).status == "none"
    # the page's order and spelling of the date do not matter
    assert _matcher().match("demo", "LOPEZ, MARIA", "Apr 5, 1961", None, None).patient_id == "MRN-1"


def test_the_intake_rule_would_not_match_on_two_fields():
    """Why the fax has its own rule: the intake rule needs three compared fields."""
    assert _matcher(INTAKE).match("demo", "Maria Lopez", "04/05/1961", None, None).status == "ambiguous"


def test_identifiers_go_through_the_crosswalk():
    m = _matcher().match("demo", None, None, "MRN-2", None)
    assert (m.status, m.patient_id) == ("matched", "MRN-2") and "identifier on the page" in m.reason
    assert _matcher().match("demo", None, None, None, "W123").patient_id == "MRN-1"  # member id


def test_an_mrn_no_chart_holds_stays_unverified_and_nothing_is_none():
    m = _matcher().match("demo", None, None, "MRN-99", None)
    assert (m.status, m.patient_id) == ("unverified", "MRN-99") and "no chart" in m.reason
    assert _matcher().match("demo", "Nadia Unknown", "01/01/1950", None, None).status == "none"
    assert _matcher().match("demo", "Maria Lopez", None, None, None).status == "none"  # no DOB: never guessed
    assert _matcher().match("demo", None, None, None, None).status == "none"
    # an unknown MRN beside a name and DOB that fit another chart: the two disagree, a person decides
    m = _matcher().match("demo", "Maria Lopez", "04/05/1961", "MRN-99", None)
    assert (m.status, m.patient_id, m.candidates) == ("ambiguous", None, ("MRN-1",))
    # an unknown MRN beside a name that fits nobody: the MRN, unverified
    assert _matcher().match("demo", "Nadia Unknown", "01/01/1950", "MRN-99", None).status == "unverified"


def test_wrong_birth_date_is_not_matched():
    m = _matcher().match("demo", "Maria Lopez", "04/06/1961", None, None)
    assert m.status != "matched" and m.patient_id is None


def test_twins_are_ambiguous_with_candidates_and_scores():
    m = _matcher().match("demo", "Ana Reyes", "01/02/1990", None, None)
    assert m.status == "ambiguous" and m.patient_id is None
    assert set(m.candidates) == {"MRN-4", "MRN-5"} and m.candidates[0] == "MRN-4"
    assert "MRN-4 1.00" in m.reason and "MRN-5 0." in m.reason


def test_mapping_lists_the_top_three_candidates():
    cands = tuple(Candidate(f"P{i}", 0.9 - i / 100, {"name": 1.0}) for i in range(5))
    m = to_patient_match(MatchResult("ambiguous", None, "demographics", cands, "r", "2"))
    assert m.candidates == ("P0", "P1", "P2")
    assert m.reason == "several charts could fit (r v2): P0 0.90, P1 0.89, P2 0.88"
    assert to_patient_match(MatchResult("new", rule_id="r", rule_version="2")).status == "none"
    none = to_patient_match(MatchResult("new", notes=("identifier mb is shared by patients; not used",)))
    assert none.status == "none" and "shared by patients" in none.reason
    ok = to_patient_match(MatchResult("matched", "P7", "identifier", rule_id="r", rule_version="2"))
    assert (ok.status, ok.patient_id, ok.candidates) == ("matched", "P7", ("P7",))


def test_deterministic():
    a = [_matcher().match("demo", "Ana Reyes", "01/02/1990", None, None) for _ in range(3)]
    assert a[0] == a[1] == a[2]
