"""What staff need from a faxed document, each value pointing at its page and text span.

Why an interface (:class:`Extractor`): the embedded rules below read the labelled fields
that most fax templates print ("DOB:", "Member ID:", "Fax:"), and they are fast, local and
predictable; a language model (the ``llm-layer``, ``processors/llm``) reads free prose
better. Both return the same :class:`Extracted` values with a page and a character span,
so a value can always be shown highlighted on the page it came from, and a model's value
whose span does not hold that text is dropped (the span check is :func:`span_holds`).
:func:`merge` combines extractors: rules first, a model fills only what rules left empty.

Fields, for every class: ``patient_name``, ``dob``, ``mrn``, ``member_id``, ``sender``,
``sender_fax``, ``addressee``; per class: lab results ``test`` (value ``name=value unit``)
and ``abnormal`` (the flagged tests); PA responses ``payer``, ``decision``
(approved | denied | more_info | pending), ``reference``, ``procedure_code`` (CPT/HCPCS); records requests
``records_requested``, ``date_range``, ``direction`` (requested_from_us | sent_to_us);
refill requests ``drug``, ``strength``, ``pharmacy``; cover sheets ``pages_announced``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Extracted", "Extractor", "RuleExtractor", "merge", "span_holds", "first", "values"]


@dataclass(frozen=True, slots=True)
class Extracted:
    """One value read from a page: ``text[start:end]`` of page ``page`` (1-based) holds it."""

    field: str
    value: str
    page: int
    start: int
    end: int
    source: str = "rules"


class Extractor(Protocol):
    """Reads fields from a document's pages (``pages[i]`` is the text of page ``page_numbers[i]``)."""

    name: str

    def extract(self, doc_class: str, pages: Sequence[str], page_numbers: Sequence[int]) -> list[Extracted]: ...


def span_holds(value: Extracted, pages: Sequence[str], page_numbers: Sequence[int]) -> bool:
    """True when the value's span on its page contains the value (whitespace and case aside)."""
    try:
        text = pages[list(page_numbers).index(value.page)]
    except ValueError:
        return False
    if not 0 <= value.start < value.end <= len(text):
        return False

    def squash(s: str) -> str:
        return re.sub(r"\s+", " ", s).strip().lower()

    return squash(value.value) in squash(text[value.start : value.end])


def merge(primary: Iterable[Extracted], secondary: Iterable[Extracted]) -> list[Extracted]:
    """``primary``'s values, plus ``secondary``'s for fields ``primary`` did not find."""
    out = list(primary)
    have = {e.field for e in out}
    out += [e for e in secondary if e.field not in have]
    return out


def first(values_: Iterable[Extracted], name: str) -> Extracted | None:
    return next((e for e in values_ if e.field == name), None)


def values(values_: Iterable[Extracted], name: str) -> list[Extracted]:
    return [e for e in values_ if e.field == name]


# --------------------------------------------------------------------------- rules
_SEP = r"[ \t]*(?:[:#\-|]|\t)[ \t]*"
_NAME = r"([A-Z][A-Za-z'\-]+(?:,? (?!DOB\b|MRN\b|Date\b|DATE\b|ID\b)[A-Z][A-Za-z'\-.]*){1,3})"
_DATE = (
    r"(\d{1,2}[/\-.]\d{1,2}[/\-.]\d{2,4}|\d{4}-\d{2}-\d{2}|"
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2},? \d{4}|"
    r"\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{4})"
)
_PHONE = r"((?:\+?1[ \-.]?)?\(?\d{3}\)?[ \-.]?\d{3}[ \-.]\d{4})"
_ID = r"([A-Z0-9][A-Z0-9\-]{3,19})"


def _rx(labels: str, value: str) -> re.Pattern[str]:
    return re.compile(rf"(?im)^[ \t]*(?:{labels}){_SEP}{value}")


