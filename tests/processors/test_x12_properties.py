"""Property tests: whatever the bytes, ``normalize_x12`` returns a NormalizeResult whose
records validate against Avro, or raises Rejected (never another exception, never
``internal_error``); formatting that X12 ignores does not change the output."""

from __future__ import annotations

from fastavro.validation import validate
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.x12.normalize import normalize_x12
from practiceflow.schemas.avro_gen import load_parsed

PID = "practice-prop"
SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _isa(elem: str, rep: str, comp: str, term: str, ctl: int) -> str:
    fields = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        "PAYER".ljust(15),
        "ZZ",
        "PRACTICE".ljust(15),
        "240105",
        "1230",
        rep,
        "00501",
        f"{ctl:09d}",
        "0",
        "P",
        comp,
    ]
    return elem.join(fields) + term


_SETS = {
    "835": (
        "HP",
        "005010X221A1",
        [
            "BPR*I*95*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*20240110",
            "TRN*1*EFT1*1512345678",
            "N1*PR*ACME*XV*87726",
            "N1*PE*SUNRISE*XX*1234567893",
            "LX*1",
            "CLP*PCN1*4*200*0*0*12*CCN1*11*1",
            "CAS*CO*29*200",
            "NM1*QC*1*DOE*JANE****MI*M1",
            "MOA***MA130",
            "SVC*HC:99213:25*200*0**1",
            "DTM*472*20231201",
            "CAS*CO*29*200*1*45*0",
            "LQ*HE*N211",
            "REF*6R*L1",
            "CLP*PCN2*22*-120*-95*-25*12*CCN2*11*7",
            "NM1*QC*1*ROE*RICH****MI*M2",
            "SVC*HC:99214*-120*-95**-1",
            "CAS*PR*3*-25",
            "PLB*1234567893*20241231*WO:R1*25*72:R1*-25*L6*1.5",
        ],
    ),
    "277": (
        "HN",
        "005010X214",
        [
            "BHT*0085*08*B1*20240112*1015*TH",
            "HL*1**20*1",
            "NM1*PR*2*ACME*****PI*87726",
            "HL*2*1*21*1",
            "NM1*41*2*BILLING*****46*X1",
            "TRN*2*BT",
            "STC*A1:19:PR*20240112*WQ*200",
            "HL*3*2*19*1",
            "NM1*85*2*SUNRISE*****XX*1234567893",
            "HL*4*3*PT",
            "NM1*QC*1*DOE*JANE****MI*M1",
            "TRN*2*PCN1",
            "STC*A7:562:85*20240112*U*200******A7:128:IL",
            "REF*1K*ICN1",
        ],
    ),
    "271": (
        "HB",
        "005010X279A1",
        [
            "BHT*0022*11*R1*20240105*1230",
            "HL*1**20*1",
            "NM1*PR*2*ACME*****PI*87726",
            "HL*2*1*21*1",
            "NM1*1P*2*SUNRISE*****XX*1234567893",
            "HL*3*2*22*0",
            "TRN*2*T1*9877281234",
            "NM1*IL*1*DOE*JANE****MI*M1",
            "DMG*D8*19800101*F",
            "EB*1**30^1^33*HM*GOLD",
            "EB*B**98*HM*GOLD*27*25.00*****Y",
            "MSG*NOTE",
            "EB*L",
            "LS*2120",
            "NM1*P3*1*JONES*M****XX*1234567893",
            "LE*2120",
            "AAA*Y**72*C",
        ],
    ),
    "999": (
        "FA",
        "005010X231A1",
        [
            "AK1*HC*4411*005010X222A1",
            "AK2*837*0001",
            "IK5*A",
            "AK2*837*0002",
            "IK3*CLM*22*2300*8",
            "CTX*CLM01:PCN1",
            "IK4*2*782*1",
            "IK5*R*5",
            "AK9*P*2*2*1",
        ],
    ),
    "837": (
        "HC",
        "005010X222A1",
        [
            "BHT*0019*00*1*20240105*1230*CH",
            "HL*1**20*1",
            "NM1*85*2*SUNRISE*****XX*1234567893",
            "HL*2*1*22*0",
            "NM1*IL*1*DOE*JANE****MI*M1",
            "NM1*PR*2*ACME*****PI*87726",
            "CLM*PCN1*300***11:B:1*Y*A*Y*Y",
            "HI*ABK:J449*ABF:R0602",
            "LX*1",
            "SV1*HC:99214:25*300*UN*1***1",
            "DTP*472*D8*20231201",
        ],
    ),
}
DELIMS = [
    ("*", "^", ":", "~"),
    ("|", "^", "!", "~"),
    ("*", "!", ">", "\n"),
    ("^", "{", "\\", "'"),
    (">", "^", "+", "~"),
    ("!", "`", "}", "|"),
]


