"""Unit tests for the X12 5010 normalizer on interchanges written here.

Every record any test produces is validated against the committed Avro schema.
"""

from __future__ import annotations

import gc

import pytest
from fastavro.validation import validate

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.x12.normalize import normalize_x12
from practiceflow.processors.x12.tokenizer import tokenize
from practiceflow.schemas.avro_gen import load_parsed

PID = "practice-42"


# --------------------------------------------------------------------------- helpers
def isa(
    elem: str = "*",
    rep: str = "^",
    comp: str = ":",
    term: str = "~",
    *,
    ctl: int = 905,
    sender: str = "PAYERSENDER",
    receiver: str = "PRACTICE",
    version: str = "00501",
    date: str = "240105",
    time: str = "1230",
) -> str:
    fields = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        sender.ljust(15),
        "ZZ",
        receiver.ljust(15),
        date,
        time,
        rep,
        version,
        f"{ctl:09d}",
        "0",
        "P",
        comp,
    ]
    out = elem.join(fields) + term
    assert len(out) == 106
    return out


def interchange(
    body: list[str],
    *,
    elem: str = "*",
    rep: str = "^",
    comp: str = ":",
    term: str = "~",
    sep: str = "",
    gs01: str = "HP",
    gs08: str = "005010X221A1",
    ctl: int = 905,
    st_ids: tuple[str, ...] | None = None,
    **isa_kw,
) -> bytes:
    """Wrap transaction sets (each a list of segment strings written with '*' ':' '^') in GS/ISA.

    ``body`` is a list of transaction sets separated by the marker segment "--".
    """
    sets: list[list[str]] = [[]]
    for seg in body:
        if seg == "--":
            sets.append([])
        else:
            sets[-1].append(seg)
    segs = [f"GS*{gs01}*SENDER*RECEIVER*20240105*1230*77*X*{gs08}"]
    for k, set_segs in enumerate(sets):
        st_ctl = f"{k + 1:04d}"
        set_id = (st_ids[k] if st_ids else None) or set_segs[0]
        segs.append(f"ST*{set_id}*{st_ctl}" + ("" if set_id != "277" else "*005010X214"))
        segs += set_segs[1:]
        segs.append(f"SE*{len(set_segs) + 1}*{st_ctl}")
    segs += [f"GE*{len(sets)}*77", f"IEA*1*{ctl:09d}"]

    def enc(s: str) -> str:
        return (
            s.replace("*", "\x00E")
            .replace(":", "\x00C")
            .replace("^", "\x00R")
            .replace("\x00E", elem)
            .replace("\x00C", comp)
            .replace("\x00R", rep)
        )

    return (
        isa(elem, rep, comp, term, ctl=ctl, **isa_kw) + sep + (term + sep).join(enc(s) for s in segs) + term + sep
    ).encode()


def run(raw: bytes, *, strict: bool = False) -> NormalizeResult:
    result = normalize_x12(raw, PID, 1_700_000_000_000, strict=strict)
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
        assert rec.value["practice_id"] == PID
        assert rec.key.startswith(PID + "/")
        assert rec.value["source"]["feed"] == "x12"
    return result


def of_type(result: NormalizeResult, record_type: str) -> list[dict]:
    return [r.value for r in result.records if r.record_type == record_type]


def codes(adjs: list[dict]) -> list[tuple]:
    return [(a["group"], a["reason"], a["amount"], a["quantity"]) for a in adjs]


