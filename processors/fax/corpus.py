"""A labelled corpus of fax page texts for training and evaluating the fax classifier.

Why generated: real inbound faxes are PHI and cannot ship with an open-source project,
and the public documents in ``shared/data/fax`` are kept for evaluation only (they are
never read here). So the project writes its own pages: for every class of the label set
(``CLASSES``, the labels of ``shared/data/fax/SOURCES.md``) several finer kinds that staff
care about (``KINDS``: a PA approval / denial / request for more information, records we
are asked for vs records sent to us, insurance correspondence, ...), each kind mapping onto
exactly one class. Each kind has several layouts (letter, form, table, terse key: value
sheet), and every page varies its senders, field order, labels, letterheads, dates and
people; multi-page documents produce continuation pages labelled with their document's
class, because the worker classifies every page of a packet.

What a page goes through on the way to the classifier is simulated at the text level
(:func:`ocr_noise`): Tesseract's usual confusions (``l/1/I``, ``O/0``, ``rn/m``, ``e/c``),
dropped and split words, speckle read as stray punctuation, lines lost to skew, and a fax
machine's transmission header. Rendering and OCRing thousands of pages would cost an hour
of CPU per training run; :func:`practiceflow.processors.fax.synth.render_lines` draws any
of these pages as a real fax image (skew, speckle, 204x98 low resolution) for the
end-to-end tests and the OCR-level evaluation.

Held-out generalisation: the ``heldout`` split draws its senders (clinics, payers,
pharmacies, labs) from a disjoint half of each name list and uses other seeds, so a
model that memorised a letterhead does not score well on it.

Deterministic: the same (split, seed, n) gives the same pages, hence the same
:func:`corpus_hash`, which names the trained model.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

CLASSES: tuple[str, ...] = (
    "lab_result",
    "referral",
    "prior_auth_response",
    "records_request",
    "refill_request",
    "marketing",
    "cover_sheet",
    "blank_form",
    "other_clinical",
)

#: fine kind -> class (each kind maps onto exactly one class)
KINDS: dict[str, str] = {
    "lab.chemistry": "lab_result",
    "lab.hematology": "lab_result",
    "lab.imaging_report": "lab_result",
    "lab.pathology": "lab_result",
    "referral.incoming": "referral",
    "referral.form": "referral",
    "referral.consult_reply": "referral",
    "pa.approved": "prior_auth_response",
    "pa.denied": "prior_auth_response",
    "pa.more_info": "prior_auth_response",
    "pa.pending": "prior_auth_response",
    "records.requested_from_us": "records_request",
    "records.sent_to_us": "records_request",
    "refill.renewal": "refill_request",
    "refill.change": "refill_request",
    "marketing.advert": "marketing",
    "marketing.scam": "marketing",
    "marketing.junk": "marketing",
    "cover.medical": "cover_sheet",
    "cover.business": "cover_sheet",
    "blank.authorization": "blank_form",
    "blank.intake": "blank_form",
    "blank.claim_form": "blank_form",
    "clinical.progress_note": "other_clinical",
    "clinical.discharge_summary": "other_clinical",
    "clinical.prescription_note": "other_clinical",
    "clinical.pa_request": "other_clinical",
    "insurance.eob": "other_clinical",
    "insurance.eligibility": "other_clinical",
    "insurance.correspondence": "other_clinical",
}

__all__ = ["CLASSES", "KINDS", "LabelledPage", "generate", "ocr_noise", "corpus_hash", "PracticeNames"]


# --------------------------------------------------------------------------- names
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
    "Aisha",
    "Omar",
    "Mei",
    "Wei",
    "Priya",
    "Raj",
    "Sofia",
    "Luis",
    "Grace",
    "Ethan",
    "Chloe",
    "Noah",
    "Emma",
    "Liam",
    "Ava",
    "Mason",
    "Zoe",
    "Lucas",
    "Nora",
    "Elena",
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
    "Kim",
    "Okafor",
    "Schmidt",
    "Rossi",
    "Haddad",
    "Ivanova",
    "Tanaka",
    "Lopez",
    "Brooks",
    "Price",
    "Reyes",
    "Murphy",
    "Stone",
    "Ward",
]
_CLINICS = [
    "Riverside Family Medicine",
    "Oak Valley Internal Medicine",
    "Lakeshore Pediatrics",
    "Summit Primary Care",
    "Greenfield Medical Group",
    "Cedar Ridge Cardiology",
    "Bayview Orthopedics",
    "Northgate Gastroenterology",
    "Harbor Neurology Associates",
    "Maple Endocrine Center",
    "Westside Urgent Care",
    "Pinehurst Women's Health",
    "St. Agnes Medical Center",
    "Valley General Hospital",
    "Mercy Regional Health",
    "Unity Community Clinic",
    "Hillcrest Dermatology",
    "Blue Lake Pulmonary",
    "Crossroads Rheumatology",
    "Fairview Oncology Institute",
]
_LABS = [
    "Quest Diagnostics",
    "LabCorp",
    "Regional Reference Laboratory",
    "Sonora Clinical Labs",
    "BioPath Laboratories",
    "Metro Pathology Group",
    "Valley Imaging Center",
    "Advanced Radiology Partners",
    "Central Lab Services",
    "Precision Diagnostics",
]
_PAYERS = [
    "Blue Harbor Health Plan",
    "Crescent Mutual Insurance",
    "Northway Care Alliance",
    "Pinecrest Health Partners",
    "Aetna",
    "UnitedHealthcare",
    "Cigna Healthcare",
    "Humana",
    "Anthem Blue Cross",
    "Molina Healthcare",
    "Kaiser Permanente",
    "CareFirst BlueCross",
    "Medicare Advantage Plus",
    "State Medicaid Program",
    "Express Scripts",
    "OptumRx",
    "CVS Caremark",
]
_PHARMACIES = [
    "CVS Pharmacy #4417",
    "Walgreens #10293",
    "Rite Aid #552",
    "Kroger Pharmacy",
    "Costco Pharmacy",
    "Main Street Drug",
    "Safeway Pharmacy #1188",
    "Walmart Pharmacy 10-2231",
    "Publix Pharmacy",
    "Good Neighbor Pharmacy",
    "Hometown Apothecary",
    "Express Mail Pharmacy",
]
_VENDORS = [
    "MedSupply Direct",
    "Premier Practice Solutions",
    "VacationClub Rewards",
    "HealthTech Billing Pros",
    "OfficeMax Toner Outlet",
    "National Physician Directory",
    "Summit Capital Lending",
    "GlobalTravel Deals",
    "CME Conferences Inc.",
    "Wellness Marketing Group",
]
_BUSINESS = [
    "Lorimar Tobacco Company",
    "Harper & Lowe LLP",
    "Roper Research Group",
    "Atlas Shipping Co.",
    "Delta Consulting",
    "Brightline Insurance Brokers",
    "Keystone Realty",
    "Northern Paper Mills",
    "Acme Industrial Supply",
    "Westfield Bank",
]
_AUTH_LEGAL = [
    "I understand that I may revoke this authorization in writing at any time, except to the extent action has been taken.",
    "This authorization expires one year from the date signed unless otherwise specified.",
    "I understand that information disclosed may be redisclosed by the recipient and no longer protected by federal law.",
    "Treatment, payment or eligibility for benefits will not be conditioned on my signing this authorization.",
    "I understand that I am entitled to a copy of this authorization.",
    "A photocopy or facsimile of this authorization is as valid as the original.",
    "I acknowledge that I have received the Notice of Privacy Practices.",
    "Specially protected information will not be released unless specifically initialed: ____",
    "Fees may apply for copies of records in accordance with state law.",
    "If signed by a legal representative, attach documentation of authority.",
]
_SPECIALTIES = [
    ("Cardiology", "exertional chest pain and palpitations", "ECG and echocardiogram"),
    ("Gastroenterology", "chronic epigastric pain and iron deficiency", "upper endoscopy"),
    ("Neurology", "recurrent headaches with visual aura", "MRI of the brain"),
    ("Orthopedics", "persistent right knee pain after a fall", "MRI of the right knee"),
    ("Endocrinology", "poorly controlled type 2 diabetes", "insulin titration"),
    ("Pulmonology", "chronic cough and abnormal chest CT", "pulmonary function testing"),
    ("Oncology", "suspicious breast mass on mammogram", "core needle biopsy"),
    ("Rheumatology", "inflammatory polyarthritis with positive RF", "biologic therapy evaluation"),
    ("Dermatology", "changing pigmented lesion on the back", "excisional biopsy"),
    ("Nephrology", "declining eGFR and proteinuria", "renal ultrasound"),
    ("Urology", "microscopic hematuria", "cystoscopy"),
    ("Psychiatry", "treatment-resistant depression", "medication management"),
]
_LAB_TESTS = [
    ("Hemoglobin", "g/dL", 9.5, 17.5, "13.5-17.5", 1),
    ("Hematocrit", "%", 30, 52, "38.8-50.0", 1),
    ("WBC", "K/uL", 2.5, 15.0, "4.0-11.0", 1),
    ("Platelets", "K/uL", 90, 480, "150-400", 0),
    ("Sodium", "mmol/L", 128, 149, "135-145", 0),
    ("Potassium", "mmol/L", 3.0, 5.9, "3.5-5.1", 1),
    ("Chloride", "mmol/L", 95, 110, "98-107", 0),
    ("BUN", "mg/dL", 5, 40, "7-20", 0),
    ("Creatinine", "mg/dL", 0.5, 2.4, "0.7-1.3", 2),
    ("Glucose", "mg/dL", 65, 260, "70-99", 0),
    ("Hemoglobin A1c", "%", 4.8, 11.0, "4.0-5.6", 1),
    ("TSH", "mIU/L", 0.1, 8.0, "0.4-4.0", 2),
    ("LDL Cholesterol", "mg/dL", 60, 210, "<100", 0),
    ("ALT", "U/L", 8, 120, "7-56", 0),
    ("AST", "U/L", 8, 110, "10-40", 0),
    ("CRP", "mg/L", 0.2, 45, "<5.0", 1),
    ("Ferritin", "ng/mL", 8, 400, "24-336", 0),
    ("Vitamin D, 25-OH", "ng/mL", 8, 70, "30-100", 0),
    ("INR", "", 0.9, 4.2, "0.8-1.2", 1),
    ("eGFR", "mL/min/1.73m2", 25, 110, ">60", 0),
]
_DRUGS = [
    ("lisinopril", "10 mg", "tablet", "hypertension"),
    ("metformin", "500 mg", "tablet", "type 2 diabetes"),
    ("atorvastatin", "40 mg", "tablet", "hyperlipidemia"),
    ("levothyroxine", "75 mcg", "tablet", "hypothyroidism"),
    ("amlodipine", "5 mg", "tablet", "hypertension"),
    ("sertraline", "50 mg", "tablet", "depression"),
    ("omeprazole", "20 mg", "capsule", "GERD"),
    ("albuterol HFA", "90 mcg/actuation", "inhaler", "asthma"),
    ("losartan", "50 mg", "tablet", "hypertension"),
    ("gabapentin", "300 mg", "capsule", "neuropathy"),
    ("apixaban", "5 mg", "tablet", "atrial fibrillation"),
    ("semaglutide", "1 mg/0.75 mL", "pen", "type 2 diabetes"),
    ("adalimumab", "40 mg/0.4 mL", "pen", "rheumatoid arthritis"),
    ("montelukast", "10 mg", "tablet", "asthma"),
    ("hydrochlorothiazide", "25 mg", "tablet", "hypertension"),
]
_PROCEDURES = [
    ("MRI lumbar spine without contrast", "72148"),
    ("CT abdomen and pelvis with contrast", "74177"),
    ("Physical therapy, 12 visits", "97110"),
    ("Sleep study, attended", "95810"),
    ("Echocardiogram, transthoracic", "93306"),
    ("Colonoscopy, diagnostic", "45378"),
    ("MRI brain with and without contrast", "70553"),
    ("Total knee arthroplasty", "27447"),
]


@dataclass(frozen=True, slots=True)
class PracticeNames:
    """Who a fax is addressed to: the receiving practice and its providers (for misdirection)."""

    practice: str
    providers: tuple[str, ...]
    fax: str


@dataclass(frozen=True, slots=True)
class LabelledPage:
    """One page's true text and label (``label`` = ``KINDS[kind]``)."""

    text: str
    label: str
    kind: str
    doc: int
    page_no: int
    page_count: int


