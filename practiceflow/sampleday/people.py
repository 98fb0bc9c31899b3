"""Synthetic patients and payers for the sample practice day (deterministic per seed; no real people)."""

from __future__ import annotations

import random
from dataclasses import dataclass

GIVEN = [
    "Avery",
    "Jordan",
    "Riley",
    "Morgan",
    "Casey",
    "Quinn",
    "Rowan",
    "Emerson",
    "Harper",
    "Reese",
    "Jamie",
    "Skyler",
    "Dakota",
    "Finley",
    "Sage",
    "Parker",
    "Hayden",
    "Elliot",
    "Marlowe",
    "Tatum",
]
FAMILY = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Castellanos",
    "Nakamura",
    "Brennan",
    "Haddad",
    "Kowalski",
    "Achebe",
    "Delacroix",
    "Ferreira",
    "Gallagher",
    "Ivanova",
    "Johansson",
    "Kapoor",
    "Larsen",
    "Mbeki",
    "Novak",
    "Oyelaran",
    "Petrov",
]
STREETS = ["Maple Ave", "Cedar St", "Lakeview Dr", "Orchard Ln", "Hillcrest Rd", "Main St"]
PAYERS = [
    ("60054", "AETNA TEST PLAN"),
    ("87726", "UNITED TEST HEALTH"),
    ("00430", "MEDICARE TEST B"),
    ("62308", "CIGNA TEST"),
]
PROVIDERS = [("1111111112", "Welby", "Marcus"), ("1222222223", "Quinn", "Michaela")]


@dataclass(frozen=True)
class Person:
    mrn: str
    family: str
    given: str
    dob: str  # YYYYMMDD
    sex: str
    street: str
    city: str
    state: str
    zip: str
    phone: str
    payer_id: str
    payer_name: str
    member_id: str
    group: str

    @property
    def dob_iso(self) -> str:
        return f"{self.dob[:4]}-{self.dob[4:6]}-{self.dob[6:]}"


def make_people(n: int, seed: int) -> list[Person]:
    rng = random.Random(seed)
    people = []
    for i in range(n):
        payer_id, payer_name = rng.choice(PAYERS)
        year = rng.randint(1940, 2015)
        people.append(
            Person(
                mrn=f"MRN{100000 + i}",
                family=rng.choice(FAMILY),
                given=rng.choice(GIVEN),
                dob=f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                sex=rng.choice("FM"),
                street=f"{rng.randint(10, 999)} {rng.choice(STREETS)}",
                city="Springfield",
                state="IL",
                zip=f"627{rng.randint(0, 99):02d}",
                phone=f"555-01{rng.randint(0, 99):02d}",
                payer_id=payer_id,
                payer_name=payer_name,
                member_id=f"W{rng.randint(10**8, 10**9 - 1)}",
                group=f"G{rng.randint(1000, 9999)}",
            )
        )
    return people
