"""Issue 11 against a real FHIR server (HAPI FHIR): an approved authorization's number is attached to
the EHR's order as a Da Vinci CRD coverage-information extension (``pa-needed`` satisfied,
``satisfied-pa-id`` the number), every other element of the order kept, If-Match on its version,
once; an order the EHR does not hold, or one from an HL7 v2 message, is answered ``failed`` (never
created) and the billing office gets an item. Old code: ``respond`` emitted no command, and the
write-back treated every ``ehr_write`` command as a signed draft ("draft None not on pf.drafts")."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from practiceflow.processors.ehr.config import EhrFhirTarget
from practiceflow.processors.ehr.order_auth import COVERAGE_INFORMATION
from practiceflow.processors.ehr.unwritten import unwritten_write_item
from practiceflow.processors.workflows.prior_auth.step import PriorAuthContext, draft, respond
from practiceflow.sinks.ehr_fhir import FhirClient
from practiceflow.streams.commands.ehr_write import write_back
from tests.processors.test_prior_auth import NOW, RULES, P, mri_case, resp

MRN_SYSTEM = "http://ehr.example/fhir/mrn"  # the EHR's own MRN system (ehr_fhir.mrn_system)


@pytest.fixture
def target(fhir_server):
    return EhrFhirTarget(base_url=fhir_server.base_url, auth="none", mrn_system=MRN_SYSTEM)


@pytest.fixture
def client(target):
    with FhirClient(target) as c:
        yield c


def _approved(order_id: str, feed: str = "fhir", coverage_id: str | None = None, number: str = "AUTH778"):
    """The real step's command for an order drafted from ``feed`` and approved with ``number``."""
    c, o = mri_case(order_id=order_id, source={"feed": feed, "message_id": f"m-{order_id}"})
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    assert d.state is not None
    state = {**d.state, "coverage_id": coverage_id}
    result, new_state = respond(state, resp("approved", number, f"r-{number}"), None, NOW + 1000)
    (cmd,) = result.commands
    return dict(cmd), new_state


def _ehr_order(client: FhirClient, order_id: str, mrn: str) -> tuple[dict[str, Any], str]:
    """A ServiceRequest as the EHR keeps it (with an extension of its own) for the patient whose
    chart carries ``mrn`` under the EHR's MRN system, and its Coverage."""
    pid, cov_id = f"pt-{order_id}", f"cov-{order_id}"
    client.put(
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
            "name": [{"family": "Doe", "given": ["Ann"]}],
        }
    )
    client.put(
        {
            "resourceType": "Coverage",
            "id": cov_id,
            "status": "active",
            "beneficiary": {"reference": f"Patient/{pid}"},
            "payor": [{"display": "Acme Health"}],
        }
    )
    order = {
        "resourceType": "ServiceRequest",
        "id": order_id,
        "extension": [{"url": "http://ehr.example/fhir/ext/order-site", "valueString": "Main campus"}],
        "identifier": [{"system": "http://ehr.example/placer", "value": f"PL-{order_id}"}],
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72148"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2026-03-01T10:00:00Z",
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.16"}]}],
        "note": [{"text": "staff note kept"}],
    }
    client.put(order)
    return order, cov_id


