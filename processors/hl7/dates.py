"""HL7 v2 date/time (DT, DTM, TS) -> ISO 8601 at the precision the sender gave."""

from __future__ import annotations

from functools import lru_cache

from practiceflow.processors.base import ascii_digits

__all__ = ["hl7_to_iso"]

_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DIGIT_LENGTHS = frozenset((4, 6, 8, 10, 12, 14))


@lru_cache(maxsize=8192)
def hl7_to_iso(value: str) -> str | None:
    """``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`` -> ISO 8601, or None if malformed.

    Precision is kept: ``2024`` -> ``2024``, ``202403`` -> ``2024-03``,
    ``202403051230-0500`` -> ``2024-03-05T12:30-05:00``. A zone offset on a value with
    no time part is dropped (a calendar date has no zone). Returns None for anything
    that is not a real calendar date/time (callers decide whether that is a warning
    or a rejection).
    """
    s = value.strip()
    n = len(s)
    if n < 4:
        return None
    tz = ""
    k = max(s.rfind("+"), s.rfind("-"))
    if k >= 0:
        if k < 4:
            return None
        tz = s[k:]
        s = s[:k]
        if len(tz) != 5 or not ascii_digits(tz[1:]):
            return None
        th = int(tz[1:3])
        tm = int(tz[3:5])
        if th > 14 or tm > 59:
            return None
    frac = ""
    if "." in s:
        s, frac = s.split(".", 1)
        if not frac or len(frac) > 6 or not ascii_digits(frac) or len(s) != 14:
            return None
    if len(s) not in _DIGIT_LENGTHS or not ascii_digits(s):
        return None
    year = int(s[0:4])
    if year < 1:
        return None
    out = s[0:4]
    if len(s) >= 6:
        month = int(s[4:6])
        if not 1 <= month <= 12:
            return None
        out += "-" + s[4:6]
        if len(s) >= 8:
            day = int(s[6:8])
            if not 1 <= day <= _DAYS[month]:
                return None
            if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
                return None
            out += "-" + s[6:8]
            if len(s) >= 10:
                if int(s[8:10]) > 23:
                    return None
                out += "T" + s[8:10]
                if len(s) >= 12:
                    if int(s[10:12]) > 59:
                        return None
                    out += ":" + s[10:12]
                    if len(s) >= 14:
                        if int(s[12:14]) > 59:
                            return None
                        out += ":" + s[12:14]
                        if frac:
                            out += "." + frac
                if tz:
                    out += "+00:00" if tz == "-0000" else tz[0:3] + ":" + tz[3:5]
    return out