# --------------------------------------------------------------------------- 835
ERA_835 = [
    "835",
    "BPR*I*1234.56*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*20240110",
    "TRN*1*EFT12345*1512345678",
    "DTM*405*20240109",
    "N1*PR*ACME HEALTH PLAN*XV*87726",
    "REF*2U*ALT999",
    "N1*PE*SUNRISE FAMILY PRACTICE*XX*1234567893",
    "LX*1",
    # claim 1: denied for timely filing, claim-level CAS with all six triples
    "CLP*PCN-1001*4*500.00*0*0*12*PAYERCCN0001*11*1",
    "CAS*CO*29*100*1*16*50**18*25*2*197*10**45*5**253*1.5",
    "NM1*QC*1*DOE*JANE*Q***MI*MEM0001",
    "NM1*IL*1*DOE*JOHN****MI*SUB0001",
    "REF*EA*MRN-77",
    "MIA*0***138018.40*N1" + "*" * 15 + "MA01*MA02",  # MIA05, MIA20, MIA21
    "MOA***MA130*N20",
    "DTM*232*20231201",
    "SVC*HC:99213:25:59*300*0**1",
    "DTM*472*20231201",
    "CAS*CO*29*300",
    "LQ*HE*N211",
    "LQ*HE*M86",
    "LQ*RX*12",
    "REF*6R*LINE-1",
    "AMT*B6*0",
    "SVC*HC:J1100*200*0**4*HC:J1100:JW",
    "DTM*150*20231201",
    "DTM*151*20231202",
    "CAS*PR*1*150**2*50",
    "REF*6R*LINE-2",
    # claim 2: reversal of an earlier payment
    "CLP*PCN-0999*22*-120.00*-100.00*-20.00*12*PAYERCCN0999*11*7",
    "NM1*QC*1*ROE*RICHARD****MI*MEM0999",
    "SVC*HC:99214*-120*-100**-1",
    "DTM*472*20231115",
    "CAS*PR*3*-20",
    # claim 3: its correction with the same claim id and payer control number
    "CLP*PCN-0999*1*120.00*95.00*25.00*12*PAYERCCN0999*11*7",
    "NM1*QC*1*ROE*RICHARD****MI*MEM0999",
    "SVC*HC:99214*120*95**1",
    "DTM*472*20231115",
    "CAS*PR*3*25",
    "AMT*B6*120",
    # provider-level adjustments: six reason/amount pairs
    "PLB*1234567893*20241231*WO:ABC123*25.00*72:ABC123*-25.00*L6*1.23*CS:REF9*-4.5*FB*7*90*0.5",
]


def test_835_claims_adjustments_remarks_and_lines():
    res = run(interchange(ERA_835))
    assert res.message_type == "835"
    assert res.warnings == []
    claims = of_type(res, "ClaimAdjudication")
    assert [c["claim_id"] for c in claims] == ["PCN-1001", "PCN-0999", "PCN-0999"]
    c1 = claims[0]
    assert c1["status_code"] == "4" and c1["reversal"] is False
    assert (c1["total_charge"], c1["paid"], c1["patient_responsibility"]) == (500.0, 0.0, 0.0)
    assert c1["payer_claim_control_number"] == "PAYERCCN0001"
    assert codes(c1["adjustments"]) == [
        ("CO", "29", 100.0, 1.0),
        ("CO", "16", 50.0, None),
        ("CO", "18", 25.0, 2.0),
        ("CO", "197", 10.0, None),
        ("CO", "45", 5.0, None),
        ("CO", "253", 1.5, None),
    ]
    assert c1["remark_codes"] == ["N1", "MA01", "MA02", "MA130", "N20"]
    assert c1["patient_name"] == "DOE, JANE Q"
    assert c1["member_id"] == "SUB0001"  # NM1*IL (subscriber) wins over NM1*QC
    assert c1["patient_id"] == "MRN-77"
    assert c1["payer_name"] == "ACME HEALTH PLAN" and c1["payer_id"] == "87726"
    assert c1["payee_npi"] == "1234567893"
    assert c1["payment_trace"] == "EFT12345" and c1["payment_date"] == "2024-01-10"
    assert c1["service_date"] == "2023-12-01"
    line1, line2 = c1["lines"]
    assert line1["procedure"] == {"system": "http://www.ama-assn.org/go/cpt", "code": "99213", "display": None}
    assert line1["modifiers"] == ["25", "59"]
    assert (line1["charge"], line1["paid"], line1["units"]) == (300.0, 0.0, 1.0)
    assert line1["service_date"] == "2023-12-01"
    assert codes(line1["adjustments"]) == [("CO", "29", 300.0, None)]
    assert line1["remark_codes"] == ["N211", "M86"]  # LQ*RX (NCPDP) is not a RARC
    assert line1["control_number"] == "LINE-1"
    assert line1["allowed"] == 0.0 and line2["allowed"] is None  # AMT*B6: the payer's allowed amount
    assert claims[2]["lines"][0]["allowed"] == 120.0
    assert line2["procedure"]["code"] == "J1100"
    assert line2["procedure"]["system"].startswith("https://www.cms.gov/")  # HCPCS level II
    assert line2["units"] == 4.0 and line2["service_date"] == "2023-12-01"
    assert codes(line2["adjustments"]) == [("PR", "1", 150.0, None), ("PR", "2", 50.0, None)]


