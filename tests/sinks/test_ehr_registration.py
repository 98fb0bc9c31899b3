"""Issue 12 gaps against a real FHIR server (HAPI FHIR): a signed intake registration reaches the
EHR (Patient before Coverage, the Coverage's beneficiary the Patient written, a matched patient's
own chart updated rather than duplicated, If-Match on update, idempotent, audited); a signed write
that cannot be done opens a front-desk item; a practice without an EHR answers ``no_ehr``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from practiceflow.processors.ehr.config import EhrFhirTarget
from practiceflow.processors.ehr.tasks import draft_target
from practiceflow.processors.ehr.unwritten import unwritten_write_item
from practiceflow.processors.workflows.decisions import decide
from practiceflow.processors.workflows.intake.drafts import as_body, coverage_resource, patient_resource
from practiceflow.processors.workflows.workitem import by_rule, new_item, option
from practiceflow.sinks.ehr_fhir import FhirClient


@pytest.fixture
def client(fhir_server):
    with FhirClient(EhrFhirTarget(base_url=fhir_server.base_url, auth="none")) as c:
        yield c


def _registration(practice: str, sub: str, mrn: str | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """An ``intake.eligible`` item and its Patient + Coverage drafts, built by the real intake builders."""
    intake = {"submission_id": sub, "family_name": "Doe", "given_name": "Jan", "birth_date": "1980-02-03"}
    patient = patient_resource(intake, mrn, "urn:practiceflow:mrn")
    coverage = coverage_resource(intake, {"member_id": "M-77"}, f"Patient/{mrn or 'intake-' + sub}", "P1", "Payer")
    item = new_item(
        practice_id=practice,
        workflow="intake",
        subject=[sub, "eligible"],
        kind="intake.eligible",
        queue="front_desk",
        title="Eligible: approve the registration for the EHR",
        what_happened="Eligible.",
        produced_by=by_rule("intake.eligible", "1"),
        source={"feed": "portal", "message_id": sub},
        now=1_000,
        patient_id=mrn,
        options=[
            option("approve", "Write the Patient and Coverage to the EHR"),
            option("edit", "Correct, then write", editable=("name", "address", "telecom", "subscriberId")),
            option("reject", "Do not write"),
        ],
    )
    drafts = {}
    for kind, body in (("fhir.Patient", patient), ("fhir.Coverage", coverage)):
        did = f"{sub}-{kind}"
        drafts[did] = {
            "practice_id": practice,
            "draft_id": did,
            "item_id": item["item_id"],
            "workflow": "intake",
            "kind": kind,
            "content_type": "application/fhir+json",
            "body": as_body(body),
            "status": "draft",
            "created_at": 1_000,
        }
    item["draft_ids"] = [d for d in drafts if d.endswith("fhir.Patient")] + [
        d for d in drafts if d.endswith("fhir.Coverage")
    ]
    return item, drafts


def _sign(item: dict[str, Any], option_: str = "approve", edits: dict[str, str] | None = None) -> list[dict]:
    decision = {
        "practice_id": item["practice_id"],
        "decision_id": f"dec-{item['item_id']}-{option_}",
        "item_id": item["item_id"],
        "option": option_,
        "actor": "fd.ann",
        "actor_role": "front_desk",
        "channel": "cli",
        "decided_at": 2_000,
        "edits": edits or {},
        "comment": None,
        "item_revision": item.get("revision", 1),
    }
    return [dict(c) for c in decide(item, decision).commands]  # type: ignore[arg-type]


def test_approving_an_intake_registration_writes_patient_then_coverage_once(client):
    """Old code: approving closed the item and emitted no command, so nothing reached the EHR."""
    from practiceflow.streams.commands.ehr_write import write_back

    practice = "p-reg-new"
    item, drafts = _registration(practice, "sub-new", None)
    commands = _sign(item)
    assert [json.loads(c["payload"])["draft_id"] for c in commands] == item["draft_ids"]
    assert {c["kind"] for c in commands} == {"ehr_write"} and {c["workflow"] for c in commands} == {"intake"}
    audits: list[dict] = []
    report = write_back(practice, {}, drafts, commands, client, audit=audits.append)
    assert report.failed == [] and report.signed_written == 2
    assert sorted(r["outcome"] for r in report.answered) == ["ok", "ok"]
    _, pid = draft_target(practice, item["draft_ids"][0], "fhir.Patient")  # type: ignore[misc]
    _, cid = draft_target(practice, item["draft_ids"][1], "fhir.Coverage")  # type: ignore[misc]
    patient, coverage = client.read("Patient", pid), client.read("Coverage", cid)
    assert patient is not None and patient["name"][0]["family"] == "Doe"
    assert coverage is not None and coverage["status"] == "active" and coverage["subscriberId"] == "M-77"
    assert coverage["beneficiary"]["reference"] == f"Patient/{pid}"  # the Patient written, not the form's id
    assert sum(1 for a in audits if a["entity_type"] == "Draft" and "(signed)" in a["reason"]) == 2
    # a replay (the same commands, not yet seen answered): nothing written again, answered once more from
    # the server's versions; once answered ok, not even that
    versions = (client.history_count("Patient", pid), client.history_count("Coverage", cid))
    again = write_back(practice, {}, drafts, commands, client)
    assert again.signed_written == 0 and again.failed == []
    done = write_back(practice, {}, drafts, commands, client, answered_ok={c["command_id"] for c in commands})
    assert done.answered == [] and done.signed_written == 0
    assert (client.history_count("Patient", pid), client.history_count("Coverage", cid)) == versions


EHR_MRN = "urn:oid:1.2.3.4.5"  # the EHR's own MRN system, as a real EHR's charts carry it


def _target(fhir_server, mrn_system: str | None = EHR_MRN) -> EhrFhirTarget:
    return EhrFhirTarget(base_url=fhir_server.base_url, auth="none", mrn_system=mrn_system)


def test_a_matched_patient_updates_the_ehr_chart_with_if_match_not_a_second_chart(client, fhir_server, monkeypatch):
    """Review s18 M4 (the duplicate chart) and s19 M4: a matched patient's signed Patient updates the
    chart the EHR already holds under that MRN in the EHR's own ``mrn_system`` (not practiceflow's
    ``urn:practiceflow:mrn``, which no real chart carries), with If-Match on its version, keeping
    the EHR's identifiers, its other names and phones, and its ``active``; the Coverage points at it."""
    from practiceflow.streams.commands.ehr_write import write_back

    practice = "p-reg-matched"
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"  # the HAPI fixture may outlive a session
    chart_id = f"chart-{mrn}"
    chart = {
        "resourceType": "Patient",
        "id": chart_id,
        "identifier": [{"system": EHR_MRN, "value": mrn}, {"system": "urn:ehr:internal", "value": "E-1"}],
        "active": False,
        "name": [{"use": "official", "family": "Doe", "given": ["J"]}, {"use": "maiden", "family": "Roe"}],
        "telecom": [{"system": "phone", "value": "555-0100", "use": "work"}],
    }
    assert client.put(chart) is not None
    version = client.read("Patient", chart_id)["meta"]["versionId"]  # type: ignore[index]
    item, drafts = _registration(practice, "sub-matched", mrn)
    puts: list[tuple[str, str | None]] = []
    real_put = client.put

    def recording_put(resource: dict, if_match: str | None = None) -> str | None:
        puts.append((f"{resource['resourceType']}/{resource['id']}", if_match))
        return real_put(resource, if_match=if_match)

    monkeypatch.setattr(client, "put", recording_put)
    audits: list[dict] = []
    report = write_back(practice, {}, drafts, _sign(item), client, target=_target(fhir_server), audit=audits.append)
    assert report.failed == [] and report.signed_written == 2
    # the EHR's chart id (MRN-like here) stays out of the audit trail and the answers
    assert not [a for a in audits if mrn in json.dumps(a)] and not [r for r in report.answered if mrn in json.dumps(r)]
    assert (f"Patient/{chart_id}", version) in puts, puts[-3:]  # an update with If-Match, never a blind overwrite
    found = list(client.search("Patient", {"identifier": f"{EHR_MRN}|{mrn}"}))
    assert [p["id"] for p in found] == [chart_id]  # no second chart
    names = found[0]["name"]
    assert {"use": "maiden", "family": "Roe"} in names and ["Jan"] in [n.get("given") for n in names]
    assert {"system": "phone", "value": "555-0100", "use": "work"} in found[0]["telecom"]  # never dropped
    assert found[0]["active"] is False  # not forced
    assert {"system": "urn:ehr:internal", "value": "E-1"} in found[0]["identifier"]
    _, cid = draft_target(practice, item["draft_ids"][1], "fhir.Coverage")  # type: ignore[misc]
    assert client.read("Coverage", cid)["beneficiary"]["reference"] == f"Patient/{chart_id}"  # type: ignore[index]
    # two charts with that MRN: no guess and no third chart; answered failed (-> a front-desk item)
    monkeypatch.undo()
    assert client.put(dict(chart, id=f"{chart_id}-dup", identifier=chart["identifier"][:1])) is not None
    item2, drafts2 = _registration(practice, "sub-matched-2", mrn)
    twice = write_back(practice, {}, drafts2, _sign(item2), client, target=_target(fhir_server))
    assert "failed" in [r["outcome"] for r in twice.answered]
    assert len(list(client.search("Patient", {"identifier": f"{EHR_MRN}|{mrn}"}))) == 2


