"""The FHIR client and the write-back against a real FHIR server (HAPI FHIR, in memory): versioned
writes, a change made in the EHR is never overwritten by an older view, retries on 5xx."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from practiceflow.processors.ehr.config import EhrFhirTarget
from practiceflow.processors.ehr.tasks import task_id_for
from practiceflow.processors.workflows.workitem import apply_decision, by_rule, new_item, option
from practiceflow.sinks.ehr_fhir import FhirClient, FhirError, VersionConflict
from practiceflow.streams.commands.ehr_write import poll_decisions, write_back


def _item(practice: str, n: int):
    return new_item(
        practice_id=practice,
        workflow="intake",
        subject=[f"s{n}"],
        kind="intake.eligible",
        queue="front_desk",
        title=f"Item {n}",
        what_happened="Form received.",
        produced_by=by_rule("r", "1"),
        source={"feed": "portal", "message_id": f"m{n}"},
        now=1_000 + n,
        patient_id=f"MRN{n}",
        options=[option("approve", "OK"), option("reject", "No")],
    )


@pytest.fixture
def client(fhir_server):
    with FhirClient(EhrFhirTarget(base_url=fhir_server.base_url, auth="none")) as c:
        yield c


def test_if_match_on_a_stale_version_is_a_conflict(client):
    task = {"resourceType": "Task", "id": "pf-test-conflict", "status": "requested", "intent": "order"}
    assert client.put(task) == "1"
    assert client.put(dict(task, status="in-progress"), if_match="1") == "2"
    with pytest.raises(VersionConflict):
        client.put(dict(task, status="completed"), if_match="1")
    assert client.read("Task", "pf-test-conflict")["status"] == "in-progress"  # type: ignore[index]
    assert client.read("Task", "pf-test-absent") is None


def test_a_staff_change_is_held_until_decided_and_the_replay_writes_nothing(client):
    practice = "p-hold"
    item = _item(practice, 1)
    tid = task_id_for(practice, item["item_id"])
    assert write_back(practice, {item["item_id"]: item}, {}, [], client).tasks_written == 1
    # staff cancel the Task in the EHR
    server = client.read("Task", tid)
    assert server is not None
    client.put(dict(server, status="cancelled"), if_match=server["meta"]["versionId"])
    # a newer revision that does not close the item (escalated) must not undo the staff's change
    escalated = dict(item, revision=2)
    report = write_back(practice, {item["item_id"]: escalated}, {}, [], client)
    assert (report.tasks_written, report.tasks_held) == (0, 1)
    assert client.read("Task", tid)["status"] == "cancelled"  # type: ignore[index]
    # the poller reads it as a rejection; once applied, the closed item is written
    decisions, mark = poll_decisions(practice, {item["item_id"]: escalated}, client, None, now=9)
    assert [d["option"] for d in decisions] == ["reject"] and mark is not None
    closed = apply_decision(escalated, decisions[0])
    assert write_back(practice, {item["item_id"]: closed}, {}, [], client).tasks_written == 1
    task = client.read("Task", tid)
    assert task is not None and task["status"] == "rejected"
    versions = client.history_count("Task", tid)
    again = write_back(practice, {item["item_id"]: closed}, {}, [], client)
    assert (again.tasks_written, again.tasks_unchanged) == (0, 1)
    assert client.history_count("Task", tid) == versions
    assert poll_decisions(practice, {item["item_id"]: closed}, client, mark, now=10)[0] == []


class _Flaky(http.server.BaseHTTPRequestHandler):
    failures = 2
    seen = 0

    def do_GET(self):
        type(self).seen += 1
        if type(self).seen <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"resourceType": "Task", "id": "t", "status": "requested", "intent": "order"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_transient_failures_are_retried_with_backoff_and_client_errors_are_not():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/fhir"
        with FhirClient(EhrFhirTarget(base_url=base, auth="none"), attempts=4) as c:
            assert c.read("Task", "t")["status"] == "requested"  # type: ignore[index]
            assert c.requests == 3  # two 503s, then the answer
        _Flaky.seen, _Flaky.failures = 0, 10
        with (
            FhirClient(EhrFhirTarget(base_url=base, auth="none"), attempts=2) as c,
            pytest.raises(Exception, match="503"),
        ):
            c.read("Task", "t")
        with FhirClient(EhrFhirTarget(base_url=base, auth="none"), attempts=3) as c:
            with pytest.raises(FhirError, match="HTTP 400"):
                c.put({"resourceType": "Task", "id": "x"})
            assert c.requests == 1  # a refusal is not retried
    finally:
        server.shutdown()
        server.server_close()


def test_smart_backend_services_token_then_bearer_on_every_request(tmp_path):
    """A loopback OAuth2 token endpoint that verifies the private_key_jwt assertion with the
    client's public key, and a FHIR endpoint that wants its token: the client gets a token
    once, sends it, and asks for a new one when the server answers 401 (revoked)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "client.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = RSAKey.import_key(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    state = {"issued": [], "valid": set(), "jti": set()}

    class Ehr(http.server.BaseHTTPRequestHandler):
        def _json(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # the token endpoint
            from urllib.parse import parse_qs

            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
            claims = jwt.decode(form["client_assertion"], public, algorithms=["RS384"]).claims
            ok = (
                form["grant_type"] == "client_credentials"
                and form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                and claims["iss"] == claims["sub"] == "pf-client"
                and claims["aud"] == f"http://127.0.0.1:{self.server.server_address[1]}/token"
                and claims["jti"] not in state["jti"]
            )
            if not ok:
                return self._json(401, {"error": "invalid_client"})
            state["jti"].add(claims["jti"])
            token = f"tok-{len(state['issued'])}"
            state["issued"].append(token)
            state["valid"] = {token}
            return self._json(200, {"access_token": token, "token_type": "bearer", "expires_in": 300})

        def do_GET(self):  # a FHIR read that needs the token
            if self.headers.get("Authorization", "").removeprefix("Bearer ") not in state["valid"]:
                return self._json(401, {"resourceType": "OperationOutcome", "issue": []})
            return self._json(200, {"resourceType": "Task", "id": "t", "status": "requested", "intent": "order"})

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ehr)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    target = EhrFhirTarget(
        base_url=f"{base}/fhir", token_url=f"{base}/token", client_id="pf-client", private_key_file=pem, key_id="k1"
    )
    try:
        with FhirClient(target) as c:
            assert c.read("Task", "t") is not None and c.read("Task", "t") is not None
            assert state["issued"] == ["tok-0"]  # one token, cached
            state["valid"] = set()  # the EHR revokes it
            assert c.read("Task", "t") is not None
            assert state["issued"] == ["tok-0", "tok-1"] and len(state["jti"]) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_the_draft_of_a_rejected_item_is_cancelled_in_the_ehr_not_left_to_sign(client):
    from practiceflow.processors.ehr.tasks import draft_target

    practice = "p-cancel"
    item = dict(_item(practice, 7), draft_ids=["d-7"])
    body = {"resourceType": "Coverage", "status": "draft", "beneficiary": {"display": "x"}, "payor": [{"display": "y"}]}
    draft = {
        "practice_id": practice,
        "draft_id": "d-7",
        "item_id": item["item_id"],
        "workflow": "intake",
        "kind": "fhir.Coverage",
        "content_type": "application/fhir+json",
        "body": json.dumps(body),
        "created_at": 1,
    }
    rtype, rid = draft_target(practice, "d-7", "fhir.Coverage")  # type: ignore[misc]
    assert write_back(practice, {item["item_id"]: item}, {"d-7": draft}, [], client).drafts_written == 1
    assert client.read(rtype, rid)["status"] == "draft"  # type: ignore[index]
    rejected = dict(item, state="rejected", revision=2, outcome="reject")
    report = write_back(practice, {item["item_id"]: rejected}, {"d-7": draft}, [], client)
    assert (report.drafts_written, report.tasks_written) == (1, 1)
    assert client.read(rtype, rid)["status"] == "cancelled"  # type: ignore[index]
    versions = client.history_count(rtype, rid)
    again = write_back(practice, {item["item_id"]: rejected}, {"d-7": draft}, [], client)
    assert (again.drafts_written, again.drafts_unchanged) == (0, 1)
    assert client.history_count(rtype, rid) == versions


