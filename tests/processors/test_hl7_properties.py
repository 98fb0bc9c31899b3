"""Property-based tests: whatever bytes arrive, the HL7 processor returns valid records or
raises ``Rejected`` (never another exception, never ``internal_error``); ACK building and
batch splitting never fail."""

from __future__ import annotations

from fastavro.validation import validate
from hypothesis import HealthCheck, given, settings, strategies as st

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.hl7.ack import build_ack
from practiceflow.processors.hl7.normalize import normalize_hl7
from practiceflow.processors.hl7.parser import HL7ParseError, parse, split_batch
from practiceflow.schemas.avro_gen import load_parsed

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _msh(t: str, v: str = "2.5.1", c: str = "C1") -> str:
    return f"MSH|^~\\&|APP|FAC|EHR|CLIN|20240305143000-0500||{t}|{c}|P|{v}"


_PID = "PID|1||MRN1^^^CLIN^MR~SSN1^^^SSA^SS||DOE\\S\\X^JANE^Q||19800102|F|||1 MAIN^^CITY^ST^12345||555-0100~^NET^Internet^a@b.c"
SEEDS = [
    [
        _msh("ADT^A01^ADT_A01"),
        "EVN|A01|20240305",
        _PID,
        "PV1|1|I|ICU^1^A||||99^DOC^ANN|||||||||||||V1",
        "PV2|||R07^Chest pain",
        "IN1|1|P1^Plan|PAY1|Payer|||||||20240101|20241231",
    ],
    [_msh("ADT^A40", "2.8"), _PID, "MRG|OLD1^^^CLIN^MR"],
    [
        _msh("ORU^R01^ORU_R01"),
        _PID,
        "ORC|RE|O1|F1",
        "OBR|1|O1|F1|CBC^Blood count^LN|||20240305",
        "OBX|1|NM|WBC^White cells^LN||7.5|10*3/uL|4-11|N|||F|||20240305120000",
        "NTE|1||note \\.br\\ two",
        "OBX|2|SN|X^Y^LN||<^5|mg||L~A|||F",
        "OBX|3|CE|C^Culture^LN||123^Detected^SCT||||||F",
        "OBX|4|ED|PDF^Doc^L||A^application^pdf^Base64^QUJD||||||F",
        "OBX|5|TX|||a~b||||||F",
    ],
    [_msh("ORM^O01", "2.3"), _PID, "ORC|NW|P1||||||^^^^^S|20240305", "OBR|1|P1||85025^CBC^CPT", "DG1|1||E11^DM^I10"],
    [_msh("SIU^S12"), "SCH|A1|B1||||R^Reason|||30|MIN|^^30^20240310090000", _PID, "AIP|1||9^DOC^ANN", "AIL|1||ROOM^1"],
    [
        _msh("RDE^O11", "2.8"),
        _PID,
        "ORC|NW|RX1|||||||20240305",
        "RXE|^BID|123^Drug^RXNORM|5||mg|TAB|Take~Daily|||30|TAB|2",
        "RXR|PO^Oral",
    ],
    [
        _msh("MDM^T02"),
        _PID,
        "TXA|1|DS|TX|20240305||20240305||||||D1|||||AU",
        "OBX|1|TX|||text line",
        "OBX|2|ED|||A^text^xml^Base64^PD94",
    ],
    [
        _msh("VXU^V04"),
        _PID,
        "ORC|RE||IZ1",
        "RXA|0|1|20240301||08^HepB^CVX|0.5|mL||00^New||||||LOT|20250101|MSD^Merck",
        "RXR|IM^Intramuscular",
        "OBX|1|CE|64994-7^Elig^LN|1|V02^Medicaid||||||F",
    ],
    [_msh("DFT^P03"), _PID, "PV1|1|O|||||||||||||||||V2", "FT1|1|||20240305||CG|99213^Visit^CPT"],
]
SEED_BYTES = [("\r".join(s) + "\r").encode("utf-8") for s in SEEDS]
# "\u00b9" / "\u00b2": str.isdigit() is true and int() fails (issue 14); "\\.sp\u00b9\\" once crashed unescape
SPECIAL = list("|^~\\&#\r\n \t\x00\x0b\x1c\"'") + [
    "\u00e9",
    "\ufeff",
    "MSH|",
    "\\X0D\\",
    "\\.br\\",
    "~~",
    "^^",
    "||",
    "\u00b9",
    "\u00b2",
    "\\.sp\u00b9\\",
    "2.5.\u00b9",
    "20240305\u00b9",
]