def build(kinds: tuple[str, ...], elem="*", rep="^", comp=":", term="~", sep="\n", ctl=905) -> bytes:
    segs = []
    gs01, gs08 = _SETS[kinds[0]][0], _SETS[kinds[0]][1]
    segs.append(f"GS*{gs01}*S*R*20240105*1230*7*X*{gs08}")
    for k, kind in enumerate(kinds):
        body = _SETS[kind][2]
        segs.append(f"ST*{kind}*{k + 1:04d}")
        segs += body
        segs.append(f"SE*{len(body) + 2}*{k + 1:04d}")
    segs += [f"GE*{len(kinds)}*7", f"IEA*1*{ctl:09d}"]
    table = str.maketrans({"*": elem, "^": rep, ":": comp})
    return (
        _isa(elem, rep, comp, term, ctl) + sep + (term + sep).join(s.translate(table) for s in segs) + term + sep
    ).encode()


SAMPLES = [build((k,)) for k in _SETS] + [
    build(("835", "835")),
    build(("271", "271"), elem="|", comp="!", rep="^"),
    (_isa("*", "^", ":", "~", 906) + "\nTA1*000000123*240105*1230*R*006~\nIEA*0*000000906~\n").encode(),
]


def check(raw: bytes, strict: bool = False) -> NormalizeResult | None:
    try:
        result = normalize_x12(raw, PID, 0, strict=strict)
    except Rejected as exc:
        assert exc.reason_code != "internal_error", exc.reason
        assert isinstance(exc.reason_code, str) and isinstance(exc.reason, str)
        return None
    assert isinstance(result, NormalizeResult)
    assert result.records
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
        assert rec.key.startswith(PID + "/")
    return result


def test_samples_are_valid():
    for raw in SAMPLES:
        result = check(raw, strict=True)
        assert result is not None and result.warnings == [], raw[:120]


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes(raw: bytes):
    check(raw)
    check(raw, strict=True)


@SETTINGS
@given(st.sampled_from(SAMPLES), st.binary(max_size=400))
def test_random_bytes_after_a_valid_header(sample: bytes, tail: bytes):
    check(sample[:108] + tail)
    check(sample[:108] + tail, strict=True)


# 0xB2/0xB3/0xB9 are the Latin-1 superscripts two, three and one: str.isdigit() is true for
# them and int() fails on them (issue 14 found an SE01 of "2\u00b9" that way)
_NOISE = list(b"*~:^|!>+`\\'{}\r\n \t\x00") + [
    0xEF,
    0xBB,
    0xBF,
    0xFF,
    0xFE,
    0xB2,
    0xB3,
    0xB9,
    ord("A"),
    ord("9"),
    ord("-"),
    ord("."),
]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["delete", "duplicate", "replace", "insert", "truncate", "swap"]),
                st.integers(0, 1 << 20),
                st.integers(1, 60),
                st.sampled_from(_NOISE),
            ),
            min_size=1,
            max_size=6,
        )
    )
    for op, pos, length, byte in ops:
        if not data:
            break
        pos %= len(data)
        if op == "delete":
            del data[pos : pos + length]
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + length]
        elif op == "replace":
            data[pos] = byte
        elif op == "insert":
            data[pos:pos] = bytes([byte]) * (length % 4 + 1)
        elif op == "truncate":
            del data[pos:]
        else:  # swap one delimiter for another everywhere after pos
            a, b = draw(
                st.sampled_from(
                    [(b"*", b"|"), (b"~", b"\n"), (b":", b">"), (b"~", b"*"), (b"*", b":"), (b"^", b":"), (b"\n", b"")]
                )
            )
            data[pos:] = bytes(data[pos:]).replace(a, b)
    return bytes(data)


