"""One transmission, many documents: per-page classes -> documents, and the cover sheet's page count.

Why per page: a fax is a transmission, not a document. Practices routinely receive a
cover sheet, then a referral letter, then a payer letter in one call, and each part goes
to a different person. The classifier labels every page; this module groups pages:

* a cover sheet is always a document of its own (and says how many pages to expect);
* a page continues the current document when its class agrees, or when it says it is a
  continuation ("Page 2 of 3", "(continued)", "page 2") and is not a cover sheet — later
  pages of a letter (history, medication lists) often look like some other class;
* an abstained page with no continuation cue after a document joins it too (a person
  sees it there, flagged), while an abstained first page starts a document that goes to
  triage.

A document's class is the arg-max of its pages' summed probabilities; its confidence the
mean probability of that class over its pages. Pure and deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PageVerdict", "Segment", "split_pages", "announced_pages", "CONTINUATION"]

CONTINUATION = re.compile(
    r"(?i)\bpage\s*([2-9]|\d{2,})\s*(?:of|/)\s*\d+\b|\(continued\)|\bcontinued\b|\(page [2-9]\)|\bpage [2-9]\b"
)


@dataclass(frozen=True, slots=True)
class PageVerdict:
    """What the classifier said about one page (``probs`` in ``classes`` order)."""

    page: int
    text: str
    probs: tuple[float, ...]
    abstained: bool


@dataclass(frozen=True, slots=True)
class Segment:
    """A document inside a transmission: its pages, class, confidence and top three guesses."""

    index: int
    pages: tuple[int, ...]
    doc_class: str
    confidence: float
    guesses: tuple[tuple[str, float], ...]
    page_labels: tuple[str, ...]


def _best(probs: Sequence[float], classes: Sequence[str]) -> str:
    return classes[max(range(len(probs)), key=probs.__getitem__)]


def split_pages(verdicts: Sequence[PageVerdict], classes: Sequence[str]) -> list[Segment]:
    """Group consecutive pages into documents (rules in the module docstring)."""
    groups: list[list[PageVerdict]] = []
    for v in verdicts:
        label = _best(v.probs, classes)
        cover = label == "cover_sheet" and not v.abstained
        if groups:
            cur = groups[-1]
            cur_label = _best([sum(x) for x in zip(*(p.probs for p in cur), strict=True)], classes)
            cur_is_cover = cur_label == "cover_sheet"
            continues = (
                not cover
                and not cur_is_cover
                and (
                    label == cur_label or bool(CONTINUATION.search(v.text[:400] + "\n" + v.text[-200:])) or v.abstained
                )
            )
            if continues:
                cur.append(v)
                continue
        groups.append([v])
    out: list[Segment] = []
    for i, g in enumerate(groups):
        sums = [sum(x) for x in zip(*(p.probs for p in g), strict=True)]
        n = len(g)
        mean = [s / n for s in sums]
        order = sorted(range(len(classes)), key=lambda k: -mean[k])[:3]
        best = classes[order[0]]
        conf = round(mean[order[0]], 4)
        # a single abstained page keeps its low confidence; a group inherits the abstention
        # only when every page abstained
        out.append(
            Segment(
                index=i,
                pages=tuple(p.page for p in g),
                doc_class=best,
                confidence=conf,
                guesses=tuple((classes[k], round(mean[k], 4)) for k in order),
                page_labels=tuple("?" if p.abstained else _best(p.probs, classes) for p in g),
            )
        )
    return out


_PAGES = (
    re.compile(r"(?i)\b(?:number of pages|total pages|pages?)(?:[^\n:\d]{0,30})[:\-]?[ \t]*(\d{1,3})\b"),
    re.compile(r"(?i)\b(\d{1,3})[ \t]+pages?\b"),
)


def announced_pages(cover_text: str) -> int | None:
    """How many pages a cover sheet says the transmission has (cover included), if it says."""
    for rx in _PAGES:
        m = rx.search(cover_text)
        if m:
            n = int(m.group(1))
            if 0 < n < 500:
                return n
    return None
