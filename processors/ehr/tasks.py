"""Work items <-> FHIR R4 Tasks, and drafts -> their FHIR resources (pure, deterministic).

Why a Task: it is the resource EHRs show in their worklists, so staff keep working in the
EHR they already use. One work item is one Task whose id is derived from the practice and
the item id (:func:`task_id_for`), so writing an item again updates the same Task
(``PUT`` = update-as-create) instead of creating a second one. The item's ``revision`` is
carried on the Task (:data:`REVISION_EXT`): the writer compares it with the server's copy
and writes only a newer revision, which is what makes a replay write nothing.

Mapping (README "Write-back to the EHR"):

* ``status`` from the item's state (open -> requested, in_progress -> in-progress,
  done -> completed, rejected -> rejected, superseded -> cancelled);
* ``intent`` ``proposal`` when the software proposes an action or a draft, else ``order``;
* ``priority`` routine -> routine, high -> urgent, urgent -> asap;
* ``owner`` the queue's PractitionerRole (:func:`queue_role_id`: a digest of practice + queue,
  written by :func:`queue_roles`), ``requester`` the practice's Organization;
* ``for`` the patient (a logical reference by the practice's patient identifier, as the
  workflows' drafts do), ``focus`` the first draft (else the subject by identifier);
* ``input`` one per piece of evidence (a reference to the record, a document URL, or the
  value as text) plus one per draft; ``note`` what happened, what was done, what is needed.

The way back (:func:`decision_from_task`): a status that staff set in the EHR and that is
not the one the item's state writes (completed / rejected / cancelled / in-progress)
becomes a ``StaffDecision`` on channel ``fhir``, with a decision id from the Task's id and
version, so polling the same version twice yields the same decision (applied once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from practiceflow.processors.workflows.workitem import END_STATES
from practiceflow.schemas.typed import DraftDict, HandoffItemDict, StaffDecisionDict

ITEM_SYSTEM: Final = "urn:practiceflow:work-item"
KIND_SYSTEM: Final = "urn:practiceflow:work-item-kind"
REVISION_EXT: Final = "https://practiceflow.dev/fhir/StructureDefinition/work-item-revision"
# the status our write set: a different status on the server is a person's change
WRITTEN_STATUS_EXT: Final = "https://practiceflow.dev/fhir/StructureDefinition/written-status"
STATUS_FOR_STATE: Final = {
    "open": "requested",
    "in_progress": "in-progress",
    "done": "completed",
    "rejected": "rejected",
    "superseded": "cancelled",
}
# the draft resources the EHR receives (kind ``fhir.<Type>``); the rest go elsewhere
EHR_DRAFT_TYPES: Final = frozenset({"Patient", "Coverage", "MedicationRequest", "Claim"})
PRIORITY: Final = {"routine": "routine", "high": "urgent", "urgent": "asap"}
QUEUE_NAMES: Final = {
    "front_desk": "Front desk",
    "clinician": "Clinicians",
    "nurse": "Nurses",
    "billing": "Billing",
    "referrals": "Referrals",
    "records": "Medical records",
    "triage": "Triage (unsorted)",
    "misdirected": "Misdirected (reply to sender)",
}
# Task status set by staff -> the item options that express it, in order of preference
_STATUS_OPTIONS: Final = {
    "completed": ("approve", "acknowledge", "file", "reply"),
    "rejected": ("reject",),
    "cancelled": ("reject",),
    "in-progress": ("assign",),
}


def fhir_id(*parts: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) from our ids: a digest, so no identifier shows in a URL."""
    return "pf-" + hashlib.sha256("/".join(parts).encode()).hexdigest()[:40]


def task_id_for(practice_id: str, item_id: str) -> str:
    return fhir_id(practice_id, "item", item_id)


def queue_role_id(practice_id: str, queue: str) -> str:
    """The practice's own PractitionerRole for a queue. Practice-scoped: two practices on one FHIR
    base (a group on one EHR instance) each keep their role, instead of each sync rewriting a
    shared ``pf-queue-<queue>``'s organization to itself (review s18 S1)."""
    return fhir_id(practice_id, "queue", queue)


# owners written before the roles were practice-scoped (a Task not rewritten since still names one)
LEGACY_QUEUE_ROLE_PREFIX: Final = "PractitionerRole/pf-queue-"


def is_queue_owner(practice_id: str, reference: str) -> bool:
    """The owner is one of our queue roles (the Task was not assigned to a person in the EHR)."""
    if reference.startswith(LEGACY_QUEUE_ROLE_PREFIX):
        return True
    return reference in {f"PractitionerRole/{queue_role_id(practice_id, q)}" for q in QUEUE_NAMES}