class _Ctx:
    """The people and organisations of one document, drawn from the split's name pools."""

    def __init__(self, rng: random.Random, half: int) -> None:
        def pool(names: Sequence[str]) -> list[str]:
            return [n for i, n in enumerate(names) if i % 2 == half] or list(names)

        self.rng = rng
        self.patient = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        self.dob = _date(rng, 1935, 2015)
        self.mrn = rng.choice(["", "MRN", "A", "P"]) + str(rng.randint(10000, 9999999))
        self.member = rng.choice(["", "W", "XYZ", "MEM", "H"]) + str(rng.randint(10**7, 10**10))
        self.clinic = rng.choice(pool(_CLINICS))
        self.lab = rng.choice(pool(_LABS))
        self.payer = rng.choice(pool(_PAYERS))
        self.pharmacy = rng.choice(pool(_PHARMACIES))
        self.vendor = rng.choice(pool(_VENDORS))
        self.business = rng.choice(pool(_BUSINESS))
        self.doctor = f"Dr. {rng.choice(_FIRST)} {rng.choice(_LAST)}"
        self.recipient = f"Dr. {rng.choice(_FIRST)} {rng.choice(_LAST)}"
        self.our_practice = rng.choice(pool(_CLINICS))
        self.phone = _phone(rng)
        self.fax = _phone(rng)
        self.date = _date(rng, 2023, 2026)


def _phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
    return rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"1-{a}-{b}-{c}"])


_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def _date(rng: random.Random, lo: int, hi: int) -> str:
    y, m, d = rng.randint(lo, hi), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{_MONTHS[m - 1]} {d}, {y}"])


def _kv(rng: random.Random, pairs: list[tuple[str, str]], *, shuffle: bool = True) -> list[str]:
    """Key/value lines in one of a few visual styles."""
    if shuffle and rng.random() < 0.4:
        pairs = pairs[:]
        rng.shuffle(pairs)
    sep = rng.choice([": ", ":  ", " - ", ":\t", ": "])
    upper = rng.random() < 0.25
    return [f"{k.upper() if upper else k}{sep}{v}" for k, v in pairs]


def _pick(rng: random.Random, *options: str) -> str:
    return rng.choice(options)


def _footer(rng: random.Random) -> list[str]:
    if rng.random() < 0.5:
        return [
            _pick(
                rng,
                "CONFIDENTIALITY NOTICE: This facsimile contains protected health information. If you received it "
                "in error, notify the sender and destroy all copies.",
                "The information in this fax is confidential and intended only for the named recipient.",
                "This message may contain privileged information protected by HIPAA. Unauthorized disclosure is "
                "prohibited.",
            )
        ]
    return []