def test_a_piloted_workflow_writes_nothing_to_the_ehr(client):
    """Pilot mode (settings ``pilot``): the practice's piloted workflow is not written back; the
    same practice's other workflows, and other practices, are."""
    practice = "p-pilot"
    piloted = _item(practice, 1)  # workflow intake
    live = dict(_item(practice, 2), workflow="refill", kind="refill.routine")
    items = {piloted["item_id"]: piloted, live["item_id"]: live}
    report = write_back(practice, items, {}, [], client, pilot={practice: ["intake"]})
    assert (report.tasks_written, report.piloted) == (1, 1)
    assert client.read("Task", task_id_for(practice, piloted["item_id"])) is None
    assert client.read("Task", task_id_for(practice, live["item_id"])) is not None
    assert "1 withheld (pilot mode)" in report.summary()
    # every workflow of the practice piloted: nothing at all
    other = _item("p-pilot-all", 3)
    none = write_back("p-pilot-all", {other["item_id"]: other}, {}, [], client, pilot={"p-pilot-all": ["*"]})
    assert (none.tasks_written, none.piloted) == (0, 1)
    assert client.read("Task", task_id_for("p-pilot-all", other["item_id"])) is None


def test_a_retried_put_keeps_if_match_and_the_fhir_content_type():
    """Review s18 M1: the headers were popped inside the retried closure, so the retry after a 503
    went out without If-Match, an unconditional overwrite of whatever staff changed meanwhile."""
    import httpx

    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        if len(seen) == 1:
            return httpx.Response(503)
        return httpx.Response(200, headers={"ETag": 'W/"3"'}, json={"resourceType": "Task", "id": "x"})

    http_client = httpx.Client(transport=httpx.MockTransport(handler))
    target = EhrFhirTarget(base_url="http://127.0.0.1:1/fhir", auth="none")
    with FhirClient(target, attempts=3, http=http_client) as c:
        assert c.put({"resourceType": "Task", "id": "x"}, if_match="2") == "3"
    assert len(seen) == 2
    for headers in seen:
        assert headers.get("if-match") == 'W/"2"'
        assert headers.get("content-type") == "application/fhir+json"


