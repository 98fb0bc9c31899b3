"""Issue 14: every parser's digit test accepts exactly what ``int()`` reads as ASCII
digits. ``str.isdigit()`` is also true for superscripts ("2\u00b9"), on which ``int()``
raises; mutated X12 hit that as an ``internal_error`` dead letter."""

from __future__ import annotations

import pytest

from practiceflow.processors.base import ascii_digits
from practiceflow.processors.fhir._util import i as fhir_int
from practiceflow.processors.hl7.ack import _vkey
from practiceflow.processors.hl7.dates import hl7_to_iso


def test_ascii_digits_matches_int():
    for s in ("0", "12", "007", "1234567890"):
        assert ascii_digits(s) and int(s) >= 0
    for s in ("", "2\u00b9", "\u00b2", "\u2460", "\u0661", "1 ", " 1", "-1", "+1", "1_0", "1.0", "x"):
        assert not ascii_digits(s), s


@pytest.mark.parametrize("v", ["2\u00b9", "\u00b9", "--5", "-\u00b2", "1\u2460"])
def test_fhir_integer_reader_refuses_what_int_cannot_read(v: str):
    assert fhir_int(v) is None  # was ValueError for all of these


def test_fhir_integer_reader_still_reads_integers():
    assert [fhir_int(v) for v in ("5", "-5", " 7 ", "0")] == [5, -5, 7, 0]


def test_hl7_version_key_and_dates_ignore_superscripts():
    assert _vkey("2.5.\u00b9") == (2, 5)
    assert hl7_to_iso("2024030\u00b9") is None and hl7_to_iso("20240305+05\u00b900") is None