def organization_id(practice_id: str) -> str:
    return fhir_id(practice_id, "organization")


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds") if ms else None


def draft_target(practice_id: str, draft_id: str, kind: str) -> tuple[str, str] | None:
    """(resource type, id) a draft is written as, or None for drafts that are not for the EHR:
    X12, letters, and FHIR drafts meant for someone else (``fhir.Bundle.pas``: a prior-auth
    request goes to the payer)."""
    parts = kind.split(".")
    if parts[0] != "fhir" or len(parts) < 2 or parts[1] not in EHR_DRAFT_TYPES:
        return None
    return parts[1], fhir_id(practice_id, "draft", draft_id)


def queue_roles(practice_id: str, practice_name: str | None = None) -> list[dict[str, Any]]:
    """The practice's Organization and one PractitionerRole per queue: the Tasks' owners."""
    org = organization_id(practice_id)
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Organization",
            "id": org,
            "identifier": [{"system": "urn:practiceflow:practice", "value": practice_id}],
            "name": practice_name or practice_id,
        }
    ]
    for queue, name in QUEUE_NAMES.items():
        out.append(
            {
                "resourceType": "PractitionerRole",
                "id": queue_role_id(practice_id, queue),
                "identifier": [{"system": "urn:practiceflow:queue", "value": queue}],
                "active": True,
                "organization": {"reference": f"Organization/{org}"},
                "code": [{"coding": [{"system": "urn:practiceflow:queue", "code": queue, "display": name}]}],
            }
        )
    return out


def _evidence_input(ev: Mapping[str, Any]) -> dict[str, Any]:
    label = str(ev.get("label") or ev.get("record_type") or "evidence")
    kind = {"text": "evidence" + (f" ({ev['assessment']})" if ev.get("assessment") else "")}
    if ev.get("record_key"):
        ref: dict[str, Any] = {
            "identifier": {
                "system": f"urn:practiceflow:record:{ev.get('record_type') or 'record'}",
                "value": ev["record_key"],
            },
            "display": label,
        }
        return {"type": kind, "valueReference": ref}
    if ev.get("document_uri"):
        page = f"#page={ev['page']}" if ev.get("page") else ""
        return {"type": kind, "valueUrl": f"{ev['document_uri']}{page}"}
    value = " ".join(str(v) for v in (ev.get("value"), ev.get("unit")) if v)
    return {"type": kind, "valueString": f"{label}: {value}" if value else label}


def task_for(
    item: HandoffItemDict, draft_kinds: Mapping[str, str] | None = None, practice_name: str | None = None
) -> dict[str, Any]:
    """The FHIR R4 Task for one work item revision (``draft_kinds``: draft id -> Draft.kind)."""
    practice = item["practice_id"]
    state = item.get("state") or "open"
    draft_refs = []
    for draft_id in item.get("draft_ids") or []:
        target = draft_target(practice, draft_id, (draft_kinds or {}).get(draft_id, ""))
        if target is not None:
            draft_refs.append({"reference": f"{target[0]}/{target[1]}", "display": "draft awaiting sign-off"})
    notes = [{"text": item["what_happened"]}]
    notes += [{"text": f"Done: {a}"} for a in item.get("actions_taken") or []]
    if item.get("decision_needed"):
        notes.append({"text": f"Needed: {item['decision_needed']}"})
    if item.get("proposed_action"):
        notes.append({"text": f"Proposed: {item['proposed_action']}"})
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id_for(practice, item["item_id"]),
        "extension": [
            {"url": REVISION_EXT, "valueInteger": int(item.get("revision") or 1)},
            {"url": WRITTEN_STATUS_EXT, "valueCode": STATUS_FOR_STATE.get(state, "requested")},
        ],
        "identifier": [{"system": ITEM_SYSTEM, "value": item["item_id"]}],
        "status": STATUS_FOR_STATE.get(state, "requested"),
        "intent": "proposal" if (item.get("proposed_action") or draft_refs) else "order",
        "priority": PRIORITY.get(item.get("priority") or "routine", "routine"),
        "code": {"coding": [{"system": KIND_SYSTEM, "code": item.get("kind") or item["workflow"]}]},
        "description": item["title"],
        "owner": {"reference": f"PractitionerRole/{queue_role_id(practice, item['queue'])}", "display": item["queue"]},
        "requester": {"reference": f"Organization/{organization_id(practice)}", "display": practice_name or practice},
        "authoredOn": _iso(item["created_at"]),
        "lastModified": _iso(item.get("updated_at") or item["created_at"]),
        "note": notes,
    }
    if item.get("patient_id"):
        task["for"] = {
            "type": "Patient",
            "identifier": {"system": f"urn:practiceflow:{practice}:patient", "value": item["patient_id"]},
        }
    if draft_refs:
        task["focus"] = {"reference": draft_refs[0]["reference"]}
    elif item.get("subject_id"):
        task["focus"] = {
            "identifier": {
                "system": f"urn:practiceflow:{item.get('subject_type') or 'subject'}",
                "value": item["subject_id"],
            }
        }
    inputs = [_evidence_input(ev) for ev in item.get("evidence") or []]
    inputs += [{"type": {"text": "draft"}, "valueReference": ref} for ref in draft_refs]
    if inputs:
        task["input"] = inputs
    if item.get("due_at"):
        task["restriction"] = {"period": {"end": _iso(item["due_at"])}}
    if item.get("kind") or item.get("outcome"):
        task["businessStatus"] = {"text": item.get("outcome") or item.get("kind")}
    if state in END_STATES and item.get("outcome"):
        task["statusReason"] = {"text": f"{item['outcome']} ({item.get('decision_id') or 'practiceflow'})"}
    return task