def test_835_reversal_and_correction_get_distinct_stable_ids():
    raw = interchange(ERA_835)
    claims = of_type(run(raw), "ClaimAdjudication")
    reversal, correction = claims[1], claims[2]
    assert reversal["reversal"] is True and reversal["status_code"] == "22"
    assert (reversal["total_charge"], reversal["paid"], reversal["patient_responsibility"]) == (-120.0, -100.0, -20.0)
    assert reversal["lines"][0]["units"] == -1.0
    assert correction["reversal"] is False
    ids = [c["adjudication_id"] for c in claims]
    assert len(set(ids)) == 3
    # Same content, other formatting (CRLF after terminators): same ids and message id.
    again = run(interchange(ERA_835, sep="\r\n"))
    assert [c["adjudication_id"] for c in of_type(again, "ClaimAdjudication")] == ids
    assert again.message_id == run(raw).message_id


def test_835_adjudication_id_does_not_depend_on_other_claims():
    first = of_type(run(interchange(ERA_835)), "ClaimAdjudication")[0]["adjudication_id"]
    without_reversal = ERA_835[:29] + ERA_835[34:]
    assert without_reversal[28].startswith("REF*6R*LINE-2") and without_reversal[29].startswith("CLP*PCN-0999*1*")
    claims = of_type(run(interchange(without_reversal)), "ClaimAdjudication")
    assert claims[0]["adjudication_id"] == first
    assert len(claims) == 2


def test_835_plb_pairs():
    adjs = of_type(run(interchange(ERA_835)), "ProviderAdjustment")
    assert [(a["reason"], a["reference"], a["amount"]) for a in adjs] == [
        ("WO", "ABC123", 25.0),
        ("72", "ABC123", -25.0),
        ("L6", None, 1.23),
        ("CS", "REF9", -4.5),
        ("FB", None, 7.0),
        ("90", None, 0.5),
    ]
    assert {a["provider_id"] for a in adjs} == {"1234567893"}
    assert {a["fiscal_period_end"] for a in adjs} == {"2024-12-31"}
    assert {a["payment_trace"] for a in adjs} == {"EFT12345"}
    assert len({a["adjustment_id"] for a in adjs}) == 6


def test_835_custom_delimiters_pipe_bang_caret_and_newlines():
    base = run(interchange(ERA_835))
    custom = run(interchange(ERA_835, elem="|", comp="!", rep="^", term="~", sep="\n"))
    assert custom.warnings == []
    strip = lambda recs: [{k: v for k, v in r.value.items() if k != "source"} for r in recs]  # noqa: E731
    assert strip(custom.records) == strip(base.records)
    # Line feed as the segment terminator, with indentation.
    lf = interchange(ERA_835, term="\n", sep="    ")
    assert strip(run(lf).records) == strip(base.records)


def test_835_several_transaction_sets_and_interchanges_with_own_delimiters():
    second_set = [
        "835",
        "BPR*I*50*C*CHK************20240111",
        "TRN*1*CHK999*1999",
        "N1*PR*OTHER PLAN",
        "N1*PE*SUNRISE*XX*1234567893",
        "CLP*PCN-2001*1*60*50*10*12*CCN2001",
        "CAS*PR*3*10",
    ]
    one = interchange(ERA_835 + ["--"] + second_set)
    two = interchange(second_set, elem="|", comp=">", rep="!", term="\n", ctl=906)
    res = run(one + b"\r\n" + two)
    assert res.warnings == []
    ids = [
        (c["claim_id"], c["payment_trace"], c["source"]["message_id"].split("/")[1:])
        for c in of_type(res, "ClaimAdjudication")
    ]
    assert ids[-2:] == [
        ("PCN-2001", "CHK999", ["000000905", "77", "0002"]),
        ("PCN-2001", "CHK999", ["000000906", "77", "0001"]),
    ]
    # the same claim paid in two interchanges of one file: occurrence index keeps ids apart
    assert ids[-1] != ids[-2]
    assert len({c["adjudication_id"] for c in of_type(res, "ClaimAdjudication")}) == 5