def _patient_block(rng: random.Random, c: _Ctx, *, member: bool = False) -> list[tuple[str, str]]:
    pairs = [
        (_pick(rng, "Patient", "Patient Name", "Name", "Pt"), c.patient),
        (_pick(rng, "DOB", "Date of Birth", "Birth Date"), c.dob),
    ]
    if member:
        pairs.append((_pick(rng, "Member ID", "Member #", "Subscriber ID", "ID"), c.member))
    elif rng.random() < 0.7:
        pairs.append((_pick(rng, "MRN", "Medical Record #", "Chart #", "Patient ID"), c.mrn))
    return pairs


# --------------------------------------------------------------------------- templates
def _lab(rng: random.Random, c: _Ctx, kind: str) -> list[str]:
    head = [c.lab, _pick(rng, "Clinical Laboratory", "Laboratory Report", "FINAL REPORT", "Results Report")]
    head += _kv(
        rng,
        _patient_block(rng, c)
        + [
            (_pick(rng, "Ordering Physician", "Ordering Provider", "Physician"), c.recipient),
            (_pick(rng, "Collected", "Collection Date", "Specimen Collected"), c.date),
            (_pick(rng, "Reported", "Report Date", "Resulted"), c.date),
            (_pick(rng, "Accession", "Specimen ID", "Lab #"), f"{rng.choice('ABCDEFGH')}{rng.randint(100000, 999999)}"),
        ],
    )
    if kind in ("lab.chemistry", "lab.hematology"):
        panel = _pick(
            rng,
            "COMPREHENSIVE METABOLIC PANEL",
            "CBC WITH DIFFERENTIAL",
            "LIPID PANEL",
            "BASIC METABOLIC PANEL",
            "THYROID PANEL",
            "HEMOGLOBIN A1C",
            "CHEMISTRY",
        )
        rows = [
            _pick(
                rng,
                "Test  Result  Flag  Units  Reference Range",
                "TEST NAME    RESULT    UNITS    REF RANGE    FLAG",
                "Component Value Ref Range Units",
                "Analyte | Result | Reference Interval",
            )
        ]
        for name, unit, lo, hi, ref, nd in rng.sample(_LAB_TESTS, rng.randint(3, 10)):
            v = rng.uniform(lo, hi)
            flag = rng.choice(["", "", "", "H", "L", "HIGH", "LOW", "A", "CRIT"])
            rows.append(
                f"{name}  {v:.{nd}f}  {flag}  {unit}  {ref}".replace("  ", rng.choice(["  ", " ", "   ", " | "]))
            )
        tail = [
            _pick(
                rng,
                "Abnormal results are flagged H (high) or L (low).",
                "Results verified by laboratory director.",
                "Specimen: serum. Fasting: yes.",
                "END OF REPORT",
                "Critical values called to the office.",
            )
        ]
        return head + [panel] + rows + tail
    if kind == "lab.imaging_report":
        study = _pick(
            rng,
            "CT CHEST WITHOUT CONTRAST",
            "MRI LUMBAR SPINE",
            "ULTRASOUND ABDOMEN",
            "XR CHEST 2 VIEWS",
            "UPPER ENDOSCOPY (EGD)",
            "COLONOSCOPY REPORT",
            "MAMMOGRAM SCREENING BILATERAL",
            "DEXA SCAN",
        )
        return head + [
            _pick(rng, "EXAM:", "PROCEDURE:", "STUDY:") + f" {study}",
            _pick(rng, "CLINICAL HISTORY:", "INDICATION:", "REASON FOR EXAM:") + " " + rng.choice(_SPECIALTIES)[1],
            _pick(rng, "FINDINGS:", "FINDINGS", "Findings:"),
            _pick(
                rng,
                "There is a 6 mm nodule in the right upper lobe.",
                "Mild degenerative disc disease at L4-L5.",
                "The liver is normal in size without focal lesion.",
                "Mild erythema of the gastric antrum; biopsies taken.",
                "No acute cardiopulmonary process.",
                "Two small sessile polyps removed from the sigmoid colon.",
            ),
            _pick(rng, "IMPRESSION:", "IMPRESSION", "Conclusion:"),
            _pick(
                rng,
                "Follow-up CT in 6 to 12 months recommended.",
                "No acute findings.",
                "BI-RADS 2: benign.",
                "Findings consistent with mild gastritis.",
                "Osteopenia of the lumbar spine, T-score -1.8.",
            ),
            f"Electronically signed by {c.doctor}, {_pick(rng, 'MD', 'DO')}, Radiology on {c.date}",
        ]
    return head + [
        "SURGICAL PATHOLOGY REPORT",
        _pick(rng, "SPECIMEN:", "Specimen(s) received:")
        + " "
        + _pick(rng, "skin, back, shave biopsy", "colon polyp", "breast, left, core biopsy", "stomach, antrum, biopsy"),
        _pick(rng, "GROSS DESCRIPTION:", "Gross:")
        + f" received in formalin, {rng.randint(2, 12)} mm in greatest dimension.",
        _pick(rng, "MICROSCOPIC:", "Microscopic description:")
        + " sections show "
        + _pick(
            rng,
            "tubular adenoma without high-grade dysplasia.",
            "benign compound nevus.",
            "invasive ductal carcinoma, grade 2.",
            "chronic gastritis, H. pylori negative.",
        ),
        _pick(rng, "DIAGNOSIS:", "FINAL DIAGNOSIS:") + " see above.",
        f"Pathologist: {c.doctor}",
    ]