@SETTINGS
@given(mutated())
def test_mutated_interchanges(raw: bytes):
    check(raw)
    check(raw, strict=True)


@SETTINGS
@given(st.sampled_from(SAMPLES), st.sampled_from(["\n", "\r\n", "\r\n      ", "  \n\t", "\n\n"]))
def test_line_breaks_and_indentation_between_segments_change_nothing(sample: bytes, sep: str):
    base = check(sample)
    assert base is not None
    term = sample[105:106]
    assume(term == b"~")
    variant = check(sample.replace(b"~\n", b"~").replace(b"~", b"~" + sep.encode()))
    assert variant is not None
    assert variant.message_id == base.message_id
    assert [r.value for r in variant.records] == [r.value for r in base.records]
    assert [r.key for r in variant.records] == [r.key for r in base.records]


@SETTINGS
@given(st.sampled_from([k for k in _SETS if k != "999"]), st.sampled_from(DELIMS), st.sampled_from(["", "\n", "\r\n"]))
def test_delimiter_choice_changes_no_business_content(kind: str, delims: tuple[str, str, str, str], sep: str):
    elem, rep, comp, term = delims
    if term == "\n":
        sep = ""
    base = check(build((kind,)))
    variant = check(build((kind,), elem=elem, rep=rep, comp=comp, term=term, sep=sep))
    assert base is not None and variant is not None
    assert variant.warnings == []
    content_ids = ("adjudication_id", "adjustment_id", "status_id", "claim_id")

    def content(result: NormalizeResult) -> list[dict]:
        # response_id / ack_id derive from the message id (which hashes the bytes); the rest must match
        return [
            {k: v for k, v in r.value.items() if k not in ("source", "response_id", "ack_id")} for r in result.records
        ]

    assert content(variant) == content(base)
    for field in content_ids:
        assert [r.value.get(field) for r in variant.records] == [r.value.get(field) for r in base.records]


@SETTINGS
@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=4), st.sampled_from([b"", b"\n", b"\r\n\r\n"]))
def test_concatenated_interchanges(parts: list[bytes], glue: bytes):
    combined = check(glue.join(parts))
    assert combined is not None
    singles = [check(p) for p in parts]
    assert sum(len(s.records) for s in singles) == len(combined.records)


_SUPERSCRIPTS = ["\u00b9", "\u00b2", "\u00b3", "\u2074", "\u2460"]


@SETTINGS
@given(
    st.sampled_from(SAMPLES),
    st.sampled_from(["SE*", "GE*", "IEA*", "DTM*472*", "BPR*", "ISA*"]),
    st.sampled_from(_SUPERSCRIPTS),
    st.sampled_from(["utf-8", "latin-1"]),
)
def test_unicode_digits_after_a_digit_are_never_internal_errors(sample: bytes, marker: str, sup: str, codec: str):
    """Put a superscript (isdigit() but not int()) right after the first digit following
    a segment id that carries counts, dates or times."""
    text = sample.decode()
    if marker == "ISA*":
        j = len(marker)
    else:
        k = text.find("\n" + marker)
        assume(k >= 0)
        j = k + 1 + len(marker)
    while j < len(text) and not text[j].isdigit():
        j += 1
    assume(j < len(text))
    mutated = text[: j + 1] + sup + text[j + 1 :]
    try:
        raw = mutated.encode(codec)
    except UnicodeEncodeError:
        assume(False)
    check(raw)
    check(raw, strict=True)


def test_se01_with_a_superscript_digit_is_a_warning_not_an_internal_error():
    """Regression (issue 14): SE01 "2\u00b9" passed str.isdigit() and crashed int()."""
    sample = build(("835",)).decode()
    body = len(_SETS["835"][2]) + 2
    assert f"SE*{body}*0001" in sample
    for codec in ("utf-8", "latin-1"):
        raw = sample.replace(f"SE*{body}*0001", f"SE*{body}\u00b9*0001").encode(codec)
        result = check(raw)
        assert result is not None
        assert any("SE01" in w for w in result.warnings), result.warnings
        for marker in ("GE*1*", "IEA*1*"):
            raw2 = sample.replace(marker, marker[:-2] + "1\u00b2*").encode(codec)
            r2 = check(raw2)
            assert r2 is not None and any(marker[:-3] + "01" in w for w in r2.warnings), (marker, r2.warnings)
