"""X12 interchange tokenizer: bytes -> interchanges -> functional groups -> transaction sets.

Pure and fast: the delimiters come from each ISA (element separator = the 4th
character, repetition separator = ISA11 when it is a punctuation character (5010),
component separator = ISA16, segment terminator = the character after ISA16) and
the text is cut with ``str.split`` only. What real files do that the standard does
not allow, and what this module tolerates:

* a UTF-8 BOM (anywhere before an ISA), UTF-16 (LE/BE, with or without BOM),
  non-UTF-8 bytes (decoded as Latin-1, with a warning);
* CR / LF / CRLF after each terminator, blank lines and indentation between
  segments, and lines wrapped in the middle of a segment (X12 data never contains
  CR/LF, so they are dropped unless the terminator itself is a line break);
* a line break used as the segment terminator (the character after ISA16 is CR/LF);
* an ISA whose fixed-width fields are not padded (length != 106): the separators
  are found by counting, and a warning is given;
* several GS/ST in one ISA, several ISA in one file (each with its own delimiters),
  TA1 segments at interchange level;
* a file that starts at GS or ST with no ISA (some published samples): accepted
  with a warning, assuming '*' or whatever follows the segment id as the element
  separator, the first non-data character as the terminator, ':' and '^' as the
  component and repetition separators.

Envelope checks (SE01 segment count, SE02/ST02, GE01/GE02, IEA01/IEA02, missing
trailers, data outside a transaction set) are warnings by default; with
``strict=True`` the first problem raises :class:`Rejected`. Anything unusable
(no ISA and no GS/ST, unusable ISA delimiters, empty input) raises
:class:`Rejected` in both modes. Nothing but :class:`Rejected` ever escapes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from practiceflow.processors.base import Rejected

__all__ = [
    "Delimiters", "TransactionSet", "FunctionalGroup", "Interchange", "ParsedX12",
    "decode_x12", "tokenize", "split_composite",
]

ENVELOPE_IDS = frozenset(("ISA", "IEA", "GS", "GE", "ST", "SE", "TA1"))
_ISA_FIELD_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
_NEWLINES = "\r\n"
_SEGMENT_ID_RE = re.compile(r"[A-Z0-9]{2,3}\Z")


@dataclass(frozen=True, slots=True)
class Delimiters:
    element: str
    component: str
    repetition: str | None
    segment: str


@dataclass(slots=True)
class TransactionSet:
    """One ST..SE: ``segments`` holds the segments between ST and SE, each a list of elements."""

    st: list[str]
    segments: list[list[str]]
    group: "FunctionalGroup"
    se: list[str] | None = None

    @property
    def set_id(self) -> str:
        return self.st[1].strip() if len(self.st) > 1 else ""

    @property
    def control_number(self) -> str:
        return self.st[2].strip() if len(self.st) > 2 else ""

    @property
    def implementation(self) -> str:
        """ST03, or GS08 when ST03 is absent (e.g. 005010X221A1)."""
        if len(self.st) > 3 and self.st[3].strip():
            return self.st[3].strip()
        gs = self.group.gs
        return gs[8].strip() if gs and len(gs) > 8 else ""


@dataclass(slots=True)
class FunctionalGroup:
    gs: list[str] | None
    interchange: "Interchange"
    transactions: list[TransactionSet] = field(default_factory=list)
    ge: list[str] | None = None

    @property
    def control_number(self) -> str:
        return self.gs[6].strip() if self.gs and len(self.gs) > 6 else ""


@dataclass(slots=True)
class Interchange:
    isa: list[str] | None  # None: the input had no ISA (ST..SE or GS..GE only)
    delimiters: Delimiters
    groups: list[FunctionalGroup] = field(default_factory=list)
    ta1: list[list[str]] = field(default_factory=list)
    iea: list[str] | None = None
    canonical: str = ""  # the segments re-joined with '~' (stable across formatting)

    def isa_field(self, n: int) -> str:
        isa = self.isa
        return isa[n].strip() if isa and len(isa) > n else ""

    @property
    def control_number(self) -> str:
        return self.isa_field(13)

    @property
    def sender(self) -> str:
        return self.isa_field(6)

    @property
    def version(self) -> str:
        return self.isa_field(12)


@dataclass(slots=True)
class ParsedX12:
    interchanges: list[Interchange]
    warnings: list[str]


class _Warn:
    __slots__ = ("strict", "items")

    def __init__(self, strict: bool, items: list[str]) -> None:
        self.strict = strict
        self.items = items

    def __call__(self, code: str, message: str) -> None:
        if self.strict:
            raise Rejected(code, message)
        self.items.append(f"{code}: {message}")


# --------------------------------------------------------------------------- decoding
def decode_x12(raw: bytes, warn: _Warn | None = None) -> str:
    """Bytes -> text. UTF-16 by BOM or NUL pattern, else UTF-8 (BOM dropped), else Latin-1."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise Rejected("invalid_input", f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if not raw.strip(b" \t\r\n\x00"):
        raise Rejected("empty", "no X12 content (empty or whitespace only)")
    head = raw[:64]
    encoding = None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif head[1::2].count(0) >= len(head[1::2]) * 3 // 4 and head[0::2].count(0) == 0:
        encoding = "utf-16-le"
    elif head[0::2].count(0) >= len(head[0::2]) * 3 // 4 and head[1::2].count(0) == 0:
        encoding = "utf-16-be"
    if encoding is not None:
        if len(raw) % 2:
            raw = raw[:-1]
        text = raw.decode(encoding, errors="replace")
        if warn is not None:
            warn("encoding", f"input is UTF-16 ({encoding}); decoded")
            if "\ufffd" in text:
                warn("encoding", "UTF-16 input has undecodable code units (replaced)")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
            if warn is not None:
                warn("encoding", "input is not valid UTF-8; decoded as Latin-1")
    if "\ufeff" in text:
        text = text.replace("\ufeff", "")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


