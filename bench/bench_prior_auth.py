"""Single-core speed of the prior-authorization step, without the LLM (issue 11: a draft within 1 s).

``run()`` returns a dict; ``python bench/bench_prior_auth.py [seconds]`` prints it as JSON and
writes ``bench/results_prior_auth.json``.

The four sample-day cases (practiceflow/sampleday/prior_auth.py: MRI lumbar spine, home
oxygen, CT, sleep study) are normalized from their HL7 and folded into patient contexts
once; then each order goes through the whole pure step (detection, every criterion
against the context, ICD-10-CM checks, the PAS Bundle built and validated by
fhir.resources, the 278 written, the letter rendered to PDF, the work item built):

* **drafts per second** (wall and per CPU-second) over the four orders, repeated;
* **draft latency** p50 / p99 / max of one order -> StepResult (what the worker adds on
  top of the context fold; the broker's hops are measured by the end-to-end test).

The ICD-10-CM code set is loaded before timing (a one-off ~3 CPU-s at the worker's first
diagnosis check, not per draft).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import practiceflow  # noqa: F401
except ImportError:  # pragma: no cover - a checkout without the editable install
    sys.path.insert(0, str(HERE.parent))
from practiceflow.processors.context import snapshot  # noqa: E402
from practiceflow.processors.hl7.normalize import normalize_hl7  # noqa: E402
from practiceflow.processors.workflows.prior_auth.codes import check  # noqa: E402
from practiceflow.processors.workflows.prior_auth.rules import load_prior_auth_rules  # noqa: E402
from practiceflow.processors.workflows.prior_auth.step import PriorAuthContext, draft  # noqa: E402
from practiceflow.sampleday import prior_auth as spa  # noqa: E402
from practiceflow.sampleday.people import make_people  # noqa: E402

PID = "bench-practice"
TARGET_P99_MS = 1000.0


def cases() -> list[tuple[PriorAuthContext, dict]]:
    """(context with the order folded in, the order) for each sample-day case."""
    people = spa.patients(make_people(40, 7))
    controls = iter(range(900001, 999999))
    out = []
    for i, p in enumerate(people):
        ctx = snapshot.empty(PID, p.mrn)
        order = None
        for msg in spa.history(p, i, date(2026, 11, 27), controls):
            for rec in normalize_hl7(msg, PID, 0).records:
                if rec.record_type in snapshot.CONTEXT_RECORDS and rec.value.get("patient_id") in (None, p.mrn):
                    ctx = snapshot.apply(ctx, rec.record_type, rec.value)
                    if rec.record_type == "Order" and rec.value["order_id"] == spa.order_id(i):
                        order = rec.value
        assert order is not None
        out.append((PriorAuthContext(ctx), order))
    return out


def run(min_seconds: float = 3.0) -> dict:
    rules = load_prior_auth_rules()
    check("M54.16")  # load the code set (once per process)
    work = cases()
    drafts_per_order = [len(draft(c, "Order", o, rules, 0).result.drafts) for c, o in work]
    lat: list[float] = []
    start, cpu0 = time.perf_counter(), time.process_time()
    n = 0
    while time.perf_counter() - start < min_seconds or len(lat) < 100:
        for c, o in work:
            t0 = time.perf_counter()
            draft(c, "Order", o, rules, 1_790_000_000_000 + n)
            lat.append((time.perf_counter() - t0) * 1000)
            n += 1
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    lat.sort()
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "orders": len(work),
        "drafts_per_order": drafts_per_order,
        "authorizations_drafted": n,
        "pa_drafts_per_second": round(n / wall, 1),
        "pa_drafts_per_cpu_second": round(n / cpu, 1) if cpu > 0 else None,
        "draft_latency_ms_p50": round(statistics.median(lat), 2),
        "draft_latency_ms_p99": round(lat[max(0, int(len(lat) * 0.99) - 1)], 2),
        "draft_latency_ms_max": round(lat[-1], 2),
        "target_p99_ms": TARGET_P99_MS,
        "target_met": lat[max(0, int(len(lat) * 0.99) - 1)] <= TARGET_P99_MS,
        "llm": False,
    }


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    result = run(seconds)
    print(json.dumps(result, indent=2))
    if seconds >= 1.0:
        result["recorded_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (HERE / "results_prior_auth.json").write_text(json.dumps(result, indent=2) + "\n")