def test_unsigned_intake_registration_drafts_are_not_written_to_the_ehr():
    """Review s18 M4: the intake Patient (no status at all) and Coverage ("active") drafts were
    written at every sync, before anyone approved: a live registration from an unverified form,
    and a duplicate chart for a matched patient. Built with the real intake builders."""
    import httpx

    from practiceflow.processors.workflows.intake.drafts import as_body, coverage_resource, patient_resource

    intake = {"submission_id": "sub-1", "family_name": "Doe", "given_name": "Jan", "birth_date": "1980-02-03"}
    patient = patient_resource(intake, "MRN-1", "urn:mrn")  # a matched chart
    coverage = coverage_resource(intake, {"member_id": "M1"}, "Patient/MRN-1", "P1", "Payer")
    renewal = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order", "subject": {"display": "x"}}

    def draft(did: str, kind: str, body: dict) -> dict:
        return {
            "practice_id": "p-m4",
            "draft_id": did,
            "item_id": "i1",
            "workflow": "intake",
            "kind": kind,
            "content_type": "application/fhir+json",
            "body": as_body(body),
            "created_at": 1,
        }

    drafts = {
        "d-pat": draft("d-pat", "fhir.Patient", patient),
        "d-cov": draft("d-cov", "fhir.Coverage", coverage),
        "d-med": draft("d-med", "fhir.MedicationRequest", renewal),
    }
    written: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404)
        body = json.loads(request.content)
        written.append(body["resourceType"])
        return httpx.Response(201, headers={"ETag": 'W/"1"'}, json=body)

    target = EhrFhirTarget(base_url="http://127.0.0.1:1/fhir", auth="none")
    with FhirClient(target, attempts=1, http=httpx.Client(transport=httpx.MockTransport(handler))) as c:
        report = write_back("p-m4", {}, drafts, [], c)
    assert report.failed == []
    assert "Patient" not in written and "Coverage" not in written
    assert written.count("MedicationRequest") == 1  # a real draft status: shown in the EHR as a draft
    assert (report.drafts_written, report.drafts_held) == (1, 2)