# --------------------------------------------------------------------------- ISA
def _isa_delimiters(text: str, pos: int, warn: _Warn) -> tuple[Delimiters, int]:
    """Delimiters of the ISA at ``pos`` and the index just past ISA16 (the terminator position)."""
    if pos + 4 > len(text):
        raise Rejected("invalid_isa", "ISA segment is truncated")
    elem = text[pos + 3]
    if elem.isalnum() or elem.isspace():
        raise Rejected("invalid_isa", f"ISA element separator {elem!r} is not usable")
    seps = [pos + 3]
    i = pos + 3
    for _ in range(15):
        i = text.find(elem, i + 1)
        if i < 0:
            raise Rejected("invalid_isa", "ISA has fewer than 16 elements")
        seps.append(i)
    last = seps[-1]
    if last + 1 >= len(text):
        raise Rejected("invalid_isa", "ISA has no component separator (ISA16)")
    component = text[last + 1]
    term_pos = last + 2
    term = text[term_pos] if term_pos < len(text) else ""
    if (pos + 3) != last - 100 or any(
        seps[k + 1] - seps[k] - 1 != _ISA_FIELD_WIDTHS[k] for k in range(15)
    ):
        warn("isa_length", f"ISA is {last + 3 - pos} characters, not 106 (fields not padded to width); "
                           "delimiters found by counting separators")
    if term == "" or term.isalnum() or term in (" ", "\t"):
        # ISA16 missing: the character we took for it is the terminator.
        if component and not component.isalnum() and not component.isspace() and component != elem:
            warn("invalid_isa", f"ISA16 is missing; using {component!r} as the segment terminator and ':' "
                                "as the component separator")
            term, term_pos, component = component, last + 1, ":"
        else:
            raise Rejected("invalid_isa", "cannot find the ISA segment terminator")
    if component.isalnum() or component.isspace() or component in (elem, term):
        if component.isspace() or component in _NEWLINES:
            raise Rejected("invalid_isa", f"ISA16 component separator {component!r} is not usable")
        raise Rejected("invalid_isa", f"ISA16 component separator {component!r} clashes with another delimiter")
    if term == elem:
        raise Rejected("invalid_isa", "segment terminator equals the element separator")
    rep = text[seps[10] + 1: seps[11]].strip()
    repetition = rep if (len(rep) == 1 and not rep.isalnum() and rep not in (elem, component, term)) else None
    if term in _NEWLINES:
        term = "\n"
    return Delimiters(elem, component, repetition, term), term_pos


