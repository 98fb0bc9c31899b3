"""Run every benchmark and record the results in bench/RESULTS.md and bench/results.json.

Usage: .venv/bin/python bench/run_all.py [name ...]   (names: hl7, x12, fhir, ocr, ocr_fax, fax_classify, context)
Numbers are single-core throughput on the machine that runs it; the file records
which machine (cores, CPU model) so later runs compare like with like.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("hl7", "x12", "fhir", "ocr", "ocr_fax", "fax_classify", "context", "denials")
# run by themselves (they start a broker, gateways and workers): `.venv/bin/python bench/bench_e2e.py`
SEPARATE = ("e2e",)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"bench_{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_markdown(results: dict) -> None:
    """bench/RESULTS.md from the results dict (the e2e bench, run on its own, is appended)."""
    lines = [
        "# Benchmark results",
        "",
        f"Recorded {results['at']} on {results['machine']['cores']} cores "
        f"({results['machine']['cpu']}), Python {results['machine']['python']}. "
        "Re-run with `.venv/bin/python bench/run_all.py`.",
        "",
    ]
    for name in [b for b in (*BENCHES, *SEPARATE) if b in results]:
        lines += [f"## {name}", "", "```json", json.dumps(results[name], indent=2), "```", ""]
        notes = HERE / f"{name}_notes.md"  # prose that goes with a result (what it means, profiles)
        if notes.exists():
            lines += [notes.read_text().strip(), ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines))


def main(names: list[str]) -> int:
    path = HERE / "results.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    results = previous if names else {k: v for k, v in previous.items() if k in SEPARATE}  # a subset updates in place
    results.update(
        {
            "machine": {"cores": os.cpu_count(), "cpu": _cpu(), "python": platform.python_version()},
            "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
    )
    for name in names or BENCHES:
        print(f"running bench_{name} ...", flush=True)
        results[name] = _load(name).run()
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