def _referral(rng: random.Random, c: _Ctx, kind: str) -> list[str]:
    spec, reason, test = rng.choice(_SPECIALTIES)
    drug = rng.choice(_DRUGS)
    if kind == "referral.form" and rng.random() < 0.4:
        return [
            _pick(
                rng,
                "PATIENT REFERRAL FORM",
                "Inter-facility Referral Form",
                "Referral and Transfer Form",
                "Patient Referral Form",
            ),
            f"Date: {c.date}   {_pick(rng, 'Page 1 of 2', 'Page 1', '')}",
            f"{_pick(rng, 'Referral to', 'Receiving facility', 'Referred to')}: {c.our_practice}",
            f"{_pick(rng, 'Referral from', 'Referring facility', 'Sending facility')}: {c.clinic}",
            f"Referring clinician: {c.doctor}   Contact: {_phone(rng)}",
            *_kv(rng, _patient_block(rng, c) + [("Age", str(rng.randint(1, 90))), ("Sex", _pick(rng, "M", "F"))]),
            f"{_pick(rng, 'Reason for referral', 'Main reason for referral', 'Referral reason')}: {reason}",
            f"Vital signs: BP {rng.randint(90, 170)}/{rng.randint(50, 100)} HR {rng.randint(50, 130)} "
            f"RR {rng.randint(12, 30)} Temp {rng.uniform(36, 39.5):.1f} SpO2 {rng.randint(85, 100)}%",
            f"{_pick(rng, 'Treatment given', 'Interventions before referral')}: {drug[0]} {drug[1]}",
            f"{_pick(rng, 'Clinical summary', 'Summary of findings')}: {rng.randint(2, 14)} days of symptoms.",
            f"{_pick(rng, 'Services requested', 'Referred for')}: {test}",
            f"Mode of transport: {_pick(rng, 'ambulance', 'private vehicle', 'walk-in')}   Urgency: "
            + _pick(rng, "emergency", "urgent", "routine"),
        ]
    if kind == "referral.form":
        return [
            c.clinic,
            _pick(
                rng,
                "REFERRAL FORM",
                "Patient Referral Form",
                "SPECIALIST REFERRAL REQUEST",
                "Outpatient Referral",
                "Referral Authorization Request",
                "NEW PATIENT REFERRAL",
            ),
            *_kv(
                rng,
                _patient_block(rng, c)
                + [
                    (_pick(rng, "Phone", "Patient Phone", "Contact"), _phone(rng)),
                    (_pick(rng, "Referring Provider", "Referring Physician", "Referred by"), c.doctor),
                    (_pick(rng, "Referred To", "Refer to", "Specialist", "Referral to"), f"{c.recipient}, {spec}"),
                    (_pick(rng, "Reason for Referral", "Diagnosis", "Reason", "Clinical question"), reason),
                    (
                        _pick(rng, "ICD-10", "Diagnosis code"),
                        f"{rng.choice('MIRKEG')}{rng.randint(10, 99)}.{rng.randint(0, 9)}",
                    ),
                    (_pick(rng, "Urgency", "Priority"), _pick(rng, "Routine", "Urgent", "STAT", "Within 2 weeks")),
                    (_pick(rng, "Insurance", "Payer"), f"{c.payer} {c.member}"),
                    (_pick(rng, "Requested", "Services requested", "Requested Action"), f"consultation and {test}"),
                ],
            ),
            _pick(
                rng,
                "Attachments: office notes, medication list, labs",
                "Please call to schedule the patient.",
                "Authorization number attached if required.",
                "Records enclosed.",
            ),
            *_footer(rng),
        ]
    if kind == "referral.consult_reply":
        return [
            f"{c.clinic} - {spec}",
            f"{c.date}",
            f"{c.recipient}",
            f"{c.our_practice}",
            f"RE: {c.patient}   DOB: {c.dob}",
            _pick(rng, f"Dear {c.recipient},", "Dear Colleague,", f"Dear {c.recipient.split()[-1]},"),
            _pick(rng, "Thank you for referring", "Thank you for asking me to see", "I had the pleasure of seeing")
            + f" {c.patient} in {spec.lower()} consultation for {reason}.",
            f"History: {rng.randint(2, 20)} months of symptoms despite {drug[0]} {drug[1]}.",
            f"Assessment: {reason}, {_pick(rng, 'likely benign', 'requires further work-up', 'stable')}.",
            f"Plan: {test}; follow up in {rng.randint(2, 12)} weeks. I will keep you informed.",
            _pick(rng, "Consultation note", "Consult report", "Specialist's letter") + f" signed by {c.doctor}",
        ]
    return [
        c.clinic,
        f"{_phone(rng)}   {_pick(rng, 'Fax', 'Fax:', 'F')} {c.fax}",
        _pick(rng, "", "URGENT ", "")
        + _pick(rng, "Referral Letter", "SPECIALIST REFERRAL", "Letter of Referral", "Re: Referral"),
        f"Date: {c.date}",
        f"To: {c.recipient}, {spec} / {c.our_practice}",
        f"RE: {c.patient}  DOB {c.dob}" + (f"  MRN {c.mrn}" if rng.random() < 0.5 else ""),
        _pick(rng, "Dear Colleague,", f"Dear {c.recipient},", "Dear Doctor,"),
        _pick(rng, "I am referring", "I would be grateful if you could see", "Please see", "Kindly evaluate")
        + f" {c.patient} for {_pick(rng, 'evaluation of', 'assessment and management of', 'further work-up of')} {reason}.",
        f"{_pick(rng, 'Symptoms began', 'The problem started')} about {rng.randint(2, 30)} weeks ago; "
        f"current medications include {drug[0]} {drug[1]} daily.",
        f"{_pick(rng, 'Please consider', 'I would appreciate your opinion regarding', 'Requested:')} {test}.",
        _pick(
            rng,
            "Relevant notes and recent results are attached.",
            "Thank you for seeing this patient.",
            "Please contact me with any questions.",
        ),
        f"{_pick(rng, 'Sincerely', 'Kind regards', 'Thank you')}, {c.doctor}",
    ]


def _pa(rng: random.Random, c: _Ctx, kind: str) -> list[str]:
    drug = rng.choice(_DRUGS)
    proc = rng.choice(_PROCEDURES)
    item = _pick(rng, f"{drug[0]} {drug[1]}", proc[0])
    ref = f"{_pick(rng, 'PA-', 'AUTH', 'A', 'REF#', '')}{rng.randint(100000, 99999999)}"
    head = [
        c.payer,
        _pick(
            rng,
            "Prior Authorization Determination",
            "PRIOR AUTHORIZATION NOTICE",
            "Coverage Determination",
            "Utilization Management Decision",
            "Notice of Authorization",
            "Pre-Certification Response",
            "Authorization Status Update",
        ),
        *_kv(
            rng,
            _patient_block(rng, c, member=True)
            + [
                (_pick(rng, "Prescriber", "Requesting Provider", "Provider", "Ordering Physician"), c.recipient),
                (_pick(rng, "Request", "Service Requested", "Drug Requested", "Requested Service", "Medication"), item),
                (
                    _pick(
                        rng,
                        "Reference Number",
                        "Authorization #",
                        "Case ID",
                        "Authorization Request ID",
                        "Tracking number",
                    ),
                    ref,
                ),
                (_pick(rng, "Date of Request", "Received", "Request Date"), c.date),
            ],
        ),
    ]
    if kind == "pa.approved":
        body = [
            f"{_pick(rng, 'Decision', 'Status', 'Determination')}: {_pick(rng, 'APPROVED', 'Approved', 'AUTHORIZED', 'Certified')}",
            f"{_pick(rng, 'The request has been approved', 'Coverage is approved', 'This authorization is valid')} "
            f"from {c.date} for {rng.choice([1, 3, 6, 12])} months.",
            _pick(
                rng,
                "Approved quantity: 30 per 30 days.",
                "Units approved: 12 visits.",
                "No further action is needed.",
                "This approval is not a guarantee of payment.",
            ),
        ]
    elif kind == "pa.denied":
        body = [
            f"{_pick(rng, 'Decision', 'Status', 'Determination')}: {_pick(rng, 'DENIED', 'Denied', 'NOT APPROVED', 'Adverse determination')}",
            _pick(
                rng,
                "The request was denied because step therapy with a preferred formulary alternative was not documented.",
                "Medical necessity criteria were not met based on the information provided.",
                "The requested service is not a covered benefit under the member's plan.",
            ),
            _pick(
                rng,
                "You may request a peer-to-peer review or file an appeal within 60 days.",
                "Appeal rights are enclosed. An expedited appeal may be requested.",
                "To appeal, submit chart notes documenting prior treatment and outcome.",
            ),
        ]
    elif kind == "pa.more_info":
        body = [
            f"{_pick(rng, 'Status', 'Decision')}: {_pick(rng, 'PENDED - ADDITIONAL INFORMATION NEEDED', 'Information requested', 'Incomplete - more information required')}",
            _pick(
                rng,
                "Please fax the most recent office notes, lab results and prior therapies tried within 14 days.",
                "We need clinical documentation supporting medical necessity before a decision can be made.",
                "Submit the following: diagnosis, duration of therapy, previous medications and response.",
            ),
            f"Fax the requested information to {_phone(rng)} referencing case {ref}.",
            "If we do not receive it the request may be denied.",
        ]
    else:
        body = [
            f"{_pick(rng, 'Status', 'Decision')}: {_pick(rng, 'Pending Review', 'In review', 'PENDING CLINICAL REVIEW', 'Received - under review')}",
            _pick(
                rng,
                "Your request has been received and is under clinical review.",
                "A decision will be communicated within 3 business days.",
                "No action is needed at this time; a determination letter will follow.",
            ),
        ]
    return head + body + [f"{_pick(rng, 'Questions', 'Provider services', 'Call')}: {_phone(rng)}"] + _footer(rng)