def _headerless_delimiters(text: str, pos: int) -> Delimiters | None:
    """Delimiters for input that starts at GS or ST (no ISA to read them from)."""
    elem = text[pos + 2] if pos + 2 < len(text) else ""
    if not elem or elem.isalnum() or elem.isspace():
        return None
    for ch in text[pos + 3: pos + 300]:
        if ch.isalnum() or ch == elem or ch in " .-":
            continue
        term = "\n" if ch in _NEWLINES else ch
        component = ":" if ":" not in (elem, term) else ">"
        repetition = "^" if "^" not in (elem, term, component) else None
        return Delimiters(elem, component, repetition, term)
    return None


_ISA_START_RE = re.compile(r"ISA[^A-Za-z0-9\s]")


def _find_first_isa(text: str) -> int:
    m = _ISA_START_RE.search(text)
    return m.start() if m else -1


# --------------------------------------------------------------------------- segments
def _split_segments(body: str, d: Delimiters) -> list[list[str]]:
    term = d.segment
    if term == "\n":
        if "\r" in body:
            body = body.replace("\r\n", "\n").replace("\r", "\n")
    elif "\n" in body or "\r" in body:
        body = body.replace("\r", "").replace("\n", "")
    elem = d.element
    out = []
    append = out.append
    for s in body.split(term):
        if s:
            if s[0] in " \t" or s[-1] in " \t\n":
                s = s.strip()
                if not s:
                    continue
            append(s.split(elem))
    return out


