"""A fast, tolerant HL7 v2 (ER7, "pipe and hat") parser.

Design:

* Splitting only. A message is turned into a list of segments, each a list of raw
  field strings (``str.split`` on the field separator, done in C). Repetitions,
  components and subcomponents are split, and escape sequences decoded, only when a
  value is read, so a normalizer pays for exactly the values it looks at.
* Field numbering follows HL7: ``seg.fields[n]`` is field *n* of the segment, for MSH
  too (``MSH-1`` is the field separator, ``MSH-2`` the encoding characters).
* Tolerant of what senders actually send: CR, LF or CRLF segment ends (mixed too),
  UTF-8 BOM, UTF-16/32 with or without BOM, MLLP framing bytes left in the payload,
  blank and whitespace-only lines, trailing whitespace, a doubled escape character in
  MSH-2 (``^~\\\\&``), MSH-18 character sets, FHS/BHS/BTS/FTS wrappers around one
  message. What cannot be understood raises :class:`HL7ParseError` (a
  :class:`~practiceflow.processors.base.Rejected`) with a precise reason code.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import repeat
from operator import itemgetter

from practiceflow.processors.base import Rejected, ascii_digits

__all__ = [
    "HL7ParseError",
    "Message",
    "Segment",
    "parse",
    "split_batch",
    "decode_bytes",
    "unescape",
    "escape",
    "codec_for_charset",
]

DEFAULT_ENCODING = "^~\\&"
_WRAPPERS = frozenset(("FHS", "BHS", "BTS", "FTS"))
_BOM_UTF8 = b"\xef\xbb\xbf"


class HL7ParseError(Rejected):
    """The bytes are not a message this parser can read (missing MSH, bad delimiters...)."""


# --------------------------------------------------------------------------- charsets
# MSH-18 (HL7 table 0211) -> Python codec. Keys are upper-cased with spaces removed.
_CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "ISOIR6": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859_2",
    "8859/3": "iso8859_3",
    "8859/4": "iso8859_4",
    "8859/5": "iso8859_5",
    "8859/6": "iso8859_6",
    "8859/7": "iso8859_7",
    "8859/8": "iso8859_8",
    "8859/9": "iso8859_9",
    "8859/15": "iso8859_15",
    "ISOIR100": "latin-1",
    "ISO-8859-1": "latin-1",
    "ISO8859-1": "latin-1",
    "LATIN1": "latin-1",
    "LATIN-1": "latin-1",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
    "UNICODE": "utf-8",
    "UNICODEUTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "ISOIR192": "utf-8",
    "UNICODEUTF-16": "utf-16",
    "UNICODEUTF-32": "utf-32",
    "GB18030-2000": "gb18030",
    "GB18030": "gb18030",
    "KSX1001": "euc_kr",
    "BIG-5": "big5",
    "BIG5": "big5",
    "ISOIR87": "iso2022_jp",
    "ISOIR159": "iso2022_jp_2",
    "SHIFT_JIS": "shift_jis",
}
_SINGLE_BYTE = frozenset(
    (
        "latin-1",
        "cp1252",
        "iso8859_2",
        "iso8859_3",
        "iso8859_4",
        "iso8859_5",
        "iso8859_6",
        "iso8859_7",
        "iso8859_8",
        "iso8859_9",
        "iso8859_15",
        "ascii",
    )
)


def codec_for_charset(value: str | None) -> str | None:
    """The Python codec for an MSH-18 value, or None when unknown/empty."""
    if not value:
        return None
    return _CHARSETS.get(value.upper().replace(" ", ""))


def _msh18_from_bytes(data: bytes) -> str | None:
    """Read MSH-18 straight from the bytes (before decoding), first repetition."""
    i = data.find(b"MSH")
    if i < 0 or len(data) < i + 8:
        return None
    fs = data[i + 3 : i + 4]
    end = len(data)
    for term in (b"\r", b"\n"):
        j = data.find(term, i)
        if 0 <= j < end:
            end = j
    parts = data[i:end].split(fs)
    if len(parts) <= 17:
        return None
    enc = parts[1]
    value = parts[17]
    if len(enc) >= 2:
        value = value.split(enc[1:2])[0]
    try:
        return value.decode("ascii").strip() or None
    except UnicodeDecodeError:
        return None


def decode_bytes(data: bytes) -> tuple[str, str, list[str]]:
    """Bytes -> (text, codec used, warnings).

    BOMs (UTF-8, UTF-16 LE/BE, UTF-32) win; UTF-16 without BOM is recognised from
    the NULs around "MSH"; otherwise ASCII fast path, then MSH-18 where it makes
    sense, UTF-8, and latin-1 as the last resort (which always decodes).
    """
    warnings: list[str] = []
    if data.isascii():
        if b"\x00" not in data:
            return data.decode("ascii"), "ascii", warnings
    codec = None
    if data.startswith(_BOM_UTF8):
        try:
            return data[3:].decode("utf-8"), "utf-8", warnings
        except UnicodeDecodeError:
            warnings.append("utf8_bom_but_invalid_utf8_decoded_as_latin1")
            return data[3:].decode("latin-1"), "latin-1", warnings
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        codec = "utf-32"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec = "utf-16"
    else:
        head = data.lstrip(b"\x0b \t\r\n")[:6]
        if head.startswith(b"M\x00S\x00H\x00"):
            codec = "utf-16-le"
        elif head.startswith(b"\x00M\x00S\x00H"):
            codec = "utf-16-be"
    if codec is not None:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            warnings.append(f"invalid_{codec}_replaced")
            text = data.decode(codec, errors="replace")
        return text.lstrip("\ufeff"), codec, warnings

    declared = codec_for_charset(_msh18_from_bytes(data))
    if (
        declared is not None
        and declared not in _SINGLE_BYTE
        and declared != "utf-8"
        and not declared.startswith("utf-")
    ):
        # A multibyte national charset (GB 18030, Big5, EUC-KR, JIS): trust MSH-18.
        try:
            return data.decode(declared), declared, warnings
        except UnicodeDecodeError:
            warnings.append(f"msh18_{declared}_invalid")
    try:
        text = data.decode("utf-8")
        if declared is not None and declared in _SINGLE_BYTE:
            # Declared a single-byte charset but the bytes are valid, non-ASCII UTF-8:
            # that is what they are (latin-1 text almost never forms valid UTF-8).
            warnings.append("msh18_charset_mismatch_decoded_as_utf8")
        return text, "utf-8", warnings
    except UnicodeDecodeError:
        pass
    if declared is not None and declared in _SINGLE_BYTE and declared != "ascii":
        return data.decode(declared, errors="replace"), declared, warnings
    warnings.append("not_utf8_decoded_as_latin1")
    return data.decode("latin-1"), "latin-1", warnings


# --------------------------------------------------------------------------- escapes
def _hex_codec(codec: str) -> str:
    return "utf-8" if codec == "ascii" or codec.startswith("utf-") else codec


_FORMATTING_DROP = frozenset((".in", ".ti", ".sk", ".ce", ".fi", ".nf"))


def unescape(
    value: str,
    fs: str = "|",
    cs: str = "^",
    rs: str = "~",
    es: str = "\\",
    ss: str = "&",
    tc: str = "",
    codec: str = "utf-8",
) -> str:
    """Decode HL7 escape sequences in one leaf value.

    ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\`` become the delimiters, ``\\.br\\`` and ``\\.sp\\`` a
    newline, ``\\H\\``/``\\N\\`` and other formatting commands are dropped,
    ``\\Xhh..\\`` is decoded in the message's charset, and ``\\Zxx\\``, ``\\C..\\``,
    ``\\M..\\`` and anything unknown or unterminated are kept literally.
    """
    if not es or es not in value:
        return value
    parts = value.split(es)
    n = len(parts)
    out = [parts[0]]
    i = 1
    while i < n:
        if i + 1 >= n:  # unterminated escape: literal
            out.append(es)
            out.append(parts[i])
            break
        code = parts[i]
        if code == "F":
            out.append(fs)
        elif code == "S":
            out.append(cs)
        elif code == "T":
            out.append(ss)
        elif code == "R":
            out.append(rs)
        elif code == "E":
            out.append(es)
        elif code == "H" or code == "N":
            pass
        elif code == "P" and tc:
            out.append(tc)
        elif code[:1] == "X" and len(code) > 1:
            try:
                out.append(bytes.fromhex(code[1:]).decode(_hex_codec(codec), errors="replace"))
            except (ValueError, LookupError):
                out.append(es + code + es)
        elif code[:1] == ".":
            cmd = code[:3].lower()
            if cmd == ".br":
                out.append("\n")
            elif cmd == ".sp":
                arg = code[3:].strip().lstrip("+")
                count = int(arg) if ascii_digits(arg) and len(arg) < 3 else 1
                out.append("\n" * max(count, 1))
            elif cmd in _FORMATTING_DROP:
                pass
            else:
                out.append(es + code + es)
        else:  # \Zxx\, \Cxxyy\, \Mxxyyzz\, empty or unknown: kept literally
            out.append(es + code + es)
        out.append(parts[i + 1])
        i += 2
    return "".join(out)


def escape(value: str, fs: str = "|", cs: str = "^", rs: str = "~", es: str = "\\", ss: str = "&") -> str:
    """Escape text for use inside an HL7 field (control characters become spaces)."""
    if es in value:
        value = value.replace(es, f"{es}E{es}")
    for ch, code in ((fs, "F"), (cs, "S"), (rs, "R"), (ss, "T")):
        if ch in value:
            value = value.replace(ch, f"{es}{code}{es}")
    if not value.isprintable():
        value = "".join(c if c.isprintable() else " " for c in value)
    return value


# --------------------------------------------------------------------------- objects
class Segment:
    """One segment: ``fields[0]`` is the segment id, ``fields[n]`` is field *n*."""

    __slots__ = ("fields", "msg")

    def __init__(self, fields: list[str], msg: Message) -> None:
        self.fields = fields
        self.msg = msg

    @property
    def name(self) -> str:
        return self.fields[0]

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"<Segment {self.fields[0]} ({len(self.fields) - 1} fields)>"

    def raw(self, field: int) -> str:
        """The raw (undecoded) text of a field, '' when absent."""
        f = self.fields
        return f[field] if 0 <= field < len(f) else ""

    def reps(self, field: int) -> list[str]:
        """Raw repetitions of a field ([] when empty)."""
        raw = self.raw(field)
        if not raw:
            return []
        if self.fields[0] == "MSH" and field <= 2:
            return [raw]
        return raw.split(self.msg.rs)

    def get(self, field: int, rep: int = 0, comp: int | None = 1, sub: int | None = 1) -> str:
        """A decoded value; '' when absent.

        ``comp``/``sub`` are 1-based. ``comp=None`` returns the whole repetition and
        ``sub=None`` the whole component (escapes decoded, inner delimiters kept).
        """
        return self.msg._leaf(self.raw(field), rep, comp, sub, self.fields[0] == "MSH" and field <= 2)

    def components(self, field: int, rep: int = 0) -> list[str]:
        """Decoded components (first subcomponent each) of one repetition."""
        m = self.msg
        reps = self.reps(field)
        if rep >= len(reps):
            return []
        return [m.unescape(c.split(m.ss, 1)[0]) for c in reps[rep].split(m.cs)]

    def to_er7(self) -> str:
        f = self.fields
        if f[0] == "MSH":
            return f[0] + f[1] + f[1].join(f[2:])
        return self.msg.fs.join(f)


class Message:
    """A parsed message: delimiters, segments (as raw field lists), and accessors."""

    __slots__ = (
        "segs",
        "lines",
        "fs",
        "cs",
        "rs",
        "es",
        "ss",
        "tc",
        "codec",
        "warnings",
        "_index",
        "_views",
        "plain",
        "_nopad",
    )

    def __init__(self, segs: list[list[str]], fs: str, enc: str, codec: str, warnings: list[str]) -> None:
        self.segs = segs
        self.fs = fs
        self.cs = enc[0]
        self.rs = enc[1]
        self.es = enc[2]
        self.ss = enc[3]
        self.tc = enc[4] if len(enc) > 4 else ""
        self.codec = codec
        self.warnings = warnings
        self._index: dict[str, list[int]] | None = None
        self._views: list[Segment] | None = None
        # True when no segment after MSH contains the escape, repetition or
        # subcomponent character (lets readers take a split-and-strip fast path).
        self.plain = False
        self._nopad: bool | None = None
        # raw text of each segment (lines[k] is what segs[k] was split from)
        self.lines: list[str] = []

    # ---- delimiters
    @property
    def encoding_characters(self) -> str:
        return self.cs + self.rs + self.es + self.ss + self.tc

    def unescape(self, value: str) -> str:
        if self.es not in value:
            return value
        return unescape(value, self.fs, self.cs, self.rs, self.es, self.ss, self.tc, self.codec)

    def _leaf(self, raw: str, rep: int, comp: int | None, sub: int | None, literal: bool = False) -> str:
        if not raw:
            return ""
        if literal:  # MSH-1 / MSH-2 hold the delimiters themselves
            return raw
        if rep:
            reps = raw.split(self.rs)
            if rep >= len(reps):
                return ""
            raw = reps[rep]
        elif self.rs in raw:
            raw = raw.split(self.rs, 1)[0]
        if comp is None:
            return self.unescape(raw)
        if comp > 1:
            comps = raw.split(self.cs)
            if comp > len(comps):
                return ""
            raw = comps[comp - 1]
        elif self.cs in raw:
            raw = raw.split(self.cs, 1)[0]
        if sub is None:
            return self.unescape(raw)
        if sub > 1:
            subs = raw.split(self.ss)
            if sub > len(subs):
                return ""
            raw = subs[sub - 1]
        elif self.ss in raw:
            raw = raw.split(self.ss, 1)[0]
        return self.unescape(raw) if self.es in raw else raw

    @property
    def nopad(self) -> bool:
        """True when no field after MSH starts or ends with a blank and there are no
        tabs: values can then be used without stripping. Computed on first use.
        (Blanks next to component separators are checked where components are read;
        line ends count, since the lines are joined with the field separator.)"""
        if self._nopad is None:
            fs = self.fs
            rest = fs.join(self.lines[1:]) if self.lines else fs.join(fs.join(f) for f in self.segs[1:])
            self._nopad = not _padded(rest, fs)
        return self._nopad

    # ---- segments
    @property
    def segments(self) -> list[Segment]:
        if self._views is None:
            self._views = [Segment(f, self) for f in self.segs]
        return self._views

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self.segs)

    def __repr__(self) -> str:
        return f"<Message {self.message_type or '?'} {len(self.segs)} segments>"

    @property
    def names(self) -> list[str]:
        return [f[0] for f in self.segs]

    def _idx(self) -> dict[str, list[int]]:
        if self._index is None:
            idx: dict[str, list[int]] = {}
            for i, f in enumerate(self.segs):
                idx.setdefault(f[0], []).append(i)
            self._index = idx
        return self._index

    def segment(self, name: str, index: int = 0) -> Segment | None:
        """The index-th segment with this id (0-based), or None."""
        pos = self._idx().get(name)
        if not pos or index >= len(pos):
            return None
        return self.segments[pos[index]]

    def all(self, name: str) -> list[Segment]:
        views = self.segments
        return [views[i] for i in self._idx().get(name, ())]

    def get(
        self, name: str, field: int, rep: int = 0, comp: int | None = 1, sub: int | None = 1, index: int = 0
    ) -> str:
        """``msg.get("PID", 3, rep=0, comp=1)``: a decoded value, '' when absent."""
        pos = self._idx().get(name)
        if not pos or index >= len(pos):
            return ""
        f = self.segs[pos[index]]
        raw = f[field] if 0 <= field < len(f) else ""
        return self._leaf(raw, rep, comp, sub, name == "MSH" and field <= 2)

    def z_segments(self) -> list[Segment]:
        return [s for s in self.segments if s.fields[0][:1] == "Z"]

    def groups(self, start: str | tuple[str, ...]) -> list[list[Segment]]:
        """Split segments into runs each beginning at a ``start`` segment.

        Segments before the first start segment are dropped; e.g.
        ``msg.groups("OBR")`` gives one list per OBR with its OBX/NTE/SPM...
        """
        starts = (start,) if isinstance(start, str) else start
        out: list[list[Segment]] = []
        for s in self.segments:
            if s.fields[0] in starts:
                out.append([s])
            elif out:
                out[-1].append(s)
        return out

    # ---- header shortcuts
    @property
    def msh(self) -> list[str]:
        return self.segs[0]

    def msh_field(self, n: int) -> str:
        f = self.segs[0]
        return f[n] if n < len(f) else ""

    @property
    def message_type(self) -> str:
        t = self.get("MSH", 9, comp=1)
        e = self.get("MSH", 9, comp=2)
        return f"{t}^{e}" if e else t

    @property
    def control_id(self) -> str:
        return self.get("MSH", 10).strip()

    @property
    def version(self) -> str:
        return self.get("MSH", 12).strip()

    def to_er7(self, segment_terminator: str = "\r") -> str:
        return segment_terminator.join(s.to_er7() for s in self.segments) + segment_terminator


# --------------------------------------------------------------------------- parsing
_valid_ids: dict[str, bool] = {}
# segment id -> 1 ordinary segment, 2 MSH, 3 batch wrapper (FHS/BHS/BTS/FTS), 0 not a segment id
_SEG_KIND: dict[str, int] = {}


def _is_segment_id(h: str) -> bool:
    ok = _valid_ids.get(h)
    if ok is None:
        ok = len(h) == 3 and h.isascii() and h.isalnum() and h.isupper() and h[0].isalpha()
        if len(_valid_ids) < 4096:
            _valid_ids[h] = ok
    return ok


_ORDINARY: set[str] = set()  # ids of ordinary segments seen so far (bounded)
_first = itemgetter(0)


def _scan(lines: list[str], msg: Message) -> None:
    """Set msg.plain and msg.nopad from the body lines (memchr-speed searches over
    one joined string; ``nopad`` would otherwise join them again on first use)."""
    fs = msg.fs
    rest = fs.join(lines)
    msg.plain = msg.es not in rest and msg.rs not in rest and msg.ss not in rest
    msg._nopad = not _padded(rest, fs)


def _padded(rest: str, fs: str) -> bool:
    """``fs + " " in rest or " " + fs in rest or rest.endswith(" ") or "\t" in rest``,
    visiting only the blanks (memchr) instead of two two-character searches over the
    whole message, which cost ~10 % of an ORU's parse."""
    i = rest.find(" ")
    last = len(rest) - 1
    while i >= 0:
        if i == last or rest[i + 1] == fs or (i > 0 and rest[i - 1] == fs):
            return True
        i = rest.find(" ", i + 1)
    return "\t" in rest