def test_a_matched_registration_without_mrn_system_is_answered_failed_never_a_second_chart(client, fhir_server):
    """Review s19 M4: with no EHR MRN system configured the search by ``urn:practiceflow:mrn`` found
    no real chart and the sign-off created ``Patient/pf-...``: a second chart. Now answered failed
    (the front desk enters it by hand), nothing created."""
    from practiceflow.streams.commands.ehr_write import write_back

    practice = "p-reg-nomrn"
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"
    item, drafts = _registration(practice, "sub-nomrn", mrn)
    report = write_back(practice, {}, drafts, _sign(item), client, target=_target(fhir_server, None))
    assert [r["outcome"] for r in report.answered] == ["failed", "failed"]
    assert any("mrn_system" in r["reason"] for r in report.answered)
    _, pid = draft_target(practice, item["draft_ids"][0], "fhir.Patient")  # type: ignore[misc]
    assert client.read("Patient", pid) is None
    assert list(client.search("Patient", {"identifier": f"urn:practiceflow:mrn|{mrn}"})) == []


def test_two_practices_on_one_fhir_base_with_the_same_mrn_never_touch_each_others_chart(client, fhir_server):
    """Review s19 M4: on a shared FHIR base practice A's matched registration for its MRN 12345
    found (by the one shared system) the chart practice B's registration had written, overwrote
    its name and pointed A's Coverage at B's patient. A chart another practice wrote is refused."""
    from practiceflow.processors.ehr.tasks import organization_id
    from practiceflow.streams.commands.ehr_write import write_back

    mrn = f"MRN-{uuid.uuid4().hex[:8]}"  # the same MRN in both practices
    org_b = f"Organization/{organization_id('p-shared-b')}"
    seeded = {"resourceType": "Patient", "id": f"chart-b-{mrn}", "identifier": [{"system": EHR_MRN, "value": mrn}]}
    assert client.put(dict(seeded, managingOrganization={"reference": org_b}, name=[{"family": "Bee"}])) is not None
    item_b, drafts_b = _registration("p-shared-b", "sub-shared-b", mrn)
    report_b = write_back("p-shared-b", {}, drafts_b, _sign(item_b), client, target=_target(fhir_server))
    assert report_b.failed == [] and report_b.signed_written == 2  # B's chart is updated
    (chart_b,) = client.search("Patient", {"identifier": f"{EHR_MRN}|{mrn}"})
    assert chart_b["managingOrganization"]["reference"] == f"Organization/{organization_id('p-shared-b')}"
    before = client.history_count("Patient", chart_b["id"])
    item_a, drafts_a = _registration("p-shared-a", "sub-shared-a", mrn)
    body = json.loads(drafts_a[item_a["draft_ids"][0]]["body"])
    body["name"][0]["family"] = "Ayy"
    drafts_a[item_a["draft_ids"][0]]["body"] = json.dumps(body)
    report_a = write_back("p-shared-a", {}, drafts_a, _sign(item_a), client, target=_target(fhir_server))
    assert sorted(r["outcome"] for r in report_a.answered) == ["failed", "failed"]
    assert any("another practice" in r["reason"] for r in report_a.answered)
    assert client.history_count("Patient", chart_b["id"]) == before  # B's chart untouched
    assert "Ayy" not in json.dumps(client.read("Patient", chart_b["id"]))  # A's name never laid over B's chart
    _, cid_a = draft_target("p-shared-a", item_a["draft_ids"][1], "fhir.Coverage")  # type: ignore[misc]
    assert client.read("Coverage", cid_a) is None  # A's Coverage never points at B's patient