def _ours(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension") or [] if e.get("url") == COVERAGE_INFORMATION]


def test_the_number_is_attached_to_the_ehr_order_once_keeping_its_other_elements(client, target):
    oid = f"sr-{uuid.uuid4().hex[:10]}"
    cmd, _ = _approved(oid)
    before, cov_id = _ehr_order(client, oid, cmd["patient_id"])
    cmd, _ = _approved(oid, coverage_id=cov_id)
    versions = client.history_count("ServiceRequest", oid)
    audits: list[dict] = []
    report = write_back(P, {}, {}, [cmd], client, target=target, audit=audits.append)
    assert report.failed == [] and report.orders_updated == 1
    (answer,) = report.answered
    assert answer["outcome"] == "ok" and answer["command_id"] == cmd["command_id"]
    after = client.read("ServiceRequest", oid)
    assert after is not None and client.history_count("ServiceRequest", oid) == versions + 1
    # every element the EHR had is kept as it was, its own extension included
    for key in ("identifier", "status", "intent", "priority", "code", "subject", "reasonCode", "note"):
        assert after[key] == before[key], key
    assert before["extension"][0] in after["extension"]
    (ext,) = _ours(after)
    parts = {e["url"]: e for e in ext["extension"]}
    assert parts["pa-needed"]["valueCode"] == "satisfied" and parts["covered"]["valueCode"] == "covered"
    assert parts["satisfied-pa-id"]["valueString"] == "AUTH778"
    assert parts["coverage"]["valueReference"]["reference"] == f"Coverage/{cov_id}"
    assert parts["coverage-assertion-id"]["valueString"].startswith("pa") and parts["date"]["valueDate"]
    assert any(a["entity_type"] == "Authorization" and "authorization number" in a["reason"] for a in audits)
    # the same command again (answer lost): answered from the server, nothing written; once answered, nothing
    again = write_back(P, {}, {}, [cmd], client, target=target)
    assert again.orders_updated == 0 and [r["outcome"] for r in again.answered] == ["ok"]
    done = write_back(P, {}, {}, [cmd], client, target=target, answered={cmd["command_id"]: "ok"})
    assert done.answered == [] and client.history_count("ServiceRequest", oid) == versions + 1
    # the payer changed the number: our extension is replaced, not doubled
    changed, _ = _approved(oid, coverage_id=cov_id, number="AUTH999")
    assert changed["command_id"] != cmd["command_id"]
    write_back(P, {}, {}, [changed], client, target=target)
    (ext,) = _ours(client.read("ServiceRequest", oid) or {})
    assert {e["url"]: e for e in ext["extension"]}["satisfied-pa-id"]["valueString"] == "AUTH999"


def test_an_order_the_ehr_does_not_hold_is_answered_failed_and_never_created(client, target):
    oid = f"sr-absent-{uuid.uuid4().hex[:10]}"
    cmd, _ = _approved(oid)
    report = write_back(P, {}, {}, [cmd], client, target=target)
    (answer,) = report.answered
    assert answer["outcome"] == "failed" and f"ServiceRequest/{oid} is not in the EHR" in answer["reason"]
    assert client.read("ServiceRequest", oid) is None  # never created
    (item,) = unwritten_write_item(answer).work_items
    assert item["queue"] == "billing" and "AUTH778" in {e.get("value") for e in item["evidence"]}


def test_an_hl7_order_is_answered_failed_without_touching_the_ehr(client, target):
    """An ORM's order id is no FHIR id in the EHR: even a ServiceRequest with that id is not written."""
    oid = f"sr-hl7-{uuid.uuid4().hex[:10]}"
    cmd, _ = _approved(oid, feed="hl7v2")
    _ehr_order(client, oid, cmd["patient_id"])
    versions = client.history_count("ServiceRequest", oid)
    (answer,) = write_back(P, {}, {}, [cmd], client, target=target).answered
    assert answer["outcome"] == "failed" and "HL7 v2" in answer["reason"]
    assert client.history_count("ServiceRequest", oid) == versions
    assert _ours(client.read("ServiceRequest", oid) or {}) == []


@pytest.mark.parametrize("case", ["no recorded source", "another patient's order", "no mrn_system"])
def test_an_order_practiceflow_cannot_prove_is_this_patients_is_never_written(client, target, case):
    """Review s21 M1: an authorization drafted before the order's source was kept (no ``order_feed``),
    an EHR order whose subject is someone else's chart, and a practice without ``mrn_system`` are
    answered ``failed`` and the EHR's order is left as it was. Old code: all three were written."""
    oid = f"sr-m1-{uuid.uuid4().hex[:10]}"
    cmd, _ = _approved(oid)
    _ehr_order(client, oid, "SOMEONE-ELSE" if case == "another patient's order" else cmd["patient_id"])
    if case == "no recorded source":
        payload = json.loads(cmd["payload"])
        payload.pop("order_feed")
        cmd = {**cmd, "payload": json.dumps(payload)}
    versions = client.history_count("ServiceRequest", oid)
    use = target if case != "no mrn_system" else target.model_copy(update={"mrn_system": None})
    report = write_back(P, {}, {}, [cmd], client, target=use)
    (answer,) = report.answered
    assert answer["outcome"] == "failed", answer
    # a designed refusal: the billing office gets the number (an item), the sync itself did not fail
    assert report.failed == [] and report.orders_by_hand == 1 and "handed to the billing office" in report.summary()
    assert {
        "no recorded source": "no recorded source",
        "another patient's order": "not for this authorization's patient",
        "no mrn_system": "no mrn_system",
    }[case] in answer["reason"]
    assert client.history_count("ServiceRequest", oid) == versions
    assert _ours(client.read("ServiceRequest", oid) or {}) == []
