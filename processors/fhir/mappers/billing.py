"""Revenue-cycle resources -> records: Claim, ClaimResponse / ExplanationOfBenefit (adjudications,
CARC/RARC, Da Vinci PAS review actions) and CoverageEligibilityResponse (benefits)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from practiceflow.processors.base import Normalized

from .._util import (
    EMPTY_CODING,
    cc_code,
    cc_codes,
    cc_coding,
    coding,
    d,
    display_name,
    f,
    first,
    i,
    is_true,
    lst,
    period_start,
    s,
)
from .context import Ctx
from .people import coverage_class, coverage_member_id

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import (
        AdjustmentDict,
        BenefitDict,
        ClaimAdjudicationDict,
        ClaimDict,
        CodingDict,
        EligibilityResponseDict,
        ServiceLineDict,
    )


_CARC_SYSTEMS = ("claim-adjustment-reason", "/carc", "x12.org/codes/claim-adjustment")


# --------------------------------------------------------------------------- Claim
def _item_service_date(item: dict[str, Any]) -> str | None:
    return s(item.get("servicedDate")) or period_start(item.get("servicedPeriod"))


def _money(m: Any) -> float | None:
    return f(d(m).get("value"))


def map_claim(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("patient"), "patient", required=False)
    payer_id, payer_name = c.org(r.get("insurer")) if r.get("insurer") else (None, None)
    if payer_id is None and payer_name is None:
        payer_id, payer_name = _payer_from_insurance(c, r)
    diagnoses: list[CodingDict] = []
    for dx in lst(r.get("diagnosis")):
        dx = d(dx)
        if dx.get("diagnosisCodeableConcept"):
            diagnoses.append(cc_coding(dx.get("diagnosisCodeableConcept")))
        elif dx.get("diagnosisReference"):
            t = c.resolve(dx.get("diagnosisReference"))
            if t.resource is not None:
                diagnoses.append(cc_coding(t.resource.get("code")))
    lines: list[ServiceLineDict] = []
    items = [d(x) for x in lst(r.get("item"))]
    for item in items:
        net, up, qty = _money(item.get("net")), _money(item.get("unitPrice")), f(d(item.get("quantity")).get("value"))
        charge = net if net is not None else (up * (qty or 1.0) if up is not None else None)
        lines.append(_line(item, charge=charge, paid=None, adjustments=[], remarks=[]))
    total = _money(r.get("total"))
    if total is None and lines and all(ln["charge"] is not None for ln in lines):
        total = _sum([ch for ln in lines if (ch := ln["charge"]) is not None])
    dates = sorted(x for x in (_item_service_date(it) for it in items) if x)
    value: ClaimDict = {
        "practice_id": c.practice_id,
        "claim_id": c.entity_id,
        "patient_id": pid,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "total_charge": total,
        "service_date": period_start(r.get("billablePeriod")) or (dates[0] if dates else None),
        "diagnoses": diagnoses,
        "lines": lines,
        "status": s(r.get("status")),
        "use": s(r.get("use")),
        "member_id": None,
        "source": c.source.copy(),
    }
    return [c.rec("Claim", pid, c.entity_id, value)]


def _payer_from_insurance(c: Ctx, r: dict[str, Any]) -> tuple[str | None, str | None]:
    ins = [d(x) for x in lst(r.get("insurance"))]
    focal = next((x for x in ins if is_true(x.get("focal"))), ins[0] if ins else None)
    if not focal:
        return None, None
    t = c.resolve(focal.get("coverage"))
    if t.resource is None:
        return None, None
    sub = Ctx(t.resource, "Coverage", c.scope.scope_for(t), c.practice_id, c.entity_id, None, c.source, c.warnings)
    return sub.org(first(t.resource.get("payor")))


def _line(
    item: dict[str, Any],
    *,
    charge: float | None,
    paid: float | None,
    adjustments: list[AdjustmentDict],
    remarks: list[str],
    procedure: CodingDict | None = None,
    allowed: float | None = None,
) -> ServiceLineDict:
    seq = i(item.get("sequence"))
    if seq is None:
        seq = i(item.get("itemSequence"))
    return {
        "procedure": procedure or cc_coding(item.get("productOrService")),
        "modifiers": [m for cc in lst(item.get("modifier")) for m in cc_codes(cc)],
        "charge": charge,
        "paid": paid,
        "units": f(d(item.get("quantity")).get("value")),
        "service_date": _item_service_date(item),
        "adjustments": adjustments,
        "remark_codes": remarks,
        "control_number": str(seq) if seq is not None else None,
        "allowed": allowed,
    }


# --------------------------------------------------------------------------- ClaimResponse / EOB
_CATEGORY_ALIASES = {
    # Blue Button 2.0 (CMS) line-level adjudication variables
    "line_sbmtd_chrg_amt": "submitted",
    "line_alowd_chrg_amt": "eligible",
    "line_prvdr_pmt_amt": "paidtoprovider",
    "line_bene_pmt_amt": "paidtopatient",
    "line_nch_pmt_amt": "benefit",
    "line_coinsrnc_amt": "coinsurance",
    "line_bene_ptb_ddctbl_amt": "deductible",
    "line_bene_prmry_pyr_pd_amt": "priorpayerpaid",
    # CARIN BB / base synonyms
    "allowed": "eligible",
    "paid": "benefit",
}
_PR_CARC = {"deductible": "1", "coinsurance": "2", "copay": "3"}
_PATIENT_RESP = ("memberliability",)
_INFO_CATEGORIES = frozenset(
    {
        "submitted",
        "eligible",
        "eligpercent",
        "benefit",
        "paidtoprovider",
        "paidtopatient",
        "priorpayerpaid",
        "tax",
        "unallocdeduct",
    }
)


def _category(adj: dict[str, Any]) -> str | None:
    code = cc_code(adj.get("category"))
    if code is None:
        return None
    key = code.rstrip("/").rsplit("/", 1)[-1].lower()
    return _CATEGORY_ALIASES.get(key, key)


def _is_carc(coding_: CodingDict) -> bool:
    sys_ = (coding_.get("system") or "").lower()
    return any(x in sys_ for x in _CARC_SYSTEMS)


def _review_actions(adjs: list[dict[str, Any]]) -> list[str]:
    out = []
    for adj in adjs:
        for ext in lst(adj.get("extension")):
            ext = d(ext)
            if not str(ext.get("url", "")).endswith("extension-reviewAction"):
                continue
            for sub in lst(ext.get("extension")):
                sub = d(sub)
                if str(sub.get("url", "")).endswith("reviewActionCode"):
                    for code in cc_codes(sub.get("valueCodeableConcept")):
                        out.append(f"HCR01:{code}")
    return out


def _review_numbers(items: list[dict[str, Any]]) -> list[str]:
    """The payer's authorization numbers in PAS reviewAction extensions (``number``, X12 HCR02), in item order.

    WHY: a PAS response may carry the number only there (no ``preAuthRef``): the Da Vinci
    test kit's approved response does."""
    out: list[str] = []
    for item in items:
        for adj in lst(item.get("adjudication")):
            for ext in lst(d(adj).get("extension")):
                ext = d(ext)
                if not str(ext.get("url", "")).endswith("extension-reviewAction"):
                    continue
                for sub in lst(ext.get("extension")):
                    sub = d(sub)
                    if sub.get("url") == "number" and s(sub.get("valueString")) and sub["valueString"] not in out:
                        out.append(str(sub["valueString"]))
    return out


