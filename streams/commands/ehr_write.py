"""The EHR write-back: work items -> FHIR Tasks, drafts -> their resources, ``cmd.ehr_write`` ->
the signed resource; and the way back, Task status changes -> ``StaffDecision`` s.

One entry point writes (:func:`write_back`), so a practice + workflow in pilot mode can be
gated in one place; :func:`sync_practice` reads the practice's topics and calls it, and
:func:`poll_decisions` reads the EHR back. Both run as ``practiceflow ehr sync|poll`` and
from the day job.

Nothing twice. A Task's id is derived from practice + item id and carries the item
revision it was written from; the writer reads the Task first and writes only a newer
revision, with ``If-Match`` on the version it read (a Task changed meanwhile answers
409/412 and is read again). Drafts and signed drafts are compared with what the server
holds and written only when different. So running the write-back again over the same
topics (a replay, a restart, the next sync) adds no version on the server: the tests
count versions. A Task whose status staff changed in the EHR (completed, rejected...)
is not overwritten by an older view of its item: it is held until the poller turned the
change into a decision and the item's next revision closes it.

Audited: every resource written is an ``AuditEvent`` (``ehr_written``) on ``pf.audit.in``
with the resource, version and item revision; every decision read back is one
(``ehr_decision_read``). The event ids are derived from what was written, so a re-run
that writes nothing audits nothing new.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from practiceflow.processors.audit import audit_event
from practiceflow.processors.ehr.config import EhrFhirTarget
from practiceflow.processors.ehr.order_auth import (
    ATTACH_NUMBER,
    ORDER_RESOURCE,
    coverage_information,
    with_authorization,
)
from practiceflow.processors.ehr.tasks import (
    STATUS_FOR_STATE,
    WRITTEN_STATUS_EXT,
    decision_from_task,
    draft_resource,
    item_id_of,
    organization_id,
    queue_roles,
    revision_of,
    signed_note,
    task_for,
    written_status_of,
)
from practiceflow.processors.pilot.mode import is_piloted
from practiceflow.processors.workflows.workitem import END_STATES
from practiceflow.schemas.typed import DraftDict, HandoffItemDict, StaffDecisionDict
from practiceflow.sinks.ehr_fhir import FhirClient, FhirError, VersionConflict
from practiceflow.streams.metrics import COMMAND_RESULTS, init_command_outcomes

log = logging.getLogger("practiceflow.ehr")
CANCELLABLE = frozenset({"MedicationRequest", "Coverage", "Claim"})  # resources whose status has "cancelled"
# Resources whose status has "draft": only these are written before sign-off, and only when the
# body says "draft". An intake Patient (no status at all) or an "active" Coverage written before
# anyone decided was a live registration from an unverified form (review s18 M4).
DRAFT_STATUS_TYPES = frozenset({"MedicationRequest", "Coverage", "Claim"})


def writable_before_sign_off(rtype: str, resource: Mapping[str, Any]) -> bool:
    """A draft may go to the EHR unsigned only as what the EHR itself shows as a draft."""
    return rtype in DRAFT_STATUS_TYPES and resource.get("status") == "draft"


Audit = Callable[[dict[str, Any]], None]


init_command_outcomes("ehr_write")  # a failure rate of 0 reads 0, not "no data"
COMMAND_RESULTS.labels("ehr_write", "unknown")  # review s20 M2: unproven signed writes, also from 0


@dataclass
class WriteReport:
    """What one write-back pass did (counts; reasons without PHI)."""

    tasks_written: int = 0
    tasks_unchanged: int = 0
    tasks_held: int = 0  # staff changed the Task in the EHR; waits for the poller's decision
    drafts_written: int = 0
    drafts_unchanged: int = 0
    drafts_held: int = 0  # no draft status in the EHR (intake Patient/Coverage): written only once signed
    signed_written: int = 0
    signed_unanswered: int = 0  # signed resource already on the server, its command answered only now
    signed_held: int = 0  # answered failed/refused/no_ehr before: a person does it by hand, never written
    signed_refused: int = 0  # changed in the EHR before it was ever written (review s20 M1): answered refused
    signed_unproven: int = 0  # could not tell whether it was written (review s20 M2): answered unknown
    piloted: int = 0  # items, drafts and signed drafts of workflows in pilot mode: never written
    orders_updated: int = 0  # EHR orders given the payer's authorization number (prior_auth)
    # designed refusals (an HL7 order, another chart, no mrn_system ...): answered failed, so the
    # billing office gets an item; not a failure of the sync (its exit code, `ehr run`'s round)
    orders_by_hand: int = 0
    failed: list[str] = field(default_factory=list)
    answered: list[dict[str, Any]] = field(default_factory=list)  # CommandResults for cmd.ehr_write

    def summary(self) -> str:
        return (
            f"{self.tasks_written} Tasks written ({self.tasks_unchanged} unchanged, {self.tasks_held} held for staff "
            f"changes), {self.drafts_written + self.signed_written} drafts written ({self.signed_written} signed), "
            f"{len(self.failed)} failed"
            + (f", {self.piloted} withheld (pilot mode)" if self.piloted else "")
            + (f", {self.orders_updated} orders given their authorization number" if self.orders_updated else "")
            + (
                f", {self.orders_by_hand} authorization numbers handed to the billing office (order not writable)"
                if self.orders_by_hand
                else ""
            )
            + (f", {self.drafts_held} drafts held for sign-off" if self.drafts_held else "")
            + (
                f", {self.signed_unanswered} signed writes found on the server and answered"
                if self.signed_unanswered
                else ""
            )
            + (f", {self.signed_held} signed writes held (answered not ok: done by hand)" if self.signed_held else "")
            + (
                f", {self.signed_refused} signed writes refused (changed in the EHR before they were written)"
                if self.signed_refused
                else ""
            )
            + (
                f", {self.signed_unproven} signed writes unproven (answered unknown: a person checks the EHR)"
                if self.signed_unproven
                else ""
            )
        )


def _same(server: Mapping[str, Any] | None, ours: Mapping[str, Any]) -> bool:
    if server is None:
        return False
    strip = {k: v for k, v in server.items() if k not in ("meta", "text")}
    return strip == {k: v for k, v in ours.items() if k not in ("meta", "text")}


def _carries(version: Mapping[str, Any], ours: Mapping[str, Any], mark: str | None) -> bool:
    """This version is this signed command's write: the same body, or (staff edited it since) still
    carrying the signature note the command wrote."""
    notes = [n.get("text") for n in version.get("note") or [] if isinstance(n, Mapping)]
    return _same(version, ours) or (mark is not None and mark in notes)


# What a draft withdrawn in the EHR becomes: a signed write that never happened finds its draft so.
DISCARDED = frozenset({"cancelled", "entered-in-error"})
UNPROVEN = "unknown"  # the cmd.ehr_write answer when nothing tells whether the signed write reached the EHR


def _holds(version: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    """Every field the signed write sent (``note`` aside) is in this version with our value, status
    included; the server's own additions (``authoredOn``, ``requester``, extensions) are allowed.
    Review s20 M2: many EHRs drop or rewrite ``note`` and add fields, so neither the whole body nor
    the signature note survives a write there."""
    return all(version.get(k) == v for k, v in ours.items() if k not in ("meta", "text", "note"))


def _written_by_us(
    client: FhirClient, current: Mapping[str, Any], ours: Mapping[str, Any], payload: Mapping[str, Any]
) -> tuple[str, str]:
    """("ours" | "not_ours" | UNPROVEN, why) for a signed command's resource whose server copy is past
    ``draft`` and differs from our body.

    Review s20 M1: such a copy is either ours, then changed by staff (stopped, edited), or never ours:
    staff cancelled the *draft* or acted on it in the EHR before the signature arrived. Only the first
    may be answered ``ok``; the second is ``refused`` (terminal: "NOT written, prescribe it by hand").
    Review s20 M2: a refusal of an order that IS active in the EHR asks for a second prescription, so
    "not ours" needs proof too, and what cannot be told either way is ``unknown`` (a person checks
    for the active order before prescribing).

    - The current copy carrying our body or signature note: ours.
    - A readable ``_history`` with a version that does: ours (whatever staff did to the order since).
    - No ``_history`` (405/404 are common): a copy that still holds every field we sent with status
      ``active`` is our write whose answer was lost (s18 S2 b) on an EHR that drops ``note``; a
      withdrawn draft (``DISCARDED``) is not ours; anything else is unproven.
    - A readable ``_history`` with no version of ours, while the copy holds every field we sent: staff
      may have activated the draft themselves (the EHR kept no note anywhere), or the EHR dropped our
      note: unproven, never "prescribe it by hand" while an active order is there. Otherwise not ours."""
    rtype, rid = str(ours["resourceType"]), str(ours["id"])
    mark = signed_note(payload) if rtype == "MedicationRequest" else None
    if _carries(current, ours, mark):
        return "ours", ""
    holds = _holds(current, ours)
    try:
        versions = list(client.history(rtype, rid))
    except FhirError as exc:
        why = f" (its history could not be read: {exc.status})"
        if holds:
            return "ours", ""
        return ("not_ours" if current.get("status") in DISCARDED else UNPROVEN), why
    if any(_carries(v, ours, mark) for v in versions):
        return "ours", ""
    return (
        (UNPROVEN, " (it holds the signed order, but no version carries its signature)") if holds else ("not_ours", "")
    )


def _put_if_changed(client: FhirClient, resource: dict[str, Any], current: Mapping[str, Any] | None) -> str | None:
    """Write unless the server already holds exactly this; the new version id, or None."""
    if _same(current, resource):
        return None
    version = ((current or {}).get("meta") or {}).get("versionId") if current is not None else None
    return client.put(resource, if_match=version)


def _audit(audit: Audit | None, practice: str, entity_type: str, entity_id: str, reason: str, source: str) -> None:
    if audit is not None:
        audit(
            audit_event(
                practice,
                actor="ehr-writeback",
                action="ehr_written",
                entity_type=entity_type,
                entity_id=entity_id,
                reason=reason,
                at=int(datetime.now(UTC).timestamp() * 1000),
                source=source,
            )
        )


def _write_task(client: FhirClient, task: dict[str, Any], item: HandoffItemDict, report: WriteReport) -> str | None:
    """One Task, at most one new version; returns the version written or None."""
    for _attempt in range(3):
        current = client.read("Task", task["id"])
        if current is not None:
            if revision_of(current) >= int(item.get("revision") or 1):
                report.tasks_unchanged += 1
                return None
            state = item.get("state") or "open"
            # a status staff set that the item has not absorbed yet (the poller's decision is still
            # to come); one the item's state already writes (in-progress -> assign -> in_progress)
            # is no pending change, so the item's later revisions reach the Task (review s18 S14)
            pending = current.get("status") not in (written_status_of(current), STATUS_FOR_STATE.get(state))
            if pending and state not in END_STATES:
                report.tasks_held += 1  # the poller turns it into a decision; then the item closes
                return None
        try:
            version = client.put(task, if_match=((current or {}).get("meta") or {}).get("versionId"))
        except VersionConflict:
            continue  # changed meanwhile (staff, another writer): read again and decide again
        report.tasks_written += 1
        return version
    report.failed.append(f"Task/{task['id']}: changed on the server during 3 attempts; retried next sync")
    return None


def write_back(
    practice_id: str,
    items: Mapping[str, HandoffItemDict],
    drafts: Mapping[str, DraftDict],
    signed: Iterable[Mapping[str, Any]],
    client: FhirClient,
    *,
    target: EhrFhirTarget | None = None,
    audit: Audit | None = None,
    pilot: Mapping[str, Collection[str]] | None = None,
    answered_ok: Collection[str] = (),
    answered: Mapping[str, str] | None = None,
) -> WriteReport:
    """Write one practice's work items as Tasks, its FHIR drafts, and the drafts staff signed
    (``signed``: ``cmd.ehr_write`` commands) to its EHR. THE single entry point of every write
    to an EHR: gate it (pilot mode) here, nowhere else.

    Per resource failures are collected in the report (the next sync tries again), never
    raised, so one bad resource does not stop a practice's write-back; transport failures
    are retried inside the client.

    ``answered_ok``: ids of ``cmd.ehr_write`` commands already answered ``ok`` on ``cmd.results``.
    A signed command whose resource the server already holds and that is not among them is
    answered (and audited) from the server's version: idempotent by command id, so a write whose
    answer was lost is answered at the next sync and an answered one is not answered again.

    ``answered``: command id -> outcome of every ``cmd.ehr_write`` answer on ``cmd.results``. Any
    answer is terminal for its command (review s19 M1): ``ok`` is written; ``failed``, ``refused`` and
    ``no_ehr`` opened a "do it by hand" item, so a person entered it in the EHR, and a later sync
    writing it after all (the 403 fixed, the conflict over) would make a second active order or a
    second chart. Such a command is never built, written or answered again (``signed_held``).
    Transient errors raise inside the client and are never answered, so they keep retrying."""
    report = WriteReport()
    answered = dict(answered or {})
    done = set(answered_ok) | set(answered)
    if pilot:  # pilot mode (settings ``pilot``, processors/pilot/mode.py): a piloted workflow writes nothing
        n = len(items) + len(drafts)
        items = {k: i for k, i in items.items() if not is_piloted(pilot, practice_id, i["workflow"])}
        drafts = {k: d for k, d in drafts.items() if not is_piloted(pilot, practice_id, d["workflow"])}
        signed = [c for c in signed if not is_piloted(pilot, practice_id, str(c.get("workflow")))]
        report.piloted = n - len(items) - len(drafts)
    name = target.practice_name if target is not None else None
    write_drafts = target.write_drafts if target is not None else True
    for resource in queue_roles(practice_id, name):
        try:
            rtype, rid = resource["resourceType"], resource["id"]
            version = _put_if_changed(client, resource, client.read(rtype, rid))
            if version is not None:  # the version in the source: a later rewrite is a new event
                _audit(
                    audit, practice_id, rtype, rid, f"{rtype}/{rid} version {version}", f"ehr:{rtype}/{rid}/{version}"
                )
        except FhirError as exc:
            report.failed.append(f"{resource['resourceType']}/{resource['id']}: {exc}")
    signed_by_draft = {}
    attach: list[tuple[Mapping[str, Any], dict[str, Any]]] = []  # authorization numbers for the EHR's orders
    held: set[str] = set()  # drafts whose signed write was answered not ok: not even rewritten as drafts
    for cmd in signed:
        outcome = answered.get(str(cmd.get("command_id")))
        try:
            payload = json.loads(cmd.get("payload") or "{}")
        except ValueError:
            if outcome is None:
                report.answered.append(_result(cmd, "refused", "payload is not JSON"))
            continue
        if payload.get("action") == ATTACH_NUMBER:
            if str(cmd.get("command_id")) not in done:  # any answer is final: never sent twice
                attach.append((cmd, payload))
            continue
        if outcome is not None and outcome != "ok":
            report.signed_held += 1  # answered not ok: a person did it by hand; never written, never re-answered
            held.add(str(payload.get("draft_id") or (cmd.get("params") or {}).get("draft_id")))
            continue
        signed_by_draft[str(payload.get("draft_id") or (cmd.get("params") or {}).get("draft_id"))] = (cmd, payload)
    kinds = {d["draft_id"]: d["kind"] for d in drafts.values()}
    # drafts of items a person rejected (or that were superseded): cancelled in the EHR, never
    # left as drafts that someone might still sign there
    dropped = {
        d
        for it in items.values()
        if (it.get("state") or "open") in ("rejected", "superseded")
        for d in it.get("draft_ids") or []
    }
    # a registration's Patient before its Coverage, whose beneficiary refers to it
    ordered = sorted(drafts.values(), key=lambda d: d["kind"] != "fhir.Patient")
    for draft in ordered if write_drafts else ():
        if draft["practice_id"] != practice_id or (
            draft["draft_id"] in held and draft["draft_id"] not in signed_by_draft
        ):
            continue
        pair = signed_by_draft.get(draft["draft_id"])
        if pair is not None and str(pair[0].get("command_id")) in done:
            # written and answered: never again, or a later sync would undo what staff did to the
            # order in the EHR since (discontinued it, changed the quantity)
            report.drafts_unchanged += 1
            continue
        try:
            built = draft_resource(draft, signed=pair[1] if pair else None)
        except (ValueError, KeyError) as exc:
            report.failed.append(f"draft {draft['draft_id']}: {exc}")
            if pair is not None:  # a signed write that cannot be built is answered, never silent
                report.answered.append(_result(pair[0], "failed", str(exc)))
            continue
        if built is None:
            continue
        rtype, rid, resource = built
        if pair is None and not writable_before_sign_off(rtype, resource):
            report.drafts_held += 1  # written only from a signed cmd.ehr_write
            continue
        if pair is None and draft["draft_id"] in dropped and rtype in CANCELLABLE:
            resource["status"] = "cancelled"
        try:
            current: Mapping[str, Any] | None = None
            if pair is not None and rtype in ("Patient", "Coverage"):
                # rid stays the draft's digest id in reasons and audits: a matched chart's own id
                # is the EHR's, possibly MRN-like, and stays out of the trail and cmd.results
                mrn_system = target.mrn_system if target is not None else None
                _, resource, current = _registration(client, practice_id, draft, drafts, resource, mrn_system)
            else:
                current = client.read(rtype, rid)
            if pair is None and current is not None and current.get("status") not in (None, "draft"):
                report.drafts_unchanged += 1  # signed, cancelled or acted on in the EHR: never back to draft
                continue
            if (
                pair is not None
                and rtype not in ("Patient", "Coverage")  # a registration merges into the EHR's live chart
                and current is not None
                and current.get("status") not in (None, "draft")
                and not _same(current, resource)
            ):
                # review s19 S1: beyond draft and not our body, so staff changed it in the EHR; never
                # written over, even when this command's answer has aged out of cmd.results. Review s20
                # M1: written by us, then changed (stopped), it is answered ok from the server's version
                # below; changed before it was ever written (the draft cancelled or acted on in the
                # EHR), nothing was written: refused, terminal, and the signer's item opens
                verdict, why = _written_by_us(client, current, resource, pair[1])
                status = str(current.get("status"))[:40]
                if verdict == "not_ours":
                    report.signed_refused += 1
                    report.answered.append(
                        _result(
                            pair[0],
                            "refused",
                            f"the EHR's copy is {status}: changed in the EHR before the signed write{why}; "
                            "not written, check the order in the EHR",
                        )
                    )
                    continue
                if verdict == UNPROVEN:  # review s20 M2: never a false "not written" while it may be there
                    report.signed_unproven += 1
                    report.answered.append(
                        _result(
                            pair[0],
                            UNPROVEN,
                            f"the EHR's copy is {status} and differs from the signed order{why}; could not tell "
                            "whether the signed write reached the EHR: check for an active order before prescribing",
                        )
                    )
                    continue
                version = None
            else:
                version = _put_if_changed(client, resource, current)
        except (FhirError, ValueError) as exc:
            report.failed.append(f"{rtype}/{rid}: {exc}")
            if pair is not None:
                report.answered.append(_result(pair[0], "failed", str(exc)))
            continue
        if version is None and pair is not None and str(pair[0].get("command_id")) not in done:
            # the signed resource is already on the server, but its command was never answered
            # (the producer failed after an earlier write, review s18 S2 b): answer and audit it now
            # from the server's version; the same source as that earlier write, so one audit event
            version = str(((current or {}).get("meta") or {}).get("versionId") or "")
            report.signed_unanswered += 1
        elif version is None:
            report.drafts_unchanged += 1
            continue
        elif pair is not None:
            report.signed_written += 1
        else:
            report.drafts_written += 1
        if pair is not None:
            report.answered.append(_result(pair[0], "ok", f"{rtype}/{rid} version {version}"))
        _audit(
            audit,
            practice_id,
            "Draft",
            draft["draft_id"],
            f"{rtype}/{rid} version {version}" + (" (signed)" if pair else " (draft)"),
            # the version in the source: a draft rewritten under the same id is a new event (S2 a)
            f"ehr:{rtype}/{rid}/{'signed' if pair else 'draft'}/{version}",
        )
    for draft_id, (cmd, _payload) in signed_by_draft.items():
        if draft_id not in kinds and str(cmd.get("command_id")) not in done:
            report.failed.append(f"cmd.ehr_write {cmd.get('command_id')}: draft {draft_id} not on pf.drafts")
            report.answered.append(_result(cmd, "failed", f"draft {draft_id} not on pf.drafts"))  # never silent
    for cmd, payload in attach:
        mrn_system = target.mrn_system if target is not None else None
        attach_authorization(client, practice_id, cmd, payload, report, audit, mrn_system=mrn_system)
    for item in items.values():
        if item["practice_id"] != practice_id:
            continue
        task = task_for(item, kinds, name)
        try:
            version = _write_task(client, task, item, report)
        except FhirError as exc:
            report.failed.append(f"Task/{task['id']}: {exc}")
            continue
        if version is not None:
            _audit(
                audit,
                practice_id,
                "HandoffItem",
                item["item_id"],
                f"Task/{task['id']} version {version} (item revision {item.get('revision', 1)}, {task['status']})",
                f"ehr:Task/{task['id']}/{item.get('revision', 1)}",
            )
    return report


def _order_is_for(client: FhirClient, order: Mapping[str, Any], mrn: str, mrn_system: str) -> bool:
    """Whether the EHR's order is for the patient with ``mrn``: its subject is a Patient (a plain
    ``Patient/<id>`` reference) that carries ``mrn`` under the EHR's MRN system."""
    ref = str((order.get("subject") or {}).get("reference") or "")
    if not mrn or not ref.startswith("Patient/") or ref.count("/") != 1:
        return False
    patient = client.read("Patient", ref.split("/", 1)[1])
    return patient is not None and any(
        str(i.get("system") or "") == mrn_system and str(i.get("value") or "") == mrn
        for i in patient.get("identifier") or ()
    )