def _records(rng: random.Random, c: _Ctx, kind: str) -> list[str]:
    start, end = _date(rng, 2015, 2022), _date(rng, 2023, 2026)
    wanted = ", ".join(
        rng.sample(
            [
                "office visit notes",
                "lab results",
                "imaging reports",
                "medication list",
                "immunization records",
                "operative reports",
                "consult notes",
                "problem list",
                "complete medical record",
                "billing records",
                "discharge summaries",
            ],
            rng.randint(2, 5),
        )
    )
    if kind == "records.requested_from_us":
        who = _pick(
            rng,
            c.clinic,
            c.payer,
            f"Law Offices of {rng.choice(_LAST)} & {rng.choice(_LAST)}",
            "Social Security Administration - Disability Determination Services",
            "Records Retrieval Services Inc.",
        )
        return [
            who,
            _pick(
                rng,
                "REQUEST FOR MEDICAL RECORDS",
                "Medical Records Request",
                "Records Request",
                "REQUEST FOR COPIES OF RECORDS",
                "Request for Release of Information",
            ),
            f"To: {_pick(rng, 'Medical Records Department', 'Health Information Management', 'Custodian of Records')}, {c.our_practice}",
            *_kv(
                rng,
                _patient_block(rng, c)
                + [
                    (_pick(rng, "Records requested", "Requested Records", "Please send"), wanted),
                    (_pick(rng, "Date range", "Dates of service", "From - To"), f"{start} to {end}"),
                    (
                        _pick(rng, "Purpose", "Reason for request"),
                        _pick(
                            rng,
                            "continuity of care",
                            "transfer of care",
                            "legal",
                            "insurance claim review",
                            "disability claim",
                        ),
                    ),
                ],
            ),
            _pick(
                rng,
                "A signed patient authorization (HIPAA compliant) is enclosed.",
                "Please fax the records to the number above within 15 days.",
                "Patient signature on file. Thank you for your prompt attention.",
            ),
            f"Requested by: {c.doctor}   Phone {_phone(rng)}   Fax {c.fax}",
        ]
    return [
        c.clinic,
        _pick(
            rng,
            "RECORDS ENCLOSED",
            "Medical Records - Response to Your Request",
            "Release of Information - Records Sent",
            "Requested Records",
        ),
        f"To: {c.recipient}, {c.our_practice}",
        f"RE: {c.patient}  DOB {c.dob}",
        _pick(
            rng,
            "Enclosed please find the medical records you requested",
            "As requested, we are sending the records",
            "In response to your records request, attached are the following documents",
        )
        + f" for {c.patient}.",
        f"Enclosed: {wanted} ({start} - {end}).",
        f"Total pages: {rng.randint(3, 40)}. {_pick(rng, 'Request number', 'ROI #', 'Tracking')}: {rng.randint(10000, 999999)}",
        f"{_pick(rng, 'Health Information Management', 'Release of Information Specialist', 'Medical Records')} - {c.doctor.replace('Dr. ', '')}",
    ]


def _refill(rng: random.Random, c: _Ctx, kind: str) -> list[str]:
    drug = rng.choice(_DRUGS)
    lines = [
        c.pharmacy,
        f"{_pick(rng, 'Phone', 'Ph', 'Tel')} {_phone(rng)}   {_pick(rng, 'Fax', 'Fax:')} {c.fax}   NPI {rng.randint(10**9, 2 * 10**9 - 1)}",
        _pick(
            rng,
            "REFILL AUTHORIZATION REQUEST",
            "Prescription Renewal Request",
            "Refill Request",
            "RX RENEWAL REQUEST",
            "Request for New Prescription",
        )
        if kind == "refill.renewal"
        else _pick(
            rng, "THERAPEUTIC INTERCHANGE REQUEST", "Prescription Change Request", "Formulary Alternative Request"
        ),
        f"To: {c.recipient}   {c.our_practice}",
        *_kv(
            rng,
            _patient_block(rng, c)[:2]
            + [
                (_pick(rng, "Drug", "Medication", "Rx", "Drug Name"), f"{drug[0]} {drug[1]} {drug[2]}"),
                (
                    _pick(rng, "Sig", "Directions"),
                    _pick(
                        rng,
                        "take 1 tablet by mouth daily",
                        "1 po bid",
                        "as directed",
                        "inhale 2 puffs every 4-6 hours as needed",
                    ),
                ),
                (_pick(rng, "Qty", "Quantity", "Disp"), str(rng.choice([30, 60, 90, 1]))),
                (_pick(rng, "Last filled", "Last Fill Date", "Date last dispensed"), c.date),
                (_pick(rng, "Refills remaining", "Refills"), "0"),
                (_pick(rng, "Rx #", "Original Rx Number"), str(rng.randint(1000000, 9999999))),
            ],
        ),
    ]
    if kind == "refill.change":
        alt = rng.choice(_DRUGS)
        lines.append(f"The prescribed drug is not covered; please consider {alt[0]} {alt[1]} instead.")
    lines += [
        _pick(
            rng,
            "[ ] Approved   refills: ____    [ ] Denied   [ ] Needs appointment",
            "APPROVE ___  DENY ___  Prescriber signature: ______________",
            "Please sign and fax back to the pharmacy.",
            "Respond by fax or e-prescribe.",
        ),
    ]
    return lines


def _marketing(rng: random.Random, c: _Ctx, kind: str) -> list[str]:
    if kind == "marketing.junk":
        return rng.choice(
            [
                [
                    "FAX TEST PAGE",
                    "US LETTER",
                    "If you can read this page your fax machine is working.",
                    "1 2 3 4 5 6 7 8 9 10",
                ],
                ["TEST", "test page", "resolution chart 200 dpi", "ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"],
                ["Transmission test. Please disregard.", "Page 1"],
                [".", "- -", "~ ' ."],
            ]
        )
    if kind == "marketing.scam":
        return [
            _pick(rng, "CONGRATULATIONS!", "URGENT NOTICE", "FINAL NOTICE", "You have been selected!"),
            _pick(
                rng,
                "You've been selected to receive a $500 gift card!",
                "Your practice qualifies for a free cruise.",
                "Claim your prize now - limited time.",
                "Your business listing will be cancelled unless you respond.",
            ),
            _pick(
                rng, "Click the link below to claim.", "Call now to claim your reward.", "Reply with your bank details."
            ),
            f"http://{rng.choice(_LAST).lower()}-rewards.example/claim",
            "Act fast - this offer expires soon!",
            "To be removed from our fax list call 1-800-555-0199.",
        ]
    return [
        c.vendor,
        _pick(
            rng,
            "SPECIAL OFFER FOR MEDICAL PRACTICES",
            "Limited time savings!",
            "Grow your practice today",
            "Exclusive discount for physicians",
            "NEW PRODUCT ANNOUNCEMENT",
        ),
        _pick(
            rng,
            "Save up to 40% on exam gloves, syringes and office supplies.",
            "Increase collections by 30% with our outsourced billing service.",
            "Earn CME credits at our weekend conference in Las Vegas.",
            "Low-rate equipment financing for your clinic.",
            "Toner cartridges at wholesale prices.",
        ),
        _pick(
            rng, "Order today and get free shipping.", "Call now for a free consultation.", "Reserve your seat today."
        ),
        f"Call {_phone(rng)} or visit www.{c.vendor.split()[0].lower()}.example",
        _pick(rng, "To opt out of future faxes call", "Remove me from this list:", "Unsubscribe:") + f" {_phone(rng)}",
    ]


