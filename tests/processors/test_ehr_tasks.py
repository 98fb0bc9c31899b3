"""Work items -> FHIR Tasks and Task status -> staff decisions (pure), and the SMART Backend
Services client assertion (signed and verified with a key made here)."""

from __future__ import annotations

import json

import pytest
from fhir.resources.task import Task

from practiceflow.processors.ehr.config import EhrFhirTarget
from practiceflow.processors.ehr.tasks import (
    WRITTEN_STATUS_EXT,
    decision_from_task,
    draft_resource,
    queue_role_id,
    revision_of,
    task_for,
    task_id_for,
)
from practiceflow.processors.workflows.workitem import apply_decision, by_rule, evidence, new_item, option


def _item(**kw):
    base = dict(
        practice_id="p1",
        workflow="refill",
        subject=["r1"],
        kind="refill.routine",
        queue="clinician",
        title="Refill: lisinopril",
        what_happened="Requested by fax.",
        decision_needed="Sign the renewal.",
        produced_by=by_rule("refill.ace", "3", "protocol"),
        source={"feed": "fax", "message_id": "f1"},
        now=1_700_000_000_000,
        patient_id="MRN1",
        priority="high",
        due_at=1_700_000_360_000,
        evidence=[
            evidence("K+", record_type="Observation", record_key="p1/MRN1/o1", value="4.1", unit="mmol/L"),
            evidence("fax page", document_uri="docs://p1/fax/1.pdf", page=2),
            evidence("last visit", value="2026-10-01"),
        ],
        options=[option("approve", "Sign"), option("reject", "Decline")],
    )
    base.update(kw)
    return new_item(**base)


def test_a_work_item_becomes_a_valid_r4_task():
    item = _item()
    task = task_for(item)
    Task.model_validate({k: v for k, v in task.items() if k != "resourceType"})  # a server would accept it
    assert task["id"] == task_id_for("p1", item["item_id"]) and len(task["id"]) <= 64
    assert "MRN1" not in task["id"]  # no identifier in the URL
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "urgent")
    assert task["owner"]["reference"] == f"PractitionerRole/{queue_role_id('p1', 'clinician')}"
    assert task["for"]["identifier"] == {"system": "urn:practiceflow:p1:patient", "value": "MRN1"}
    kinds = [next(iter(k for k in i if k.startswith("value"))) for i in task["input"]]
    assert kinds == ["valueReference", "valueUrl", "valueString"]
    assert task["input"][1]["valueUrl"] == "docs://p1/fax/1.pdf#page=2"
    assert task["restriction"]["period"]["end"].startswith("2023-11-14")
    assert revision_of(task) == 1
    done = apply_decision(
        item,
        {
            "practice_id": "p1",
            "decision_id": "cli:1",
            "item_id": item["item_id"],
            "option": "reject",
            "actor": "dr.a",
            "channel": "cli",
            "decided_at": 1_700_000_100_000,
        },
    )
    closed = task_for(done)
    assert (closed["status"], revision_of(closed), closed["id"]) == ("rejected", 2, task["id"])


def _server_copy(task, status, version="2"):
    return dict(task, status=status, meta={"versionId": version, "lastUpdated": "2026-12-02T05:00:00Z"})


@pytest.mark.parametrize(
    ("status", "option"),
    [("completed", "approve"), ("rejected", "reject"), ("cancelled", "reject"), ("in-progress", "assign")],
)
def test_a_status_staff_set_is_a_decision_with_a_stable_id(status, option):
    item = _item()
    task = _server_copy(task_for(item), status)
    d = decision_from_task("p1", task, item, now=5)
    assert d is not None
    assert (d["option"], d["channel"], d["actor_role"], d["item_revision"]) == (option, "fhir", None, 1)
    assert d["decision_id"] == f"fhir:{task['id']}/2"
    assert decision_from_task("p1", task, item, now=6)["decision_id"] == d["decision_id"]  # type: ignore[index]