def _adjudicate(adjs: list[dict[str, Any]]) -> tuple[dict[str, float], list[AdjustmentDict], list[str]]:
    """Amounts by category, adjustments, remark codes of one adjudication list."""
    parts: dict[str, list[float]] = {}
    adjustments: list[AdjustmentDict] = []
    remarks: list[str] = []
    for adj in adjs:
        cat = _category(adj)
        amt = _money(adj.get("amount"))
        if cat and amt is not None:
            parts.setdefault(cat, []).append(amt)
        reason_cc = d(adj.get("reason"))
        reason_codings = [coding(x) for x in lst(reason_cc.get("coding")) if isinstance(x, dict)]
        reason_code = next((x["code"] for x in reason_codings if x["code"]), None)
        carc = next((x["code"] for x in reason_codings if x["code"] and _is_carc(x)), None)
        if cat in _PR_CARC and amt is not None and amt != 0:
            adjustments.append({"group": "PR", "reason": carc or _PR_CARC[cat], "amount": amt, "quantity": None})
        elif reason_code and amt is not None and cat not in _INFO_CATEGORIES:
            group = "PR" if cat in _PATIENT_RESP else ("CO" if carc else "OA")
            adjustments.append({"group": group, "reason": reason_code, "amount": amt, "quantity": None})
        elif reason_code:
            remarks.append(reason_code)
    remarks.extend(_review_actions(adjs))
    return {k: _sum(v) for k, v in parts.items()}, adjustments, remarks