def test_a_signed_registration_that_cannot_be_written_opens_a_front_desk_item(client):
    """A free-text correction cannot be split into FHIR parts: the write is answered failed (old
    code: logged only, never answered) and the answer opens a front-desk item to enter it by hand."""
    from practiceflow.streams.commands.ehr_write import write_back

    practice = "p-reg-fail"
    item, drafts = _registration(practice, "sub-fail", None)
    commands = _sign(item, "edit", {"name": "Jane Doe-Smith", "subscriberId": "M-78"})  # which part is the family?
    report = write_back(practice, {}, drafts, commands, client)
    outcomes = {json.loads(c["payload"])["draft_id"]: None for c in commands}
    by_cmd = {r["command_id"]: r for r in report.answered}
    for c in commands:
        outcomes[json.loads(c["payload"])["draft_id"]] = by_cmd[c["command_id"]]["outcome"]
    assert outcomes[item["draft_ids"][0]] == "failed"  # the Patient: not written uncorrected
    failed = next(r for r in report.answered if r["outcome"] == "failed")
    step = unwritten_write_item(dict(failed, completed_at=3_000))
    (opened,) = step.work_items
    assert (opened["queue"], opened["priority"], opened["kind"]) == ("front_desk", "high", "intake.ehr_write_not_done")
    assert "registration NOT written to the EHR" in opened["title"]
    _, pid = draft_target(practice, item["draft_ids"][0], "fhir.Patient")  # type: ignore[misc]
    assert client.read("Patient", pid) is None