def draft_resource(draft: DraftDict, signed: Mapping[str, Any] | None = None) -> tuple[str, str, dict[str, Any]] | None:
    """(type, id, resource) a FHIR draft is written as; ``signed`` (an ``ehr_write`` payload)
    turns a MedicationRequest draft into the active order the clinician signed, with the
    edits they made. None for drafts that are not FHIR resources."""
    target = draft_target(draft["practice_id"], draft["draft_id"], draft["kind"])
    if target is None or not draft.get("body"):
        return None
    rtype, rid = target
    resource = json.loads(draft["body"])
    if resource.get("resourceType") != rtype:
        raise ValueError(f"draft {draft['draft_id']}: kind {draft['kind']} but body is {resource.get('resourceType')}")
    resource["id"] = rid
    if signed is not None and rtype == "MedicationRequest":
        resource["status"] = "active"
        edits = dict(signed.get("edits") or {})
        dispense = resource.setdefault("dispenseRequest", {})
        if "quantity" in edits:
            dispense["quantity"] = {**(dispense.get("quantity") or {}), "value": float(edits["quantity"])}
        if "refills" in edits:
            dispense["numberOfRepeatsAllowed"] = int(edits["refills"])
        if "days_supply" in edits:
            dispense["expectedSupplyDuration"] = {
                "value": float(edits["days_supply"]),
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }
        if "dosage_instruction" in edits:
            resource["dosageInstruction"] = [{"text": edits["dosage_instruction"]}]
        resource["note"] = [*(resource.get("note") or []), {"text": signed_note(signed)}]
    if signed is not None and rtype in REGISTRATION_EDITS:
        apply_registration_edits(rtype, resource, dict(signed.get("edits") or {}))
    return rtype, rid, resource


def signed_note(signed: Mapping[str, Any]) -> str:
    """The note a signed MedicationRequest carries: who signed, when, which option, the edits.

    WHY a function: it is also this command's mark on the server. The write-back tells a signed
    order it wrote (then staff stopped or edited) from an order staff changed before it was ever
    written by this note in the server's copy or its ``_history`` (review s20 M1)."""
    edits = dict(signed.get("edits") or {})
    note = f"Signed by {signed.get('signed_by')} at {_iso(signed.get('signed_at'))} ({signed.get('option')})"
    if edits:
        note += "; edited: " + ", ".join(f"{k}={v}" for k, v in sorted(edits.items()))
    return note


# The front desk's "Correct, then write" fields (intake/step.py) -> the resource they belong to.
REGISTRATION_EDITS: dict[str, frozenset[str]] = {
    "Patient": frozenset({"name", "address", "telecom"}),
    "Coverage": frozenset({"subscriberId"}),
}


def _plain_edit(key: str, value: str) -> list[dict[str, Any]] | None:
    """The two corrections the CLI's ``--edit FIELD=VALUE`` can say without guessing: a name as
    ``Family, Given [Middle]`` (the comma says which part is which) and one phone number or
    e-mail address (``@`` tells them apart). None for anything else."""
    text = value.strip()
    if key == "name" and text.count(",") == 1:
        family, given = (part.strip() for part in text.split(","))
        if family and given:
            return [{"use": "official", "family": family, "given": given.split()}]
    if key == "telecom" and text and "," not in text:
        return [{"system": "email", "value": text} if "@" in text else {"system": "phone", "value": text}]
    return None


