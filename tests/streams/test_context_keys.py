"""No DOB, phone or member id in the context agent's table keys (review s17, MUST-FIX 5).

A Faust table key is the Kafka key of its changelog topic, so it must hold no PHI. These
tests drive the agent's own fold (``PatientContexts._fold_one``, no broker) and scan
every key it writes; and they check that the digested index answers matching exactly as
the in-memory index with clear keys does.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings, strategies as st

from practiceflow.processors.context import keys as table_keys
from practiceflow.processors.context.matching import Demographics, MemoryIndex, blocking_keys, from_patient, match
from practiceflow.processors.identity.crosswalk import fold as fold_links
from practiceflow.processors.rules import PracticeRules
from practiceflow.processors.workflows.patient_match import load_match_rules
from practiceflow.streams.workflows.context import (
    CONTEXT_RECORD_TYPES,
    PatientContexts,
    _Batch,
    _demo_from_json,
    _demo_to_json,
    _TableIndex,
)

PRACTICE = "p-keys"
DOB = "1961-07-23"
DOB_DIGITS = "19610723"
PHONE = "6175550142"
MEMBER = "W88812345"
RULES = load_match_rules()


def _agent() -> Any:
    agent = object.__new__(PatientContexts)
    agent.p = SimpleNamespace(cfg=SimpleNamespace(identity_policies={}))
    agent._record_type = {rt: rt for rt in CONTEXT_RECORD_TYPES}
    agent._crosswalks = {}
    agent.table = {}
    agent.index = {}
    agent.match_rules = PracticeRules(lambda layers: RULES, None, fixed=RULES)  # every practice: RULES
    agent.followers = []  # no workflow follows the context here
    agent.group = "practiceflow-worker"  # records its normalizers folded are skipped (none here)
    return agent


def _feed(agent: Any, records: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Fold records one batch each, apply the writes as process_batch does; every key written."""
    written: list[str] = []
    for rt, record in records:
        batch = _Batch()
        ev = SimpleNamespace(value=record, message=SimpleNamespace(topic=rt, partition=0))
        agent._fold_one(ev, batch)
        for table, key, (_ev, value) in batch.writes(agent):
            written.append(key)
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    return written


def _link(pid: str | None, idents: list[dict[str, str]], other: str | None = None) -> dict[str, Any]:
    return {
        "practice_id": PRACTICE,
        "action": "link",
        "patient_id": pid,
        "identifiers": idents,
        "other_patient_id": other,
        "other_identifiers": [],
    }


def _patient(pid: str, feed: str, family: str, given_name: str) -> dict[str, Any]:
    return {
        "practice_id": PRACTICE,
        "patient_id": pid,
        "source": {"feed": feed},
        "family_name": family,
        "given_names": [given_name],
        "birth_date": DOB,
        "sex": "F",
        "phones": [PHONE],
        "address": {"line": ["12 Elm St"], "postal_code": "02139"},
        "identifiers": [{"type": "MB", "system": "urn:payer", "value": MEMBER}],
    }


MB = {"type": "MB", "system": "urn:payer", "value": MEMBER}
FHIR = {"type": "FHIR", "system": "", "value": "f-77"}