def test_835_malformed_claim_is_skipped_and_others_kept():
    body = ERA_835[:8] + ["CLP*BAD-1*1*NOTANUMBER*0", "CAS*CO*45*10", "SVC*HC:99211*10*0"] + ERA_835[8:]
    res = run(interchange(body))
    assert [c["claim_id"] for c in of_type(res, "ClaimAdjudication")] == ["PCN-1001", "PCN-0999", "PCN-0999"]
    assert any(w.startswith("malformed_claim:") and "BAD-1" in w for w in res.warnings)
    with pytest.raises(Rejected) as exc:
        run(interchange(body), strict=True)
    assert exc.value.reason_code == "malformed_claim"


def test_835_bad_cas_amount_skips_only_that_adjustment():
    body = ERA_835[:9] + ["CAS*CO*45*12x*1*97*3"] + ERA_835[10:]
    c1 = of_type(run(interchange(body)), "ClaimAdjudication")[0]
    assert codes(c1["adjustments"]) == [("CO", "97", 3.0, None)]


def test_835_component_separator_mismatch_is_detected():
    # ISA16 says ':' but the composites use '>' (seen in published TR3 samples)
    body = [s.replace("HC:", "HC>").replace(":25:59", ">25>59") for s in ERA_835]
    res = run(interchange(body))
    line = of_type(res, "ClaimAdjudication")[0]["lines"][0]
    assert line["procedure"]["code"] == "99213" and line["modifiers"] == ["25", "59"]
    assert any(w.startswith("component_separator:") for w in res.warnings)


# --------------------------------------------------------------------------- envelope
def test_envelope_count_and_control_mismatch_warns_or_rejects_in_strict():
    good = interchange(ERA_835)
    count = len(ERA_835) + 1
    raw = good.replace(f"SE*{count}*0001".encode(), f"SE*{count - 1}*0001".encode()).replace(
        b"IEA*1*000000905", b"IEA*1*000000999"
    )
    assert raw.count(b"SE*") == 1 and raw != good
    res = run(raw)
    assert any(f"SE01 {count - 1} != {count}" in w for w in res.warnings)
    assert any("IEA02 000000999 != ISA13 000000905" in w for w in res.warnings)
    assert len(of_type(res, "ClaimAdjudication")) == 3
    with pytest.raises(Rejected) as exc:
        run(raw, strict=True)
    assert exc.value.reason_code == "envelope_mismatch"


def test_isa_padding_errors_are_tolerated_with_a_warning():
    raw = interchange(ERA_835).replace(b"PAYERSENDER    *", b"PAYERSENDER*")
    res = run(raw)
    assert any(w.startswith("isa_length:") for w in res.warnings)
    assert len(of_type(res, "ClaimAdjudication")) == 3
    with pytest.raises(Rejected) as exc:
        run(raw, strict=True)
    assert exc.value.reason_code == "isa_length"


def test_bom_utf16_and_crlf_inputs():
    raw = interchange(ERA_835, sep="\r\n")
    base = run(raw)
    for variant in (b"\xef\xbb\xbf" + raw, raw.decode().encode("utf-16"), raw.decode().encode("utf-16-le")):
        res = run(variant)
        assert [r.value for r in res.records] == [r.value for r in base.records]
        assert res.message_id == base.message_id


def test_message_id_stable_for_resend_and_distinct_for_other_content():
    a = run(interchange(ERA_835)).message_id
    assert a == run(interchange(ERA_835)).message_id
    assert a == run(interchange(ERA_835, sep="\n  ")).message_id
    other = ERA_835[:-1] + ["PLB*1234567893*20241231*WO:ABC123*26.00"]
    assert a != run(interchange(other)).message_id  # same sender + ISA13, different content


def test_missing_trailers_are_tolerated():
    raw = interchange(ERA_835)
    truncated = raw[: raw.index(b"SE*")]
    res = run(truncated)
    assert len(of_type(res, "ClaimAdjudication")) == 3
    assert any("has no SE" in w for w in res.warnings)
    with pytest.raises(Rejected) as exc:
        run(truncated, strict=True)
    assert exc.value.reason_code == "envelope_incomplete"