def test_a_signed_write_whose_draft_is_missing_is_answered_failed():
    """Review s18 M6 (part): a signed renewal whose draft is not on pf.drafts was only logged;
    its command was never answered on pf.cmd.results."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404)
        return httpx.Response(201, headers={"ETag": 'W/"1"'}, json=json.loads(request.content))

    cmd = {
        "practice_id": "p-m6",
        "command_id": "c-1",
        "workflow": "refill",
        "payload": json.dumps({"draft_id": "gone"}),
    }
    target = EhrFhirTarget(base_url="http://127.0.0.1:1/fhir", auth="none")
    with FhirClient(target, attempts=1, http=httpx.Client(transport=httpx.MockTransport(handler))) as c:
        report = write_back("p-m6", {}, {}, [cmd], c)
    assert [(r["command_id"], r["outcome"]) for r in report.answered] == [("c-1", "failed")]


def _renewal_draft(practice: str, draft_id: str, quantity: float = 90.0) -> dict:
    body = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "atorvastatin 20 mg tablet"},
        "subject": {"identifier": {"system": f"urn:practiceflow:{practice}:patient", "value": "MRN-1"}},
        "dispenseRequest": {"quantity": {"value": quantity}},
    }
    return {
        "practice_id": practice,
        "draft_id": draft_id,
        "item_id": "",
        "workflow": "refill",
        "kind": "fhir.MedicationRequest",
        "content_type": "application/fhir+json",
        "body": json.dumps(body),
        "created_at": 1,
    }


def test_two_practices_on_one_fhir_base_never_read_each_others_tasks(client):
    """Review s18 S1: item ids hash the subject, not the practice; practice B's Task for the same
    subject was read as practice A's decision, and each sync rewrote the shared queue roles'
    organization to its own practice."""
    from practiceflow.processors.ehr.tasks import organization_id, queue_role_id

    a_item, b_item = _item("p-share-a", 1), _item("p-share-b", 1)
    assert a_item["item_id"] == b_item["item_id"]  # same subject: same item id in both practices
    assert write_back("p-share-a", {a_item["item_id"]: a_item}, {}, [], client).tasks_written == 1
    assert write_back("p-share-b", {b_item["item_id"]: b_item}, {}, [], client).tasks_written == 1
    # each practice's queue role still names its own Organization
    for practice in ("p-share-a", "p-share-b"):
        role = client.read("PractitionerRole", queue_role_id(practice, "front_desk"))
        assert role is not None and role["organization"]["reference"] == f"Organization/{organization_id(practice)}"
    # staff of practice B cancel B's Task; practice A's poll must not see a decision
    b_tid = task_id_for("p-share-b", b_item["item_id"])
    server = client.read("Task", b_tid)
    assert server is not None
    client.put(dict(server, status="cancelled"), if_match=server["meta"]["versionId"])
    assert poll_decisions("p-share-a", {a_item["item_id"]: a_item}, client, None, now=9)[0] == []
    decisions, _ = poll_decisions("p-share-b", {b_item["item_id"]: b_item}, client, None, now=9)
    assert [(d["practice_id"], d["option"]) for d in decisions] == [("p-share-b", "reject")]
    # the server answers the practice's own Tasks only (requester = its Organization)
    seen = {
        t["id"]
        for t in client.search(
            "Task",
            {"_lastUpdated": "ge1970-01-01T00:00:00Z", "requester": f"Organization/{organization_id('p-share-a')}"},
        )
    }
    assert task_id_for("p-share-a", a_item["item_id"]) in seen and b_tid not in seen


def test_a_staff_status_the_item_absorbed_lets_later_revisions_reach_the_task(client):
    """Review s18 S14: after staff set a Task in-progress and the poller turned it into "assign",
    every later revision was held until the item closed (new evidence, a changed due date)."""
    from practiceflow.processors.workflows.workitem import evidence

    practice = "p-s14"
    item = _item(practice, 14)
    tid = task_id_for(practice, item["item_id"])
    assert write_back(practice, {item["item_id"]: item}, {}, [], client).tasks_written == 1
    server = client.read("Task", tid)
    assert server is not None
    client.put(dict(server, status="in-progress"), if_match=server["meta"]["versionId"])  # staff picked it up
    decisions, _ = poll_decisions(practice, {item["item_id"]: item}, client, None, now=9)
    assert [d["option"] for d in decisions] == ["assign"]
    taken = apply_decision(item, decisions[0])
    assert taken["state"] == "in_progress"
    report = write_back(practice, {item["item_id"]: taken}, {}, [], client)
    assert (report.tasks_written, report.tasks_held) == (1, 0)
    # a later revision (new evidence) reaches the Task too, still in progress
    later = dict(taken, revision=int(taken["revision"]) + 1, evidence=[evidence("payer answer", value="approved")])
    report = write_back(practice, {item["item_id"]: later}, {}, [], client)
    assert (report.tasks_written, report.tasks_held) == (1, 0)
    task = client.read("Task", tid)
    assert task is not None and task["status"] == "in-progress"
    assert any("payer answer" in i.get("valueString", "") for i in task["input"])


def test_a_rewritten_draft_and_the_queue_roles_are_audited_per_version(client):
    """Review s18 S2 (a): the audit source of a draft (and of Organization/PractitionerRole) had no
    version, so a draft rewritten under the same id got the same event id, which the chain drops."""
    practice = "p-s2a"
    audits: list[dict] = []
    first = _renewal_draft(practice, "d-s2a", 90.0)
    assert write_back(practice, {}, {"d-s2a": first}, [], client, audit=audits.append).drafts_written == 1
    rewritten = _renewal_draft(practice, "d-s2a", 30.0)
    assert write_back(practice, {}, {"d-s2a": rewritten}, [], client, audit=audits.append).drafts_written == 1
    drafts = [a for a in audits if a["entity_type"] == "Draft"]
    assert len(drafts) == 2 and len({a["event_id"] for a in drafts}) == 2
    # the practice's Organization renamed: its new version is a new event too
    from practiceflow.processors.ehr.config import EhrFhirTarget as Target

    renamed = Target(base_url=client.base, auth="none", practice_name="Renamed clinic")
    write_back(practice, {}, {}, [], client, target=renamed, audit=audits.append)
    orgs = [a for a in audits if a["entity_type"] == "Organization"]
    assert len(orgs) == 2 and len({a["event_id"] for a in orgs}) == 2


def test_a_signed_write_whose_answer_was_lost_is_answered_from_the_server(client):
    """Review s18 S2 (b): the write reached the EHR, then the producer failed before the audit
    and the CommandResult were sent; the next sync found the resource unchanged and answered
    nothing, so the signed renewal waited for ever. Now it is answered (and audited with the same
    event id as the lost one) from the server's version, once per command id."""
    practice = "p-s2b"
    draft = _renewal_draft(practice, "d-s2b")
    cmd = {
        "practice_id": practice,
        "command_id": "cmd-s2b",
        "workflow": "refill",
        "payload": json.dumps({"draft_id": "d-s2b", "signed_by": "dr.b", "signed_at": 5_000, "option": "approve"}),
    }
    lost: list[dict] = []  # the first sync's audits and answers are never sent
    first = write_back(practice, {}, {"d-s2b": draft}, [cmd], client, audit=lost.append)
    assert first.signed_written == 1 and [r["outcome"] for r in first.answered] == ["ok"]
    from practiceflow.processors.ehr.tasks import draft_target

    rtype, rid = draft_target(practice, "d-s2b", "fhir.MedicationRequest")  # type: ignore[misc]
    versions = client.history_count(rtype, rid)
    audits: list[dict] = []
    again = write_back(practice, {}, {"d-s2b": draft}, [cmd], client, audit=audits.append)
    assert (again.signed_written, again.signed_unanswered) == (0, 1)
    assert [(r["command_id"], r["outcome"]) for r in again.answered] == [("cmd-s2b", "ok")]
    assert first.answered[0]["reason"] == again.answered[0]["reason"]  # the same server version
    assert [a["event_id"] for a in audits if a["entity_type"] == "Draft"] == [
        a["event_id"] for a in lost if a["entity_type"] == "Draft"
    ]
    assert client.history_count(rtype, rid) == versions  # nothing written again
    # once answered, the command is neither answered nor written again, even if the EHR changed it
    server = client.read(rtype, rid)
    assert server is not None
    client.put(dict(server, status="stopped"), if_match=server["meta"]["versionId"])  # discontinued in the EHR
    done = write_back(practice, {}, {"d-s2b": draft}, [cmd], client, answered_ok={"cmd-s2b"})
    assert done.answered == [] and done.signed_written == 0
    assert client.read(rtype, rid)["status"] == "stopped"  # type: ignore[index]
    # review s19 S1: the answer aged out of cmd.results (30 days) while the command is still there: the
    # order staff stopped is not re-activated; the command is answered from the server's version
    expired = write_back(practice, {}, {"d-s2b": draft}, [cmd], client)
    assert expired.signed_written == 0 and [r["outcome"] for r in expired.answered] == ["ok"]
    assert client.read(rtype, rid)["status"] == "stopped"  # type: ignore[index]


