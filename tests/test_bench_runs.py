"""The committed benchmarks still run (their numbers are recorded by bench/run_all.py,
not asserted here: speed is measured in the benchmark, not in timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures import REPO_ROOT


def test_hl7_bench_per_type_runs_and_reports_the_form():
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "bench_hl7.py"), "--per-type", "0.05"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    res = json.loads(out.stdout)
    assert set(res["forms"]) == {"dates", "parser", "normalize"}
    for label in ("oru_r01_20seg", "adt_a01_pid_pv1_in1"):
        assert res[label]["records"] > 0 and res[label]["normalize_msgs_per_s"] > 0
    assert res["oru_r01_20seg"]["records"] == 16  # 1 patient + 1 order + 14 observations