def test_no_envelope_st_se_only():
    raw = interchange(ERA_835)
    start, end = raw.index(b"ST*835"), raw.index(b"GE*")
    bare = raw[start:end]
    res = run(bare)
    assert len(of_type(res, "ClaimAdjudication")) == 3
    assert any(w.startswith("missing_isa:") for w in res.warnings)
    assert of_type(res, "ClaimAdjudication")[0]["source"]["sent_at"] is None
    assert run(bare).message_id == res.message_id
    with pytest.raises(Rejected) as exc:
        run(bare, strict=True)
    assert exc.value.reason_code == "missing_isa"


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (b"hello world, not x12", "missing_isa"),
        (b"MSH|^~\\&|LAB|HOSP|||20240101||ORU^R01|1|P|2.5\r", "missing_isa"),
        (b"ISA", "missing_isa"),
        (b"ISA*00*", "invalid_isa"),
        (b"ISAX00", "missing_isa"),
    ],
)
def test_garbage_is_rejected(raw, code):
    with pytest.raises(Rejected) as exc:
        normalize_x12(raw, PID, 0)
    assert exc.value.reason_code == code


def test_interchange_without_transactions_is_rejected():
    raw = (isa() + "IEA*0*000000905~").encode()
    with pytest.raises(Rejected) as exc:
        normalize_x12(raw, PID, 0)
    assert exc.value.reason_code == "no_transactions"


@pytest.mark.parametrize(
    "set_id, gs01, fragment",
    [
        ("270", "HS", "eligibility inquiry"),
        ("276", "HR", "claim status inquiry"),
        ("278", "HI", "278 request"),
    ],
)
def test_outbound_transactions_are_unsupported(set_id, gs01, fragment):
    raw = interchange([set_id, "BHT*0022*13*REQ1*20240105*1230", "HL*1**20*1"], gs01=gs01, gs08="005010X279A1")
    with pytest.raises(Rejected) as exc:
        normalize_x12(raw, PID, 0)
    assert exc.value.reason_code == "unsupported_transaction"
    assert fragment in exc.value.reason


def test_unsupported_set_in_a_mixed_file_is_skipped_with_a_warning():
    raw = interchange(ERA_835 + ["--", "270", "BHT*0022*13*REQ1*20240105*1230"])
    res = run(raw)
    assert res.message_type == "835+270"
    assert len(of_type(res, "ClaimAdjudication")) == 3
    assert any(w.startswith("unsupported_transaction:") for w in res.warnings)


def test_tokenizer_splits_groups_and_sets():
    raw = interchange(ERA_835 + ["--"] + ERA_835)
    parsed = tokenize(raw)
    (ic,) = parsed.interchanges
    assert ic.delimiters.element == "*" and ic.delimiters.component == ":"
    assert ic.delimiters.repetition == "^" and ic.delimiters.segment == "~"
    (group,) = ic.groups
    assert [ts.set_id for ts in group.transactions] == ["835", "835"]
    assert [ts.control_number for ts in group.transactions] == ["0001", "0002"]
    assert group.transactions[0].segments[0][0] == "BPR"
    assert parsed.warnings == []


def test_no_reference_cycles_and_gc_state_restored():
    raw = interchange(ERA_835)
    assert gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        result = normalize_x12(raw, PID, 0)
        assert not gc.isenabled()  # a disabled collector stays disabled
        del result
        assert gc.collect() == 0
    finally:
        gc.enable()
    normalize_x12(raw, PID, 0)
    assert gc.isenabled()
    with pytest.raises(Rejected):
        normalize_x12(b"garbage", PID, 0)
    assert gc.isenabled()


# --------------------------------------------------------------------------- 277 / 277CA
CA_277 = [
    "277",
    "BHT*0085*08*BATCH01*20240112*1015*TH",
    "HL*1**20*1",
    "NM1*PR*2*ACME HEALTH PLAN*****PI*87726",
    "TRN*1*0091182",
    "DTP*050*D8*20240112",
    "HL*2*1*21*1",
    "NM1*41*2*SUNRISE BILLING*****46*X123",
    "TRN*2*BATCH-TRACE",
    "STC*A1:19:PR*20240112*WQ*725",
    "HL*3*2*19*1",
    "NM1*85*2*SUNRISE FAMILY PRACTICE*****XX*1234567893",
    "HL*4*3*PT",
    "NM1*QC*1*DOE*JANE****MI*MEM0001",
    "TRN*2*PCN-1001",
    "STC*A2:20*20240112*WQ*500",
    "REF*1K*PAYER-ICN-1",
    "DTP*472*RD8*20231201-20231201",
    "HL*5*3*PT",
    "NM1*QC*1*ROE*RICHARD****MI*MEM0999",
    "TRN*2*PCN-1002",
    "STC*A7:562:85*20240112*U*225******A7:128:IL*A8:454",  # STC10, STC11
    "REF*1K*PAYER-ICN-2",
    "SVC*HC:99213*125****1",
    "STC*A7:306*20240112*U*125",
]


