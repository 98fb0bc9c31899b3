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

from practiceflow.processors.base import Rejected, ascii_digits

__all__ = [
    "Delimiters",
    "TransactionSet",
    "FunctionalGroup",
    "Interchange",
    "ParsedX12",
    "decode_x12",
    "tokenize",
    "split_composite",
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
    gs: list[str] | None  # the enclosing GS (None when the input has no GS); no back-reference cycles
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
        gs = self.gs
        return gs[8].strip() if gs and len(gs) > 8 else ""

    @property
    def group_control_number(self) -> str:
        gs = self.gs
        return gs[6].strip() if gs and len(gs) > 6 else ""


@dataclass(slots=True)
class FunctionalGroup:
    gs: list[str] | None
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
    canonical: str = ""  # the segments (ISA excluded) re-joined by the terminator, whitespace dropped

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
    if (pos + 3) != last - 100:
        warn(
            "isa_length",
            f"ISA is {last + 3 - pos} characters, not 106 (fields not padded to their "
            "fixed widths); delimiters found by counting separators",
        )
    elif any(seps[k + 1] - seps[k] - 1 != _ISA_FIELD_WIDTHS[k] for k in range(15)):
        warn("isa_length", "ISA is 106 characters but some fields do not have their fixed widths")
    if term == "" or term.isalnum() or term in (" ", "\t"):
        # ISA16 missing: the character we took for it is the terminator.
        if component and not component.isalnum() and not component.isspace() and component != elem:
            warn(
                "invalid_isa",
                f"ISA16 is missing; using {component!r} as the segment terminator and ':' as the component separator",
            )
            term, term_pos, component = component, last + 1, ":"
        else:
            raise Rejected("invalid_isa", "cannot find the ISA segment terminator")
    if component.isalnum() or component.isspace() or component in (elem, term):
        if component.isspace() or component in _NEWLINES:
            raise Rejected("invalid_isa", f"ISA16 component separator {component!r} is not usable")
        raise Rejected("invalid_isa", f"ISA16 component separator {component!r} clashes with another delimiter")
    if term == elem:
        raise Rejected("invalid_isa", "segment terminator equals the element separator")
    rep = text[seps[10] + 1 : seps[11]].strip()
    repetition = rep if (len(rep) == 1 and not rep.isalnum() and rep not in (elem, component, term)) else None
    if term in _NEWLINES:
        term = "\n"
    return Delimiters(elem, component, repetition, term), term_pos


def _headerless_delimiters(text: str, pos: int) -> Delimiters | None:
    """Delimiters for input that starts at GS or ST (no ISA to read them from)."""
    elem = text[pos + 2] if pos + 2 < len(text) else ""
    if not elem or elem.isalnum() or elem.isspace():
        return None
    for ch in text[pos + 3 : pos + 300]:
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


def _segment_at(text: str, token: str, start: int, stop: int, term: str) -> int:
    """Index of the next ``token`` that starts a segment (after the terminator or a line break)."""
    find = text.find
    i = find(token, start, stop)
    while i >= 0:
        j = i - 1
        while j >= start and text[j] in " \t":
            j -= 1
        if j < start or text[j] == term or text[j] in _NEWLINES:
            return i
        i = find(token, i + 1, stop)
    return -1


def _next_isa(text: str, start: int, stop: int, term: str) -> int:
    """Start of the next ISA segment (a new interchange), or -1."""
    i = _segment_at(text, "ISA", start, stop, term)
    while i >= 0:
        c = text[i + 3 : i + 4]
        if c and not c.isalnum() and not c.isspace():
            return i
        i = _segment_at(text, "ISA", i + 1, stop, term)
    return -1


# --------------------------------------------------------------------------- segments
def _split_segments(body: str, d: Delimiters) -> tuple[list[str], list[list[str]]]:
    """The segments (whitespace around them dropped) as text and as element lists."""
    term = d.segment
    if term == "\n":
        if "\r" in body:
            body = body.replace("\r\n", "\n").replace("\r", "\n")
    elif "\n" in body or "\r" in body:
        body = body.replace("\r", "").replace("\n", "")
    texts = [s for s in map(str.strip, body.split(term)) if s]
    elem = d.element
    return texts, [s.split(elem) for s in texts]


def _assemble(ic: Interchange, segs: list[list[str]], warn: _Warn, has_isa: bool) -> None:
    """Build groups and transaction sets from an interchange's segments (ISA excluded).

    Only envelope segments are visited one by one; each transaction set's body is a
    slice of ``segs`` (fast for large files).
    """
    n = len(segs)
    env = [i for i, seg in enumerate(segs) if seg[0] in ENVELOPE_IDS]
    env.append(n)  # sentinel: end of input
    group: FunctionalGroup | None = None
    ts: TransactionSet | None = None
    ts_start = -1
    prev = -1
    ended = False
    outside: dict[str, int] = {}
    for i in env:
        if ts is None and i > prev + 1:
            for seg in segs[prev + 1 : i]:
                k = seg[0][:12]
                outside[k] = outside.get(k, 0) + 1
        if i == n:
            break
        prev = i
        seg = segs[i]
        sid = seg[0]
        if ended:
            outside[sid] = outside.get(sid, 0) + 1
            continue
        if sid == "ST":
            if ts is not None:
                ts.segments = segs[ts_start + 1 : i]
                warn("envelope_incomplete", f"ST {ts.control_number} has no SE before the next ST")
            if group is None:
                if has_isa:
                    warn("envelope_incomplete", "ST without a GS functional group header")
                group = FunctionalGroup(None)
                ic.groups.append(group)
            ts = TransactionSet(seg, [], group.gs)
            ts_start = i
            group.transactions.append(ts)
        elif sid == "SE":
            if ts is None:
                warn("envelope_incomplete", "SE without ST")
                continue
            ts.segments = segs[ts_start + 1 : i]
            ts.se = seg
            _check_se(ts, seg, warn)
            ts = None
        elif sid == "GS":
            if ts is not None:
                ts.segments = segs[ts_start + 1 : i]
                warn("envelope_incomplete", f"ST {ts.control_number} has no SE before GS")
                ts = None
            if group is not None and group.ge is None and group.gs is not None:
                warn("envelope_incomplete", f"GS {group.control_number} has no GE before the next GS")
            group = FunctionalGroup(seg)
            ic.groups.append(group)
        elif sid == "GE":
            if ts is not None:
                ts.segments = segs[ts_start + 1 : i]
                warn("envelope_incomplete", f"ST {ts.control_number} has no SE before GE")
                ts = None
            if group is None:
                warn("envelope_incomplete", "GE without GS")
                continue
            group.ge = seg
            _check_ge(group, seg, warn)
            group = None
        elif sid == "IEA":
            if ts is not None:
                ts.segments = segs[ts_start + 1 : i]
                warn("envelope_incomplete", f"ST {ts.control_number} has no SE before IEA")
                ts = None
            if group is not None and group.gs is not None and group.ge is None:
                warn("envelope_incomplete", f"GS {group.control_number} has no GE before IEA")
            group = None
            ic.iea = seg
            _check_iea(ic, seg, warn)
            ended = True
        elif sid == "TA1":
            if ts is not None:  # TA1 belongs to the interchange, never inside a transaction set
                warn("envelope_incomplete", f"TA1 inside ST {ts.control_number} treated as interchange level")
            ic.ta1.append(seg)
        else:  # "ISA": a second ISA inside one region
            warn("envelope_incomplete", "ISA inside an interchange ignored")
    if ts is not None:
        ts.segments = segs[ts_start + 1 :]
        warn("envelope_incomplete", f"ST {ts.control_number} ({ts.set_id}) has no SE (truncated?)")
    if group is not None and group.gs is not None and group.ge is None:
        warn("envelope_incomplete", f"GS {group.control_number} has no GE")
    if has_isa and ic.iea is None:
        warn("envelope_incomplete", f"ISA {ic.control_number} has no IEA (truncated?)")
    if outside:
        listed = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in list(outside.items())[:8])
        warn("envelope_incomplete", f"segments outside any transaction set ignored: {listed}")
    bad = sorted(sid[:12] for sid in {seg[0] for seg in segs} if not _SEGMENT_ID_RE.match(sid))
    if bad:
        warn("bad_segment_id", f"segments with invalid ids ignored: {', '.join(bad[:8])}")