_FIELDS: dict[str, list[re.Pattern[str]]] = {
    "patient_name": [
        _rx(r"patient name|patient|pt name|pt|member name|member|name|re", _NAME),
        re.compile(rf"(?m)^RE:[ \t]*{_NAME}"),
    ],
    "dob": [re.compile(rf"(?i)\b(?:DOB|D\.O\.B\.|date of birth|birth ?date)[ \t]*[:#\-]?[ \t]*{_DATE}")],
    "mrn": [
        re.compile(
            rf"(?i)\b(?:MRN|medical record (?:#|no\.?|number)|chart #|patient id|acct #)[ \t]*[:#\-]?[ \t]*{_ID}"
        )
    ],
    "member_id": [
        re.compile(
            rf"(?i)\b(?:member id|member #|subscriber id|insured'?s i\.?d\.? number|policy number)[ \t]*[:#\-]?[ \t]*{_ID}"
        )
    ],
    "sender_fax": [re.compile(rf"(?i)\bfax(?: number| #| no\.?)?[ \t]*[:#\-]?[ \t]*{_PHONE}")],
    "addressee": [
        _rx(r"to|attn|attention|referred to|refer to|referral to", r"((?:Dr\.? )?[A-Z][^\n]{2,80})"),
    ],
    "payer": [_rx(r"plan|payer|insurance(?: provider| company| carrier)?|health plan", r"([A-Z][^\n]{2,60})")],
    "reference": [
        re.compile(
            r"(?i)\b(?:reference (?:number|#)|authorization (?:#|number|request id)|case id|tracking number|auth(?:orization)? #)"
            r"[ \t]*[:#\-]?[ \t]*([A-Z0-9][A-Z0-9\-#]{3,24})"
        )
    ],
    # a payer decision's procedure (CPT / HCPCS): the prior-auth workflow matches it to the order's
    "procedure_code": [
        re.compile(
            r"(?i)\b(?:CPT|HCPCS|procedure code|service code|procedure)(?: code)?[ \t]*[:#\-]?[ \t]*([A-Z]?\d{4,5})\b"
        )
    ],
    "records_requested": [_rx(r"records requested|requested records|please send|enclosed", r"([^\n]{3,200})")],
    "date_range": [re.compile(rf"(?i){_DATE}[ \t]*(?:to|through|-)[ \t]*{_DATE}")],
    "drug": [_rx(r"drug name|drug|medication|rx|medication requested", r"([A-Za-z][^\n]{2,80})")],
    "pages_announced": [
        re.compile(r"(?i)\b(?:pages?|number of pages|total pages)[^\n:]{0,25}[:\-][ \t]*(\d{1,3})\b"),
        re.compile(r"(?i)\b(\d{1,3})[ \t]+pages?[ \t]*\(?including cover"),
    ],
}
_STRENGTH = re.compile(r"(?i)\b(\d+(?:\.\d+)?[ ]?(?:mg|mcg|g|ml|units?|%)(?:/[\d.]* ?(?:ml|actuation|mg))?)\b")
_LAB_ROW = re.compile(
    r"(?m)^[ \t]*([A-Za-z][A-Za-z ,()\-/0-9]{1,40}?)[ \t|]+([<>]?\d+(?:\.\d+)?)[ \t|]+"
    r"(?:(H|L|HH|LL|HIGH|LOW|A|CRIT|ABN)[ \t|]+)?([A-Za-z%/0-9.]*)"
)
_DECISIONS = (
    (
        "more_info",
        re.compile(r"(?i)\b(additional information|more information|information requested|pended|incomplete)\b"),
    ),
    ("denied", re.compile(r"(?i)\b(denied|not approved|adverse determination|denial)\b")),
    ("approved", re.compile(r"(?i)\b(approved|authorized|certified)\b")),
    ("pending", re.compile(r"(?i)\b(pending|in review|under (?:clinical )?review)\b")),
)
_SENT_TO_US = re.compile(r"(?i)\b(enclosed (?:please find|are)|records enclosed|as requested|in response to your)\b")
_HEADER_LINE = re.compile(
    r"(?i)^(?:from\b|received:|\d{1,2}/\d{1,2}/\d{2,4} \d|\d{4}-\d{2}-\d{2} \d)|\bP(?:AGE|\.)? ?\d+ ?/ ?\d+"
)