def _signed_cmd(practice: str, command_id: str, draft_id: str) -> dict:
    payload = {"draft_id": draft_id, "signed_by": "dr.c", "signed_at": 5_000, "option": "approve"}
    return {
        "practice_id": practice,
        "command_id": command_id,
        "kind": "ehr_write",
        "workflow": "refill",
        "payload": json.dumps(payload),
    }


@pytest.mark.parametrize("staff_status", ["cancelled", "entered-in-error", "active"])
def test_a_signed_write_whose_draft_staff_changed_first_is_refused_not_answered_ok(client, staff_status):
    """Review s20 M1: the draft MedicationRequest was written, staff cancelled it (or entered it in
    error, or activated it themselves) in the EHR, then the clinician signed the item. The copy is past
    draft and differs from ours, which 57ec499 took for "we wrote it, staff changed it" and answered
    ``ok`` from the server's version: no "prescribe it by hand" item, an ``ehr_written (signed)`` audit,
    and no renewal. Never ours (no version carries the signed body or its note): answered ``refused``,
    nothing written, the clinician's item opens."""
    from practiceflow.processors.ehr.tasks import draft_target
    from practiceflow.processors.ehr.unwritten import unwritten_write_item

    practice, draft_id = f"p-s20m1-{staff_status}", f"d-s20m1-{staff_status}"
    draft = _renewal_draft(practice, draft_id)
    assert write_back(practice, {}, {draft_id: draft}, [], client).drafts_written == 1
    rtype, rid = draft_target(practice, draft_id, "fhir.MedicationRequest")  # type: ignore[misc]
    server = client.read(rtype, rid)
    assert server is not None and server["status"] == "draft"
    client.put(dict(server, status=staff_status), if_match=server["meta"]["versionId"])  # staff, in the EHR
    versions = client.history_count(rtype, rid)
    cmd = _signed_cmd(practice, f"cmd-s20m1-{staff_status}", draft_id)
    audits: list[dict] = []
    report = write_back(practice, {}, {draft_id: draft}, [cmd], client, audit=audits.append)
    # review s20 M2: a draft staff activated unchanged holds every field we sign (note aside), so it may
    # be our write on an EHR that drops notes: answered ``unknown`` ("check for an active order before
    # prescribing"), never "NOT written: prescribe it by hand" while that active order is there
    outcome = "unknown" if staff_status == "active" else "refused"
    assert [(r["command_id"], r["outcome"]) for r in report.answered] == [(cmd["command_id"], outcome)]
    assert f"the EHR's copy is {staff_status}" in report.answered[0]["reason"]
    assert (report.signed_written, report.signed_unanswered) == (0, 0)
    assert (report.signed_refused, report.signed_unproven) == ((0, 1) if staff_status == "active" else (1, 0))
    assert [a for a in audits if a["entity_type"] == "Draft"] == []  # no "written (signed)" audit
    assert client.history_count(rtype, rid) == versions  # no PUT
    assert client.read(rtype, rid)["status"] == staff_status  # type: ignore[index]
    item = unwritten_write_item(report.answered[0])
    assert len(item.work_items) == 1 and item.work_items[0]["queue"] == "clinician"
    assert ("prescribe it by hand" in item.work_items[0]["title"]) is (staff_status != "active")
    # refused is terminal: the next sync neither writes nor answers it again, nor rewrites the draft
    later = write_back(practice, {}, {draft_id: draft}, [cmd], client, answered={cmd["command_id"]: outcome})
    assert later.answered == [] and later.signed_held == 1 and later.drafts_written == 0
    assert client.history_count(rtype, rid) == versions