def _classify(h: str) -> int:
    if not _is_segment_id(h):
        k = 0
    elif h == "MSH":
        k = 2
    elif h in _WRAPPERS:
        k = 3
    else:
        k = 1
    if len(_SEG_KIND) < 4096:
        _SEG_KIND[h] = k
        if k == 1:
            _ORDINARY.add(h)
    return k


_ENC_OK: set[tuple[str, str]] = set()


def _check_encoding(fs: str, enc: str, warnings: list[str]) -> str:
    if (fs, enc) in _ENC_OK:
        return enc
    checked = _check_encoding_slow(fs, enc, warnings)
    if checked == enc and len(_ENC_OK) < 256:
        _ENC_OK.add((fs, enc))
    return checked


def _check_encoding_slow(fs: str, enc: str, warnings: list[str]) -> str:
    if not enc:
        raise HL7ParseError("missing_encoding_characters", "MSH-2 (encoding characters) is empty")
    if len(enc) == 5 and enc[2] == enc[3]:
        # "^~\\&": the escape character written twice (seen from some Windows engines)
        enc = enc[:3] + enc[4]
        warnings.append("msh2_doubled_escape_character")
    if len(enc) < 4 or len(enc) > 5:
        raise HL7ParseError(
            "invalid_encoding_characters",
            f"MSH-2 must hold 4 (or 5 from v2.7) encoding characters, got {len(enc)}: {enc[:20]!r}",
        )
    seen = {fs}
    for ch in enc:
        if ch.isalnum() or ch.isspace() or not ch.isprintable() or ch in seen:
            raise HL7ParseError(
                "invalid_encoding_characters",
                f"MSH-2 {enc!r}: encoding characters must be distinct, printable, non-alphanumeric "
                f"and differ from the field separator {fs!r}",
            )
        seen.add(ch)
    return enc