def _cover(rng: random.Random, c: _Ctx, kind: str, pages: int) -> list[str]:
    pages = pages if pages > 1 else rng.randint(2, 8)
    org = c.clinic if kind == "cover.medical" else c.business
    to = c.recipient if kind == "cover.medical" else f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    return [
        org,
        _pick(
            rng, "FAX", "FAX COVER SHEET", "Facsimile Transmittal", "Fax Fax Fax", "TELECOPY COVER", "FAX TRANSMISSION"
        ),
        *_kv(
            rng,
            [
                (_pick(rng, "To", "TO", "Attention", "Attn"), to),
                (
                    _pick(rng, "Company", "Organization"),
                    c.our_practice if kind == "cover.medical" else rng.choice(_BUSINESS),
                ),
                (_pick(rng, "Fax", "Fax Number", "Fax #"), _phone(rng)),
                (
                    _pick(rng, "From", "FROM", "Sender"),
                    c.doctor if kind == "cover.medical" else f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                ),
                (_pick(rng, "Phone", "Telephone"), c.phone),
                (_pick(rng, "Date", "DATE"), c.date),
                (
                    _pick(rng, "Pages", "Number of pages (including cover)", "Pages including cover", "Total pages"),
                    str(pages),
                ),
                (
                    _pick(rng, "Re", "Subject", "RE"),
                    _pick(
                        rng,
                        "Patient information",
                        "Referral",
                        "Lab results",
                        "Records",
                        "Contract",
                        "Meeting",
                        "Documents",
                        "Urgent",
                    ),
                ),
            ],
        ),
        _pick(
            rng,
            "[ ] Urgent  [ ] For Review  [ ] Please Comment  [ ] Please Reply",
            "Comments:",
            "Message:",
            "Notes: please see attached",
        ),
        *_footer(rng),
        _pick(rng, "If you do not receive all pages, please call the sender.", "Please deliver immediately.", ""),
    ]


def _blank(rng: random.Random, c: _Ctx, kind: str) -> list[str]:
    blank = _pick(rng, "____________________", "__________", "", "_______", "[        ]")
    if kind == "blank.authorization":
        legal = rng.sample(_AUTH_LEGAL, rng.randint(3, 7))
        return [
            _pick(rng, c.clinic, c.our_practice, "Medical Center", "Health System"),
            _pick(
                rng,
                "AUTHORIZATION FOR RELEASE OF PROTECTED HEALTH INFORMATION",
                "Authorization to Use or Disclose Health Information",
                "Medical Records Release Form",
                "Family and Friends Authorization",
                "ACKNOWLEDGEMENT OF RECEIPT OF NOTICE OF PRIVACY PRACTICES",
                "Authorization for Release of Medical/Confidential Information",
                "AUTHORIZATION FOR DISCLOSURE",
                "Patient Authorization Form",
                "HIPAA Authorization",
            ),
            f"Patient Name: {blank}   Date of Birth: {blank}   {_pick(rng, 'MRN', 'Medical Record #', 'Account #')}: {blank}",
            f"Address: {blank}  Phone: {blank}",
            f"I authorize {blank} to {_pick(rng, 'release', 'disclose', 'use or disclose')} information to: "
            f"Name {blank} Address {blank} {_pick(rng, 'Fax', 'Phone')} {blank}",
            _pick(
                rng, "Information to be released:", "Please check the records to be released:", "Type of information:"
            ),
            " ".join(
                f"[ ] {t}"
                for t in rng.sample(
                    [
                        "Entire record",
                        "Lab results",
                        "Imaging / X-ray reports",
                        "Progress notes",
                        "Discharge summary",
                        "Immunizations",
                        "Billing records",
                        "Mental health",
                        "HIV/AIDS test results",
                        "Alcohol/drug treatment",
                        "Other",
                    ],
                    rng.randint(3, 8),
                )
            ),
            f"Dates of service: from {blank} to {blank}",
            _pick(rng, "Purpose of disclosure:", "Reason for release:")
            + " [ ] Continuing care [ ] Legal [ ] Insurance "
            "[ ] Personal use [ ] Other " + blank,
            *legal,
            f"Signature of patient or legal representative: {blank}   Date: {blank}",
            f"Printed name: {blank}   Relationship to patient: {blank}",
            _pick(
                rng,
                f"Witness: {blank}",
                "FOR OFFICE USE ONLY: Date received ____ Processed by ____",
                f"Form {rng.randint(100, 9999)} Rev. {rng.randint(1, 12)}/{rng.randint(2005, 2024)}",
                "",
            ),
        ]
    if kind == "blank.intake":
        return [
            _pick(rng, c.our_practice, c.clinic),
            _pick(
                rng,
                "NEW PATIENT REGISTRATION",
                "Patient Intake Form",
                "Medical History Questionnaire",
                "Patient Information Sheet",
                "Financial Responsibility Agreement",
            ),
            f"Last name: {blank} First: {blank} MI: __",
            f"Address: {blank} City: {blank} State: __ ZIP: {blank}",
            f"Home phone: {blank}  Cell: {blank}  Email: {blank}",
            f"Insurance: {blank}  Policy #: {blank}  Group #: {blank}",
            "Do you have: [ ] diabetes [ ] high blood pressure [ ] asthma [ ] heart disease",
            f"Emergency contact: {blank}  Signature: {blank}  Date: {blank}",
        ]
    return [
        "HEALTH INSURANCE CLAIM FORM",
        "APPROVED BY NATIONAL UNIFORM CLAIM COMMITTEE (NUCC) 02/12",
        "1. MEDICARE MEDICAID TRICARE CHAMPVA GROUP HEALTH PLAN FECA BLK LUNG OTHER",
        f"1a. INSURED'S I.D. NUMBER {rng.choice([blank, c.member])}",
        f"2. PATIENT'S NAME (Last Name, First Name, Middle Initial) {rng.choice([blank, c.patient])}",
        "3. PATIENT'S BIRTH DATE SEX  4. INSURED'S NAME",
        "21. DIAGNOSIS OR NATURE OF ILLNESS OR INJURY  22. RESUBMISSION CODE",
        "24. A. DATE(S) OF SERVICE B. PLACE OF SERVICE D. PROCEDURES, SERVICES, OR SUPPLIES E. DIAGNOSIS POINTER F. $ CHARGES",
        "25. FEDERAL TAX I.D. NUMBER  28. TOTAL CHARGE  31. SIGNATURE OF PHYSICIAN OR SUPPLIER",
        "PLEASE PRINT OR TYPE",
    ]