def _assemble(ic: Interchange, segs: list[list[str]], warn: _Warn, has_isa: bool) -> None:
    """Build groups and transaction sets from an interchange's segments (ISA excluded)."""
    group: FunctionalGroup | None = None
    ts: TransactionSet | None = None
    data: list[list[str]] | None = None
    ended = False
    outside: dict[str, int] = {}
    bad_ids: dict[str, int] = {}
    for seg in segs:
        sid = seg[0]
        if sid not in ENVELOPE_IDS:
            if data is not None:
                data.append(seg)
                if len(sid) > 3 or not sid.isalnum():
                    if not _SEGMENT_ID_RE.match(sid):
                        bad_ids[sid[:12]] = bad_ids.get(sid[:12], 0) + 1
            else:
                outside[sid[:12]] = outside.get(sid[:12], 0) + 1
            continue
        if ended and sid != "ISA":
            outside[sid] = outside.get(sid, 0) + 1
            continue
        if sid == "ST":
            if ts is not None:
                warn("envelope_incomplete", f"ST {ts.control_number} has no SE before the next ST")
            if group is None:
                if has_isa:
                    warn("envelope_incomplete", "ST without a GS functional group header")
                group = FunctionalGroup(None, ic)
                ic.groups.append(group)
            data = []
            ts = TransactionSet(seg, data, group)
            group.transactions.append(ts)
        elif sid == "SE":
            if ts is None:
                warn("envelope_incomplete", "SE without ST")
                continue
            ts.se = seg
            _check_se(ts, seg, warn)
            ts = None
            data = None
        elif sid == "GS":
            if ts is not None:
                warn("envelope_incomplete", f"ST {ts.control_number} has no SE before GS")
                ts = data = None
            if group is not None and group.ge is None and group.gs is not None:
                warn("envelope_incomplete", f"GS {group.control_number} has no GE before the next GS")
            group = FunctionalGroup(seg, ic)
            ic.groups.append(group)
        elif sid == "GE":
            if ts is not None:
                warn("envelope_incomplete", f"ST {ts.control_number} has no SE before GE")
                ts = data = None
            if group is None:
                warn("envelope_incomplete", "GE without GS")
                continue
            group.ge = seg
            _check_ge(group, seg, warn)
            group = None
        elif sid == "IEA":
            if ts is not None:
                warn("envelope_incomplete", f"ST {ts.control_number} has no SE before IEA")
                ts = data = None
            if group is not None and group.gs is not None and group.ge is None:
                warn("envelope_incomplete", f"GS {group.control_number} has no GE before IEA")
            group = None
            ic.iea = seg
            _check_iea(ic, seg, warn)
            ended = True
        elif sid == "TA1":
            ic.ta1.append(seg)
        elif sid == "ISA":  # a second ISA inside one region (only when delimiters are identical)
            warn("envelope_incomplete", "ISA inside an interchange ignored")
    if ts is not None:
        warn("envelope_incomplete", f"ST {ts.control_number} ({ts.set_id}) has no SE (truncated?)")
    if group is not None and group.gs is not None and group.ge is None:
        warn("envelope_incomplete", f"GS {group.control_number} has no GE")
    if has_isa and ic.iea is None:
        warn("envelope_incomplete", f"ISA {ic.control_number} has no IEA (truncated?)")
    if outside:
        listed = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in list(outside.items())[:8])
        warn("envelope_incomplete", f"segments outside any transaction set ignored: {listed}")
    if bad_ids:
        listed = ", ".join(list(bad_ids)[:8])
        warn("bad_segment_id", f"segments with invalid ids ignored: {listed}")


def _check_se(ts: TransactionSet, se: list[str], warn: _Warn) -> None:
    count = se[1].strip() if len(se) > 1 else ""
    actual = len(ts.segments) + 2
    if count != str(actual) and (not count.isdigit() or int(count) != actual):
        warn("envelope_mismatch", f"SE01 {count or '(empty)'} != {actual} segments in ST {ts.control_number}")
    ctl = se[2].strip() if len(se) > 2 else ""
    if ctl != ts.control_number:
        warn("envelope_mismatch", f"SE02 {ctl or '(empty)'} != ST02 {ts.control_number}")


def _check_ge(group: FunctionalGroup, ge: list[str], warn: _Warn) -> None:
    count = ge[1].strip() if len(ge) > 1 else ""
    n = len(group.transactions)
    if not (count.isdigit() and int(count) == n):
        warn("envelope_mismatch", f"GE01 {count or '(empty)'} != {n} transaction sets in GS {group.control_number}")
    ctl = ge[2].strip() if len(ge) > 2 else ""
    if group.gs is not None and ctl.lstrip("0") != group.control_number.lstrip("0"):
        warn("envelope_mismatch", f"GE02 {ctl or '(empty)'} != GS06 {group.control_number}")


def _check_iea(ic: Interchange, iea: list[str], warn: _Warn) -> None:
    count = iea[1].strip() if len(iea) > 1 else ""
    n = sum(1 for g in ic.groups if g.gs is not None)
    if not (count.isdigit() and int(count) == n):
        warn("envelope_mismatch", f"IEA01 {count or '(empty)'} != {n} functional groups")
    ctl = iea[2].strip() if len(iea) > 2 else ""
    if ic.isa is not None and ctl != ic.control_number:
        warn("envelope_mismatch", f"IEA02 {ctl or '(empty)'} != ISA13 {ic.control_number}")


