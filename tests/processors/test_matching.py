"""Patient matching (processors/context/matching.py): table-driven cases and properties.

Synthetic people only. The index holds a few charts chosen to be hard: twins sharing a
birthday, address and phone; a hyphenated family name; a patient known by a nickname.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from practiceflow.processors.context.matching import (
    Demographics,
    MemoryIndex,
    blocking_keys,
    from_intake,
    from_patient,
    match,
    nickname_table,
    score,
    soundex,
)
from practiceflow.processors.identity.crosswalk import Crosswalk, apply as apply_link
from practiceflow.processors.workflows.patient_match import load_match_rules

RULES = load_match_rules()
NICK = nickname_table(RULES)


def person(pid, family, given, dob, sex="", street="", postal="", phone="", middle=""):
    return Demographics(pid, family, given, middle, dob, sex, street, postal, phone, (f"pid|{pid}",))


CHARTS = [
    person("MRN1", "SMITH", "ROBERT", "19800115", "M", "12 MAIN ST", "62701", "2175550100"),
    person("MRN2", "SMITH", "ROBERTA", "19800115", "F", "12 MAIN ST", "62701", "2175550100"),
    person("MRN3", "JOHNSON", "MARY", "19751103", "F", "4 OAK AVE", "62702", "2175550200"),
    person("MRN4", "NGUYEN", "THANH", "19900505", "M", "9 ELM ST", "62703", "2175550300"),
    person("MRN5", "GARCIALOPEZ", "MARIA", "19850220", "F", "77 PINE RD", "62704", "2175550400"),
    person("MRN6", "OBRIEN", "KATHERINE", "19701231", "F", "3 BAY CT", "62705", "2175550500"),
    person("MRN7", "OKAFOR", "AVERY", "19660707", "M", "5 LAKE DR", "62706", "2175550600"),
    person("MRN8", "OKAFOR", "AVERY", "19660707", "M", "5 LAKE DR", "62706", "2175550600"),  # a duplicate chart
]
INDEX = MemoryIndex(CHARTS)


def probe(family, given, dob, sex="", street="", postal="", phone=""):
    return Demographics("probe", family, given, "", dob, sex, street, postal, phone, ())


# (case, probe, expected status, expected patient id or the expected candidate ids in order)
CASES = [
    ("exact copy", probe("JOHNSON", "MARY", "19751103", "F", "4 OAK AVE", "62702", "2175550200"), "matched", "MRN3"),
    ("nickname", probe("SMITH", "BOB", "19800115", "M", phone="2175550100"), "matched", "MRN1"),
    ("family typo", probe("JONSON", "MARY", "19751103", phone="2175550200"), "matched", "MRN3"),
    ("hyphenated name kept one part", probe("GARCIA", "MARIA", "19850220", "F", phone="2175550400"), "matched", "MRN5"),
    ("swapped first and last", probe("THANH", "NGUYEN", "19900505", "M", phone="2175550300"), "matched", "MRN4"),
    ("apostrophe and nickname", probe("OBRIEN", "KATIE", "19701231", "F", "3 BAY COURT", "62705"), "matched", "MRN6"),
    (
        "day and month swapped: never automatic",
        probe("JOHNSON", "MARY", "19750311", phone="2175550200"),
        "ambiguous",
        ["MRN3"],
    ),
    (
        "one DOB digit off: never automatic",
        probe("JOHNSON", "MARY", "19751108", phone="2175550200"),
        "ambiguous",
        ["MRN3"],
    ),
    ("twins, initial only", probe("SMITH", "R", "19800115", phone="2175550100"), "ambiguous", ["MRN1", "MRN2"]),
    ("duplicate charts", probe("OKAFOR", "AVERY", "19660707", "M", phone="2175550600"), "ambiguous", ["MRN7", "MRN8"]),
    ("too few fields", probe("NGUYEN", "THANH", "19900505"), "ambiguous", ["MRN4"]),
    ("nobody close", probe("ZULU", "ZED", "20010101", "M", phone="3125559999"), "new", None),
    ("same birthday, other person", probe("KOWALSKI", "EMERSON", "19800115", "F"), "new", None),
]


@pytest.mark.parametrize(("case", "p", "status", "expect"), CASES, ids=[c[0] for c in CASES])
def test_match_table(case, p, status, expect):
    r = match(p, INDEX, RULES)
    assert r.status == status, (case, r)
    assert r.rule_id == RULES.id and r.rule_version == RULES.version
    if status == "matched":
        assert r.patient_id == expect
    elif status == "ambiguous":
        assert r.patient_id is None  # an ambiguous match never names (or merges into) a chart
        assert [c.patient_id for c in r.candidates] == expect
    else:
        assert r.patient_id is None and not r.candidates


def _cw(*links):
    cw = Crosswalk("demo")
    for link in links:
        apply_link(cw, link, in_place=True)
    return cw


def _link(pid, member):
    return {
        "practice_id": "demo",
        "action": "link",
        "patient_id": pid,
        "identifiers": [{"value": member, "type": "MB", "system": "60054"}],
    }


def test_identifier_first_even_with_other_demographics():
    cw = _cw(_link("MRN3", "W111"))
    p = Demographics("probe", "SOMEONE", "ELSE", "", "20000101", identifiers=("mb|W111",))
    r = match(p, INDEX, RULES, cw)
    assert (r.status, r.patient_id, r.method) == ("matched", "MRN3", "identifier")


def test_shared_member_id_proves_nothing():
    # a family plan: one member id on two patients is ambiguous in the crosswalk
    cw = _cw(_link("MRN1", "FAM9"), _link("MRN2", "FAM9"))
    p = Demographics("probe", "SMITH", "R", "", "19800115", phone="2175550100", identifiers=("mb|FAM9",))
    r = match(p, INDEX, RULES, cw)
    assert r.status == "ambiguous" and [c.patient_id for c in r.candidates] == ["MRN1", "MRN2"]
    assert any("shared" in n for n in r.notes)


def test_from_patient_and_intake_normalize_alike():
    rec = {
        "patient_id": "MRN9",
        "family_name": "O'Brien",
        "given_names": ["Kathérine", "Ann"],
        "birth_date": "1970-12-31",
        "sex": "female",
        "address": {"line": ["3 Bay Court"], "postal_code": "62705-1234"},
        "phones": ["(217) 555-0500"],
        "identifiers": [{"value": "MRN9", "type": "MR"}],
    }
    d = from_patient(rec)
    assert (d.family, d.given, d.middle, d.birth_date, d.sex, d.street, d.postal, d.phone) == (
        "OBRIEN",
        "KATHERINE",
        "ANN",
        "19701231",
        "F",
        "3 BAY CT",
        "62705",
        "2175550500",
    )
    form = {
        "submission_id": "S1",
        "family_name": "OBrien",
        "given_name": "Katie",
        "birth_date": "1970-12-31",
        "phone": "217.555.0500",
        "insurance_member_id": "W9",
        "insurance_payer": "60054",
        "answers": {},
    }
    i = from_intake(form)
    assert i.identifiers == ("mb|W9",) and i.phone == "2175550500"
    assert score(i, d, RULES, NICK).score == 1.0


def test_soundex_reference_values():
    # the US Census examples
    assert [soundex(n) for n in ("Robert", "Rupert", "Rubin", "Ashcraft", "Tymczak", "Pfister", "")] == [
        "R163",
        "R163",
        "R150",
        "A261",
        "T522",
        "P236",
        "",
    ]


# --------------------------------------------------------------------------- properties
_letters = st.text(alphabet="ABCDEFGHIJKLMNOPRSTUVWYZ", min_size=2, max_size=10)
_dob = st.dates().map(lambda d: d.strftime("%Y%m%d"))
_phone = st.from_regex(r"[2-9][0-9]{9}", fullmatch=True)
_person = st.builds(
    lambda f, g, d, s, ph, n: person(f"P{n}", f, g, d, s, phone=ph),
    _letters,
    _letters,
    _dob,
    st.sampled_from(["M", "F", ""]),
    _phone | st.just(""),
    st.integers(0, 10_000),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_person, min_size=1, max_size=12, unique_by=lambda d: d.patient_id), st.data())
def test_decisions_are_consistent_and_never_guess(people, data):
    index = MemoryIndex(people)
    target = data.draw(st.sampled_from(people))
    p = Demographics("probe", target.family, target.given, "", target.birth_date, target.sex, "", "", target.phone)
    r = match(p, index, RULES)
    # deterministic and independent of the order the index was built in
    assert r == match(p, MemoryIndex(reversed(people)), RULES)
    scores = [c.score for c in r.candidates]
    assert scores == sorted(scores, reverse=True) and all(s >= RULES.review_min for s in scores)
    if r.status == "matched":
        best = r.candidates[0]
        assert r.patient_id == best.patient_id and best.score >= RULES.auto_match
        assert best.fields.get("birth_date") == 1.0 and len(best.fields) >= RULES.min_fields
        assert all(best.score - c.score >= RULES.margin for c in r.candidates[1:])
    else:
        assert r.patient_id is None
    # the chart the probe was copied from is always found (blocking never hides it)
    assert r.status != "new"
    assert target.patient_id in {c.patient_id for c in r.candidates} or r.status == "ambiguous"


@settings(max_examples=100, deadline=None)
@given(_person)
def test_a_duplicate_chart_is_never_matched_automatically(d):
    twin = Demographics(
        "TWIN",
        *[getattr(d, f) for f in ("family", "given", "middle", "birth_date", "sex", "street", "postal", "phone")],
    )
    index = MemoryIndex([d, twin])
    p = Demographics("probe", d.family, d.given, "", d.birth_date, d.sex, "", "", d.phone)
    r = match(p, index, RULES)
    assert r.status == "ambiguous" and {c.patient_id for c in r.candidates} == {d.patient_id, "TWIN"}


@settings(max_examples=150, deadline=None)
@given(_person, _person)
def test_score_is_symmetric_and_bounded(a, b):
    ab = score(a, b, RULES, NICK).score
    assert 0.0 <= ab <= 1.0
    assert ab == pytest.approx(score(b, a, RULES, NICK).score, abs=1e-3)


@settings(max_examples=100, deadline=None)
@given(_person)
def test_every_chart_is_reachable_by_each_block(d):
    index = MemoryIndex([d])
    for block in blocking_keys(d):
        assert d.patient_id in index.patients(block)