def _clinical(rng: random.Random, c: _Ctx, kind: str) -> list[str]:
    drug = rng.choice(_DRUGS)
    _spec, reason, _test = rng.choice(_SPECIALTIES)
    if kind == "clinical.progress_note":
        return [
            c.clinic,
            _pick(rng, "PROGRESS NOTE", "Office Visit", "Clinic Note", "Follow-up Visit", "Attending Provider Notes"),
            *_kv(rng, _patient_block(rng, c) + [("Date of Service", c.date), ("Provider", c.doctor)]),
            _pick(rng, "SUBJECTIVE:", "S:", "Chief Complaint:", "HPI:") + f" follow-up of {drug[3]}; reports {reason}.",
            _pick(rng, "OBJECTIVE:", "O:", "Exam:")
            + f" BP {rng.randint(100, 170)}/{rng.randint(60, 100)}, HR {rng.randint(55, 110)}, afebrile.",
            _pick(rng, "ASSESSMENT:", "A:", "Assessment/Plan:")
            + f" {drug[3]}, {_pick(rng, 'stable', 'improving', 'not at goal')}.",
            _pick(rng, "PLAN:", "P:") + f" continue {drug[0]} {drug[1]}; return in {rng.randint(2, 12)} weeks.",
            f"Electronically signed: {c.doctor}",
        ]
    if kind == "clinical.discharge_summary":
        return [
            _pick(rng, c.clinic, "Valley General Hospital", "St. Agnes Medical Center"),
            _pick(rng, "DISCHARGE SUMMARY", "Physician Hospital Discharge Summary", "Hospital Course Summary"),
            *_kv(
                rng, _patient_block(rng, c) + [("Admission Date", _date(rng, 2023, 2026)), ("Discharge Date", c.date)]
            ),
            f"Admitting diagnosis: {reason}.",
            f"Hospital course: treated with IV fluids and {drug[0]}; {_pick(rng, 'improved', 'stable', 'recovered')}.",
            f"Discharge medications: {drug[0]} {drug[1]} daily.",
            f"Follow-up with primary care in {rng.randint(3, 14)} days.",
            f"Attending physician: {c.doctor}",
        ]
    if kind == "clinical.prescription_note":
        return [
            f"Patient: {c.patient}",
            f"Age: {rng.randint(3, 90)}",
            "Diagnosis:",
            _pick(rng, "Mild viral fever", "Acute sinusitis", "Urinary tract infection", "Allergic rhinitis"),
            "Prescription:",
            f"- {drug[0]} {drug[1]} - {_pick(rng, 'once daily', 'twice daily')} for {rng.randint(3, 30)} days",
            "Advice:",
            _pick(rng, "Review if symptoms worsen.", "Fluids and rest.", "Follow up in one week."),
            "Doctor:",
            c.doctor,
        ]
    if kind == "clinical.pa_request":
        proc = rng.choice(_PROCEDURES)
        drug2 = rng.choice(_DRUGS)
        form = rng.random() < 0.5
        head = [
            _pick(
                rng,
                "PRIOR AUTHORIZATION REQUEST",
                "Prior Authorization Request Form",
                "Medication Prior Authorization Request",
                "Precertification Request",
                "Pharmacy Prior Authorization Form",
                "Request for Prior Authorization",
            ),
            f"{c.payer} - {_pick(rng, 'fax this form to', 'submit to', 'Please fax completed form to')} {_phone(rng)}",
        ]
        if form:
            return head + [
                "Please complete all sections. Incomplete forms will delay processing.",
                "MEMBER INFORMATION",
                *_kv(rng, _patient_block(rng, c, member=True)),
                "PRESCRIBER INFORMATION",
                *_kv(
                    rng,
                    [
                        ("Prescriber Name", c.doctor),
                        ("NPI", str(rng.randint(10**9, 2 * 10**9 - 1))),
                        ("Office Phone", _phone(rng)),
                        ("Office Fax", c.fax),
                    ],
                ),
                "MEDICATION INFORMATION",
                *_kv(
                    rng,
                    [
                        ("Drug name and strength", f"{drug2[0]} {drug2[1]}"),
                        ("Quantity", "30"),
                        ("Days supply", "30"),
                        ("Diagnosis", drug2[3]),
                        ("ICD-10", f"{rng.choice('MIRKEG')}{rng.randint(10, 99)}.{rng.randint(0, 9)}"),
                    ],
                ),
                "Previous medications tried and dates: " + ", ".join(d[0] for d in rng.sample(_DRUGS, 2)),
                _pick(
                    rng,
                    "Is this request for continuation of therapy? [ ] Yes [ ] No",
                    "Clinical criteria: please attach chart notes supporting medical necessity.",
                ),
                "I attest that the information provided is accurate. Prescriber signature: ____________  Date: ______",
            ]
        return head + [
            *_kv(
                rng,
                _patient_block(rng, c, member=True)
                + [
                    ("Provider Name", c.doctor),
                    ("NPI", str(rng.randint(10**9, 2 * 10**9 - 1))),
                    (_pick(rng, "Requested Service", "Procedure", "Medication requested"), f"{proc[0]}"),
                    ("CPT Code", proc[1]),
                    ("ICD-10 Code", f"{rng.choice('MIRKEG')}{rng.randint(10, 99)}.{rng.randint(0, 9)}"),
                ],
            ),
            "Clinical Information:",
            f"Patient presents with {reason}; failed {drug[0]} {drug[1]} for {rng.randint(4, 26)} weeks.",
            "Prescriber signature: ____________  Date: ______",
        ]
    if kind == "insurance.eob":
        return [
            c.payer,
            _pick(rng, "EXPLANATION OF BENEFITS", "Explanation of Benefits (EOB)", "THIS IS NOT A BILL"),
            *_kv(
                rng,
                _patient_block(rng, c, member=True)
                + [
                    ("Claim Number", f"CLM-{rng.randint(10**6, 10**8)}"),
                    ("Provider", c.clinic),
                    ("Date of Service", c.date),
                ],
            ),
            "Service  Billed  Allowed  Deductible  Coinsurance  Plan Paid  Patient Responsibility",
            f"Office visit  ${rng.randint(100, 400)}.00  ${rng.randint(60, 200)}.00  $0.00  ${rng.randint(5, 50)}.00  "
            f"${rng.randint(40, 150)}.00  ${rng.randint(5, 80)}.00",
            _pick(
                rng,
                "Remark code CO-45: charge exceeds fee schedule.",
                "Your deductible has been met.",
                "Questions about this claim? Call member services.",
            ),
        ]
    if kind == "insurance.eligibility":
        return [
            _pick(rng, "ELIGIBILITY VERIFICATION RESPONSE", "Eligibility and Benefits", "Coverage Verification"),
            f"{c.payer}   Reference Number: EV-{rng.randint(10**5, 10**7)}",
            *_kv(
                rng,
                _patient_block(rng, c, member=True)
                + [
                    ("Group Number", f"GRP-{rng.randint(1000, 999999)}"),
                    ("Plan Type", _pick(rng, "PPO", "HMO", "EPO", "POS")),
                    ("Coverage Status", _pick(rng, "ACTIVE", "Active", "Inactive")),
                    ("Effective Date", c.date),
                    ("Annual Deductible", f"${rng.randint(5, 60) * 100}"),
                    ("Copay Office Visit", f"${rng.randint(1, 8) * 5}"),
                ],
            ),
        ]
    return [
        c.payer,
        _pick(rng, "Member Services", "Provider Relations", "Credentialing Department", "Claims Department"),
        f"{c.date}",
        f"To: {c.our_practice}",
        _pick(
            rng,
            "Re: Provider network participation update",
            "Re: Fee schedule changes effective next quarter",
            "Re: Request for W-9 and updated credentialing documents",
            "Re: Claim overpayment notice",
            "Re: Coordination of benefits questionnaire",
        ),
        _pick(
            rng,
            "Please review the enclosed information and respond within 30 days.",
            "Our records show that an updated document is required to keep your contract active.",
            "An overpayment was identified on the claim listed below and will be recouped.",
        ),
        f"Claim / member reference: {c.member}",
        f"Sincerely, {c.payer} {_pick(rng, 'Provider Services', 'Network Management')}",
    ]