def test_our_own_write_another_practice_and_closed_items_are_not_decisions():
    item = _item()
    ours = _server_copy(task_for(item), "requested")
    assert decision_from_task("p1", ours, item, now=5) is None
    assert decision_from_task("p2", _server_copy(task_for(item), "completed"), item, now=5) is None
    # an item closed meanwhile (through the CLI) is not decided again from the EHR
    closed = dict(item, state="done")
    assert decision_from_task("p1", _server_copy(task_for(item), "completed"), closed, now=5) is None
    # a Task we wrote as completed (the item was closed) read back is ours
    written = task_for(closed)
    assert {"url": WRITTEN_STATUS_EXT, "valueCode": "completed"} in written["extension"]
    assert decision_from_task("p1", _server_copy(written, "completed"), item, now=5) is None
    # an acknowledge-only item completed in the EHR is acknowledged
    notice = _item(options=[option("acknowledge", "Seen")], queue="nurse")
    d = decision_from_task("p1", _server_copy(task_for(notice), "completed"), notice, now=5)
    assert d is not None and d["option"] == "acknowledge"


def test_a_task_completed_in_the_ehr_signs_no_renewal():
    """Review s18 M2: any EHR user ticking the clinician's Task "completed" (owner still our queue
    role) became a clinician approve -> cmd.ehr_write -> an active MedicationRequest."""
    from practiceflow.processors.workflows.decisions import FOLLOW_UPS, decide

    for queue in ("clinician", "front_desk"):  # a signing option on an item with drafts, whatever its queue
        item = _item(draft_ids=["d1"], queue=queue)
        d = decision_from_task("p1", _server_copy(task_for(item), "completed"), item, now=5)
        assert d is not None and d["actor_role"] is None and d["actor"] == "ehr-user"
        out = decide(item, d, follow_ups=FOLLOW_UPS)
        assert out.commands == () and out.work_items == ()  # no ehr_write, the item stays open
        assert [a.action for a in out.audit] == ["decision_refused"]  # recorded: a person signs instead
    # a clinician-queue item without drafts is not closed by an unnamed EHR user either
    item = _item()
    out = decide(item, decision_from_task("p1", _server_copy(task_for(item), "rejected"), item, now=5))  # type: ignore[arg-type]
    assert out.work_items == () and [a.action for a in out.audit] == ["decision_refused"]


def test_a_signed_renewal_is_the_active_order_with_the_edits():
    body = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order", "subject": {"display": "x"}}
    draft = {
        "practice_id": "p1",
        "draft_id": "d1",
        "item_id": "i1",
        "workflow": "refill",
        "kind": "fhir.MedicationRequest",
        "content_type": "application/fhir+json",
        "body": json.dumps(body),
        "created_at": 1,
    }
    rtype, rid, as_draft = draft_resource(draft)  # type: ignore[misc]
    assert (rtype, as_draft["status"]) == ("MedicationRequest", "draft") and rid.startswith("pf-")
    signed = {"edits": {"quantity": "30", "refills": "2"}, "signed_by": "dr.a", "signed_at": 1_700_000_000_000}
    _, same_id, active = draft_resource(draft, signed=signed)  # type: ignore[misc]
    assert same_id == rid and active["status"] == "active"
    assert active["dispenseRequest"] == {"quantity": {"value": 30.0}, "numberOfRepeatsAllowed": 2}
    assert "Signed by dr.a" in active["note"][-1]["text"] and "quantity=30" in active["note"][-1]["text"]
    assert draft_resource(dict(draft, kind="x12.837P", body="ISA*...")) is None
    # a prior-auth request (PAS Bundle) is for the payer, not the EHR
    assert draft_resource(dict(draft, kind="fhir.Bundle.pas", body='{"resourceType": "Bundle"}')) is None