def attach_authorization(
    client: FhirClient,
    practice_id: str,
    cmd: Mapping[str, Any],
    payload: Mapping[str, Any],
    report: WriteReport,
    audit: Audit | None = None,
    *,
    mrn_system: str | None = None,
) -> None:
    """The payer's authorization number onto the EHR's order (``prior_auth`` ``ehr_write`` command,
    ``processors/workflows/prior_auth/step.py`` ``order_number_command``): the order as the EHR
    holds it, with a Da Vinci CRD coverage-information extension (:mod:`~practiceflow.processors.ehr.order_auth`),
    written with ``If-Match`` on the version read, and answered on ``cmd.results``.

    Never creates an order: only one read from the EHR's FHIR API is a resource there. An order of
    an HL7 v2 message (ORM/OML) has no FHIR id in the EHR (its placer number is no resource id, and
    guessing one could write onto another patient's order), and an order the EHR does not hold
    (deleted, or written under another id) is answered ``failed`` with the reason: the billing
    office gets an item to enter the number by hand (``processors/ehr/unwritten.py``). Administrative,
    not clinical: no signature (the clinician signed the request, the payer approved it); audited.

    Fail closed on whose order it is (review s21 M1): only an order whose source is known to be the
    FHIR feed (an authorization drafted before the source was recorded has none), and only when the
    order the EHR holds is for the authorization's patient: its ``subject`` is a Patient that carries
    the patient's MRN under the practice's ``mrn_system`` (``ehr_fhir``). Any FHIR client can post
    to the gateway, so an id alone does not prove it is the EHR's order for this patient."""
    aid = str(payload.get("authorization_id") or "")
    number = str(payload.get("authorization_number") or "")
    order_id = str(payload.get("order_id") or "")
    rtype = ORDER_RESOURCE.get(str(payload.get("order_type") or "Order"), "ServiceRequest")
    feed = payload.get("order_feed")

    def answer(outcome: str, reason: str, *, error: bool = False) -> None:
        """``error``: the EHR failed (a sync failure); else a designed refusal, handed to a person."""
        if outcome != "ok" and error:
            report.failed.append(f"cmd.ehr_write {cmd.get('command_id')}: {reason}")
        elif outcome != "ok":
            report.orders_by_hand += 1
        report.answered.append(_result(cmd, outcome, reason))

    if not aid or not number or not order_id:
        answer(
            "failed", "authorization number command without authorization, number or order: nothing written", error=True
        )
        return
    if feed != "fhir":
        source = (
            f"came from the {feed} feed (an HL7 v2 ORM/OML message), not the EHR's FHIR API"
            if feed
            else "has no recorded source (drafted before the source was kept)"
        )
        answer(
            "failed",
            f"the order {source}: the EHR has no {rtype} practiceflow can tell is this order, so the "
            f"authorization number {number} was not attached; enter it on the order in the EHR by hand",
        )
        return
    if not mrn_system or mrn_system == PF_MRN_SYSTEM:
        answer(
            "failed",
            "no mrn_system (the EHR's MRN identifier system) is configured for this practice in ehr_fhir, so "
            f"practiceflow cannot tell whose order {rtype}/{order_id} is: authorization number {number} was not "
            "attached; configure mrn_system, enter it by hand",
        )
        return
    try:
        for _attempt in range(3):
            current = client.read(rtype, order_id)
            if current is None:
                answer(
                    "failed",
                    f"the order {rtype}/{order_id} is not in the EHR: nothing written (an order is never created); "
                    f"enter authorization number {number} on the order in the EHR by hand",
                )
                return
            version = str((current.get("meta") or {}).get("versionId") or "")
            if not version:
                answer("failed", f"the EHR gave no version of {rtype}/{order_id}: not written without If-Match")
                return
            if not _order_is_for(client, current, str(cmd.get("patient_id") or ""), mrn_system):
                answer(
                    "failed",
                    f"the order {rtype}/{order_id} in the EHR is not for this authorization's patient (its subject "
                    f"has no matching MRN under {mrn_system}): nothing written; enter authorization number "
                    f"{number} on the right order by hand",
                )
                return
            coverage: dict[str, Any] = {"display": str(payload.get("payer_name") or "the payer")}
            cov_id = str(payload.get("coverage_id") or "")
            if cov_id and client.read("Coverage", cov_id) is not None:
                coverage = {"reference": f"Coverage/{cov_id}", **coverage}
            updated = with_authorization(current, coverage_information(payload, coverage))
            if _same(current, updated):
                written = version  # already there (a sync whose answer was lost): answered, not written again
            else:
                try:
                    written = client.put(updated, if_match=version)
                except VersionConflict:
                    continue  # changed in the EHR meanwhile: read again, keep what staff changed
                report.orders_updated += 1
            answer("ok", f"{rtype}/{order_id} version {written}: authorization number attached")
            _audit(
                audit,
                practice_id,
                "Authorization",
                aid,
                f"{rtype}/{order_id} version {written} (authorization number attached)",
                f"ehr:{rtype}/{order_id}/authorization/{aid}/{written}",
            )
            return
    except FhirError as exc:
        answer("failed", f"{rtype}/{order_id}: {exc}", error=True)
        return
    report.failed.append(f"{rtype}/{order_id}: changed on the server during 3 attempts; retried next sync")


