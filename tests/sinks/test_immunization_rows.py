"""The ClickHouse ``immunizations`` table (issue 14): the CDC VXU example normalized and
written through ``ClickHouseSink.write_batch`` into a real chdb, read back with FINAL.

Run in a child process: chdb is one embedded engine per process, bound to the first
path opened, and the pipeline tests open their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.processors.test_hl7_completeness import VXU

SCRIPT = r"""
import json, sys
from practiceflow.processors.hl7.normalize import normalize_hl7
from practiceflow.sinks.clickhouse import ClickHouseSink

dsn, path = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
result = normalize_hl7(raw, "clinic-iz", 0)
sink = ClickHouseSink(dsn)
items = [(r.record_type, r.value, ("t.norm.immunization", 0, k)) for k, r in enumerate(result.records)]
written = sink.write_batch(items, 1_700_000_000_000)
again = sink.write_batch(items, 1_700_000_000_000)  # a replay of the same batch adds nothing
rows = sink.query(
    "SELECT immunization_id, status, vaccine_code, amount, amount_units, lot_number, manufacturer, site, route,"
    " funding_eligibility FROM {db}.immunizations FINAL ORDER BY immunization_id"
)
raw_count = sink.query("SELECT count() FROM {db}.immunizations")[0][0]
print(json.dumps({"written": written, "again": again, "rows": rows, "raw_count": raw_count}))
"""


def test_immunizations_table(tmp_path: Path):
    msg = tmp_path / "vxu.hl7"
    msg.write_bytes(VXU)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"chdb://{tmp_path / 'ch'}", str(msg)],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ),
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["written"]["immunizations"] == 3 and got["raw_count"] == 3
    assert [tuple(r) for r in got["rows"]] == [
        ("IZ-1", "completed", "08", 0.5, "mL", "LOT123", "MSD", "Left Thigh", "Intramuscular", "V02"),
        ("IZ-2", "not-done", "998", None, "", "", "", "", "", ""),
        ("IZ-3", "entered-in-error", "03", None, "", "", "", "", "", ""),
    ]