class RuleExtractor:
    """The embedded extractor: labelled fields by regular expression (no model, no network)."""

    name = "rules"

    def extract(self, doc_class: str, pages: Sequence[str], page_numbers: Sequence[int]) -> list[Extracted]:
        out: list[Extracted] = []
        wanted = ["patient_name", "dob", "mrn", "member_id", "sender_fax", "addressee"]
        wanted += {
            "prior_auth_response": ["payer", "reference", "procedure_code"],
            "records_request": ["records_requested", "date_range"],
            "refill_request": ["drug"],
            "cover_sheet": ["pages_announced"],
        }.get(doc_class, [])
        for name in wanted:
            hit = self._first(name, pages, page_numbers)
            if hit is not None:
                out.append(hit)
        sender = self._sender(pages, page_numbers)
        if sender is not None:
            out.append(sender)
        if doc_class == "lab_result":
            out += self._labs(pages, page_numbers)
        elif doc_class == "prior_auth_response":
            out += self._decision(pages, page_numbers)
            if not any(e.field == "payer" for e in out) and sender is not None:
                out.append(Extracted("payer", sender.value, sender.page, sender.start, sender.end))
        elif doc_class == "refill_request":
            drug = first(out, "drug")
            if drug is not None:
                m = _STRENGTH.search(drug.value)
                if m:
                    out.append(
                        Extracted("strength", m.group(1), drug.page, drug.start + m.start(1), drug.start + m.end(1))
                    )
            if sender is not None:
                out.append(Extracted("pharmacy", sender.value, sender.page, sender.start, sender.end))
        elif doc_class == "records_request":
            for text, no in zip(pages, page_numbers, strict=True):
                m = _SENT_TO_US.search(text)
                if m:
                    out.append(Extracted("direction", "sent_to_us", no, m.start(1), m.end(1)))
                    break
            else:
                out.append(Extracted("direction", "requested_from_us", page_numbers[0], 0, 0))
        return out

    @staticmethod
    def _first(name: str, pages: Sequence[str], page_numbers: Sequence[int]) -> Extracted | None:
        for text, no in zip(pages, page_numbers, strict=True):
            for rx in _FIELDS[name]:
                m = rx.search(text)
                if m:
                    if name == "date_range":
                        return Extracted(name, m.group(0).strip(), no, m.start(), m.end())
                    value = m.group(1).strip().rstrip(",.;")
                    start = m.start(1)
                    return Extracted(name, value, no, start, start + len(value))
        return None

    @staticmethod
    def _sender(pages: Sequence[str], page_numbers: Sequence[int]) -> Extracted | None:
        """The letterhead: the first line of the first page that is not the fax machine's header."""
        if not pages:
            return None
        text, offset = pages[0], 0
        for line in text.split("\n"):
            stripped = line.strip()
            if len(stripped) >= 3 and not _HEADER_LINE.search(stripped) and re.search(r"[A-Za-z]{3}", stripped):
                start = offset + line.index(stripped)
                return Extracted("sender", stripped[:80], page_numbers[0], start, start + len(stripped[:80]))
            offset += len(line) + 1
        return None

    @staticmethod
    def _labs(pages: Sequence[str], page_numbers: Sequence[int]) -> list[Extracted]:
        out: list[Extracted] = []
        for text, no in zip(pages, page_numbers, strict=True):
            for m in _LAB_ROW.finditer(text):
                name = m.group(1).strip()
                if len(name) < 2 or name.lower() in {"page", "pages", "phone", "fax", "dob", "mrn", "age"}:
                    continue
                out.append(Extracted("test", m.group(0).strip(), no, m.start(1), m.end()))
                if m.group(3):
                    out.append(Extracted("abnormal", text[m.start(1) : m.end(3)], no, m.start(1), m.end(3)))
        return out[:60]

    @staticmethod
    def _decision(pages: Sequence[str], page_numbers: Sequence[int]) -> list[Extracted]:
        for label, rx in _DECISIONS:
            for text, no in zip(pages, page_numbers, strict=True):
                m = rx.search(text)
                if m:
                    return [Extracted("decision", label, no, m.start(1), m.end(1))]
        return []