PF_MRN_SYSTEM = "urn:practiceflow:mrn"  # the intake drafts' own system: no EHR's, never searched (s19 M4)


def _matched_chart(
    client: FhirClient, practice_id: str, patient: Mapping[str, Any], mrn_system: str | None
) -> dict[str, Any] | None:
    """The EHR's own chart of a matched intake patient: the one Patient whose identifier is the
    practice's MRN under the EHR's own MRN system (``EhrFhirTarget.mrn_system``); None: a new
    patient (the draft names no MRN). A matched patient whose chart the search does not find raises
    (review s19 M5: the chart exists, since the match came from the EHR's own records).

    Review s19 M4: the draft's ``urn:practiceflow:mrn`` is a system only practiceflow writes and is
    the same for every practice, so searching it found nothing in a real EHR (a second chart) and
    another practice's chart on a shared FHIR base. So: no ``mrn_system``, no search and no write
    (ValueError: answered failed, the front desk enters it by hand); a found chart that another
    practice's registration wrote (``managingOrganization`` is another practiceflow Organization)
    is refused; several charts raise too: a person picks, never a guess or a third chart."""
    ident = next(iter(patient.get("identifier") or []), None)
    if not ident or not ident.get("value"):
        return None
    if not mrn_system or mrn_system == PF_MRN_SYSTEM:
        raise ValueError(
            "matched patient, but no mrn_system (the EHR's MRN identifier system) is configured for this "
            "practice in ehr_fhir: nothing written; configure mrn_system, enter it by hand"
        )
    found = list(client.search("Patient", {"identifier": f"{mrn_system}|{ident['value']}"}))
    ours = f"Organization/{organization_id(practice_id)}"
    for chart in found:
        managed = str((chart.get("managingOrganization") or {}).get("reference") or "")
        if managed.startswith("Organization/pf-") and managed != ours:
            raise ValueError("the chart with this MRN belongs to another practice on this FHIR base: nothing written")
    if len(found) > 1:  # never a third chart, and never a guess which one is the patient's
        raise ValueError(f"{len(found)} Patients in the EHR carry this MRN: a person picks the chart")
    if not found:
        # the patient was matched by this MRN, so the EHR has the chart: a search that misses it
        # (a wrong mrn_system, another token form, a merged chart) must not create a second one
        # under the EHR's own MRN (review s19 M5)
        raise ValueError(
            "no chart with this MRN under the configured mrn_system: nothing written; check mrn_system, "
            "enter it by hand"
        )
    return dict(found[0])


