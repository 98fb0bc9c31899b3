"""Unit tests for the HL7 v2 splitter parser (self-contained, hand-written messages)."""

from __future__ import annotations

import pytest

from practiceflow.processors.base import Rejected
from practiceflow.processors.hl7.dates import hl7_to_iso
from practiceflow.processors.hl7.parser import (
    HL7ParseError,
    codec_for_charset,
    decode_bytes,
    escape,
    parse,
    split_batch,
    unescape,
)

MSH = "MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240305143000||ORU^R01^ORU_R01|CTRL1|P|2.5.1"


def msg(*segments: str, sep: str = "\r", msh: str = MSH) -> bytes:
    return (sep.join((msh, *segments)) + sep).encode("utf-8")


# --------------------------------------------------------------------------- structure
def test_fields_components_repetitions_subcomponents():
    m = parse(msg("PID|1||MRN1^^^HOSP&1.2.3&ISO^MR~SSN9^^^SSA^SS||DOE^JANE^Q||19800102|F"))
    assert m.get("PID", 3) == "MRN1"
    assert m.get("PID", 3, rep=1) == "SSN9"
    assert m.get("PID", 3, rep=1, comp=5) == "SS"
    assert m.get("PID", 3, comp=4) == "HOSP"
    assert m.get("PID", 3, comp=4, sub=2) == "1.2.3"
    assert m.get("PID", 3, comp=4, sub=None) == "HOSP&1.2.3&ISO"
    assert m.get("PID", 5, comp=2) == "JANE"
    assert m.get("PID", 5, comp=None) == "DOE^JANE^Q"
    # absent things are empty strings, never errors
    assert m.get("PID", 3, rep=7) == ""
    assert m.get("PID", 3, comp=40) == ""
    assert m.get("PID", 99) == ""
    assert m.get("ZZZ", 1) == ""
    seg = m.segment("PID")
    assert seg is not None and seg.name == "PID"
    assert seg.reps(3) == ["MRN1^^^HOSP&1.2.3&ISO^MR", "SSN9^^^SSA^SS"]
    assert seg.components(5) == ["DOE", "JANE", "Q"]
    assert seg.raw(7) == "19800102"


def test_msh_numbering_follows_hl7():
    m = parse(msg())
    assert m.get("MSH", 1) == "|"
    assert m.get("MSH", 2) == "^~\\&"
    assert m.get("MSH", 3) == "LAB"
    assert m.get("MSH", 9) == "ORU"
    assert m.get("MSH", 9, comp=3) == "ORU_R01"
    assert m.message_type == "ORU^R01"
    assert m.control_id == "CTRL1"
    assert m.version == "2.5.1"
    assert m.encoding_characters == "^~\\&"


def test_segment_iteration_grouping_and_z_segments():
    m = parse(
        msg(
            "PID|1||X1",
            "OBR|1|A",
            "OBX|1|NM|a||1",
            "NTE|1||n1",
            "OBR|2|B",
            "OBX|1|NM|b||2",
            "ZXT|custom^data|more",
        )
    )
    assert m.names == ["MSH", "PID", "OBR", "OBX", "NTE", "OBR", "OBX", "ZXT"]
    assert [s.name for s in m] == m.names
    groups = m.groups("OBR")
    assert [[s.name for s in g] for g in groups] == [["OBR", "OBX", "NTE"], ["OBR", "OBX", "ZXT"]]
    assert [s.name for s in m.all("OBX")] == ["OBX", "OBX"]
    assert m.segment("OBX", 1).get(5) == "2"
    assert m.segment("OBX", 2) is None
    z = m.z_segments()
    assert len(z) == 1 and z[0].get(1, comp=2) == "data" and z[0].raw(2) == "more"


# --------------------------------------------------------------------------- escapes
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A\\F\\B", "A|B"),
        ("A\\S\\B", "A^B"),
        ("A\\R\\B", "A~B"),
        ("A\\E\\B", "A\\B"),
        ("A\\T\\B", "A&B"),
        ("line1\\.br\\line2", "line1\nline2"),
        ("\\H\\bold\\N\\ normal", "bold normal"),
        ("crlf\\X0D0A\\end", "crlf\r\nend"),
        ("x\\X0D\\\\X0A\\y", "x\r\ny"),
        ("e\\XC3A9\\", "e\u00e9"),
        ("keep \\Zfoo\\ literally", "keep \\Zfoo\\ literally"),
        ("unterminated \\F", "unterminated \\F"),
        ("bad hex \\XZZ\\", "bad hex \\XZZ\\"),
        ("two\\.sp 2\\lines", "two\n\nlines"),
        ("no escapes at all", "no escapes at all"),
    ],
)
def test_unescape(raw, expected):
    assert unescape(raw) == expected


