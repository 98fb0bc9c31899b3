"""A labelled evaluation set of fax-resolution pages: varied clinical layouts, known text.

Why: the first OCR benchmark page (:func:`.synth.render_page`, an 11 pt letter) is
easy; real faxes are not. Unseen clinical faxes at 204x196 dpi read much worse
(dense consult letters, small print, lab tables, handwriting-like notes) while the
reported confidence stayed high. This module draws such pages, with their true text,
so accuracy and the honesty of the page quality signal can be measured and tested
(``bench/bench_ocr_fax.py``, ``tests/processors/test_fax_ocr_quality.py``). Nothing
here trains anything; the public samples in ``shared/data/fax`` are never used to
build these pages.

Each page is a :class:`PageSpec` (layout, font, size, fax mode, skew, speckle,
threshold, seed) rendered the way a fax machine sees paper: drawn with square
pixels at twice the fax's horizontal resolution, box-filtered down to the fax grid
(204x196 "fine" or 204x98 "standard"/"normal" mode: non-square pixels), rotated by
the skew, thresholded to 1 bit at the spec's level (a low level thins strokes like
a light original, a high one fattens them), then salt-and-pepper speckle. Saved as
CCITT G4 TIFF with the resolution tags, as fax servers deliver it.

Layouts: ``consult_dense`` (multi-paragraph specialist consult letter), ``letter_small``
(short referral letter in 7.5-9 pt), ``lab_table`` (ruled result grid), ``lab_report``
(unruled columns, flags), ``med_list`` (medication reconciliation), ``script_note``
(a note in a handwriting-like font with per-word jitter: the page OCR cannot read,
which must report low quality). Fonts come from Debian packages that ``./pf`` installs:
fonts-dejavu-core/-extra, fonts-liberation2, fonts-urw-base35, fonts-dkg-handwriting.

Deterministic: the same spec gives the same text and the same pixels.

Ground truth is one line per rendered line, table cells joined by single spaces (left
to right, top to bottom), which is the reading order Tesseract produces for a page.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from . import synth
from .synth import FAX_FINE_DPI, FAX_STANDARD_DPI, LETTER_IN, SyntheticPage

#: font file -> Debian package that ships it (for a helpful error message)
FONT_PACKAGES = {
    "DejaVuSans.ttf": "fonts-dejavu-core",
    "DejaVuSerif.ttf": "fonts-dejavu-core",
    "DejaVuSansMono.ttf": "fonts-dejavu-core",
    "DejaVuSansCondensed.ttf": "fonts-dejavu-extra",
    "DejaVuSerifCondensed.ttf": "fonts-dejavu-extra",
    "LiberationSans-Regular.ttf": "fonts-liberation2",
    "LiberationSerif-Regular.ttf": "fonts-liberation2",
    "LiberationMono-Regular.ttf": "fonts-liberation2",
    "NimbusSans-Regular.otf": "fonts-urw-base35",
    "NimbusRoman-Regular.otf": "fonts-urw-base35",
    "NimbusMonoPS-Regular.otf": "fonts-urw-base35",
    "Z003-MediumItalic.otf": "fonts-urw-base35",
    "dkg.ttf": "fonts-dkg-handwriting",
}
_BOLD = {
    "DejaVuSans.ttf": "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf": "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf": "DejaVuSansMono-Bold.ttf",
    "DejaVuSansCondensed.ttf": "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSerifCondensed.ttf": "DejaVuSerifCondensed-Bold.ttf",
    "LiberationSans-Regular.ttf": "LiberationSans-Bold.ttf",
    "LiberationSerif-Regular.ttf": "LiberationSerif-Bold.ttf",
    "LiberationMono-Regular.ttf": "LiberationMono-Bold.ttf",
    "NimbusSans-Regular.otf": "NimbusSans-Bold.otf",
    "NimbusRoman-Regular.otf": "NimbusRoman-Bold.otf",
    "NimbusMonoPS-Regular.otf": "NimbusMonoPS-Bold.otf",
}
LAYOUTS = ("consult_dense", "letter_small", "lab_table", "lab_report", "med_list", "script_note")


class FontMissing(synth.FontMissing):
    pass


def font_path(name: str) -> str:
    try:
        return str(synth.find_font(name))
    except synth.FontMissing as e:
        pkg = FONT_PACKAGES.get(name, "a fonts package")
        raise FontMissing(f"font {name} not found; install the Debian package {pkg} (./pf setup does)") from e


@dataclass(frozen=True, slots=True)
class PageSpec:
    """One evaluation page: what is drawn and how the fax machine degrades it."""

    name: str
    layout: str
    seed: int
    font: str = "DejaVuSans.ttf"
    point_size: float = 10.0
    dpi: tuple[int, int] = FAX_FINE_DPI
    skew_deg: float = 0.3
    speckle: float = 1.0  # 1 = about 0.04 % of pixels flipped to black
    threshold: int = 150  # 0..255 gray level below which a pixel prints black
    header: bool = True  # the fax machine's transmission header line


#: The evaluation set: 14 pages, both fax modes, 10 fonts, 7.5-11 pt.
EVAL_SET: tuple[PageSpec, ...] = (
    PageSpec("consult_serif_10_fine", "consult_dense", 101, "LiberationSerif-Regular.ttf", 10),
    PageSpec("consult_sans_9_std", "consult_dense", 102, "DejaVuSans.ttf", 9, FAX_STANDARD_DPI),
    PageSpec("consult_nimbus_9_skew", "consult_dense", 103, "NimbusSans-Regular.otf", 9, skew_deg=-1.1),
    PageSpec("letter_arial_8_fine", "letter_small", 104, "LiberationSans-Regular.ttf", 8),
    PageSpec("letter_times_8_light", "letter_small", 105, "NimbusRoman-Regular.otf", 8, threshold=115),
    PageSpec("letter_serif_7p5_std", "letter_small", 106, "LiberationSerif-Regular.ttf", 7.5, FAX_STANDARD_DPI),
    PageSpec("lab_table_cond_9", "lab_table", 107, "DejaVuSansCondensed.ttf", 9),
    PageSpec("lab_table_mono_9_std", "lab_table", 108, "NimbusMonoPS-Regular.otf", 9, FAX_STANDARD_DPI),
    PageSpec("lab_report_arial_9_skew", "lab_report", 109, "LiberationSans-Regular.ttf", 9, skew_deg=1.2),
    PageSpec("lab_report_sans_8_dark", "lab_report", 110, "DejaVuSans.ttf", 8, threshold=190),
    PageSpec("med_list_serif_9_noisy", "med_list", 111, "DejaVuSerif.ttf", 9, speckle=3.0),
    PageSpec("med_list_courier_10_std", "med_list", 112, "LiberationMono-Regular.ttf", 10, FAX_STANDARD_DPI),
    PageSpec("script_dkg_10", "script_note", 113, "dkg.ttf", 10),
    PageSpec("script_chancery_10", "script_note", 114, "Z003-MediumItalic.otf", 10),
)


def spec(name: str) -> PageSpec:
    for s in EVAL_SET:
        if s.name == name:
            return s
    raise KeyError(name)


# --------------------------------------------------------------------------- text
_SYMPTOMS = [
    "exertional dyspnea",
    "intermittent palpitations",
    "atypical chest pressure",
    "presyncope on standing",
    "bilateral ankle edema",
    "orthopnea",
]
_HISTORY = [
    "hypertension",
    "type 2 diabetes mellitus",
    "hyperlipidemia",
    "chronic kidney disease stage 3a",
    "obstructive sleep apnea",
    "paroxysmal atrial fibrillation",
    "prior tobacco use",
]
_MEDS = [
    ("metoprolol succinate", "50 mg", "once daily"),
    ("lisinopril", "20 mg", "once daily"),
    ("atorvastatin", "40 mg", "at bedtime"),
    ("apixaban", "5 mg", "twice daily"),
    ("furosemide", "20 mg", "every morning"),
    ("metformin", "1000 mg", "twice daily"),
    ("empagliflozin", "10 mg", "once daily"),
    ("amlodipine", "5 mg", "once daily"),
    ("levothyroxine", "75 mcg", "before breakfast"),
    ("sertraline", "50 mg", "once daily"),
    ("pantoprazole", "40 mg", "before breakfast"),
    ("aspirin", "81 mg", "once daily"),
]
_LABS = [
    ("Sodium", "mmol/L", 128, 149, "136-145", 0),
    ("Potassium", "mmol/L", 3.1, 5.8, "3.5-5.1", 1),
    ("Chloride", "mmol/L", 95, 110, "98-107", 0),
    ("Bicarbonate", "mmol/L", 19, 31, "22-29", 0),
    ("BUN", "mg/dL", 6, 38, "7-20", 0),
    ("Creatinine", "mg/dL", 0.6, 2.1, "0.7-1.3", 2),
    ("eGFR", "mL/min", 28, 110, ">60", 0),
    ("Glucose", "mg/dL", 68, 240, "70-99", 0),
    ("Calcium", "mg/dL", 8.1, 10.9, "8.5-10.2", 1),
    ("Albumin", "g/dL", 2.9, 5.1, "3.5-5.0", 1),
    ("ALT", "U/L", 8, 95, "7-56", 0),
    ("AST", "U/L", 9, 88, "10-40", 0),
    ("Hemoglobin", "g/dL", 9.1, 17.2, "13.5-17.5", 1),
    ("Hematocrit", "%", 28, 51, "38.8-50.0", 1),
    ("Platelets", "K/uL", 98, 460, "150-400", 0),
    ("WBC", "K/uL", 2.9, 14.1, "4.0-11.0", 1),
    ("TSH", "mIU/L", 0.2, 7.9, "0.4-4.0", 2),
    ("NT-proBNP", "pg/mL", 40, 4100, "<125", 0),
    ("Troponin I", "ng/L", 2, 64, "<34", 0),
    ("LDL cholesterol", "mg/dL", 48, 190, "<100", 0),
]


def _fmt(v: float, nd: int) -> str:
    return f"{v:.{nd}f}"


def _consult_paragraphs(rng: random.Random) -> list[str]:
    patient, dob = synth._person(rng), synth._dob(rng)
    age = rng.randint(41, 88)
    ef_lo = rng.choice([25, 30, 35, 40, 45, 50])
    hist = rng.sample(_HISTORY, 3)
    meds = rng.sample(_MEDS, 4)
    sym = rng.sample(_SYMPTOMS, 2)
    bp = f"{rng.randint(104, 168)}/{rng.randint(58, 98)}"
    hr = rng.randint(52, 118)
    bnp = rng.randint(180, 3900)
    return [
        f"RE: {patient}, DOB {dob}, MRN {rng.randint(1000000, 9999999)}",
        f"Dear Dr. {rng.choice(synth._LAST)},",
        (
            f"Thank you for referring this {age}-year-old patient with {hist[0]}, {hist[1]} and {hist[2]}, "
            f"who presents with {sym[0]} and {sym[1]} over the past {rng.randint(2, 11)} months. "
            f"Symptoms are worse after meals and when climbing {rng.randint(1, 3)} flights of stairs. "
            "There is no history of syncope, stroke or bleeding."
        ),
        (
            f"On examination blood pressure was {bp} mmHg, heart rate {hr} beats per minute and irregular, "
            f"oxygen saturation {rng.randint(91, 99)}% on room air. Jugular venous pressure was raised at "
            f"{rng.randint(6, 12)} cm and there was a soft systolic murmur at the apex."
        ),
        (
            f"The ECG showed atrial fibrillation with a ventricular rate of {hr} and left bundle branch block "
            f"(QRS {rng.randint(122, 168)} ms). Echocardiography showed a dilated left ventricle with an "
            f"ejection fraction of {ef_lo}-{ef_lo + 5}%, moderate mitral regurgitation and estimated "
            f"pulmonary artery pressure of {rng.randint(28, 55)} mmHg. NT-proBNP was {bnp:,} pg/mL."
        ),
        "Current medications: "
        + "; ".join(f"{n} {d} {f}" for n, d, f in meds)
        + f". Allergies: {rng.choice(['penicillin (rash)', 'no known drug allergies', 'sulfa drugs (hives)'])}.",
        (
            f"Impression: heart failure with reduced ejection fraction, NYHA class {rng.choice(['II', 'III'])}, "
            f"probably tachycardia mediated. Plan: increase {meds[0][0]} to {rng.choice(['75', '100'])} mg daily, "
            f"start sacubitril/valsartan 24/26 mg twice daily after a 36-hour washout of {meds[1][0]}, "
            f"repeat renal function and potassium in {rng.randint(1, 2)} weeks, and arrange a Holter monitor. "
            "I will review the patient in clinic in six weeks with a repeat echocardiogram."
        ),
        "Please do not hesitate to contact me with any questions.",
        f"Yours sincerely, Dr. {synth._person(rng)}, MD, FACC",
    ]


def _letter_paragraphs(rng: random.Random) -> list[str]:
    patient, dob = synth._person(rng), synth._dob(rng)
    spec_, reason, test = rng.choice(synth._SPECIALTIES)
    med = rng.choice(_MEDS)
    return [
        f"Date: {synth._date(rng)}   To: {spec_} Clinic   Fax: {synth._phone(rng)}",
        f"Patient: {patient}   DOB: {dob}   Phone: {synth._phone(rng)}",
        (
            f"Reason for referral: {reason}. Onset {rng.randint(2, 30)} weeks ago; "
            f"not improved with {med[0]} {med[1]} {med[2]}. Please evaluate and consider {test}."
        ),
        (
            f"Relevant history: {', '.join(rng.sample(_HISTORY, 2))}. Last A1c {_fmt(rng.uniform(5.4, 9.8), 1)}%, "
            f"creatinine {_fmt(rng.uniform(0.6, 1.9), 2)} mg/dL on {synth._date(rng)}."
        ),
        (
            f"Insurance: {rng.choice(synth._PAYERS)}, ID {rng.randint(10**8, 10**9 - 1)}, "
            f"authorization {rng.choice(['pending', 'attached', 'not required'])}."
        ),
        f"Urgency: {rng.choice(['routine', 'urgent (within 2 weeks)', 'soon (within 4 weeks)'])}.",
        f"Referring provider: Dr. {synth._person(rng)}, NPI {rng.randint(10**9, 2 * 10**9 - 1)}",
    ]


def _lab_rows(rng: random.Random, n: int) -> list[list[str]]:
    rows = []
    for name, unit, lo, hi, ref, nd in rng.sample(_LABS, n):
        v = rng.uniform(lo, hi)
        s = _fmt(v, nd)
        flag = ""
        try:
            a, b = (float(x) for x in ref.split("-"))
            flag = "H" if v > b else "L" if v < a else ""
        except ValueError:
            pass
        rows.append([name, s, flag, unit, ref])
    return rows


def _script_paragraphs(rng: random.Random) -> list[str]:
    patient = synth._person(rng)
    med = rng.choice(_MEDS)
    return [
        f"Phone note {synth._date(rng)} - {patient}",
        f"Pt called re {rng.choice(_SYMPTOMS)} since {rng.choice(['Monday', 'Tuesday', 'the weekend'])}.",
        f"Taking {med[0]} {med[1]} {med[2]}, ran out {rng.randint(2, 6)} days ago.",
        f"BP at home {rng.randint(120, 170)}/{rng.randint(70, 100)}, no chest pain, no fever.",
        f"Plan: refill sent to pharmacy, recheck in {rng.randint(1, 3)} weeks,",
        "call back sooner if worse or any new symptoms.",
        f"Spoke with daughter, number {synth._phone(rng)}.",
        f"Signed {synth._person(rng)} RN",
    ]


# --------------------------------------------------------------------------- drawing
class _Canvas:
    """Draws lines of text on a square-pixel page and records the true text."""

    def __init__(self, s: PageSpec, rng: random.Random):
        self.spec, self.rng = s, rng
        self.ss = 2 * s.dpi[0]  # supersampled square resolution
        self.w, self.h = round(LETTER_IN[0] * self.ss), round(LETTER_IN[1] * self.ss)
        self.im = Image.new("L", (self.w, self.h), 255)
        self.d = ImageDraw.Draw(self.im)
        self.pt = self.ss / 72.0
        self.body = ImageFont.truetype(font_path(s.font), round(s.point_size * self.pt))
        bold = _BOLD.get(s.font, s.font)
        self.bold = ImageFont.truetype(font_path(bold), round(max(13.0, s.point_size * 1.5) * self.pt))
        self.margin = round(0.75 * self.ss)
        self.max_w = self.w - 2 * self.margin
        self.step = round(s.point_size * self.pt * 1.32)
        self.y = round(0.35 * self.ss)
        self.lines: list[str] = []

    def header(self, text: str) -> None:
        f = ImageFont.truetype(font_path("DejaVuSans.ttf"), round(8 * self.pt))
        self.d.text((round(0.3 * self.ss), self.y), text, font=f, fill=0)
        self.lines.append(text)

    def title(self, text: str) -> None:
        self.y = max(self.y, round(0.8 * self.ss))
        self.d.text((self.margin, self.y), text, font=self.bold, fill=0)
        self.lines.append(text)
        self.y += round(self.bold.size * 1.7)

    def para(self, text: str, *, jitter: bool = False) -> None:
        for line in synth._wrap(text, self.body, self.max_w - (round(0.3 * self.ss) if jitter else 0)):
            if jitter:
                self._jittered(line)
            else:
                self.d.text((self.margin, self.y), line, font=self.body, fill=0)
            self.lines.append(line)
            self.y += self.step

    def _jittered(self, line: str) -> None:
        """Handwriting-like: each word on its own wobbling baseline, uneven spacing."""
        x: float = self.margin + self.rng.randint(0, round(0.1 * self.ss))
        space = self.body.getlength(" ")
        for word in line.split(" "):
            dy = self.rng.randint(-round(0.012 * self.ss), round(0.012 * self.ss))
            self.d.text((x, self.y + dy), word, font=self.body, fill=0)
            x += self.body.getlength(word) + space * self.rng.uniform(0.8, 1.6)

    def gap(self, k: float = 0.6) -> None:
        self.y += round(self.step * k)

    def table(self, rows: list[list[str]], cols: list[float], *, ruled: bool) -> None:
        """Rows of cells at fractional column positions; optional grid rules."""
        x0, x1 = self.margin, self.w - self.margin
        xs = [x0 + round(c * (x1 - x0)) for c in cols]
        pad = round(0.04 * self.ss)
        lw = max(1, round(self.pt))  # 1 pt rules, as office tables print them
        row_h = self.step + 2 * pad
        top = self.y
        for r in rows:
            for x, cell in zip(xs, r, strict=False):  # a short row leaves its last cells empty
                if cell:
                    self.d.text((x + pad, self.y + pad), cell, font=self.body, fill=0)
            self.lines.append(" ".join(c for c in r if c))
            self.y += row_h
            if ruled:
                self.d.line([(x0, self.y), (x1, self.y)], fill=0, width=lw)
        if ruled:
            self.d.line([(x0, top), (x1, top)], fill=0, width=lw)
            for x in [*xs, x1]:
                self.d.line([(x, top), (x, self.y)], fill=0, width=lw)
        self.y += pad


def _draw(s: PageSpec, rng: random.Random) -> _Canvas:
    c = _Canvas(s, rng)
    if s.header:
        c.header(
            f"FROM {synth._phone(rng)}  {synth._date(rng)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}  P. 1/1"
        )
    clinic = rng.choice(synth._CLINICS)
    if s.layout == "consult_dense":
        c.title(f"{rng.choice(['Cardiology', 'Heart and Vascular'])} Consultation")
        c.para(f"{clinic}, {rng.randint(100, 9999)} Main Street, Suite {rng.randint(100, 499)}")
        c.gap()
        for p in _consult_paragraphs(rng):
            c.para(p)
            c.gap(0.5)
    elif s.layout == "letter_small":
        c.title(clinic)
        c.para("REFERRAL FOR SPECIALIST CONSULTATION")
        c.gap()
        for p in _letter_paragraphs(rng):
            c.para(p)
            c.gap(0.4)
        c.gap()
        c.para(
            "CONFIDENTIALITY NOTICE: this facsimile contains protected health information. If you received it "
            "in error, notify the sender by telephone and destroy all copies. Redisclosure is prohibited."
        )
    elif s.layout in ("lab_table", "lab_report"):
        c.title(rng.choice(["Regional Reference Laboratory", "Valley Clinical Laboratories"]))
        c.para(f"Patient: {synth._person(rng)}   DOB: {synth._dob(rng)}   Sex: {rng.choice(['F', 'M'])}")
        c.para(f"Collected: {synth._date(rng)}   Accession: {rng.choice('ABCDEFGH')}{rng.randint(10**6, 10**7 - 1)}")
        c.para(f"Ordering: Dr. {synth._person(rng)}   {clinic}")
        c.gap()
        head = ["Test", "Result", "Flag", "Units", "Reference"]
        cols = [0.0, 0.36, 0.52, 0.62, 0.80]
        c.table([head, *_lab_rows(rng, 14 if s.layout == "lab_table" else 16)], cols, ruled=s.layout == "lab_table")
        c.gap()
        c.para("H = above reference range, L = below. Critical values were telephoned to the ordering office.")
        c.para(f"Verified by {synth._person(rng)}, MLS(ASCP), {synth._date(rng)}")
    elif s.layout == "med_list":
        c.title("Medication Reconciliation")
        c.para(f"Patient: {synth._person(rng)}   DOB: {synth._dob(rng)}   Allergies: penicillin, latex")
        c.gap()
        rows = [["Medication", "Dose", "Frequency", "Started"]]
        for n, d, f in rng.sample(_MEDS, 10):
            rows.append([n, d, f, synth._date(rng)])
        c.table(rows, [0.0, 0.38, 0.52, 0.78], ruled=False)
        c.gap()
        c.para(
            f"Discontinued: {rng.choice(_MEDS)[0]} (side effects), {rng.choice(_MEDS)[0]} (no longer indicated). "
            f"Reviewed with the patient on {synth._date(rng)}; pharmacy {synth._phone(rng)}."
        )
    elif s.layout == "script_note":
        c.title(clinic)
        for p in _script_paragraphs(rng):
            c.para(p, jitter=True)
            c.gap(0.5)
    else:
        raise ValueError(f"unknown layout {s.layout!r}; expected one of {LAYOUTS}")
    return c


def render(s: PageSpec) -> SyntheticPage:
    """The page for ``s``: 1-bit image at the fax resolution + its true text."""
    rng = random.Random(s.seed)
    c = _draw(s, rng)
    W, H = round(LETTER_IN[0] * s.dpi[0]), round(LETTER_IN[1] * s.dpi[1])
    im = c.im.resize((W, H), Image.Resampling.BOX)
    if s.skew_deg:
        im = im.rotate(s.skew_deg, resample=Image.Resampling.BILINEAR, fillcolor=255)
    level = s.threshold
    im = im.point(lambda v: 255 if v >= level else 0, mode="1")
    px = im.load() if s.speckle > 0 else None  # load() of an image in memory is never None
    if px is not None:
        for _ in range(int(W * H * 0.0004 * s.speckle)):
            px[rng.randrange(W), rng.randrange(H)] = 0
    im.info["dpi"] = s.dpi
    return SyntheticPage(image=im, text="\n".join(c.lines), kind=s.layout, dpi=s.dpi)


def render_all(specs: Iterable[PageSpec] = EVAL_SET) -> list[tuple[PageSpec, SyntheticPage]]:
    return [(s, render(s)) for s in specs]


def to_tiff_g4(page: SyntheticPage) -> bytes:
    """The page as a fax server stores it: 1-bit CCITT G4 TIFF, resolution tags kept."""
    buf = io.BytesIO()
    page.image.save(buf, format="TIFF", compression="group4", dpi=page.dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------- scoring
def bag_recall(reference: str, hypothesis: str) -> float:
    """Share of reference words found in the OCR text, order ignored (multiset recall).

    Complements :func:`.synth.word_accuracy` (order-sensitive, 1 - word error rate) on
    table pages, where reading order (row by row vs column by column) is not an error
    a reader of the text would notice.
    """
    from collections import Counter

    ref, hyp = Counter(reference.split()), Counter(hypothesis.split())
    n = sum(ref.values())
    return 1.0 if n == 0 else sum(min(c, hyp[w]) for w, c in ref.items()) / n


__all__ = ["EVAL_SET", "LAYOUTS", "PageSpec", "bag_recall", "font_path", "render", "render_all", "spec", "to_tiff_g4"]