def _add_entries(chart: list[Any], ours: list[Any]) -> list[Any]:
    """The chart's list with the intake's entries it lacks added: never drop the EHR's other names
    (maiden, alias: used for matching), work phones or mailing addresses (review s19 M4)."""

    def core(entry: Any) -> Any:
        return (
            {k: v for k, v in entry.items() if k not in ("use", "period", "rank")} if isinstance(entry, dict) else entry
        )

    have = [core(e) for e in chart]
    return list(chart) + [e for e in ours if core(e) not in have]


def _registration(
    client: FhirClient,
    practice_id: str,
    draft: DraftDict,
    drafts: Mapping[str, DraftDict],
    resource: dict[str, Any],
    mrn_system: str | None = None,
) -> tuple[str, dict[str, Any], Mapping[str, Any] | None]:
    """(id, resource, server copy) of a signed intake Patient or Coverage.

    A matched patient's Patient updates the EHR's existing chart (found by its MRN under the EHR's
    ``mrn_system``) instead of creating a second one under the draft's id (review s18 M4, s19 M4):
    the server copy with the intake's demographics laid over it, its identifiers, ``active`` and
    managing organization kept, and the intake's names, telecoms and addresses added to its own. A
    new chart is written under the practice's Organization (so no other practice's registration
    ever takes it for its own) and the MRN under the EHR's system. A Coverage's beneficiary is
    rewritten to the id its Patient is written under (the draft names the form's id, not the EHR's)."""
    rtype = resource["resourceType"]
    if rtype == "Patient":
        chart = _matched_chart(client, practice_id, resource, mrn_system)
        if chart is None:
            new = dict(resource)
            new.setdefault("managingOrganization", {"reference": f"Organization/{organization_id(practice_id)}"})
            if mrn_system and new.get("identifier"):
                new["identifier"] = [
                    dict(i, system=mrn_system) if i.get("system") == PF_MRN_SYSTEM else i for i in new["identifier"]
                ]
            return resource["id"], new, client.read("Patient", resource["id"])
        keep = ("id", "identifier", "meta", "active", "managingOrganization", "name", "telecom", "address")
        merged = {**chart, **{k: v for k, v in resource.items() if k not in keep}}
        for key in ("name", "telecom", "address"):
            if resource.get(key):
                merged[key] = _add_entries(list(chart.get(key) or []), list(resource[key]))
        return str(chart["id"]), merged, chart
    patient_draft = next(
        (
            d
            for d in drafts.values()
            if d["practice_id"] == practice_id
            and d.get("item_id") == draft.get("item_id")
            and d["kind"] == "fhir.Patient"
        ),
        None,
    )
    ref = (resource.get("beneficiary") or {}).get("reference")
    if patient_draft is not None and ref == f"Patient/{json.loads(patient_draft['body'] or '{}').get('id')}":
        built = draft_resource(patient_draft)
        if built is not None:
            chart = _matched_chart(client, practice_id, built[2], mrn_system)
            resource["beneficiary"] = {"reference": f"Patient/{chart['id'] if chart else built[1]}"}
    ref = str((resource.get("beneficiary") or {}).get("reference") or "")
    if not ref.startswith("Patient/") or client.read("Patient", ref.removeprefix("Patient/")) is None:
        # an ambiguous match (no Patient draft: a person picks the chart) or a Patient not written:
        # never a Coverage that points at no chart
        raise ValueError("the Coverage's patient is not in the EHR: pick the chart, then enter the coverage by hand")
    return resource["id"], resource, client.read("Coverage", resource["id"])