# --------------------------------------------------------------------------- public
def tokenize(data: bytes | str, *, strict: bool = False, warnings: list[str] | None = None) -> ParsedX12:
    """Split raw X12 into interchanges. Raises only :class:`Rejected`."""
    out_warnings: list[str] = warnings if warnings is not None else []
    warn = _Warn(strict, out_warnings)
    text = data if isinstance(data, str) else decode_x12(data, warn)
    if isinstance(data, str):
        text = text.replace("\ufeff", "")
    interchanges: list[Interchange] = []
    first = _find_first_isa(text)
    if first < 0:
        ic = _headerless(text, warn)
        return ParsedX12([ic], out_warnings)
    lead = text[:first].strip()
    if lead:
        warn("leading_data", f"{len(lead)} characters before the first ISA ignored")
    pos = first
    n = len(text)
    while pos < n:
        d, term_pos = _isa_delimiters(text, pos, warn)
        raw_term = text[term_pos]
        t = re.escape(raw_term)
        e = re.escape(d.element)
        iea_re = re.compile(t + r"\s*IEA" + e)
        next_isa_re = re.compile(r"[" + t + r"\r\n]\s*ISA[^A-Za-z0-9\s]")
        m_iea = iea_re.search(text, term_pos)
        m_isa = next_isa_re.search(text, term_pos)
        if m_iea is not None and (m_isa is None or m_iea.start() < m_isa.start()):
            end = text.find(raw_term, m_iea.end())
            if raw_term in _NEWLINES and end < 0:
                end = n
            if end < 0 or (m_isa is not None and end > m_isa.start()):
                end = m_isa.end() - 4 if m_isa is not None else n
            else:
                end += 1
            next_start = m_isa.end() - 4 if m_isa is not None and m_isa.start() >= end - 1 else -1
            if next_start < 0 and m_isa is not None:
                m2 = next_isa_re.search(text, end - 1)
                next_start = m2.end() - 4 if m2 else -1
        else:
            # no IEA before the next ISA (or at all)
            end = (m_isa.end() - 4) if m_isa is not None else n
            next_start = end if m_isa is not None else -1
        body = text[term_pos + 1: end]
        isa_text = text[pos:term_pos]
        isa = isa_text.replace("\r", "").replace("\n", "").split(d.element)
        ic = Interchange(isa, d)
        segs = _split_segments(body, d)
        if len(isa) > 17:
            warn("invalid_isa", f"ISA has {len(isa) - 1} elements, not 16")
        _assemble(ic, segs, warn, True)
        ic.canonical = "~".join("*".join(s) for s in segs)
        interchanges.append(ic)
        if next_start < 0:
            tail = text[end:].strip()
            if tail:
                warn("trailing_data", f"{len(tail)} characters after the last interchange ignored")
            break
        gap = text[end:next_start].strip()
        if gap:
            warn("trailing_data", f"{len(gap)} characters between interchanges ignored")
        pos = next_start
    return ParsedX12(interchanges, out_warnings)


def _headerless(text: str, warn: _Warn) -> Interchange:
    stripped = text.lstrip()
    pos = len(text) - len(stripped)
    head = stripped[:2]
    if head not in ("GS", "ST"):
        raise Rejected("missing_isa", "no ISA interchange header (and the input does not start at GS or ST)")
    d = _headerless_delimiters(text, pos)
    if d is None:
        raise Rejected("missing_isa", f"no ISA header and the {head} segment's delimiters cannot be inferred")
    warn("missing_isa", f"no ISA interchange header; input starts at {head}; assumed delimiters "
                        f"{d.element!r} {d.segment!r} {d.component!r}")
    ic = Interchange(None, d)
    segs = _split_segments(text[pos:], d)
    _assemble(ic, segs, warn, False)
    if not any(g.transactions for g in ic.groups):
        raise Rejected("missing_isa", "no ISA header and no ST transaction set found")
    ic.canonical = "~".join("*".join(s) for s in segs)
    return ic


def split_composite(value: str, d: Delimiters) -> list[str]:
    """A composite element's components (``HC:99213:25`` -> ['HC', '99213', '25'])."""
    return value.split(d.component)
