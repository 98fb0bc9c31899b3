"""The letter of medical necessity: a template narrative, rendered as a PDF with fpdf2.

Without the LLM a template writes the narrative from the same per-criterion results the
work item shows, so every clinical statement in the letter is one of the context's records
(its evidence) and nothing is invented. The letter is what the payer reads once signed, so
it carries no internal checklist or met / not-met labels (what would satisfy an open criterion is in the work
item's evidence) and claims medical necessity only when every criterion is met; otherwise
the clinician must edit it before signing (the item offers no plain approve): the software
never argues past what the records show.

Deterministic: the PDF's creation date is the step's ``now`` and fpdf2 writes no random
ids, so a replay produces identical bytes (and an identical draft).
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime

from fpdf import FPDF

from practiceflow.processors.workflows.prior_auth.evidence import CriterionResult

WRAP = 95  # characters per line of the letter (Helvetica 10 pt, letter page, 10 mm margins)


def narrative(
    *,
    patient_name: str,
    birth_date: str | None,
    member_id: str | None,
    payer_name: str,
    service: str,
    diagnoses: Sequence[str],
    results: Sequence[CriterionResult],
    clinician: str,
    practice_name: str,
    date: str,
) -> str:
    """The letter's text: who, what, why, and each criterion with the records behind it."""
    lines = [
        practice_name,
        date,
        "",
        f"To: {payer_name} - utilization management / prior authorization",
        f"Re: letter of medical necessity - {service}",
        f"Patient: {patient_name}   Date of birth: {birth_date or 'on file'}   Member id: {member_id or 'on file'}",
        f"Diagnoses: {', '.join(diagnoses) or 'see attached'}",
        "",
        f"I am requesting authorization of {service} for the patient named above. "
        "The criteria of your policy and the records that address each are listed below.",
        "",
    ]
    # the clinician's to-do list (what would satisfy each open criterion) is the work item's
    # evidence, never the letter's: a signed letter goes to the payer as it stands
    # nor the internal assessment: the met / not met / insufficient labels and the summary of an
    # open criterion ("attach it", "6 weeks required") are the checker's words to the clinician
    # (review s19 M2); the payer reads the criterion and the records, and for a met one what they show
    lines.append("Criteria and supporting records:")
    for r in results:
        lines.append(f"  - {r.criterion.text}: {r.summary}" if r.status == "met" else f"  - {r.criterion.text}")
        for ev in r.evidence[:5]:
            when = f" ({ev.get('observed_at')})" if ev.get("observed_at") else ""
            lines.append(f"      * {ev.get('excerpt') or ev.get('label')}{when}")
    if all(r.status == "met" for r in results):
        closing = (
            "Based on the above, the requested service is medically necessary for this patient. "
            "Please contact me with any questions."
        )
    else:
        # criteria not met or lacking information: the software claims no necessity; the item
        # offers only edit / reject (step.sign_off_options), so the clinician writes this part
        closing = "Please contact me with any questions."
    lines += [
        "",
        closing,
        "",
        "Sincerely,",
        clinician,
    ]
    return "\n".join(lines) + "\n"


def _latin1(text: str) -> str:
    """fpdf2's core fonts are Latin-1: replace what they cannot draw instead of failing."""
    return text.encode("latin-1", "replace").decode("latin-1")


def render_pdf(text: str, *, title: str, now_ms: int) -> bytes:
    """The letter as a one-or-more-page PDF (A4/letter-agnostic margins, Helvetica 10 pt)."""
    pdf = FPDF(format="letter")
    pdf.set_creation_date(datetime.fromtimestamp(now_ms / 1000, tz=UTC))
    pdf.set_title(_latin1(title))
    pdf.set_creator("practiceflow prior_auth")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        # wrapped here, not by multi_cell: fpdf2's line breaker measures every prefix of a line
        # (~15 ms a line); 95 Helvetica-10 characters fit the letter page's text width
        for part in textwrap.wrap(_latin1(line), WRAP, subsequent_indent=" " * (indent + 2)) or [" "]:
            pdf.cell(0, 5, part, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def pdf_body(pdf: bytes) -> str:
    """A PDF draft's ``body``: the file, base64 (Draft.body is text; README "Prior authorization")."""
    return base64.b64encode(pdf).decode("ascii")
