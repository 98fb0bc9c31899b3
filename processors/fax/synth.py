"""Synthetic fax pages whose true text is known.

Used by the OCR tests, ``bench/bench_ocr.py`` and the sample-day generator: a typed
letter (referral, lab result, prior-auth reply) is drawn with a real TrueType font
(DejaVu, Debian package ``fonts-dejavu-core``) and rasterised the way a fax machine
sees it: US Letter, 1-bit, fine mode 204x196 dpi (non-square pixels) by default,
optionally with fax speckle and a slight skew.

Everything is deterministic given ``seed``: the same seed gives the same text, the
same pixels and the same file bytes (no timestamps in TIFF or PDF output).

Only PyPI packages that ship with ocrmypdf are used: Pillow (raster, G4 TIFF),
img2pdf (image-only PDF, CCITT G4 passed through) and fpdf2 (PDF with a real text
layer).
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

LETTER_IN = (8.5, 11.0)
FAX_FINE_DPI = (204, 196)
FAX_STANDARD_DPI = (204, 98)

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/local/share/fonts"),
    Path("/usr/share/fonts"),
)
#: Fonts from Debian's fonts-dejavu-core; the seed picks one per document.
FONT_FACES = ("DejaVuSerif.ttf", "DejaVuSans.ttf", "DejaVuSansMono.ttf")
BOLD_FACES = {
    "DejaVuSerif.ttf": "DejaVuSerif-Bold.ttf",
    "DejaVuSans.ttf": "DejaVuSans-Bold.ttf",
    "DejaVuSansMono.ttf": "DejaVuSansMono-Bold.ttf",
}
KINDS = ("referral", "lab_result", "prior_auth_response")


class FontMissing(RuntimeError):
    pass


def find_font(name: str) -> Path:
    for d in FONT_DIRS:
        p = d / name
        if p.is_file():
            return p
        if d.is_dir():
            hits = sorted(d.rglob(name))
            if hits:
                return hits[0]
    raise FontMissing(
        f"font {name} not found; install the Debian package fonts-dejavu-core (apt-get install fonts-dejavu-core)"
    )


# --------------------------------------------------------------------------- text
_FIRST = [
    "John",
    "Maria",
    "Robert",
    "Linda",
    "James",
    "Patricia",
    "Michael",
    "Susan",
    "David",
    "Karen",
    "Thomas",
    "Nancy",
    "Daniel",
    "Helen",
    "Paul",
    "Sandra",
]
_LAST = [
    "Carter",
    "Nguyen",
    "Hughes",
    "Patel",
    "Morgan",
    "Rivera",
    "Foster",
    "Bennett",
    "Coleman",
    "Hayes",
    "Jenkins",
    "Powell",
    "Russell",
    "Griffin",
    "Perry",
    "Wallace",
]
_CLINICS = [
    "Riverside Family Medicine",
    "Oak Valley Internal Medicine",
    "Lakeshore Pediatrics",
    "Summit Primary Care",
    "Greenfield Medical Group",
]
_SPECIALTIES = [
    ("Cardiology", "exertional chest pain and palpitations", "ECG and echocardiogram"),
    ("Gastroenterology", "chronic epigastric pain and iron deficiency", "upper endoscopy"),
    ("Neurology", "recurrent headaches with visual aura", "MRI of the brain"),
    ("Orthopedics", "persistent right knee pain after a fall", "MRI of the right knee"),
    ("Endocrinology", "poorly controlled type 2 diabetes", "insulin titration plan"),
]
_LABS = [
    ("Hemoglobin", "g/dL", 11.5, 17.0, "13.5-17.5"),
    ("White blood cells", "K/uL", 3.5, 12.0, "4.0-11.0"),
    ("Platelets", "K/uL", 140, 420, "150-400"),
    ("Sodium", "mmol/L", 132, 147, "135-145"),
    ("Potassium", "mmol/L", 3.2, 5.4, "3.5-5.1"),
    ("Creatinine", "mg/dL", 0.6, 1.6, "0.7-1.3"),
    ("Glucose", "mg/dL", 70, 190, "70-99"),
    ("Hemoglobin A1c", "%", 5.0, 9.5, "4.0-5.6"),
    ("TSH", "mIU/L", 0.3, 6.0, "0.4-4.0"),
]
_DRUGS = [
    ("adalimumab 40 mg pen", "rheumatoid arthritis"),
    ("semaglutide 1 mg pen", "type 2 diabetes"),
    ("apixaban 5 mg tablets", "atrial fibrillation"),
    ("dupilumab 300 mg syringe", "atopic dermatitis"),
    ("rosuvastatin 20 mg tablets", "hyperlipidemia"),
]
_PAYERS = [
    "Blue Harbor Health Plan",
    "Crescent Mutual Insurance",
    "Northway Care Alliance",
    "Pinecrest Health Partners",
]


def _phone(rng: random.Random) -> str:
    return f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(2023, 2025)}"


def _dob(rng: random.Random) -> str:
    return f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1940, 2010)}"


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _letter_lines(kind: str, rng: random.Random) -> tuple[str, list[str]]:
    """(letterhead, body lines) for one page; body paragraphs separated by ''."""
    clinic = rng.choice(_CLINICS)
    patient = _person(rng)
    dob = _dob(rng)
    mrn = f"{rng.randint(100000, 999999)}"
    doctor = f"Dr. {_person(rng)}"
    date = _date(rng)
    if kind == "referral":
        spec, reason, test = rng.choice(_SPECIALTIES)
        body = [
            f"Date: {date}",
            f"To: {spec} Department, Attn: Referral Coordinator",
            f"Re: {patient}   DOB: {dob}   MRN: {mrn}",
            "",
            f"Dear Colleague, I am referring {patient} for evaluation of {reason}.",
            f"Symptoms began about {rng.randint(2, 20)} weeks ago and have not improved with",
            "conservative management. Current medications include lisinopril 10 mg daily",
            f"and metformin 500 mg twice daily. Blood pressure today was {rng.randint(112, 158)}/{rng.randint(68, 96)}.",
            "",
            f"Please schedule a consultation and consider {test}.",
            "Recent notes, medication list and laboratory results are attached.",
            f"Insurance: {rng.choice(_PAYERS)}, member ID {rng.randint(10**8, 10**9 - 1)}.",
            "",
            f"Thank you, {doctor}, {clinic}",
            f"Phone {_phone(rng)}   Fax {_phone(rng)}",
        ]
    elif kind == "lab_result":
        body = [
            f"LABORATORY REPORT   Collected: {date}",
            f"Patient: {patient}   DOB: {dob}   MRN: {mrn}",
            f"Ordering provider: {doctor}",
            "",
            "Test                  Result    Units     Reference",
        ]
        for name, unit, lo, hi, ref in rng.sample(_LABS, 6):
            val = rng.uniform(lo, hi)
            sval = f"{val:.0f}" if hi > 50 else f"{val:.1f}"
            body.append(f"{name:<22}{sval:<10}{unit:<10}{ref}")
        body += [
            "",
            "Comments: specimen received in good condition. Values outside the",
            "reference range are flagged for physician review.",
            f"Verified by {_person(rng)}, MLS, on {date}.",
        ]
    elif kind == "prior_auth_response":
        drug, dx = rng.choice(_DRUGS)
        approved = rng.random() < 0.6
        auth = f"PA-{rng.randint(100000, 999999)}"
        body = [
            f"PRIOR AUTHORIZATION DETERMINATION   Date: {date}",
            f"Plan: {rng.choice(_PAYERS)}",
            f"Member: {patient}   DOB: {dob}   Member ID: {rng.randint(10**8, 10**9 - 1)}",
            f"Prescriber: {doctor}",
            "",
            f"Request: {drug} for {dx}.",
            f"Reference number: {auth}",
            f"Decision: {'APPROVED' if approved else 'DENIED'}",
            "",
        ]
        if approved:
            body += [
                f"The request is approved from {date} for {rng.choice([3, 6, 12])} months.",
                "Quantity limits of the formulary apply. No further action is needed.",
            ]
        else:
            body += [
                "The request is denied because step therapy with a preferred formulary",
                "alternative has not been documented. You may submit an appeal within",
                "sixty days with chart notes showing prior treatment and outcome.",
            ]
        body += ["", f"Questions: call {_phone(rng)}, Monday to Friday."]
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    return clinic, body


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_w: int) -> list[str]:
    """Greedy word wrap; keeps runs of spaces inside a line (tables)."""
    if font.getlength(text) <= max_w:
        return [text]
    out: list[str] = []
    cur = ""
    for word in text.split(" "):
        cand = f"{cur} {word}" if cur else word
        if cur and font.getlength(cand) > max_w:
            out.append(cur)
            cur = word
        else:
            cur = cand
    if cur:
        out.append(cur)
    return out


# --------------------------------------------------------------------------- pages
@dataclass(slots=True)
class SyntheticPage:
    image: Image.Image  # mode "1", info["dpi"] set
    text: str  # the true text, one line per rendered line
    kind: str
    dpi: tuple[int, int]


@dataclass(slots=True)
class SyntheticDocument:
    pages: list[SyntheticPage] = field(default_factory=list)
    seed: int = 0
    fax_from: str = ""
    fax_to: str = ""

    @property
    def text(self) -> str:
        return "\f".join(p.text for p in self.pages)


def render_page(
    seed: int,
    kind: str | None = None,
    *,
    dpi: tuple[int, int] = FAX_FINE_DPI,
    noise: float = 1.0,
    font: str | None = None,
    point_size: float = 11.0,
    page_no: int = 1,
    page_count: int = 1,
    fax_from: str | None = None,
) -> SyntheticPage:
    """One US Letter typed page, 1-bit at ``dpi`` (x, y).

    ``noise`` 0 gives a clean bilevel page; 1 (default) adds fax speckle, a slight
    skew and a transmission header line like a real received fax.
    """
    rng = random.Random(seed)
    kind = kind or rng.choice(KINDS)
    face = font or rng.choice(FONT_FACES)
    clinic, body = _letter_lines(kind, rng)
    fax_from = fax_from or _phone(rng)

    # Draw at twice the horizontal resolution with square pixels, then resample to
    # the fax grid (non-square when dpi_x != dpi_y) and threshold to 1 bit.
    ss = 2 * dpi[0]
    w, h = round(LETTER_IN[0] * ss), round(LETTER_IN[1] * ss)
    im = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(im)
    pt = ss / 72.0
    f_body = ImageFont.truetype(str(find_font(face)), round(point_size * pt))
    f_bold = ImageFont.truetype(str(find_font(BOLD_FACES.get(face, face))), round(16 * pt))
    f_head = ImageFont.truetype(str(find_font(face)), round(8 * pt))

    lines: list[str] = []
    margin = round(0.9 * ss)
    max_w = w - 2 * margin
    y = round(0.35 * ss)
    header = (
        f"FROM {fax_from}  {_date(rng)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}  P. {page_no}/{page_count}"
    )
    if noise > 0:
        d.text((round(0.3 * ss), y), header, font=f_head, fill=0)
        lines.append(header)
    y = round(0.9 * ss)
    d.text((margin, y), clinic, font=f_bold, fill=0)
    lines.append(clinic)
    y += round(16 * pt * 1.9)
    step = round(point_size * pt * 1.55)
    for para in body:
        if not para:
            y += step
            continue
        for line in _wrap(para, f_body, max_w):
            d.text((margin, y), line, font=f_body, fill=0)
            lines.append(line)
            y += step

    W, H = round(LETTER_IN[0] * dpi[0]), round(LETTER_IN[1] * dpi[1])
    im = im.resize((W, H), Image.Resampling.BOX)
    if noise > 0:
        im = im.rotate(rng.uniform(-0.6, 0.6) * noise, resample=Image.Resampling.BILINEAR, fillcolor=255)
    im = im.point(lambda v: 255 if v >= 150 else 0, mode="1")
    px = im.load() if noise > 0 else None  # load() of an image in memory is never None
    if px is not None:
        for _ in range(int(W * H * 0.0004 * noise)):  # salt-and-pepper specks
            px[rng.randrange(W), rng.randrange(H)] = 0
    im.info["dpi"] = dpi
    return SyntheticPage(image=im, text="\n".join(lines), kind=kind, dpi=dpi)


def render_document(
    seed: int,
    pages: int = 1,
    kinds: Sequence[str] | None = None,
    *,
    dpi: tuple[int, int] = FAX_FINE_DPI,
    noise: float = 1.0,
) -> SyntheticDocument:
    rng = random.Random(seed)
    fax_from = _phone(rng)
    fax_to = _phone(rng)
    out = SyntheticDocument(seed=seed, fax_from=fax_from, fax_to=fax_to)
    for i in range(pages):
        kind = kinds[i % len(kinds)] if kinds else None
        out.pages.append(
            render_page(
                rng.randrange(2**31), kind, dpi=dpi, noise=noise, page_no=i + 1, page_count=pages, fax_from=fax_from
            )
        )
    return out


def render_lines(
    lines: Sequence[str],
    seed: int,
    *,
    dpi: tuple[int, int] = FAX_FINE_DPI,
    noise: float = 1.0,
    point_size: float = 10.0,
    font: str | None = None,
    skew_deg: float | None = None,
    page_no: int = 1,
    page_count: int = 1,
    fax_from: str | None = None,
    kind: str = "",
) -> SyntheticPage:
    """Any page text (e.g. a :mod:`.corpus` page) drawn as a received fax: the first line bold as a
    letterhead, then one text line per line (wrapped), skewed by ``skew_deg`` (default: a
    random slight skew scaled by ``noise``), thresholded to 1 bit and speckled. ``dpi``
    (204, 98) gives the low-resolution "standard" fax mode."""
    rng = random.Random(seed)
    face = font or rng.choice(FONT_FACES)
    fax_from = fax_from or _phone(rng)
    ss = 2 * dpi[0]
    w, h = round(LETTER_IN[0] * ss), round(LETTER_IN[1] * ss)
    im = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(im)
    pt = ss / 72.0
    f_body = ImageFont.truetype(str(find_font(face)), round(point_size * pt))
    f_bold = ImageFont.truetype(str(find_font(BOLD_FACES.get(face, face))), round(14 * pt))
    f_head = ImageFont.truetype(str(find_font(face)), round(8 * pt))
    drawn: list[str] = []
    margin = round(0.8 * ss)
    if noise > 0:
        header = f"FROM {fax_from}  {_date(rng)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}  P. {page_no}/{page_count}"
        d.text((round(0.3 * ss), round(0.3 * ss)), header, font=f_head, fill=0)
        drawn.append(header)
    y = round(0.8 * ss)
    step = round(point_size * pt * 1.5)
    for i, line in enumerate(x for x in lines if x.strip()):
        f = f_bold if i == 0 else f_body
        for part in _wrap(line.replace("\t", "  "), f, w - 2 * margin):
            if y > h - margin:
                break
            d.text((margin, y), part, font=f, fill=0)
            drawn.append(part)
            y += round(14 * pt * 1.6) if i == 0 else step
    W, H = round(LETTER_IN[0] * dpi[0]), round(LETTER_IN[1] * dpi[1])
    im = im.resize((W, H), Image.Resampling.BOX)
    angle = rng.uniform(-0.8, 0.8) * noise if skew_deg is None else skew_deg
    if angle:
        im = im.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=255)
    im = im.point(lambda v: 255 if v >= 150 else 0, mode="1")
    if noise > 0:
        px = im.load()
        if px is not None:
            for _ in range(int(W * H * 0.0004 * noise)):
                px[rng.randrange(W), rng.randrange(H)] = 0
    im.info["dpi"] = dpi
    return SyntheticPage(image=im, text="\n".join(drawn), kind=kind, dpi=dpi)


def render_lines_document(
    pages: Sequence[Sequence[str]],
    seed: int,
    *,
    dpi: tuple[int, int] = FAX_FINE_DPI,
    noise: float = 1.0,
    kinds: Sequence[str] = (),
) -> SyntheticDocument:
    """A multi-page fax from page texts (one list of lines per page), e.g. a packet of corpus pages."""
    rng = random.Random(seed)
    out = SyntheticDocument(seed=seed, fax_from=_phone(rng), fax_to=_phone(rng))
    for i, lines in enumerate(pages):
        out.pages.append(
            render_lines(
                lines,
                rng.randrange(2**31),
                dpi=dpi,
                noise=noise,
                page_no=i + 1,
                page_count=len(pages),
                fax_from=out.fax_from,
                kind=kinds[i] if i < len(kinds) else "",
            )
        )
    return out


# --------------------------------------------------------------------------- files
def _pages(doc: SyntheticDocument | SyntheticPage | Sequence[SyntheticPage]) -> list[SyntheticPage]:
    if isinstance(doc, SyntheticDocument):
        return list(doc.pages)
    if isinstance(doc, SyntheticPage):
        return [doc]
    return list(doc)


def to_tiff_g4(
    doc: SyntheticDocument | SyntheticPage | Sequence[SyntheticPage], *, description: str | None = None
) -> bytes:
    """Multi-page 1-bit TIFF, CCITT Group 4, resolution tags kept (e.g. 204x196); ``description``
    goes into the ImageDescription tag (a fax server's note on the file; the pixels are unchanged)."""
    pages = _pages(doc)
    buf = io.BytesIO()
    first, rest = pages[0], pages[1:]
    extra = {"description": description} if description else {}
    first.image.save(
        buf,
        format="TIFF",
        compression="group4",
        dpi=first.dpi,
        save_all=True,
        append_images=[p.image for p in rest],
        **extra,
    )
    return buf.getvalue()


def to_png(page: SyntheticPage, *, mode: str = "1") -> bytes:
    buf = io.BytesIO()
    page.image.convert(mode).save(buf, format="PNG", dpi=page.dpi)
    return buf.getvalue()


def to_jpeg(page: SyntheticPage, *, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    page.image.convert("L").save(buf, format="JPEG", dpi=page.dpi, quality=quality)
    return buf.getvalue()


def to_image_pdf(
    doc: SyntheticDocument | SyntheticPage | Sequence[SyntheticPage], *, title: str | None = None
) -> bytes:
    """Image-only PDF (no text layer), one G4 image per page, like a fax server's PDF; ``title``
    goes into the document information (/Title), not onto a page."""
    import img2pdf

    # The internal engine writes no /ID (pikepdf's is time-seeded): bytes depend on the seed (and title) only.
    pdf: bytes = img2pdf.convert(
        [to_tiff_g4(p) for p in _pages(doc)], nodate=True, engine=img2pdf.Engine.internal, title=title
    )
    return pdf


def to_text_pdf(doc: SyntheticDocument | SyntheticPage | Sequence[SyntheticPage]) -> bytes:
    """A born-digital PDF with a real text layer (fpdf2, DejaVu embedded), same text.

    Stands in for faxes that EHRs and e-fax services send as generated PDFs.
    """
    from datetime import datetime

    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="letter")
    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=UTC))
    pdf.add_font("DejaVu", "", str(find_font("DejaVuSans.ttf")))
    pdf.set_auto_page_break(False)
    for page in _pages(doc):
        pdf.add_page()
        pdf.set_font("DejaVu", size=10)
        y = 54.0
        for line in page.text.split("\n"):
            pdf.text(54, y, line)
            y += 15.0
    out = pdf.output()
    return bytes(out)


# --------------------------------------------------------------------------- scoring
def word_accuracy(reference: str, hypothesis: str) -> float:
    """1 - (word-level Levenshtein distance / number of reference words), floored at 0."""
    ref = reference.split()
    hyp = hypothesis.split()
    if not ref:
        return 1.0 if not hyp else 0.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, hw in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != hw))
        prev = cur
    return max(0.0, 1.0 - prev[-1] / len(ref))