def _lines(text: str) -> tuple[list[str], set[int] | None]:
    """Split into segment lines.

    Returns (lines, soft) where ``soft`` holds the indexes of lines that followed a
    bare LF inside a CR-delimited message: such a line may be a line break inside a
    value rather than a new segment. ``soft`` is None in the usual cases.
    """
    if "\n" not in text:
        return text.split("\r"), None
    if "\r" not in text:
        return text.split("\n"), None
    t = text.replace("\r\n", "\r")
    if "\n" not in t:
        return t.split("\r"), None
    lines: list[str] = []
    soft: set[int] = set()
    for chunk in t.split("\r"):
        if "\n" in chunk:
            first, *rest = chunk.split("\n")
            lines.append(first)
            for r in rest:
                soft.add(len(lines))
                lines.append(r)
        else:
            lines.append(chunk)
    return lines, soft


def parse(data: bytes | bytearray | memoryview | str, *, strict: bool = False, header_only: bool = False) -> Message:
    """Parse one message. Raises :class:`HL7ParseError` (a ``Rejected``).

    ``strict`` turns tolerated oddities (junk before MSH, lines that are not
    segments) into errors. ``header_only`` stops after MSH (used to build ACKs for
    messages whose body is broken).
    """
    if isinstance(data, bytes):
        text, codec, warnings = decode_bytes(data)
    elif isinstance(data, (bytearray, memoryview)):
        text, codec, warnings = decode_bytes(bytes(data))
    elif isinstance(data, str):
        text, codec, warnings = data, "utf-8", []
    else:
        raise HL7ParseError("not_hl7", f"expected bytes or str, got {type(data).__name__}")

    if "\x0b" in text or "\x1c" in text:  # MLLP framing left in the payload
        text = text.replace("\x0b", "").replace("\x1c", "\r")
    if text[:1] in ("\ufeff", " ", "\t", "\r", "\n"):
        text = text.lstrip("\ufeff \t\r\n")
    if not text or (text[:3] != "MSH" and not text.strip()):
        raise HL7ParseError("empty_message", "no content")

    lines, soft = _lines(text)
    n = len(lines)

    # ---- find MSH (skipping blank lines and batch headers)
    i = 0
    while i < n:
        line = lines[i]
        if line.startswith("MSH"):
            break
        if not line.strip() or line[:3] in _WRAPPERS:
            i += 1
            continue
        j = line.find("MSH")
        if i == 0 and j > 0 and not _is_segment_id(line[:3]) and j + 3 < len(line) and not line[j + 3].isalnum():
            if strict:
                raise HL7ParseError("content_before_msh", f"{line[:j]!r} precedes MSH")
            warnings.append("content_before_msh_stripped")
            lines[i] = line = line[j:]
            break
        if any(rest.startswith("MSH") for rest in lines[i + 1 :]):
            raise HL7ParseError("msh_not_first", f"segment {line[:3]!r} precedes MSH")
        raise HL7ParseError("missing_msh", "no MSH segment found")
    if i >= n:
        raise HL7ParseError("missing_msh", "no MSH segment found")

    line = lines[i]
    if len(line) < 4:
        raise HL7ParseError("missing_field_separator", "MSH has no field separator")
    fs = line[3]
    if fs.isalnum() or fs.isspace() or not fs.isprintable():
        raise HL7ParseError("invalid_field_separator", f"MSH-1 {fs!r} cannot be a field separator")
    parts = line.rstrip(" \t").split(fs)
    enc = _check_encoding(fs, parts[1], warnings)
    parts[1] = fs
    parts.insert(2, enc)
    segs: list[list[str]] = [parts]
    msg = Message(segs, fs, enc, codec, warnings)
    if header_only:
        return msg

    body = lines[i + 1 :]
    while body and not body[-1]:
        body.pop()
    # Fast path (the usual case): every line starts with an already-seen ordinary
    # segment id followed by the field separator (no blank lines, wrappers, second
    # MSH or junk). One C-level split per line; anything else takes the loop below.
    if soft is None and body:
        fast = list(map(str.split, body, repeat(fs)))  # C-level loop
        if _ORDINARY.issuperset(map(_first, fast)):
            segs += fast
            msg.lines = [line] + body
            _scan(body, msg)
            return msg

    skipped = 0
    kinds = _SEG_KIND
    append = segs.append
    raw_lines = [line]
    keep = raw_lines.append
    for idx in range(i + 1, n):
        line = lines[idx]
        if not line:
            continue
        h = line[:3]
        k = kinds.get(h)
        if k is None:
            k = _classify(h)
        if k and (line.startswith(fs, 3) or len(line) == 3):
            if k == 1:
                append(line.split(fs))
                keep(line)
                continue
            if k == 2:
                raise HL7ParseError("multiple_messages", "more than one MSH: split the batch first")
            continue  # FHS/BHS/BTS/FTS wrapper segments
        if line.isspace():
            continue
        if soft is not None and idx in soft and not strict:
            # A bare LF inside a CR-delimited message: a line break inside the value.
            last = segs[-1]
            last[-1] = last[-1] + "\n" + line.rstrip(" \t")
            raw_lines[-1] = raw_lines[-1] + "\n" + line
            if "line_break_inside_value" not in warnings:
                warnings.append("line_break_inside_value")
            continue
        if strict:
            raise HL7ParseError("invalid_segment", f"not a segment: {line[:40]!r}")
        skipped += 1
    if skipped:
        warnings.append(f"skipped_{skipped}_invalid_segment_lines")
    msg.lines = raw_lines
    _scan(raw_lines[1:], msg)
    return msg