def test_a_practice_without_an_ehr_answers_no_ehr_and_a_person_gets_the_item():
    """Gap 2: for a practice with no ``ehr_fhir`` a signed write was never answered (nothing consumes
    it), so the patient got nothing. Answered ``no_ehr``; the answer opens the signer's item; the
    reason and the audit carry no PHI; a practice with an EHR is left to ``ehr sync``."""
    from practiceflow.processors.ehr.no_target import answer_without_target

    item, _drafts = _registration("p-none", "sub-none", "MRN-9")
    commands = _sign(item)
    assert answer_without_target(commands[0], {"p-none"}, 5_000) is None
    answers = [answer_without_target(c, {"p-other"}, 5_000) for c in commands]
    assert all(a is not None and a["outcome"] == "no_ehr" for a in answers)
    step = unwritten_write_item(answers[0])  # type: ignore[arg-type]
    (opened,) = step.work_items
    assert opened["queue"] == "front_desk" and "no EHR is configured" in opened["title"]
    assert "MRN-9" not in answers[0]["reason"] and "Doe" not in answers[0]["reason"]  # type: ignore[index]
    assert all("Doe" not in a.reason and "MRN-9" not in a.reason for a in step.audit)


def test_front_desk_corrections_are_written_with_the_signed_registration(client):
    """ "Correct, then write": the CLI's ``--edit name=Family, Given`` / ``telecom=<phone or e-mail>``
    / ``subscriberId=`` and FHIR JSON address reach the written Patient and Coverage (old code:
    nothing was written; free-text name / telecom were answered failed before the plain forms)."""
    from practiceflow.streams.commands.ehr_write import write_back

    practice = "p-reg-edit"
    item, drafts = _registration(practice, "sub-edit", None)
    address = [{"use": "home", "line": ["1 Main St"], "city": "Springfield", "postalCode": "01101"}]
    edits = {
        "name": "Doe-Smith, Jane Q",
        "telecom": "jane@example.org",
        "address": json.dumps(address),
        "subscriberId": "M-78",
    }
    report = write_back(practice, {}, drafts, _sign(item, "edit", edits), client)
    assert report.failed == [] and report.signed_written == 2
    _, pid = draft_target(practice, item["draft_ids"][0], "fhir.Patient")  # type: ignore[misc]
    _, cid = draft_target(practice, item["draft_ids"][1], "fhir.Coverage")  # type: ignore[misc]
    patient, coverage = client.read("Patient", pid), client.read("Coverage", cid)
    assert patient is not None and coverage is not None
    assert (patient["name"][0]["family"], patient["name"][0]["given"]) == ("Doe-Smith", ["Jane", "Q"])
    assert patient["telecom"] == [{"system": "email", "value": "jane@example.org"}]
    assert patient["address"][0]["city"] == "Springfield"
    assert coverage["subscriberId"] == "M-78"