def test_277ca_claim_statuses():
    res = run(interchange(CA_277, gs01="HN", gs08="005010X214"))
    assert res.message_type == "277CA"
    st = of_type(res, "ClaimStatus")
    # receiver-level A1 is not emitted (claims below it carry their own status);
    # the service-line STC after SVC is not emitted either.
    assert [(s["claim_id"], s["category_code"], s["status_code"], s["entity_code"], s["accepted"]) for s in st] == [
        ("PCN-1001", "A2", "20", None, True),
        ("PCN-1002", "A7", "562", "85", False),
        ("PCN-1002", "A7", "128", "IL", False),
        ("PCN-1002", "A8", "454", None, False),
    ]
    assert st[0]["payer_claim_control_number"] == "PAYER-ICN-1"
    assert st[0]["patient_name"] == "DOE, JANE" and st[0]["payer_name"] == "ACME HEALTH PLAN"
    assert st[0]["status_date"] == "2024-01-12" and st[0]["total_charge"] == 500.0
    assert st[1]["payer_claim_control_number"] == "PAYER-ICN-2"
    assert len({s["status_id"] for s in st}) == 4
    assert st[0]["source"]["message_type"] == "277CA"


def test_277_provider_level_status_without_claims():
    body = [
        "277",
        "BHT*0010*08*X212*20240112*0810*DG",
        "HL*1**20*1",
        "NM1*PR*2*ACME HEALTH PLAN*****PI*87726",
        "HL*2*1*21*1",
        "NM1*41*2*SUNRISE BILLING*****46*X123",
        "HL*3*2*19*0",
        "NM1*1P*2*SUNRISE FAMILY PRACTICE*****XX*1234567893",
        "TRN*1*0",
        "STC*E0:24:85*20240112",
    ]
    st = of_type(run(interchange(body, gs01="HN", gs08="005010X212")), "ClaimStatus")
    assert [(s["claim_id"], s["category_code"], s["status_code"], s["entity_code"], s["accepted"]) for s in st] == [
        (None, "E0", "24", "85", None)
    ]


def test_277_x212_uses_patient_control_number_and_finalized_status():
    body = [
        "277",
        "BHT*0010*08*X212*20240112*0810*DG",
        "HL*1**20*1",
        "NM1*PR*2*ACME HEALTH PLAN*****PI*87726",
        "HL*2*1*21*1",
        "NM1*41*2*SUNRISE BILLING*****46*X123",
        "HL*3*2*19*1",
        "NM1*1P*2*SUNRISE FAMILY PRACTICE*****XX*1234567893",
        "HL*4*3*22*0",
        "NM1*IL*1*DOE*JANE****MI*MEM0001",
        "TRN*2*INQUIRY-TRACE",
        "STC*F2:88:QC*20240110**150.00*0.00",
        "REF*1K*ICN77",
        "REF*EJ*PCN-1001",
    ]
    (s,) = of_type(run(interchange(body, gs01="HN", gs08="005010X212")), "ClaimStatus")
    assert s["claim_id"] == "PCN-1001"
    assert (s["category_code"], s["status_code"], s["entity_code"]) == ("F2", "88", "QC")
    assert (s["total_charge"], s["paid"], s["accepted"]) == (150.0, 0.0, True)