def test_a_signed_write_stopped_by_staff_without_its_note_is_still_answered_ok(client):
    """Review s20 M1, the other side: the signed order WAS written; staff discontinued it in an EHR that
    rewrote the order without our signature note, and the ``ok`` answer aged out of cmd.results. The
    resource's _history holds the version we wrote, so it is answered ``ok`` (not a false "prescribe it
    by hand") and the stopped order is not re-activated."""
    from practiceflow.processors.ehr.tasks import draft_target

    practice, draft_id = "p-s20m1-aged", "d-s20m1-aged"
    draft = _renewal_draft(practice, draft_id)
    cmd = _signed_cmd(practice, "cmd-s20m1-aged", draft_id)
    first = write_back(practice, {}, {draft_id: draft}, [cmd], client)
    assert first.signed_written == 1 and [r["outcome"] for r in first.answered] == ["ok"]
    rtype, rid = draft_target(practice, draft_id, "fhir.MedicationRequest")  # type: ignore[misc]
    server = client.read(rtype, rid)
    assert server is not None and any(n["text"].startswith("Signed by dr.c") for n in server["note"])
    stopped = {k: v for k, v in server.items() if k != "note"} | {"status": "stopped"}
    client.put(stopped, if_match=server["meta"]["versionId"])
    versions = client.history_count(rtype, rid)
    expired = write_back(practice, {}, {draft_id: draft}, [cmd], client)  # the answer aged out
    assert [r["outcome"] for r in expired.answered] == ["ok"] and expired.signed_unanswered == 1
    assert expired.signed_refused == 0 and expired.signed_written == 0
    assert client.history_count(rtype, rid) == versions
    assert client.read(rtype, rid)["status"] == "stopped"  # type: ignore[index]


