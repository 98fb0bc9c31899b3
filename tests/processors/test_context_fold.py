"""Filing records under the canonical patient and merging contexts (processors/context/fold.py)."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from practiceflow.processors.context import fold, snapshot
from practiceflow.processors.identity.crosswalk import Crosswalk, apply as apply_link

P = "demo"


def obs(pid, oid, code, value, at, feed="hl7v2"):
    return {
        "practice_id": P,
        "patient_id": pid,
        "observation_id": oid,
        "code": {"system": "http://loinc.org", "code": code, "display": code},
        "value": str(value),
        "value_numeric": float(value),
        "units": "mmol/L",
        "reference_range": "3.5-5.1",
        "abnormal_flags": [],
        "effective_at": at,
        "source": {"feed": feed, "message_id": oid},
    }


def med(pid, oid, status="active"):
    return {
        "practice_id": P,
        "patient_id": pid,
        "order_id": oid,
        "medication": {"system": "RXNORM", "code": "314076", "display": "lisinopril 10 MG Oral Tablet"},
        "status": status,
        "source": {"feed": "hl7v2", "message_id": oid},
    }


def link(pid, idents, action="link", other=None):
    return {
        "practice_id": P,
        "action": action,
        "patient_id": pid,
        "identifiers": idents,
        "other_patient_id": other,
        "other_identifiers": [],
    }


def test_hl7_record_files_under_its_mrn_without_any_link():
    assert fold.context_patient("Observation", obs("MRN1", "o1", "2823-3", 4.1, "2026-11-01"), Crosswalk(P)) == "MRN1"


def test_fhir_record_files_provisionally_then_under_the_mrn_once_linked():
    cw = Crosswalk(P)
    fhir_obs = obs("abc", "o2", "2823-3", 5.9, "2026-11-02", feed="fhir")
    assert fold.context_patient("Observation", fhir_obs, cw) == "fhir|abc"
    apply_link(cw, link("MRN1", [{"value": "abc", "type": "FHIR"}]), in_place=True)
    assert fold.context_patient("Observation", fhir_obs, cw) == "MRN1"


def test_unresolved_and_conflicting_records_are_filed_nowhere():
    assert fold.context_patient("Observation", obs("unresolved:abcd", "o3", "x", 1, ""), Crosswalk(P)) is None
    cw = Crosswalk(P)
    for mrn in ("MRN1", "MRN2"):  # a member id two patients share
        apply_link(cw, link(mrn, [{"value": "FAM", "type": "MB"}]), in_place=True)
    cov = {"practice_id": P, "patient_id": None, "coverage_id": "c", "member_id": "FAM", "source": {"feed": "x12"}}
    assert fold.context_patient("Coverage", cov, cw) is None


def test_a_link_moves_the_provisional_context_into_the_mrn_and_nothing_is_lost():
    cw = Crosswalk(P)
    prov = snapshot.apply(
        snapshot.empty(P, "fhir|abc"),
        "Observation",
        dict(obs("abc", "o2", "2823-3", 5.9, "2026-11-02"), patient_id="fhir|abc"),
    )
    mine = snapshot.apply(snapshot.empty(P, "MRN1"), "Observation", obs("MRN1", "o1", "2823-3", 4.1, "2026-11-01"))
    mine = snapshot.apply(mine, "MedicationOrder", med("MRN1", "rx1"))
    before = dict(cw.ids)
    apply_link(cw, link("MRN1", [{"value": "abc", "type": "FHIR"}]), in_place=True)
    assert fold.moved(before, cw) == [("fhir|abc", "MRN1")]
    merged = fold.merge(mine, prov)
    assert [o["observation_id"] for o in merged.observation_history("2823-3")] == ["o2", "o1"]  # newest first
    assert merged.latest_observation("2823-3")["patient_id"] == "MRN1"
    assert set(merged.medication_orders) == {"rx1"}


def test_a40_merge_moves_the_old_mrn():
    cw = Crosswalk(P)  # neither MRN was ever linked to anything: their records were filed under themselves
    before = dict(cw.ids)
    apply_link(cw, link("MRN1", [], action="merge", other="MRN2"), in_place=True)
    assert fold.moved(before, cw) == [("MRN2", "MRN1")]


def test_merge_refuses_two_practices():
    a, b = snapshot.empty("p1", "x"), snapshot.empty("p2", "x")
    try:
        fold.merge(a, b)
    except ValueError:
        return
    raise AssertionError("merged across practices")


_recs = st.lists(
    st.tuples(
        st.sampled_from(["o1", "o2", "o3", "o4"]),
        st.integers(1, 9),
        st.sampled_from(["2026-01-01", "2026-02-01", "2026-03-01"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(_recs, st.integers(0, 2**32))
def test_fold_is_idempotent_and_order_free_for_latest_values(recs, seed):
    """A crash replay folds records again, and topics interleave differently each run: the
    latest observation per code (by its time, then id) must not depend on either."""
    # one version per observation id (a correction would carry a new id or a later time)
    latest_version = {oid: (oid, v, at) for oid, v, at in recs}
    records = [obs("MRN1", oid, "2823-3", v, at) for oid, v, at in latest_version.values()]

    def fold_all(rs):
        ctx = snapshot.empty(P, "MRN1")
        for r in rs:
            ctx = snapshot.apply(ctx, "Observation", r)
        return ctx

    once = fold_all(records)
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    twice = fold_all(records + shuffled)  # replayed after a crash, in another order
    key = [(o["observation_id"], o["effective_at"]) for o in once.observation_history("2823-3")]
    assert sorted(key) == sorted((o["observation_id"], o["effective_at"]) for o in twice.observation_history("2823-3"))
    assert once.latest_observation("2823-3")["effective_at"] == twice.latest_observation("2823-3")["effective_at"]


def _slow_context_patient(rt, record, cw):
    """The general rule, without the fast path: crosswalk keys of the record, then resolve."""
    from practiceflow.processors.identity.crosswalk import canonical_id, resolve
    from practiceflow.processors.identity.links import record_keys

    keys = record_keys(rt, dict(record))
    if not keys:
        return None
    r = resolve(cw, keys)
    if r.status == "resolved":
        return r.patient_id
    return None if r.status == "conflict" else canonical_id(keys[0])[0]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["Observation", "Encounter", "MedicationOrder", "Condition", "Appointment"]),
    st.sampled_from(["MRN1", "MRN2", "abc", "unresolved:0123", ""]),
    st.sampled_from(["hl7v2", "fhir", "portal"]),
    st.lists(
        st.tuples(
            st.sampled_from(["MRN1", "MRN2", None]), st.sampled_from(["abc", "xyz"]), st.sampled_from(["FHIR", "MB"])
        ),
        max_size=4,
    ),
)
def test_fast_path_files_like_the_general_rule(rt, pid, feed, links):
    cw = Crosswalk(P)
    for mrn, value, typ in links:
        apply_link(cw, link(mrn, [{"value": value, "type": typ}]), in_place=True)
    record = {"practice_id": P, "patient_id": pid or None, "source": {"feed": feed}}
    assert fold.context_patient(rt, record, cw) == _slow_context_patient(rt, record, cw)
