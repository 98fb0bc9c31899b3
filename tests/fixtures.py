"""Self-contained HL7 test messages (synthetic patients, no real PHI)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path:
    """Where the public sample corpus is expected: PRACTICEFLOW_SHARED_DATA, else ../shared/data
    beside the checkout (whether or not it is there)."""
    configured = os.environ.get("PRACTICEFLOW_SHARED_DATA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def shared_data_dir() -> Path | None:
    """The public sample corpus, or None when it is not there."""
    path = shared_data_path()
    return path if path.is_dir() else None


def require_corpus(kind: str) -> Path:
    """``<shared>/data/<kind>``; fails the calling test, loudly, when it is missing, so a run
    without the corpus never passes by collecting no corpus cases."""
    path = shared_data_path() / kind
    if not path.is_dir():
        pytest.fail(
            f"the {kind} sample corpus is missing at {path}: set PRACTICEFLOW_SHARED_DATA or put shared/data "
            "beside the checkout (./pf test and CI do); deselect the corpus tests with -m 'not corpus'"
        )
    return path


def outcome_totals(table: dict[str, str | list[str]]) -> tuple[int, int]:
    """(normalized, rejected) over every message of an outcomes table (tests/processors/corpus_outcomes.py)."""
    flat = [o for v in table.values() for o in (v if isinstance(v, list) else [v])]
    normalized = sum(o == "normalized" for o in flat)
    return normalized, len(flat) - normalized


def oru_r01(control_id: str = "MSG00001", mrn: str = "MRN1001", glucose: str = "182", flag: str = "H") -> bytes:
    segs = [
        f"MSH|^~\\&|LAB|ACME LAB|EHR|DEMO CLINIC|20261127083000||ORU^R01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^DEMO^MR||Testpatient^Alex^J||19800101|F|||12 Main St^^Springfield^IL^62701||555-0100",
        "PV1|1|O|CLINIC^^^DEMO||||1234^Welby^Marcus",
        "ORC|RE|ORD1001|LAB5001",
        "OBR|1|ORD1001|LAB5001|80048^Basic metabolic panel^CPT|||20261127070000|||||||||1234^Welby^Marcus||||||20261127082500|||F",
        f"OBX|1|NM|2345-7^Glucose^LN||{glucose}|mg/dL|70-99|{flag}|||F|||20261127070000",
        "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|135-145|N|||F|||20261127070000",
        "OBX|3|NM|2823-3^Potassium^LN||4.1|mmol/L|3.5-5.1|N|||F|||20261127070000",
        "NTE|1||Fasting specimen",
    ]
    return ("\r".join(segs) + "\r").encode()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