def _check_se(ts: TransactionSet, se: list[str], warn: _Warn) -> None:
    count = se[1].strip() if len(se) > 1 else ""
    actual = len(ts.segments) + 2
    if count != str(actual) and (not ascii_digits(count) or int(count) != actual):
        warn("envelope_mismatch", f"SE01 {count or '(empty)'} != {actual} segments in ST {ts.control_number}")
    ctl = se[2].strip() if len(se) > 2 else ""
    if ctl != ts.control_number:
        warn("envelope_mismatch", f"SE02 {ctl or '(empty)'} != ST02 {ts.control_number}")


def _check_ge(group: FunctionalGroup, ge: list[str], warn: _Warn) -> None:
    count = ge[1].strip() if len(ge) > 1 else ""
    n = len(group.transactions)
    if not (ascii_digits(count) and int(count) == n):
        warn("envelope_mismatch", f"GE01 {count or '(empty)'} != {n} transaction sets in GS {group.control_number}")
    ctl = ge[2].strip() if len(ge) > 2 else ""
    if group.gs is not None and ctl.lstrip("0") != group.control_number.lstrip("0"):
        warn("envelope_mismatch", f"GE02 {ctl or '(empty)'} != GS06 {group.control_number}")


def _check_iea(ic: Interchange, iea: list[str], warn: _Warn) -> None:
    count = iea[1].strip() if len(iea) > 1 else ""
    n = sum(1 for g in ic.groups if g.gs is not None)
    if not (ascii_digits(count) and int(count) == n):
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
        nxt = _next_isa(text, term_pos + 1, n, raw_term)
        stop = nxt if nxt >= 0 else n
        iea = _segment_at(text, "IEA" + d.element, term_pos + 1, stop, raw_term)
        if iea >= 0:
            e = text.find(raw_term, iea, stop)
            end = e + 1 if e >= 0 else stop
        else:  # no IEA before the next ISA (or at all): the interchange ends there
            end = stop
        if nxt >= 0:
            next_start = nxt
        else:
            m_next = _ISA_START_RE.search(text, end)
            next_start = m_next.start() if m_next is not None else -1
        body = text[term_pos + 1 : end]
        isa_text = text[pos:term_pos]
        isa = isa_text.replace("\r", "").replace("\n", "").split(d.element)
        ic = Interchange(isa, d)
        texts, segs = _split_segments(body, d)
        if len(isa) > 17:
            warn("invalid_isa", f"ISA has {len(isa) - 1} elements, not 16")
        _assemble(ic, segs, warn, True)
        ic.canonical = d.segment.join(texts)
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
    warn(
        "missing_isa",
        f"no ISA interchange header; input starts at {head}; assumed delimiters "
        f"{d.element!r} {d.segment!r} {d.component!r}",
    )
    ic = Interchange(None, d)
    texts, segs = _split_segments(text[pos:], d)
    _assemble(ic, segs, warn, False)
    if not any(g.transactions for g in ic.groups):
        raise Rejected("missing_isa", "no ISA header and no ST transaction set found")
    ic.canonical = d.segment.join(texts)
    return ic


def split_composite(value: str, d: Delimiters) -> list[str]:
    """A composite element's components (``HC:99213:25`` -> ['HC', '99213', '25'])."""
    return value.split(d.component)