def test_escapes_are_decoded_only_when_read():
    m = parse(msg("PID|1||1||Test\\F\\Value\\S\\Special\\R\\Chars\\E\\Escape^Given\\T\\Name"))
    seg = m.segment("PID")
    assert seg.raw(5) == "Test\\F\\Value\\S\\Special\\R\\Chars\\E\\Escape^Given\\T\\Name"  # split, not decoded
    assert m.get("PID", 5) == "Test|Value^Special~Chars\\Escape"
    assert m.get("PID", 5, comp=2) == "Given&Name"


def test_escape_roundtrip():
    text = "a|b^c~d\\e&f"
    assert escape(text) == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"
    assert unescape(escape(text)) == text


# --------------------------------------------------------------------------- delimiters
def test_custom_delimiters_hash_bang():
    raw = b"MSH#!@%*#SENDER#FAC#RECV#FAC#20260301120000##ADT!A01#MSG007#P#2.5\nPID#1##12345!!!MRN@999!!!SSA##DOE!JOHN!A*B##19800101#M\n"
    m = parse(raw)
    assert (m.fs, m.cs, m.rs, m.es, m.ss) == ("#", "!", "@", "%", "*")
    assert m.message_type == "ADT^A01"
    assert m.get("PID", 3) == "12345"
    assert m.get("PID", 3, rep=1) == "999"
    assert m.get("PID", 5, comp=3) == "A"
    assert m.get("PID", 5, comp=3, sub=2) == "B"


def test_custom_escape_character_is_used():
    raw = b"MSH#!@%*#A#B#C#D#20260301##ADT!A01#1#P#2.5\rPID#1##1##X%F%Y%S%Z\r"
    m = parse(raw)
    assert m.get("PID", 5) == "X#Y!Z"


def test_truncation_character_v27():
    m = parse(b"MSH|^~\\&#|A|B|C|D|20240101||ADT^A01|1|P|2.7\rPID|1||1||LONGNAM\\P\\\r")
    assert m.tc == "#"
    assert m.get("PID", 5) == "LONGNAM#"


def test_doubled_escape_in_msh2_is_tolerated():
    m = parse(b"MSH|^~\\\\&|A|B|C|D|20240101||ADT^A01|1|P|2.6\r\nPID|1||7||A\\S\\B\r\n")
    assert m.encoding_characters == "^~\\&"
    assert "msh2_doubled_escape_character" in m.warnings
    assert m.get("PID", 5) == "A^B"


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"", "empty_message"),
        (b" \r\n \n", "empty_message"),
        (b"PID|1||123\rPV1|1|I\r", "missing_msh"),
        (b"\x00\x01\x02garbage", "missing_msh"),
        (b"PID|1||123\rMSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r", "msh_not_first"),
        (b"MSH", "missing_field_separator"),
        (b"MSHH0\r", "invalid_field_separator"),
        (b"MSH |^~\\&|A\r", "invalid_field_separator"),
        (b"MSH|\n", "missing_encoding_characters"),
        (b"MSH||A|B|C\r", "missing_encoding_characters"),
        (b"MSH|^|A|B\r", "invalid_encoding_characters"),
        (b"MSH|0~00||0\r", "invalid_encoding_characters"),
        (b"MSH|^ \\E|A\r", "invalid_encoding_characters"),
        (b"MSH|^^\\&|A\r", "invalid_encoding_characters"),
        (b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rMSH|^~\\&|A|B|C|D|1||ADT^A01|2|P|2.5\r", "multiple_messages"),
    ],
)
def test_parse_errors_have_precise_codes(raw, code):
    with pytest.raises(HL7ParseError) as e:
        parse(raw)
    assert e.value.reason_code == code
    assert isinstance(e.value, Rejected)