def test_a_signed_coverage_whose_patient_is_not_in_the_ehr_is_answered_failed(client):
    """An ambiguous match proposes no Patient draft (a person picks the chart); approving the
    item anyway must not write a Coverage whose beneficiary is no chart (old code: nothing was
    written at all; the in-memory server, unlike an EHR, accepts a dangling reference)."""
    from practiceflow.streams.commands.ehr_write import write_back

    practice = "p-reg-ambiguous"
    item, drafts = _registration(practice, "sub-amb", None)
    patient_draft = item["draft_ids"][0]
    del drafts[patient_draft]
    item["draft_ids"] = item["draft_ids"][1:]
    report = write_back(practice, {}, drafts, _sign(item), client)
    assert [r["outcome"] for r in report.answered] == ["failed"]
    assert "pick the chart" in report.answered[0]["reason"]
    _, cid = draft_target(practice, item["draft_ids"][0], "fhir.Coverage")  # type: ignore[misc]
    assert client.read("Coverage", cid) is None


def test_a_matched_patient_whose_chart_the_search_misses_is_answered_failed_not_a_new_chart(client, fhir_server):
    """Review s19 M5: the match came from the EHR's own records, so the chart exists; a search that misses it
    (a wrong mrn_system, another token form, a merged chart) created a second chart carrying the EHR's MRN."""
    from practiceflow.streams.commands.ehr_write import write_back

    practice = "p-reg-miss"
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"
    chart = {"resourceType": "Patient", "id": f"chart-{mrn}", "identifier": [{"system": EHR_MRN, "value": mrn}]}
    assert client.put(chart) is not None
    item, drafts = _registration(practice, "sub-miss", mrn)
    wrong = _target(fhir_server, "urn:oid:1.2.3.4.6")  # a typo in the configured system
    report = write_back(practice, {}, drafts, _sign(item), client, target=wrong)
    assert [r["outcome"] for r in report.answered] == ["failed", "failed"]
    assert any("mrn_system" in r["reason"] for r in report.answered)
    assert list(client.search("Patient", {"identifier": f"urn:oid:1.2.3.4.6|{mrn}"})) == []  # no second chart
    _, pid = draft_target(practice, item["draft_ids"][0], "fhir.Patient")  # type: ignore[misc]
    assert client.read("Patient", pid) is None