# --------------------------------------------------------------------------- batches
_LINE_RE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n|$)")


def split_batch(data: bytes) -> list[bytes]:
    """Split a batch file or a back-to-back stream into single messages.

    Splits before every line that starts with MSH; drops FHS/BHS/BTS/FTS wrapper
    segments, MLLP framing bytes and blank lines between messages. Each message keeps
    its own bytes and segment terminators. UTF-16/32 input is returned re-encoded as
    UTF-8. Content that has no MSH at all comes back as one item (so the normalizer
    can reject it with a reason); blank input gives [].
    """
    if data.startswith(_BOM_UTF8):
        data = data[3:]
    elif b"\x00" in data[:8]:
        text, _codec, _w = decode_bytes(data)
        data = text.encode("utf-8")
    if b"\x0b" in data or b"\x1c" in data:
        data = data.replace(b"\x0b", b"").replace(b"\x1c", b"\r")
    messages: list[list[bytes]] = []
    prefix: list[bytes] = []
    for m in _LINE_RE.finditer(data):
        line = m.group()
        if not line:
            continue
        head = line[:3]
        if head in (b"FHS", b"BHS", b"BTS", b"FTS") and (len(line) == 3 or not line[3:4].isalnum()):
            continue
        if head == b"MSH":
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            prefix.append(line)
    out: list[bytes] = []
    for i, lines in enumerate(messages):
        if i == 0 and prefix and any(p.strip() for p in prefix):
            lines = prefix + lines
        body = b"".join(lines)
        stripped = body.rstrip(b" \t\r\n")
        # keep one terminator after the last segment
        term = body[len(stripped) : len(stripped) + 2]
        term = b"\r\n" if term.startswith(b"\r\n") else term[:1]
        out.append(stripped + term)
    if not messages:
        body = b"".join(prefix)
        if body.strip():
            out.append(body)
    return out