def test_a_signed_write_answered_failed_is_never_written_later(client, monkeypatch):
    """Review s19 M1: a 403 on the signed PUT answered ``failed`` and opened "prescribe it by hand";
    the next sync, once the EHR accepted writes, wrote the active MedicationRequest after all and
    answered ``ok``: two active prescriptions. Any answer is now terminal for its command id."""
    from practiceflow.jobs.ehr import answers_by_command
    from practiceflow.processors.ehr.tasks import draft_target

    practice = "p-s19m1"
    draft = _renewal_draft(practice, "d-s19m1")
    cmd = {
        "practice_id": practice,
        "command_id": "cmd-s19m1",
        "kind": "ehr_write",
        "workflow": "refill",
        "payload": json.dumps({"draft_id": "d-s19m1", "signed_by": "dr.m", "signed_at": 5_000, "option": "approve"}),
    }
    real_put = client.put

    def forbidden(resource: dict, if_match: str | None = None) -> str:
        if resource["resourceType"] == "MedicationRequest":
            raise FhirError(403, "write MedicationRequest", "insufficient scope")
        return real_put(resource, if_match=if_match)

    monkeypatch.setattr(client, "put", forbidden)
    first = write_back(practice, {}, {"d-s19m1": draft}, [cmd], client)
    assert [r["outcome"] for r in first.answered] == ["failed"] and "403" in first.answered[0]["reason"]
    monkeypatch.undo()  # the practice fixed the client's write scope
    results = [{"kind": "refill_check", "command_id": "other", "outcome": "ok"}, *first.answered]
    answered = answers_by_command(results)
    assert answered == {"cmd-s19m1": "failed"}
    later = write_back(practice, {}, {"d-s19m1": draft}, [cmd], client, answered=answered)
    assert later.answered == [] and later.signed_written == 0 and later.signed_held == 1
    assert later.failed == []
    rtype, rid = draft_target(practice, "d-s19m1", "fhir.MedicationRequest")  # type: ignore[misc]
    assert client.read(rtype, rid) is None  # no order, not even its draft, in the EHR
    # refused and no_ehr are as terminal; an ok is still never written again
    for outcome in ("refused", "no_ehr"):
        held = write_back(practice, {}, {"d-s19m1": draft}, [cmd], client, answered={"cmd-s19m1": outcome})
        assert held.answered == [] and held.signed_written == 0 and client.read(rtype, rid) is None
    assert answers_by_command([*first.answered, dict(first.answered[0], outcome="ok")]) == {"cmd-s19m1": "ok"}