# --------------------------------------------------------------------------- line endings / framing
@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_segment_terminators(sep):
    m = parse(msg("PID|1||A1", "OBX|1|NM|x||5", sep=sep))
    assert m.names == ["MSH", "PID", "OBX"]
    assert m.get("OBX", 5) == "5"


def test_mixed_terminators_and_blank_lines():
    raw = (MSH + "\r\n\r\nPID|1||A1\n\nPV1|1|O\r \r\t\nOBX|1|NM|x||5\r\n\r\n  \n").encode()
    m = parse(raw)
    assert m.names == ["MSH", "PID", "PV1", "OBX"]
    assert m.warnings == []


def test_no_final_terminator():
    m = parse((MSH + "\rPID|1||A1").encode())
    assert m.get("PID", 3) == "A1"


def test_bare_lf_inside_a_cr_delimited_message_is_a_line_break_in_the_value():
    raw = (MSH + "\rNTE|1||first line\nsecond line\rOBX|1|TX|x||t\r").encode()
    m = parse(raw)
    assert m.names == ["MSH", "NTE", "OBX"]
    assert m.get("NTE", 3) == "first line\nsecond line"
    assert "line_break_inside_value" in m.warnings
    with pytest.raises(HL7ParseError) as e:
        parse(raw, strict=True)
    assert e.value.reason_code == "invalid_segment"


def test_lines_that_are_not_segments_are_skipped_or_rejected_in_strict():
    raw = (MSH + "\nPID|1||1\nINVALID SEGMENT\nPV1|1|I\n").encode()
    m = parse(raw)
    assert m.names == ["MSH", "PID", "PV1"]
    assert "skipped_1_invalid_segment_lines" in m.warnings
    with pytest.raises(HL7ParseError) as e:
        parse(raw, strict=True)
    assert e.value.reason_code == "invalid_segment"


def test_mllp_framing_bytes_are_removed():
    raw = b"\x0b" + msg("PID|1||A1") + b"\x1c\r"
    m = parse(raw)
    assert m.names == ["MSH", "PID"]


def test_text_before_msh_on_the_first_line():
    raw = b"[SOM]" + msg("PID|1||A1")
    m = parse(raw)
    assert m.names == ["MSH", "PID"]
    assert "content_before_msh_stripped" in m.warnings
    with pytest.raises(HL7ParseError) as e:
        parse(raw, strict=True)
    assert e.value.reason_code == "content_before_msh"


def test_batch_header_before_a_single_message_is_ignored():
    raw = b"FHS|^~\\&|A\rBHS|^~\\&|A\r" + msg("PID|1||A1") + b"BTS|1\rFTS|1\r"
    m = parse(raw)
    assert m.names == ["MSH", "PID"]


# --------------------------------------------------------------------------- encodings
def test_utf8_bom():
    raw = b"\xef\xbb\xbf" + msg("PID|1||1||M\u00fcller^Jos\u00e9")
    m = parse(raw)
    assert m.get("PID", 5) == "M\u00fcller"
    assert m.get("PID", 5, comp=2) == "Jos\u00e9"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32(codec):
    text = MSH + "\r\nPID|1||1||Z\u00fcrich^\u00c5sa\r\n"
    data = text.encode(codec)  # "utf-16"/"utf-32" write a BOM; -le/-be do not
    m = parse(data)
    assert m.get("PID", 5) == "Z\u00fcrich"
    assert m.get("PID", 5, comp=2) == "\u00c5sa"


def test_msh18_latin1_is_honoured():
    text = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||8859/1\rPID|1||1||M\u00fcller\r"
    m = parse(text.encode("latin-1"))
    assert m.codec == "latin-1"
    assert m.get("PID", 5) == "M\u00fcller"


def test_utf8_mislabelled_as_latin1_stays_utf8():
    text = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||8859/1\rPID|1||1||M\u00fcller\r"
    m = parse(text.encode("utf-8"))
    assert m.get("PID", 5) == "M\u00fcller"
    assert "msh18_charset_mismatch_decoded_as_utf8" in m.warnings


def test_undeclared_latin1_falls_back():
    text = MSH + "\rPID|1||1||Fran\u00e7ois\r"
    m = parse(text.encode("latin-1"))
    assert m.get("PID", 5) == "Fran\u00e7ois"
    assert "not_utf8_decoded_as_latin1" in m.warnings