def _sum(values: list[float]) -> float:
    """Amounts pass through as sent; only a computed sum is rounded (to cents, dropping float noise)."""
    return values[0] if len(values) == 1 else round(math.fsum(values), 2)


def _patient_resp(amounts: dict[str, float]) -> float | None:
    if "memberliability" in amounts:
        return amounts["memberliability"]
    parts = [amounts[k] for k in ("copay", "deductible", "coinsurance") if k in amounts]
    return _sum(parts) if parts else None


def _pas_detail_procedure(item: dict[str, Any]) -> CodingDict | None:
    for ext in lst(item.get("extension")):
        ext = d(ext)
        if str(ext.get("url", "")).endswith("extension-itemAuthorizedDetail"):
            for sub in lst(ext.get("extension")):
                sub = d(sub)
                if sub.get("url") == "productOrServiceCode":
                    return cc_coding(sub.get("valueCodeableConcept"))
    return None


def map_claim_adjudication(c: Ctx) -> list[Normalized]:
    r = c.r
    is_eob = c.rtype == "ExplanationOfBenefit"
    pid = c.patient_id(r.get("patient"), "patient", required=False)
    patient_name = None
    if r.get("patient"):
        t = c.resolve(r.get("patient"))
        if t.resource is not None:
            patient_name = display_name(t.resource.get("name"))
        patient_name = patient_name or t.display
    # claim id: the Claim this answers
    claim_ref = r.get("claim") if is_eob else r.get("request")
    claim_items: dict[int, dict[str, Any]] = {}
    claim_id = None
    if isinstance(claim_ref, dict):
        t = c.resolve(claim_ref)
        claim_id = t.rid or t.ident_value
        if t.resource is not None:
            for it in lst(t.resource.get("item")):
                seq = i(d(it).get("sequence"))
                if seq is not None:
                    claim_items[seq] = d(it)
    if claim_id is None:
        ident = s(d(first(r.get("identifier"))).get("value"))
        claim_id = ident or c.entity_id
        c.warn(
            f"no {'claim' if is_eob else 'request'} reference; claim_id taken from "
            f"{'identifier' if ident else 'the resource id'} ({claim_id})"
        )
    payer_id, payer_name = c.org(r.get("insurer")) if r.get("insurer") else (None, None)
    payee = r.get("provider") if is_eob else r.get("requestor")
    if is_eob and not payee:
        payee = d(r.get("payee")).get("party")
    member_id = None
    ins = [d(x) for x in lst(r.get("insurance"))]
    focal = next((x for x in ins if is_true(x.get("focal"))), ins[0] if ins else None)
    if focal:
        t = c.resolve(focal.get("coverage"))
        if t.resource is not None:
            member_id = coverage_member_id(t.resource)
    # lines
    lines: list[ServiceLineDict] = []
    line_pr: list[float] = []
    for item in [d(x) for x in lst(r.get("item"))] + [d(x) for x in lst(r.get("addItem"))]:
        amounts, adjustments, remarks = _adjudicate([d(a) for a in lst(item.get("adjudication"))])
        seq = i(item.get("itemSequence"))
        claim_item = claim_items.get(seq) if seq is not None else None
        procedure: CodingDict | None = None
        if not item.get("productOrService"):
            if claim_item is not None:
                procedure = cc_coding(claim_item.get("productOrService"))
            else:
                procedure = _pas_detail_procedure(item) or EMPTY_CODING.copy()
        charge = amounts.get("submitted")
        if charge is None:
            charge = _money(item.get("net"))
        if charge is None and claim_item is not None:
            charge = _money(claim_item.get("net"))
        paid = amounts.get("paidtoprovider", amounts.get("benefit"))
        line = _line(
            item,
            charge=charge,
            paid=paid,
            adjustments=adjustments,
            remarks=remarks,
            procedure=procedure,
            allowed=amounts.get("eligible"),
        )
        if claim_item is not None and line["service_date"] is None:
            line["service_date"] = _item_service_date(claim_item)
        lines.append(line)
        line_pr.extend(a["amount"] for a in adjustments if a["group"] == "PR")
    # header
    h_amounts, h_adjustments, h_remarks = _adjudicate([d(a) for a in lst(r.get("adjudication"))])
    totals, _, _ = _adjudicate([d(t) for t in lst(r.get("total"))])
    totals = {**h_amounts, **totals}
    payment = d(r.get("payment"))
    paid = _money(payment.get("amount"))
    if paid is None:
        paid = totals.get("paidtoprovider", totals.get("benefit"))
    if paid is None and lines and all(ln["paid"] is not None for ln in lines):
        paid = _sum([p for ln in lines if (p := ln["paid"]) is not None])
    total_charge = totals.get("submitted")
    if total_charge is None and lines and all(ln["charge"] is not None for ln in lines):
        total_charge = _sum([ch for ln in lines if (ch := ln["charge"]) is not None])
    pr = _patient_resp(totals)
    if pr is None and line_pr:
        pr = _sum(line_pr)
    dates = sorted(x for x in (ln["service_date"] for ln in lines) if x)
    value: ClaimAdjudicationDict = {
        "practice_id": c.practice_id,
        "claim_id": claim_id,
        "adjudication_id": c.entity_id,
        "patient_id": pid,
        "patient_name": patient_name,
        "member_id": member_id,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "payee_npi": c.npi(payee),
        "status_code": None,
        "outcome": s(r.get("outcome")),
        "authorization_number": s(
            first(r.get("preAuthRef")) if isinstance(r.get("preAuthRef"), list) else r.get("preAuthRef")
        )
        or next(
            iter(_review_numbers([d(x) for x in lst(r.get("item"))] + [d(x) for x in lst(r.get("addItem"))])), None
        ),
        "total_charge": total_charge,
        "paid": paid,
        "patient_responsibility": pr,
        "payer_claim_control_number": s(d(first(r.get("identifier"))).get("value")),
        "reversal": r.get("status") == "cancelled",
        "adjustments": h_adjustments,
        "remark_codes": h_remarks,
        "lines": lines,
        "payment_trace": s(d(payment.get("identifier")).get("value")),
        "payment_date": s(payment.get("date")),
        "service_date": period_start(r.get("billablePeriod")) or (dates[0] if dates else None),
        "source": c.source.copy(),
        "use": s(r.get("use")),
    }
    return [c.rec("ClaimAdjudication", pid, c.entity_id, value)]