def _result(cmd: Mapping[str, Any], outcome: str, reason: str) -> dict[str, Any]:
    COMMAND_RESULTS.labels("ehr_write", outcome).inc()  # a failing write-back alerts (deploy/prometheus)
    return {
        "practice_id": cmd["practice_id"],
        "command_id": cmd["command_id"],
        "kind": "ehr_write",
        "workflow": cmd.get("workflow") or "",
        "outcome": outcome,
        "reason": reason,
        "payload_type": None,
        "payload": "",
        "attempts": 1,
        "latency_ms": None,
        "completed_at": int(datetime.now(UTC).timestamp() * 1000),
        "params": dict(cmd.get("params") or {}),
    }


# ---------------------------------------------------------------------- the way back
def poll_decisions(
    practice_id: str,
    items: Mapping[str, HandoffItemDict],
    client: FhirClient,
    since: str | None,
    now: int,
) -> tuple[list[StaffDecisionDict], str | None]:
    """Tasks changed since ``since`` (server time, ISO) -> the decisions staff made in the EHR,
    and the new watermark (the newest ``meta.lastUpdated`` seen; ``ge``: a Task changed in
    the same instant as the last poll is read again and yields the same decision id).

    Only the practice's own Tasks are asked for (``requester`` = its Organization): several
    practices may share one FHIR base, and item ids do not include the practice, so another
    practice's Task for the same subject must never read as this practice's decision (review
    s18 S1; :func:`decision_from_task` checks the Task id as well)."""
    params = {
        "_lastUpdated": f"ge{since}" if since else "ge1970-01-01T00:00:00Z",
        "requester": f"Organization/{organization_id(practice_id)}",
    }
    decisions: list[StaffDecisionDict] = []
    mark = since
    for task in client.search("Task", params):
        updated = (task.get("meta") or {}).get("lastUpdated")
        if updated and (mark is None or updated > mark):
            mark = updated
        item_id = item_id_of(task)
        if item_id is None:
            continue  # not one of ours
        decision = decision_from_task(practice_id, task, items.get(item_id), now)
        if decision is not None:
            decisions.append(decision)
    return decisions, mark


def read_watermark(path: Path) -> str | None:
    return path.read_text().strip() or None if path.exists() else None


def write_watermark(path: Path, mark: str | None) -> None:
    if mark:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(mark)
        tmp.replace(path)


__all__ = [
    "STATUS_FOR_STATE",
    "WRITTEN_STATUS_EXT",
    "WriteReport",
    "poll_decisions",
    "write_back",
]