def test_charset_table():
    assert codec_for_charset("UNICODE UTF-8") == "utf-8"
    assert codec_for_charset("8859/15") == "iso8859_15"
    assert codec_for_charset("ASCII") == "ascii"
    assert codec_for_charset("nonsense") is None
    assert codec_for_charset("") is None
    assert decode_bytes(b"MSH|x")[1] == "ascii"


# --------------------------------------------------------------------------- batches
def test_split_batch_fhs_bhs_with_trailers():
    one = msg("PID|1||A1")
    two = msg("PID|1||B2", msh=MSH.replace("CTRL1", "CTRL2"))
    data = b"FHS|^~\\&|X\rBHS|^~\\&|X\r" + one + two + b"BTS|2\rFTS|1\r"
    parts = split_batch(data)
    assert len(parts) == 2
    assert [parse(p).control_id for p in parts] == ["CTRL1", "CTRL2"]
    assert all(not p.startswith((b"FHS", b"BHS")) and b"BTS" not in p for p in parts)


@pytest.mark.parametrize("sep", [b"\r", b"\n", b"\r\n"])
def test_split_back_to_back_stream(sep):
    msgs = [msg(f"PID|1||{i}", msh=MSH.replace("CTRL1", f"C{i}"), sep=sep.decode()) for i in range(3)]
    parts = split_batch(b"".join(msgs))
    assert [parse(p).control_id for p in parts] == ["C0", "C1", "C2"]
    assert [parse(p).get("PID", 3) for p in parts] == ["0", "1", "2"]


def test_split_mllp_stream_and_blank_lines_between():
    a = msg("PID|1||A")
    b = msg("PID|1||B", msh=MSH.replace("CTRL1", "CTRL2"))
    data = b"\x0b" + a + b"\x1c\r\n\r\n\x0b" + b + b"\x1c\r"
    parts = split_batch(data)
    assert [parse(p).get("PID", 3) for p in parts] == ["A", "B"]


def test_split_edge_cases():
    assert split_batch(b"") == []
    assert split_batch(b" \r\n\r\n") == []
    garbage = split_batch(b"PID|1||no msh here\r")
    assert len(garbage) == 1  # handed on, so the normalizer can reject it with a reason
    utf16 = split_batch((MSH + "\rPID|1||1\r" + MSH.replace("CTRL1", "C2") + "\r").encode("utf-16"))
    assert [parse(p).control_id for p in utf16] == ["CTRL1", "C2"]


# --------------------------------------------------------------------------- dates
@pytest.mark.parametrize(
    "raw, iso",
    [
        ("2024", "2024"),
        ("202403", "2024-03"),
        ("20240305", "2024-03-05"),
        ("2024030514", "2024-03-05T14"),
        ("202403051430", "2024-03-05T14:30"),
        ("20240305143015", "2024-03-05T14:30:15"),
        ("20240305143015.1234", "2024-03-05T14:30:15.1234"),
        ("20240305143015-0500", "2024-03-05T14:30:15-05:00"),
        ("202403051430+0215", "2024-03-05T14:30+02:15"),
        ("20240305143015.655-0500", "2024-03-05T14:30:15.655-05:00"),
        ("20240305-0500", "2024-03-05"),
        ("20240305120000-0000", "2024-03-05T12:00:00+00:00"),
        ("20240229", "2024-02-29"),
    ],
)
def test_dates_keep_source_precision(raw, iso):
    assert hl7_to_iso(raw) == iso


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "DOB",
        "Aug 15, 1942",
        "0000",
        "20231301",
        "20230230",
        "20230229",
        "2024030525",
        "20240305126000",
        "202403051",
        "20110613122406637",
        "20240305+05",
        "2024.5",
        "２０２４",  # noqa: RUF001 - full-width digits on purpose: isdigit() accepts them, HL7 does not
    ],
)
def test_malformed_dates(raw):
    assert hl7_to_iso(raw) is None


def test_padding_scan_matches_the_plain_definition():
    """``_padded`` visits only blanks; it must agree with the four searches it replaces."""
    import random

    from practiceflow.processors.hl7.parser import _padded

    rng = random.Random(7)
    for _ in range(20_000):
        s = "".join(rng.choice("| a^\t") for _ in range(rng.randint(0, 12)))
        assert _padded(s, "|") == ("| " in s or " |" in s or "\t" in s or s.endswith(" ")), repr(s)