def apply_registration_edits(rtype: str, resource: dict[str, Any], edits: Mapping[str, Any]) -> None:
    """A signed intake Patient / Coverage with the front desk's corrections. ``subscriberId`` is
    a string; ``name`` / ``address`` / ``telecom`` are FHIR JSON (a list of HumanName / Address /
    ContactPoint), or for ``name`` and ``telecom`` the plain forms :func:`_plain_edit` reads. Any
    other free text cannot be split into FHIR parts without guessing, so it raises ValueError and
    the write is answered failed (a person enters it by hand) rather than written uncorrected."""
    for key in sorted(REGISTRATION_EDITS[rtype] & set(edits)):
        value = edits[key]
        if key == "subscriberId":
            resource[key] = str(value)
            continue
        parsed = value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = _plain_edit(key, value)
        if not isinstance(parsed, list) or not all(isinstance(v, dict) for v in parsed):
            raise ValueError(
                f"the edit of {key} is neither FHIR JSON (a list of objects) nor a plain form this reads; "
                "enter the correction by hand"
            )
        resource[key] = parsed


def revision_of(task: Mapping[str, Any]) -> int:
    """The work-item revision a Task on the server was written from (0: none of ours)."""
    for ext in task.get("extension") or []:
        if ext.get("url") == REVISION_EXT:
            return int(ext.get("valueInteger") or 0)
    return 0


def written_status_of(task: Mapping[str, Any]) -> str | None:
    """The status our last write set (a Task whose status differs was changed by a person)."""
    for ext in task.get("extension") or []:
        if ext.get("url") == WRITTEN_STATUS_EXT:
            return str(ext.get("valueCode"))
    return None


def item_id_of(task: Mapping[str, Any]) -> str | None:
    for ident in task.get("identifier") or []:
        if ident.get("system") == ITEM_SYSTEM:
            return str(ident.get("value"))
    return None


def decision_from_task(
    practice_id: str, task: Mapping[str, Any], item: HandoffItemDict | None, now: int
) -> StaffDecisionDict | None:
    """The StaffDecision a status change made in the EHR stands for, or None.

    None when the Task is not ours (nor this practice's: its id must be :func:`task_id_for` of
    this practice and item), its item is unknown or closed, or its status is the one
    the item's current state writes (our own write read back, not a person's change).
    A status equal to the one our last write set (:data:`WRITTEN_STATUS_EXT`) is ours, not
    a person's. The option is the item's own option that the status expresses (completed -> approve,
    acknowledge, file or reply, whichever the item offers; rejected / cancelled -> reject;
    in-progress -> assign).

    ``actor_role`` is None: a Task status says neither who changed it nor in what role (the owner
    is usually still our queue's PractitionerRole, and EHRs rarely restrict Task status per
    worklist). Asserting the queue's role here let any EHR user "sign" a clinician's renewal
    (review s18 M2); with None the decisions agent refuses clinician-queue items and signing
    options (approve/edit on an item with drafts) from this channel, and audits the refusal,
    so a clinician signs in the EHR's own order or with ``practiceflow queue``."""
    status = str(task.get("status") or "")
    if item is None or item["practice_id"] != practice_id or item_id_of(task) != item["item_id"]:
        return None
    if task.get("id") != task_id_for(practice_id, item["item_id"]):
        return None  # another practice's Task for the same subject on a shared FHIR base (review s18 S1)
    state = item.get("state") or "open"
    if state in END_STATES or status not in _STATUS_OPTIONS:
        return None
    if status in (written_status_of(task), STATUS_FOR_STATE.get(state)):
        return None  # our own write read back, or the item is already there
    offered = [o["option"] for o in item.get("options") or []]
    wanted = _STATUS_OPTIONS[status]
    option = "assign" if status == "in-progress" else next((o for o in wanted if o in offered), wanted[0])
    if option == "assign" and state != "open":
        return None  # already in progress: nothing changed
    owner = (task.get("owner") or {}).get("reference") or ""
    actor = owner if owner and not is_queue_owner(practice_id, owner) else "ehr-user"
    meta = task.get("meta") or {}
    reason = (task.get("statusReason") or {}).get("text")
    return {
        "practice_id": practice_id,
        "decision_id": f"fhir:{task.get('id')}/{meta.get('versionId', '0')}",
        "item_id": item["item_id"],
        "item_revision": revision_of(task) or None,
        "option": option,
        "actor": actor,
        "actor_role": None,  # the EHR asserted no role (see the docstring); never the item's queue
        "edits": {},
        "comment": f"Task {status} in the EHR" + (f": {reason}" if reason else ""),
        "channel": "fhir",
        "decided_at": now,
    }