def check(raw: bytes, strict: bool = False) -> None:
    try:
        result = normalize_hl7(raw, "p", 0, strict=strict)
    except Rejected as e:
        assert e.reason_code != "internal_error", e.reason
        return
    assert isinstance(result, NormalizeResult) and result.records
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)


def check_helpers(raw: bytes) -> None:
    ack = build_ack(raw, "AE", "because", now="20240101000000")
    assert b"MSA" in ack
    for part in split_batch(raw):
        assert isinstance(part, bytes)
    try:
        parse(raw)
    except HL7ParseError:
        pass


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_BYTES)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "truncate", "swap", "special"]))
        n = len(data)
        i = draw(st.integers(0, max(n - 1, 0)))
        j = min(n, i + draw(st.integers(1, 40)))
        if op == "delete":
            del data[i:j]
        elif op == "duplicate":
            data[i:i] = data[i:j]
        elif op == "replace" and n:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=12))
        elif op == "truncate":
            del data[i:]
        elif op == "swap":
            a, b = draw(st.sampled_from([(b"|", b"#"), (b"^", b"~"), (b"\\", b"&"), (b"\r", b"\n"), (b"^", b"|")]))
            data = bytearray(bytes(data).replace(a, b"\x01").replace(b, a).replace(b"\x01", b))
        elif op == "special":
            data[i:i] = draw(st.sampled_from(SPECIAL)).encode("utf-8")
    return bytes(data)


def test_seeds_are_valid():
    for raw in SEED_BYTES:
        result = normalize_hl7(raw, "p", 0)
        assert result.records and not any(w.startswith("malformed") for w in result.warnings)


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes(raw: bytes):
    check(raw)
    check_helpers(raw)


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("MSHPIDOBXR|^~\\&\r\n 0123456789.ABC-\u00b9\u00b2")), max_size=300))
def test_random_hl7ish_text(text: str):
    raw = ("MSH|^~\\&|" + text).encode()
    check(raw)
    check_helpers(raw)


@SETTINGS
@given(mutated())
def test_mutated_valid_messages(raw: bytes):
    check(raw)
    check_helpers(raw)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_messages_strict(raw: bytes):
    check(raw, strict=True)


@SETTINGS
@given(
    st.lists(
        st.sampled_from(SEED_BYTES + [b"FHS|^~\\&\r", b"BHS|^~\\&\r", b"BTS|1\r", b"\r\n", b"\x0b", b"\x1c\r"]),
        max_size=8,
    )
)
def test_split_batch_then_normalize(parts: list[bytes]):
    data = b"".join(parts)
    messages = split_batch(data)
    assert len(messages) == sum(1 for p in parts if p in SEED_BYTES)
    for m in messages:
        check(m)


@SETTINGS
@given(st.sampled_from(SEED_BYTES), st.sampled_from(["\u00b9", "\u00b2", "\u2460", "\u0661"]), st.integers(0, 1 << 16))
def test_unicode_digit_after_any_ascii_digit(seed: bytes, sup: str, k: int):
    """A superscript (or other Unicode digit) right after an ASCII digit: dates, counts,
    versions, set ids and .sp escapes must reject or read it, never crash."""
    text = seed.decode("utf-8")
    digits = [i for i, ch in enumerate(text) if "0" <= ch <= "9"]
    i = digits[k % len(digits)]
    check((text[: i + 1] + sup + text[i + 1 :]).encode("utf-8"))