def test_no_dob_phone_or_member_id_in_any_key_the_context_agent_writes() -> None:
    agent = _agent()
    written = _feed(
        agent,
        [
            # a FHIR patient and its member id seen before any MRN: provisional canonical id
            ("IdentityLink", _link(None, [MB, FHIR])),
            ("Patient", _patient("f-77", "fhir", "Okafor", "Ada")),
            # the MRN arrives: everything moves to it
            ("IdentityLink", _link("MRN100", [MB, FHIR])),
            ("Patient", _patient("MRN100", "hl7v2", "Okafor", "Ada")),
            # a family member on the same plan: the member id becomes ambiguous
            ("IdentityLink", _link("MRN200", [MB])),
            ("Patient", _patient("MRN200", "hl7v2", "Okafor", "Ben")),
        ],
    )
    kinds = {k[:2] for k in written}
    assert {"x:", "a:", "b:", "d:"} <= kinds, kinds  # the scan covers every kind of key
    needles = (DOB, DOB_DIGITS, PHONE, PHONE[-7:], MEMBER)
    leaks = [k for k in written + list(agent.index) + list(agent.table) for n in needles if n in k]
    assert leaks == []
    # the crosswalk rebuilt from the table (a restarted worker) is the one the agent folded
    held = agent._crosswalks[PRACTICE]
    agent._crosswalks = {}
    rebuilt = agent.crosswalk(PRACTICE)
    assert rebuilt.ids == held.ids and rebuilt.ambiguous == held.ambiguous
    assert f"mb|{MEMBER}" in rebuilt.ambiguous
    # and the demographic index still finds the charts by DOB / phone
    probe = Demographics(patient_id="intake-1", family="OKAFOR", given="ADA", birth_date=DOB_DIGITS, phone=PHONE)
    r = agent.match(PRACTICE, probe)
    held_demos = [_demo_from_json(v) for k, v in agent.index.items() if k.startswith("d:")]
    assert r == match(probe, MemoryIndex(held_demos), RULES, rebuilt)
    assert "MRN100" in {c.patient_id for c in r.candidates}


def test_crosswalk_written_before_digests_still_loads() -> None:
    agent = _agent()
    agent.index = {f"x:{PRACTICE}|mb|{MEMBER}": "pid|MRN100", f"x:{PRACTICE}|pid|MRN100": "pid|MRN100"}
    agent.index[f"a:{PRACTICE}|mb|W1"] = 1
    cw = agent.crosswalk(PRACTICE)
    assert cw.ids == {f"mb|{MEMBER}": "pid|MRN100", "pid|MRN100": "pid|MRN100"}
    assert cw.ambiguous == {"mb|W1"}


def test_demographic_blocks_written_before_digests_are_still_found() -> None:
    ada = Demographics(patient_id="MRN100", family="OKAFOR", given="ADA", birth_date=DOB_DIGITS, phone=PHONE)
    table: dict[str, Any] = {f"d:{PRACTICE}/MRN100": _demo_to_json(ada)}
    for block in blocking_keys(ada):
        table[f"b:{PRACTICE}|{block}"] = ["MRN100"]
    probe = dataclasses.replace(ada, patient_id="intake")
    r = match(probe, _TableIndex(table, PRACTICE), RULES, fold_links(PRACTICE, []))
    assert r == match(probe, MemoryIndex([ada]), RULES, fold_links(PRACTICE, []))
    assert r.status == "matched" and r.patient_id == "MRN100"


def test_digest_is_per_practice_and_kind() -> None:
    a = table_keys.block_key("p1", f"dob:{DOB_DIGITS}")
    assert a == table_keys.block_key("p1", f"dob:{DOB_DIGITS}")
    assert a != table_keys.block_key("p2", f"dob:{DOB_DIGITS}")
    assert table_keys.ident_key("x", "p1", "mb|123") != table_keys.ident_key("x", "p1", "pcn|123")
    assert table_keys.patient_key("p1", "MRN1") == "p1/MRN1"
    assert MEMBER not in table_keys.patient_key("p1", f"mb|{MEMBER}")


_name = st.sampled_from(["SMITH", "SMYTHE", "JONES", "OKAFOR", "NGUYEN", "NGUYN", "GARCIA", "LI", "LEE"])
_given = st.sampled_from(["ROBERT", "BOB", "ADA", "ANNA", "ANN", "BEN", "MARIA", "JOSE"])
_dob = st.sampled_from(["19610723", "19610732", "19800101", "19800110", "20011231", "1961", ""])
_phone = st.sampled_from(["6175550142", "6175550124", "5551234", "", "2125550000"])
_demo = st.builds(
    lambda pid, fam, giv, dob, sex, ph, postal: Demographics(
        patient_id=f"MRN{pid}", family=fam, given=giv, birth_date=dob, sex=sex, phone=ph, postal=postal
    ),
    st.integers(0, 40),
    _name,
    _given,
    _dob,
    st.sampled_from(["F", "M", ""]),
    _phone,
    st.sampled_from(["02139", "10001", ""]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_demo, max_size=12, unique_by=lambda d: d.patient_id), _demo)