def test_a_denials_corrected_claim_is_written_to_the_ehr_as_a_draft_claim(client):
    """Issue 12: the denials step's FHIR Claim draft reaches the EHR as a Claim in status draft, the fix
    on its lines; a replay writes no new version."""
    from practiceflow.processors.ehr.tasks import draft_target
    from practiceflow.processors.rules import load_table
    from practiceflow.processors.workflows.denials.rules import load_denial_rules
    from practiceflow.processors.workflows.denials.step import DenialContext, decide, descriptions_from_table
    from practiceflow.processors.workflows.denials.store import fold_claim
    from tests.denials_fixtures import RemitClaim, claim_837, claim_record, read_adjudications, read_claim, remit_835

    state = None
    for c in (claim_record(), claim_record(lines=(("99214", ("25",), 150.0), ("82947", (), 40.0)))):
        state = fold_claim(state, read_claim(claim_837(c)))
    remit = RemitClaim(
        "PCN1001",
        190.0,
        32.0,
        status="1",
        lines=(
            ("99214", 150.0, 0.0, (("CO", "4", 150.0),), ("N519",)),
            ("82947", 40.0, 32.0, (("CO", "45", 8.0),), ()),
        ),
    )
    (adj,) = read_adjudications(remit_835([remit]))
    descriptions = descriptions_from_table(load_table("denials", "denials.carc_table").entries)
    d = decide(DenialContext(state, descriptions=descriptions), adj, load_denial_rules(), 1_764_600_000_000)
    (item,) = d.result.work_items
    practice = item["practice_id"]
    drafts = {x["draft_id"]: x for x in d.result.drafts}
    (claim_draft,) = [x for x in drafts.values() if x["kind"] == "fhir.Claim"]
    report = write_back(practice, {item["item_id"]: item}, drafts, [], client)
    assert report.drafts_written == 1 and not report.failed  # the Claim; the 837P and write-off are not EHR resources
    rtype, rid = draft_target(practice, claim_draft["draft_id"], "fhir.Claim")  # type: ignore[misc]
    written = client.read(rtype, rid)
    assert written is not None and rtype == "Claim"
    assert written["status"] == "draft" and written["use"] == "claim"
    assert [m["coding"][0]["code"] for m in written["item"][0]["modifier"]] == ["25"]
    assert written["related"][0]["claim"]["identifier"]["value"] == adj["payer_claim_control_number"]
    versions = client.history_count(rtype, rid)
    again = write_back(practice, {item["item_id"]: item}, drafts, [], client)
    assert again.drafts_written == 0 and client.history_count(rtype, rid) == versions
