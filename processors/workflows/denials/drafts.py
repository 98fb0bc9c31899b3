"""The drafts a denial produces: a corrected claim, an appeal letter, a patient transfer, a write-off.

Every draft waits for a person (``Draft.status = draft``); nothing here sends anything.

* **Corrected claim** — the claim as first sent, with the fix applied, written as an 837P
  with claim frequency code 7 and the payer's claim control number (CLP07) in REF*F8
  (:mod:`practiceflow.processors.x12.write837`). The field-level diff against the original
  is part of the work item, fix and replacement markers apart.
* **Appeal letter** — plain text (the practice's letterhead is added when it is printed)
  naming the claim, the payer's control number, each denial reason with its CARC/RARC
  wording and the evidence attached.
* **Patient transfer** and **write-off** — JSON documents a practice-management system can
  post once approved: the claim, the amounts and the adjustments behind them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from practiceflow.processors.workflows.denials.categorize import Categorized
from practiceflow.processors.workflows.denials.store import FieldChange, apply_changes
from practiceflow.processors.x12.write837 import Parties, write_837p

if TYPE_CHECKING:
    from practiceflow.schemas.typed import ClaimDict

WORKFLOW = "denials"


@dataclass(frozen=True)
class BillingProfile:
    """The practice's billing identity for drafted claims (settings ``billing_*``).

    Placeholders are marked ``VERIFY``: the approving person sees them in the draft."""

    name: str = "VERIFY PRACTICE NAME"
    tax_id: str = "000000000"
    npi: str | None = None  # else the 835's payee NPI
    address: tuple[str, str, str, str] = ("VERIFY ADDRESS", "CITY", "ST", "00000")
    sender_id: str = "PRACTICEFLOW"
    receiver_id: str = "CLEARINGHOUSE"
    receiver_name: str = "CLEARINGHOUSE"


def _split_name(name: str | None) -> tuple[str, str]:
    if not name:
        return "VERIFY", ""
    last, _, first = name.partition(",")
    return last.strip() or "VERIFY", first.strip().split(" ")[0] if first.strip() else ""


def corrected_claim(
    original: Mapping[str, Any],
    changes: Sequence[FieldChange],
    adjudication: Mapping[str, Any],
    profile: BillingProfile,
    *,
    interchange_control: int,
    created: str,
) -> tuple[dict[str, Any], str]:
    """The replacement Claim record and its 837P text."""
    fixed = apply_changes(original, changes)
    fixed["status"] = "replacement"
    fixed["frequency_code"] = "7"
    fixed["payer_claim_control_number"] = adjudication.get("payer_claim_control_number")
    last, first = _split_name(adjudication.get("patient_name"))
    parties = Parties(
        sender_id=profile.sender_id,
        receiver_id=profile.receiver_id,
        submitter_name=profile.name,
        receiver_name=profile.receiver_name,
        billing_provider_name=profile.name,
        billing_provider_npi=profile.npi or adjudication.get("payee_npi") or "0000000000",
        billing_provider_tax_id=profile.tax_id,
        billing_address=profile.address,
        subscriber_last=last,
        subscriber_first=first,
    )
    text = write_837p(cast("ClaimDict", fixed), parties, interchange_control=interchange_control, created=created)
    return fixed, text


def appeal_letter(
    adjudication: Mapping[str, Any],
    original: Mapping[str, Any] | None,
    denials: Sequence[Categorized],
    descriptions: Mapping[str, str],
    evidence_lines: Sequence[str],
    profile: BillingProfile,
) -> str:
    """A reconsideration request for the denied adjustments, evidence listed as attachments."""
    a = adjudication
    total = round(sum(c.amount for c in denials), 2)
    lines = [
        f"{profile.name}",
        f"To: {a.get('payer_name') or a.get('payer_id') or 'the payer'} - claims reconsideration / appeals",
        f"Date: {a.get('payment_date') or ''}",
        "",
        "Re: request for reconsideration",
        f"  Patient: {a.get('patient_name') or ''}   Member id: {a.get('member_id') or ''}",
        f"  Claim (patient control number): {a.get('claim_id')}",
        f"  Payer claim control number: {a.get('payer_claim_control_number') or ''}",
        f"  Date(s) of service: {(original or {}).get('service_date') or a.get('service_date') or ''}",
        f"  Amount in question: ${total:,.2f}",
        "",
        "The remittance advice shows the following adjustments, which we ask you to reconsider:",
    ]
    for c in denials:
        where = "claim" if c.line == 0 else f"line {c.line} ({c.procedure})"
        desc = descriptions.get(c.carc, "")
        rarcs = f" Remarks: {', '.join(c.rarcs)}." if c.rarcs else ""
        lines.append(f"  - {where}: {c.group}-{c.carc} ${c.amount:,.2f}: {desc}{rarcs}")
    lines += ["", "Enclosed in support of this request:"]
    lines += [f"  - {e}" for e in evidence_lines] or ["  - (evidence to be attached by the billing office)"]
    lines += [
        "",
        "We believe the services were billed correctly and are payable under the member's plan.",
        "Please reprocess the claim, or tell us what else you need.",
        "",
        "Sincerely,",
        "Billing office",
    ]
    return "\n".join(lines) + "\n"


def posting_document(kind: str, adjudication: Mapping[str, Any], items: Sequence[Categorized]) -> str:
    """The JSON a PMS posts once a person approves: a patient transfer or a write-off."""
    doc = {
        "kind": kind,
        "claim_id": adjudication.get("claim_id"),
        "payer_claim_control_number": adjudication.get("payer_claim_control_number"),
        "payer_id": adjudication.get("payer_id"),
        "payment_date": adjudication.get("payment_date"),
        "amount": round(sum(c.amount for c in items), 2),
        "adjustments": [
            {"line": c.line, "procedure": c.procedure, "group": c.group, "carc": c.carc, "amount": c.amount}
            for c in items
        ],
    }
    return json.dumps(doc, sort_keys=True)