def test_digested_index_matches_exactly_like_clear_keys(people: list[Demographics], probe: Demographics) -> None:
    table: dict[str, Any] = {}
    for d in people:
        for block in blocking_keys(d):
            key = table_keys.block_key(PRACTICE, block)
            table[key] = sorted({*table.get(key, []), d.patient_id})
        table["d:" + table_keys.patient_key(PRACTICE, d.patient_id)] = _demo_to_json(d)
    probe = dataclasses.replace(probe, patient_id="intake")
    cw = fold_links(PRACTICE, [])
    assert match(probe, _TableIndex(table, PRACTICE), RULES, cw) == match(probe, MemoryIndex(people), RULES, cw)


def _patient_record(pid: str, family: str, dob: str, phone: str) -> dict[str, Any]:
    return {
        "practice_id": PRACTICE,
        "patient_id": pid,
        "source": {"feed": "hl7v2"},
        "family_name": family,
        "given_names": ["ADA"],
        "birth_date": dob,
        "sex": "F",
        "phones": [phone] if phone else [],
        "address": {"line": ["12 Elm St"], "postal_code": "02139"},
        "identifiers": [],
    }


def _fold_in_batches(agent: Any, records: list[dict[str, Any]], size: int) -> None:
    """Fold Patient records ``size`` to a batch, applying each batch's writes as process_batch does."""
    for start in range(0, len(records), size):
        batch = _Batch()
        for record in records[start : start + size]:
            agent._fold_one(SimpleNamespace(value=record, message=SimpleNamespace(topic="Patient", partition=0)), batch)
        for table, key, (_ev, value) in batch.writes(agent):
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value


_rec = st.builds(
    _patient_record,
    st.sampled_from(["MRN1", "MRN2", "MRN3", "MRN4"]),
    st.sampled_from(["OKAFOR", "SMITH"]),
    st.sampled_from(["1961-07-23", "1980-01-01", ""]),
    st.sampled_from(["6175550142", "2125550000", ""]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_rec, min_size=1, max_size=14), st.integers(1, 14))
def test_a_batch_files_patients_in_blocks_as_one_record_a_batch_does(records: list[dict[str, Any]], size: int) -> None:
    """Blocks are kept as sets while a batch runs and written once at its end: the index a batch
    leaves (members added, moved out when demographics change, an emptied block deleted) is the
    one folding record by record leaves, and holds exactly the blocks of the last demographics."""
    one_by_one, batched = _agent(), _agent()
    _fold_in_batches(one_by_one, records, 1)
    _fold_in_batches(batched, records, size)
    assert batched.index == one_by_one.index
    assert batched.table == one_by_one.table
    last = {r["patient_id"]: r for r in records}
    expected = MemoryIndex(from_patient(r, pid) for pid, r in last.items())
    blocks = {k: v for k, v in batched.index.items() if k.startswith("b:")}
    want = {
        table_keys.block_key(PRACTICE, block): sorted(members) for block, members in expected._blocks.items() if members
    }
    assert blocks == want


def test_a_block_emptied_within_a_batch_is_deleted() -> None:
    agent = _agent()
    _fold_in_batches(agent, [_patient_record("MRN1", "OKAFOR", "1961-07-23", "")], 1)
    dob_block = table_keys.block_key(PRACTICE, f"dob:{DOB_DIGITS}")
    assert agent.index[dob_block] == ["MRN1"]
    moved = [_patient_record("MRN2", "OKAFOR", "1961-07-23", ""), _patient_record("MRN1", "OKAFOR", "1980-01-01", "")]
    moved.append(_patient_record("MRN2", "OKAFOR", "1980-01-01", ""))
    _fold_in_batches(agent, moved, 3)
    assert dob_block not in agent.index
    assert agent.index[table_keys.block_key(PRACTICE, "dob:19800101")] == ["MRN1", "MRN2"]