# --------------------------------------------------------------------------- CoverageEligibilityResponse
_EB01 = {"deductible": "C", "copay": "B", "copay-percent": "A", "copay-maximum": "G"}


def map_eligibility_response(c: Ctx) -> list[Normalized]:
    r = c.r
    pid = c.patient_id(r.get("patient"), "patient", required=False)
    patient_name = birth_date = None
    if r.get("patient"):
        t = c.resolve(r.get("patient"))
        if t.resource is not None:
            patient_name = display_name(t.resource.get("name"))
            birth_date = s(t.resource.get("birthDate"))
        patient_name = patient_name or t.display
    payer_id, payer_name = c.org(r.get("insurer"))
    member_id = None
    benefits: list[BenefitDict] = []
    inforce: list[bool] = []
    for ins in [d(x) for x in lst(r.get("insurance"))]:
        plan = None
        t = c.resolve(ins.get("coverage"))
        if t.resource is not None:
            member_id = member_id or coverage_member_id(t.resource)
            pl = coverage_class(t.resource, "plan")
            plan = (s(pl.get("name")) or s(pl.get("value"))) if pl else None
        plan = plan or t.display
        if "inforce" in ins and isinstance(ins.get("inforce"), bool):
            inforce.append(ins["inforce"])
            benefits.append(_benefit("1" if ins["inforce"] else "6", plan_description=plan))
        for item in [d(x) for x in lst(ins.get("item"))]:
            service_types = cc_codes(item.get("category")) + cc_codes(item.get("productOrService"))
            network = cc_code(item.get("network"))
            in_network = {"in": "Y", "out": "N"}.get(network or "", network)
            msgs = [m for m in (s(item.get("description")), s(item.get("name"))) if m]
            if is_true(item.get("authorizationRequired")):
                msgs.append("authorization required")
            if is_true(item.get("excluded")):
                msgs.append("excluded")
            level = cc_code(item.get("unit"))
            period = cc_code(item.get("term"))
            bens = [d(b) for b in lst(item.get("benefit"))]
            if not bens:
                benefits.append(
                    _benefit(
                        "1",
                        coverage_level=level,
                        service_types=service_types,
                        time_period=period,
                        in_network=in_network,
                        messages=msgs,
                        plan_description=plan,
                    )
                )
            for b in bens:
                btype = cc_code(b.get("type")) or "benefit"
                amount = _money(b.get("allowedMoney"))
                if amount is None:
                    amount = _money(b.get("usedMoney"))
                percent = None
                if amount is None:
                    n = f(b.get("allowedUnsignedInt"))
                    if n is None:
                        n = f(b.get("usedUnsignedInt"))
                    if n is not None and btype.endswith("percent"):
                        percent = n
                    elif n is not None:
                        amount = n
                benefits.append(
                    _benefit(
                        _EB01.get(btype, btype),
                        coverage_level=level,
                        service_types=service_types,
                        time_period=period,
                        amount=amount,
                        percent=percent,
                        in_network=in_network,
                        messages=msgs,
                        plan_description=plan,
                    )
                )
    rejections = [code for e in lst(r.get("error")) for code in cc_codes(d(e).get("code"))]
    value: EligibilityResponseDict = {
        "practice_id": c.practice_id,
        "response_id": c.entity_id,
        "trace_number": s(d(first(r.get("identifier"))).get("value")),
        "payer_id": payer_id,
        "payer_name": payer_name,
        "member_id": member_id,
        "patient_name": patient_name,
        "birth_date": birth_date,
        "active": (any(inforce) if inforce else None),
        "benefits": benefits,
        "rejections": rejections,
        "patient_id": pid,
        "source": c.source.copy(),
    }
    return [c.rec("EligibilityResponse", pid, c.entity_id, value)]


def _benefit(
    info_code: str,
    *,
    coverage_level: str | None = None,
    service_types: list[str] | None = None,
    time_period: str | None = None,
    amount: float | None = None,
    percent: float | None = None,
    in_network: str | None = None,
    messages: list[str] | None = None,
    plan_description: str | None = None,
) -> BenefitDict:
    return {
        "info_code": info_code,
        "coverage_level": coverage_level,
        "service_types": service_types or [],
        "insurance_type": None,
        "plan_description": plan_description,
        "time_period": time_period,
        "amount": amount,
        "percent": percent,
        "in_network": in_network,
        "messages": messages or [],
    }