# --------------------------------------------------------------------------- 271
ELIG_271 = [
    "271",
    "BHT*0022*11*REQ-55*20240105*1230",
    "HL*1**20*1",
    "NM1*PR*2*ACME HEALTH PLAN*****PI*87726",
    "HL*2*1*21*1",
    "NM1*1P*2*SUNRISE FAMILY PRACTICE*****XX*1234567893",
    "HL*3*2*22*1",
    "NM1*IL*1*DOE*JOHN****MI*SUB0001",
    "DMG*D8*19700101*M",
    "HL*4*3*23*0",
    "TRN*2*TRACE-270-1*9877281234",
    "TRN*1*PAYER-TRACE*9999999999",
    "NM1*03*1*DOE*JANE",
    "DMG*D8*20100615*F",
    "REF*EJ*ACCT-9",
    "REF*EA*MRN-JANE",
    "EB*1*FAM*30^1^33^98*HM*GOLD PLAN",
    "EB*B*IND*98^UC*HM*GOLD PLAN*27*25.00*****Y",
    "MSG*COPAY WAIVED FOR PREVENTIVE VISITS",
    "EB*A*IND*30***27**0.2****N",
    "REF*EA*BENEFIT-LEVEL-REF",
    "EB*L",
    "LS*2120",
    "NM1*P3*1*JONES*MARCUS****XX*1234567893",
    "LE*2120",
    "--",
    "271",
    "BHT*0022*11*REQ-56*20240105*1230",
    "HL*1**20*1",
    "NM1*PR*2*ACME HEALTH PLAN*****PI*87726",
    "HL*2*1*21*1",
    "NM1*1P*2*SUNRISE FAMILY PRACTICE*****XX*1234567893",
    "HL*3*2*22*0",
    "TRN*2*TRACE-270-2*9877281234",
    "NM1*IL*1*POE*EDGAR****MI*SUB0002",
    "AAA*Y**72*C",
    "EB*6**30",
]


def test_271_dependent_and_subscriber_responses():
    res = run(interchange(ELIG_271, gs01="HB", gs08="005010X279A1", rep="^"))
    dep, sub = of_type(res, "EligibilityResponse")
    assert dep["patient_name"] == "DOE, JANE" and dep["member_id"] == "SUB0001"  # inherited from 2000C
    assert dep["birth_date"] == "2010-06-15" and dep["trace_number"] == "TRACE-270-1"
    assert dep["payer_name"] == "ACME HEALTH PLAN" and dep["payer_id"] == "87726"
    assert dep["active"] is True and dep["rejections"] == []
    b = dep["benefits"]
    assert [x["info_code"] for x in b] == ["1", "B", "A", "L"]
    assert b[0]["service_types"] == ["30", "1", "33", "98"] and b[0]["coverage_level"] == "FAM"
    assert b[0]["insurance_type"] == "HM" and b[0]["plan_description"] == "GOLD PLAN"
    assert (b[1]["time_period"], b[1]["amount"], b[1]["in_network"]) == ("27", 25.0, "Y")
    assert b[1]["messages"] == ["COPAY WAIVED FOR PREVENTIVE VISITS"]
    assert (b[2]["percent"], b[2]["amount"], b[2]["in_network"]) == (0.2, None, "N")
    assert sub["member_id"] == "SUB0002" and sub["active"] is False and sub["rejections"] == ["72"]
    assert sub["trace_number"] == "TRACE-270-2"
    assert dep["response_id"] != sub["response_id"]
    # the practice's own id echoed in 2100D (REF*EA beats REF*EJ; a 2110 REF is not the patient's)
    assert dep["patient_id"] == "MRN-JANE" and sub["patient_id"] is None
    keys = [r.key for r in res.records if r.record_type == "EligibilityResponse"]
    assert keys[0].split("/")[1] == "MRN-JANE" and keys[1].split("/")[1] == "-"


def test_271_custom_repetition_separator():
    res = run(interchange(ELIG_271, gs01="HB", gs08="005010X279A1", elem="|", comp="!", rep="}"))
    dep = of_type(res, "EligibilityResponse")[0]
    assert dep["benefits"][0]["service_types"] == ["30", "1", "33", "98"]


def test_271_source_level_rejection_without_subscriber():
    body = [
        "271",
        "BHT*0022*11*REQ-57*20240105*1230",
        "HL*1**20*1",
        "NM1*PR*2*ACME HEALTH PLAN*****PI*87726",
        "AAA*Y**42*R",
    ]
    (r,) = of_type(run(interchange(body, gs01="HB", gs08="005010X279A1")), "EligibilityResponse")
    assert r["rejections"] == ["42"] and r["member_id"] is None and r["active"] is None
    assert r["trace_number"] == "REQ-57"