def test_smart_backend_client_assertion_is_signed_rs384_for_the_token_endpoint(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from practiceflow.sinks.ehr_fhir import SmartBackendAuth

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "client.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    target = EhrFhirTarget(
        base_url="https://ehr.example/fhir",
        token_url="https://ehr.example/oauth2/token",
        client_id="practiceflow-p1",
        private_key_file=pem,
        key_id="k1",
    )
    token = SmartBackendAuth(target, http=None).assertion(now=1_700_000_000)  # type: ignore[arg-type]
    public = RSAKey.import_key(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    decoded = jwt.decode(token, public, algorithms=["RS384"])
    assert decoded.header["alg"] == "RS384" and decoded.header["kid"] == "k1"
    c = decoded.claims
    assert (c["iss"], c["sub"], c["aud"], c["exp"]) == (
        "practiceflow-p1",
        "practiceflow-p1",
        "https://ehr.example/oauth2/token",
        1_700_000_300,
    )
    assert len(c["jti"]) == 32
    with pytest.raises(ValueError, match="smart-backend needs"):
        EhrFhirTarget(base_url="https://ehr.example/fhir")


def test_the_audit_of_a_decision_read_from_the_ehr_carries_no_free_text():
    """Task.statusReason is the EHR user's free text ("wrong patient - <name>"): it stays on the
    StaffDecision, and the audit event (ids and codes only) names the option alone."""
    from practiceflow.jobs.ehr import decision_read_audit

    d = {
        "actor": "ehr-user",
        "item_id": "refill:abc",
        "option": "reject",
        "decided_at": 1_800_000_000_000,
        "decision_id": "fhir:Task/pf-1/_history/3",
        "comment": "Task cancelled in the EHR: wrong patient - Jane Doe",
    }
    ev = decision_read_audit("clinic-a", d)
    assert ev["reason"] == "Task status changed in the EHR: reject"
    assert "Jane" not in str(ev)


def test_another_practices_task_for_the_same_item_id_is_not_a_decision():
    """Review s18 S1: item ids hash the subject, not the practice, so two practices on one FHIR base
    can hold Tasks with the same item identifier; only this practice's own Task id is read back."""
    item = _item()
    other = dict(item, practice_id="p2")
    theirs = _server_copy(task_for(other), "cancelled")  # practice p2's Task, same identifier
    assert theirs["identifier"] == task_for(item)["identifier"] and theirs["id"] != task_for(item)["id"]
    assert decision_from_task("p1", theirs, item, now=5) is None
    assert decision_from_task("p1", _server_copy(task_for(item), "cancelled"), item, now=5) is not None
    # each practice owns its queue roles: no shared pf-queue-<queue> to rewrite
    assert queue_role_id("p1", "clinician") != queue_role_id("p2", "clinician")
    assert task_for(item)["owner"]["reference"] != task_for(other)["owner"]["reference"]


@pytest.mark.parametrize(
    ("kw", "refused"),
    [
        ({"base_url": "http://127.0.0.1:8090/fhir", "auth": "none"}, None),
        ({"base_url": "http://localhost:8090/fhir", "auth": "none"}, None),
        ({"base_url": "http://[::1]:8090/fhir", "auth": "none"}, None),
        ({"base_url": "https://ehr.example/fhir/r4", "auth": "none"}, "loopback only"),
        ({"base_url": "http://ehr.example/fhir/r4", "auth": "none"}, "plain http"),
        ({"base_url": "http://10.0.0.5/fhir", "auth": "none"}, "plain http"),
        ({"base_url": "ftp://127.0.0.1/fhir", "auth": "none"}, "over https"),
    ],
)
def test_an_unauthenticated_or_plain_http_target_must_be_loopback(kw, refused):
    """Review s18 S11: auth "none" or http:// pointed at a real EHR sent PHI unauthenticated or in clear."""
    if refused is None:
        assert EhrFhirTarget(**kw).auth == "none"
    else:
        with pytest.raises(ValueError, match=refused):
            EhrFhirTarget(**kw)


def test_smart_backend_over_plain_http_is_refused(tmp_path):
    pem = tmp_path / "k.pem"
    pem.write_text("unused")
    common = {"token_url": "https://ehr.example/token", "client_id": "c", "private_key_file": pem}
    with pytest.raises(ValueError, match="plain http"):
        EhrFhirTarget(base_url="http://ehr.example/fhir", **common)
    with pytest.raises(ValueError, match="plain http"):
        EhrFhirTarget(base_url="https://ehr.example/fhir", **dict(common, token_url="http://ehr.example/token"))
    assert EhrFhirTarget(base_url="https://ehr.example/fhir", **common).auth == "smart-backend"