def _continuation(rng: random.Random, c: _Ctx, label: str) -> list[str]:
    """A later page of a multi-page document (same label as the document)."""
    if label == "lab_result":
        rows = [
            f"{n}  {rng.uniform(lo, hi):.{nd}f}  {rng.choice(['', '', 'H', 'L'])}  {u}  {ref}"
            for n, u, lo, hi, ref, nd in rng.sample(_LAB_TESTS, rng.randint(4, 9))
        ]
        return [f"{c.lab}   {c.patient}   (continued)"] + rows + ["END OF REPORT"]
    if label == "referral":
        drug = rng.choice(_DRUGS)
        return [
            f"RE: {c.patient}  DOB {c.dob}  (page 2)",
            "Past medical history: " + ", ".join(rng.sample([d[3] for d in _DRUGS], 3)),
            f"Medications: {drug[0]} {drug[1]}; " + ", ".join(d[0] for d in rng.sample(_DRUGS, 3)),
            "Allergies: " + _pick(rng, "NKDA", "penicillin", "sulfa"),
            "Social history: non-smoker, occasional alcohol.",
            f"Reason for referral restated: please evaluate and advise. Referring provider {c.doctor}.",
        ]
    if label == "records_request":
        return [
            "AUTHORIZATION FOR RELEASE OF INFORMATION (signed copy attached)",
            f"Patient: {c.patient}   DOB: {c.dob}",
            f"I authorize {c.our_practice} to release my records to {c.clinic}.",
            "Signature: (signed)   Date: " + c.date,
        ]
    if label == "prior_auth_response":
        return [
            f"{c.payer}   Case {c.member}   page 2",
            "Your appeal rights: you may request an appeal within 60 days of this notice.",
            "Criteria used for this determination are available on request.",
        ]
    if label == "other_clinical":
        return [
            f"{c.patient} - continued",
            "Review of systems: negative except as noted.",
            "Plan discussed with the patient, who agrees.",
            f"Signed {c.doctor}",
        ]
    return [f"{c.patient} page 2"]


def _body(rng: random.Random, c: _Ctx, kind: str, pages: int) -> list[str]:
    label = KINDS[kind]
    if label == "lab_result":
        return _lab(rng, c, kind)
    if label == "referral":
        return _referral(rng, c, kind)
    if label == "prior_auth_response":
        return _pa(rng, c, kind)
    if label == "records_request":
        return _records(rng, c, kind)
    if label == "refill_request":
        return _refill(rng, c, kind)
    if label == "marketing":
        return _marketing(rng, c, kind)
    if label == "cover_sheet":
        return _cover(rng, c, kind, pages)
    if label == "blank_form":
        return _blank(rng, c, kind)
    return _clinical(rng, c, kind)


def document_pages(seed: int, kind: str, *, pages: int = 1, split: str = "train") -> list[LabelledPage]:
    """One document of ``kind``: its first page and ``pages - 1`` continuation pages."""
    rng = random.Random(f"{split}:{seed}:{kind}")
    c = _Ctx(rng, 0 if split == "train" else 1)
    label = KINDS[kind]
    out = [LabelledPage("\n".join(x for x in _body(rng, c, kind, pages) if x), label, kind, seed, 1, pages)]
    for i in range(2, pages + 1):
        text = "\n".join(_continuation(rng, c, label))
        if rng.random() < 0.6:
            text += f"\nPage {i} of {pages}"
        out.append(LabelledPage(text, label, kind, seed, i, pages))
    return out


# --------------------------------------------------------------------------- OCR noise
_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "l": ("1", "I", "|"),
    "1": ("l", "I"),
    "I": ("l", "1"),
    "O": ("0", "Q"),
    "0": ("O",),
    "o": ("0", "c"),
    "e": ("c",),
    "c": ("e",),
    "S": ("5",),
    "5": ("S",),
    "B": ("8",),
    "8": ("B",),
    "g": ("q",),
    "rn": ("m",),
    "m": ("rn",),
    "h": ("b",),
    "u": ("v",),
    "n": ("ri",),
    ",": (".",),
    ".": (",",),
}


def ocr_noise(text: str, rng: random.Random, level: float) -> str:
    """``text`` as Tesseract might read it off a fax at noise ``level`` (0 clean, 1 typical, 2 poor).

    Character confusions, dropped characters, merged and split words, speckle as stray
    marks, a lost line (skew) and random case in headers: the classifier must not depend
    on any single token surviving.
    """
    if level <= 0:
        return text
    out_lines = []
    for line in text.split("\n"):
        if rng.random() < 0.03 * level:
            continue  # a line lost to skew or a fold
        chars: list[str] = []
        i = 0
        while i < len(line):
            ch = line[i]
            r = rng.random()
            two = line[i : i + 2]
            if two in _CONFUSIONS and r < 0.02 * level:
                chars.append(rng.choice(_CONFUSIONS[two]))
                i += 2
                continue
            if ch in _CONFUSIONS and r < 0.035 * level:
                chars.append(rng.choice(_CONFUSIONS[ch]))
            elif ch == " " and r < 0.04 * level:
                pass  # merged words
            elif ch != " " and r < 0.012 * level:
                pass  # dropped character
            elif ch != " " and r < 0.018 * level:
                chars.append(ch + " ")  # split word
            else:
                chars.append(ch)
            i += 1
        line = "".join(chars)
        if rng.random() < 0.05 * level:
            line += " " + rng.choice([".", "'", "~", ",", "-", ":", "_", "|"])
        out_lines.append(line)
    return "\n".join(out_lines)


def _fax_header(rng: random.Random, page_no: int, pages: int) -> str:
    return rng.choice(
        [
            f"FROM {_phone(rng)}  {_date(rng, 2023, 2026)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}  P. {page_no}/{pages}",
            f"{_date(rng, 2023, 2026)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} {_phone(rng)} PAGE {page_no:02d}/{pages:02d}",
            f"Received: {_date(rng, 2023, 2026)} Fax ID {rng.randint(1000, 9999)} pg {page_no}",
            "",
        ]
    )


# --------------------------------------------------------------------------- corpus
def generate(split: str = "train", n_per_kind: int = 40, *, seed: int = 0, noise: float = 1.0) -> list[LabelledPage]:
    """Every kind ``n_per_kind`` documents (some multi-page), pages with fax headers and OCR noise.

    ``split``: "train" or "heldout" (disjoint sender pools, other seeds). ``noise`` scales
    the OCR noise; each document draws its own level in [0, 2 * noise] so the corpus holds
    clean born-digital pages and poor low-resolution reads alike. The ``calibration`` split
    (for the classifier's temperature and abstain threshold) is harsher: half its pages are
    cut off part-way, as a partial OCR read is.
    """
    if split not in ("train", "heldout", "calibration"):
        raise ValueError(f"unknown split {split!r}")
    pool_split = "train" if split == "train" else "heldout"
    out: list[LabelledPage] = []
    base = {"train": 0, "heldout": 1_000_000, "calibration": 2_000_000}[split] + seed
    for kind in KINDS:
        for i in range(n_per_kind):
            doc_seed = base + i
            rng = random.Random(f"noise:{split}:{doc_seed}:{kind}")
            pages = (
                1
                if KINDS[kind] in ("cover_sheet", "marketing", "blank_form") or rng.random() < 0.7
                else rng.randint(2, 3)
            )
            level = rng.uniform(0.0, 2.0 * noise)
            for p in document_pages(doc_seed, kind, pages=pages, split=pool_split):
                header = _fax_header(rng, p.page_no, p.page_count)
                text = ocr_noise(p.text, rng, level)
                if split == "calibration" and rng.random() < 0.5:
                    # partial reads (a page cut off, OCR giving up half-way): the calibration
                    # split must not be separable, or the temperature has nothing to fit
                    lines = text.split("\n")
                    text = "\n".join(lines[: max(1, round(len(lines) * rng.uniform(0.15, 0.6)))])
                if header:
                    text = f"{header}\n{text}"
                out.append(LabelledPage(text, p.label, p.kind, len(out), p.page_no, p.page_count))
    return out


def corpus_hash(pages: Sequence[LabelledPage]) -> str:
    """SHA-256 over every page's label, kind and text: names the training data of a model."""
    h = hashlib.sha256()
    for p in pages:
        h.update(f"{p.label}\x1f{p.kind}\x1f{p.text}\x1e".encode())
    return h.hexdigest()
