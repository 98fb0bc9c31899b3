"""Issue 14 end to end through the real broker and registry: a VXU^V04 becomes
Immunization records on ``norm.immunization`` (Avro, registered schema), and the worker
counts the segments it did not map in ``practiceflow_unmapped_segments_total``. (The
ClickHouse ``immunizations`` rows are checked in ``tests/sinks/test_immunization_rows.py``,
in a process of their own: chdb is one embedded engine per process.)"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from practiceflow.jobs.run_file import raw_record
from tests.streams.test_pipeline import _run, consume_all

pytestmark = pytest.mark.broker

VXU = "\r".join(
    [
        "MSH|^~\\&|EHR|CLINIC|IIS|STATE|20240305143000||VXU^V04^VXU_V04|VXU-ISSUE14|P|2.5.1",
        "PID|1||MRN-IZ^^^CLINIC^MR||DOE^JANE||20230102|F",
        "PD1|||||||||||02^Reminder/recall^HL70215",
        "NK1|1|DOE^JOHN|FTH",
        "ORC|RE||IZ-100",
        "RXA|0|1|20240301||08^Hep B^CVX|0.5|mL^mL^UCUM||00^New^NIP001||||||LOT9|20250101|MSD^Merck^MVX|||CP|A",
        "RXR|C28161^Intramuscular^NCIT|LT^Left Thigh^HL70163",
        "OBX|1|CE|64994-7^Eligibility^LN|1|V02^Medicaid^HL70064||||||F",
        "ORC|RE||IZ-101",
        "RXA|0|1|20240301||20^DTaP^CVX|0.5|mL^mL^UCUM||00^New^NIP001||||||LOT7||SKB^GSK^MVX|||CP|A",
    ]
).encode()


def _unmapped(segment: str) -> float:
    return (
        REGISTRY.get_sample_value("practiceflow_unmapped_segments_total", {"feed": "hl7v2", "segment": segment}) or 0.0
    )


def test_vxu_gives_immunizations_on_their_topic_and_counts_unmapped_segments(cfg, stack):
    before = {s: _unmapped(s) for s in ("PD1", "NK1")}
    p = asyncio.run(
        _run(
            cfg,
            stack,
            [raw_record("clinic-iz", "hl7v2", VXU)],
            lambda p: p.counts.get("hl7v2.normalized", 0) >= 1,
        )
    )
    assert p.counts["record.Immunization"] == 2 and p.counts.get("record.Observation", 0) == 0
    got = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.immunization", p.serde, 2)
    assert sorted(k for k, _ in got) == [b"clinic-iz/MRN-IZ/IZ-100", b"clinic-iz/MRN-IZ/IZ-101"]
    first = next(v for k, v in got if k.endswith(b"IZ-100"))
    assert first["lot_number"] == "LOT9" and first["funding_eligibility"]["code"] == "V02"
    assert [o["code"]["code"] for o in first["observations"]] == ["64994-7"]
    assert {s: _unmapped(s) - before[s] for s in before} == {"PD1": 1.0, "NK1": 1.0}