# --------------------------------------------------------------------------- 999 / TA1
ACK_999 = [
    "999",
    "AK1*HC*4411*005010X222A1",
    "AK2*837*0001*005010X222A1",
    "IK5*A",
    "AK2*837*0002*005010X222A1",
    "IK3*CLM*22*2300*8",
    "CTX*CLM01:PCN-1001",
    "IK4*2*782*1",
    "IK5*R*5",
    "AK9*P*2*2*1",
]


def test_999_partial_acceptance_with_errors():
    (ack,) = of_type(run(interchange(ACK_999, gs01="FA", gs08="005010X231A1")), "InterchangeAck")
    assert ack["kind"] == "999" and ack["accepted"] == "P"
    assert ack["acknowledged_control_numbers"] == ["4411", "4411/0001", "4411/0002"]
    assert ack["errors"] == [
        "837 0002: segment CLM at position 22 in loop 2300: 8 segment has data element errors",
        "837 0002: context CLM01:PCN-1001",
        "837 0002: element 2 (ref 782): 1 required data element missing",
        "837 0002: R rejected (5 one or more segments in error)",
    ]


def test_999_without_ak9_derives_acceptance():
    body = [s for s in ACK_999 if not s.startswith("AK9")]
    (ack,) = of_type(run(interchange(body, gs01="FA", gs08="005010X231A1")), "InterchangeAck")
    assert ack["accepted"] == "P"


def test_ta1_only_interchange():
    raw = (
        isa(elem="|", comp="!", rep="^") + "\r\n" + "TA1|000001234|240105|1230|R|006~\r\n"
        "TA1|000001235|240105|1230|A|000~\r\nIEA|0|000000905~\r\n"
    ).encode()
    res = run(raw)
    assert res.message_type == "TA1"
    rejected, accepted = of_type(res, "InterchangeAck")
    assert (rejected["kind"], rejected["accepted"]) == ("TA1", "R")
    assert rejected["acknowledged_control_numbers"] == ["000001234"]
    assert rejected["errors"] == ["TA1 006: invalid interchange sender ID"]
    assert (accepted["accepted"], accepted["errors"]) == ("A", [])
    assert rejected["source"]["sent_at"] == "2024-01-05T12:30"


# --------------------------------------------------------------------------- 837
CLAIM_837P = [
    "837",
    "BHT*0019*00*0123*20240105*1230*CH",
    "NM1*41*2*SUNRISE BILLING*****46*X123",
    "HL*1**20*1",
    "NM1*85*2*SUNRISE FAMILY PRACTICE*****XX*1234567893",
    "HL*2*1*22*0",
    "SBR*P*18*******CI",
    "NM1*IL*1*DOE*JANE****MI*MEM0001",
    "NM1*PR*2*ACME HEALTH PLAN*****PI*87726",
    "CLM*PCN-1001*300***11:B:1*Y*A*Y*Y",
    "REF*EA*MRN-77",
    "HI*ABK:J449*ABF:R0602",
    "LX*1",
    "SV1*HC:99214:25*200*UN*1***1:2",
    "DTP*472*D8*20231201",
    "REF*6R*L1",
    "LX*2",
    "SV1*HC:94640*100*UN*2***1",
    "DTP*472*D8*20231201",
    "NM1*PR*2*SECONDARY PLAN*****PI*55555",
]


def test_837p_claim():
    res = run(interchange(CLAIM_837P, gs01="HC", gs08="005010X222A1"))
    assert res.message_type == "837P"
    (c,) = of_type(res, "Claim")
    assert c["claim_id"] == "PCN-1001" and c["total_charge"] == 300.0 and c["status"] == "submitted"
    assert c["patient_id"] == "MRN-77"
    assert (c["payer_id"], c["payer_name"]) == ("87726", "ACME HEALTH PLAN")
    assert c["diagnoses"] == [
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J449", "display": None},
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R0602", "display": None},
    ]
    assert [
        (ln["procedure"]["code"], ln["modifiers"], ln["charge"], ln["units"], ln["control_number"]) for ln in c["lines"]
    ] == [("99214", ["25"], 200.0, 1.0, "L1"), ("94640", [], 100.0, 2.0, None)]
    assert c["service_date"] == "2023-12-01"
