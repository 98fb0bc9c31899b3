"""Single-core throughput of the HL7 v2 processor.

``run()`` returns a dict; ``python bench/bench_hl7.py`` prints it as JSON.

Measured: ``normalize_hl7`` (parse + records) and parse-only, messages/second, on
(a) a 20-segment ORU^R01 and (b) an ADT^A01 with PID/PV1/IN1, each timed with
``time.perf_counter`` over at least ``min_seconds``; plus hl7apy's full parse of
the same messages (a handful of iterations) for comparison. Target: >= 10,000
normalized messages/s per core.

The parser and normalizer normally run compiled by Cython (``setup.py``); ``forms``
says which form ran, and ``pure_python`` repeats the per-type numbers in a child
interpreter with ``PRACTICEFLOW_PURE_PYTHON=1`` (the fall-back when there is no compiler).
``python bench/bench_hl7.py --per-type`` prints only the per-type numbers.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import time

from practiceflow.processors.hl7 import speedups_status
from practiceflow.processors.hl7.normalize import normalize_hl7
from practiceflow.processors.hl7.parser import parse

TARGET_MSGS_PER_S = 10_000

ORU_R01 = (
    "MSH|^~\\&|LAB_APP|CITY_LAB|EHR|FAMILY_PRACTICE|20240305143000-0500||ORU^R01^ORU_R01|LAB20240305001|P|2.5.1|||AL|NE\r"
    "PID|1||MRN445566^^^FAMPRAC^MR~123-45-6789^^^SSA^SS||GARCIA^MARIA^ELENA||19780214|F|||"
    "742 EVERGREEN TER^^SPRINGFIELD^IL^62704^USA^H||(217)555-0142^PRN^PH|||M\r"
    "PV1|1|O|CLINIC^^^FAMPRAC||||1234567890^WELBY^MARCUS^^^^MD|||||||||||V778899\r"
    "ORC|RE|ORD7788|LAB5566||CM||||20240305080000|||1234567890^WELBY^MARCUS^^^^MD\r"
    "OBR|1|ORD7788|LAB5566|80053^Comprehensive metabolic panel^CPT|||20240305081500|||||||||"
    "1234567890^WELBY^MARCUS^^^^MD||||||20240305142500|||F\r"
    "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F|||20240305120000\r"
    "OBX|2|NM|3094-0^Urea nitrogen^LN||18|mg/dL|7-20|N|||F|||20240305120000\r"
    "OBX|3|NM|2160-0^Creatinine^LN||0.9|mg/dL|0.6-1.1|N|||F|||20240305120000\r"
    "OBX|4|NM|2951-2^Sodium^LN||139|mmol/L|136-145|N|||F|||20240305120000\r"
    "OBX|5|NM|2823-3^Potassium^LN||5.4|mmol/L|3.5-5.1|H|||F|||20240305120000\r"
    "OBX|6|NM|2075-0^Chloride^LN||101|mmol/L|98-107|N|||F|||20240305120000\r"
    "OBX|7|NM|2028-9^Carbon dioxide^LN||25|mmol/L|22-29|N|||F|||20240305120000\r"
    "OBX|8|NM|17861-6^Calcium^LN||9.6|mg/dL|8.6-10.3|N|||F|||20240305120000\r"
    "OBX|9|NM|2885-2^Protein^LN||7.1|g/dL|6.0-8.3|N|||F|||20240305120000\r"
    "OBX|10|NM|1751-7^Albumin^LN||4.4|g/dL|3.5-5.2|N|||F|||20240305120000\r"
    "OBX|11|NM|1975-2^Bilirubin total^LN||0.7|mg/dL|0.1-1.2|N|||F|||20240305120000\r"
    "OBX|12|NM|6768-6^Alkaline phosphatase^LN||88|U/L|44-147|N|||F|||20240305120000\r"
    "OBX|13|NM|1742-6^ALT^LN||31|U/L|7-56|N|||F|||20240305120000\r"
    "NTE|1|L|Specimen slightly hemolyzed\\.br\\potassium may be falsely elevated\r"
    "OBX|14|NM|1920-8^AST^LN||28|U/L|10-40|N|||F|||20240305120000\r"
).encode("ascii")

ADT_A01 = (
    "MSH|^~\\&|REG_APP|FAMPRAC|PF|FAMPRAC|20240305093000||ADT^A01^ADT_A01|REG000123|P|2.5.1|||AL|NE\r"
    "EVN|A01|20240305093000\r"
    "PID|1||MRN778899^^^FAMPRAC^MR||OKAFOR^CHIDI^A||19850722|M|||"
    "15 LAKE SHORE DR^APT 4B^CHICAGO^IL^60611^USA^H||(312)555-0199^PRN^PH~^NET^Internet^chidi@example.org|"
    "(312)555-0100^WPN^PH||S||ACCT5566^^^FAMPRAC^AN|987-65-4321\r"
    "PV1|1|O|MAIN^EXAM3^1^FAMPRAC||||4455667788^NGUYEN^LINH^^^^MD|||FM||||1|||4455667788^NGUYEN^LINH^^^^MD|"
    "OP|VN20240305001|||||||||||||||||||||||||20240305092500\r"
    "PV2|||Z00.00^Annual physical^I10\r"
    "IN1|1|BCBSIL01^PPO Gold|BCBSIL^^^^NIIP|Blue Cross Blue Shield of Illinois|PO BOX 805107^^CHICAGO^IL^60680||"
    "(800)555-0123|GRP55443|ACME CORP|||20240101|20241231|||OKAFOR^CHIDI^A|SEL^Self|19850722|"
    "15 LAKE SHORE DR^APT 4B^CHICAGO^IL^60611^USA||||||||||||||||XYZ123456789\r"
).encode("ascii")


def _rate(fn, data: bytes, min_seconds: float) -> dict:
    """Call fn(data) repeatedly for at least ``min_seconds`` of wall time (perf_counter).

    The run is cut into slices of ~0.2 s so that a shared, busy machine shows up in the
    numbers: ``msgs_per_s`` is the overall rate (all messages / all wall time),
    ``median_slice`` and ``best_slice`` the median and fastest slice, and
    ``cpu_msgs_per_s`` the rate per second of this process's CPU time
    (``time.process_time``), i.e. per core actually used.
    """
    for _ in range(300):  # warm caches (lru/memo tables, specialised bytecode)
        fn(data)
    gc.collect()
    batch = 200
    slices: list[float] = []
    n = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < min_seconds:
        t0 = time.perf_counter()
        k = 0
        while True:
            for _ in range(batch):
                fn(data)
            k += batch
            t1 = time.perf_counter()
            if t1 - t0 >= 0.2:
                break
        slices.append(k / (t1 - t0))
        n += k
        elapsed = t1 - start
    cpu = time.process_time() - cpu0
    slices.sort()
    return {
        "msgs_per_s": n / elapsed,
        "median_slice": slices[len(slices) // 2],
        "best_slice": slices[-1],
        "cpu_msgs_per_s": n / cpu if cpu > 0 else float("nan"),
        "iterations": n,
        "seconds": elapsed,
    }


def _hl7apy_rate(data: bytes, iterations: int = 20) -> float | None:
    try:
        from hl7apy.parser import parse_message
    except ImportError:  # pragma: no cover
        return None
    text = data.decode("ascii")
    parse_message(text, find_groups=True)  # warm the structure caches
    start = time.perf_counter()
    for _ in range(iterations):
        m = parse_message(text, find_groups=True)
        m.to_er7()
    return iterations / (time.perf_counter() - start)


def _calibration_ns() -> float:
    """Best-of-5 time (ns) to build one 16-key dict: a machine-speed reference that
    makes runs on a shared/throttled machine comparable (a quiet modern core: ~250 ns)."""
    import timeit

    stmt = "{'a':1,'b':2,'c':3,'d':4,'e':5,'f':6,'g':7,'h':8,'i':9,'j':10,'k':11,'l':12,'m':13,'n':14,'o':15,'p':16}"
    return min(timeit.repeat(stmt, number=100_000, repeat=5)) / 100_000 * 1e9


def _sample_day_mix(min_seconds: float) -> dict:
    """The HL7 traffic of the main job's synthetic day (ADT, SIU, ORU, RDE, MDM), round-robin.

    Reported beside the per-type numbers because a practice's feed is a mix; the
    per-type ORU number is the one compared with the target.
    """
    from practiceflow.sampleday.generate import build_day

    msgs = [m for m in build_day(seed=7, n_patients=40).mllp if b"|ORU^R01||" not in m]  # drop the broken one
    counts: dict[str, int] = {}
    for m in msgs:
        t = normalize_hl7(m, "bench", 0).message_type
        counts[t] = counts.get(t, 0) + 1
    n = 0
    start = time.perf_counter()
    while True:
        for m in msgs:
            normalize_hl7(m, "bench", 0)
        n += len(msgs)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    return {"messages": len(msgs), "types": counts, "normalize_msgs_per_s": round(n / elapsed)}


LABELS = ("oru_r01_20seg", "adt_a01_pid_pv1_in1")


def _per_type(out: dict, min_seconds: float, with_hl7apy: bool = True) -> None:
    def norm(d: bytes) -> object:
        return normalize_hl7(d, "bench-practice", 1_700_000_000_000)

    for label, data in zip(LABELS, (ORU_R01, ADT_A01), strict=True):
        result = norm(data)
        nrm = _rate(norm, data, min_seconds)
        prs = _rate(parse, data, min_seconds)
        apy = _hl7apy_rate(data) if with_hl7apy else None
        out[label] = {
            "bytes": len(data),
            "segments": data.count(b"\r"),
            "records": len(result.records),
            "normalize_msgs_per_s": round(nrm["msgs_per_s"]),
            "normalize_us_per_msg": round(1e6 / nrm["msgs_per_s"], 1),
            "normalize_median_slice_msgs_per_s": round(nrm["median_slice"]),
            "normalize_best_slice_msgs_per_s": round(nrm["best_slice"]),
            "normalize_cpu_msgs_per_s": round(nrm["cpu_msgs_per_s"]),
            "normalize_iterations": nrm["iterations"],
            "normalize_seconds": round(nrm["seconds"], 3),
            "parse_only_msgs_per_s": round(prs["msgs_per_s"]),
            "parse_only_cpu_msgs_per_s": round(prs["cpu_msgs_per_s"]),
            "parse_only_iterations": prs["iterations"],
            "hl7apy_full_parse_msgs_per_s": round(apy, 1) if apy else None,
            "speedup_vs_hl7apy_parse": round(nrm["msgs_per_s"] / apy, 1) if apy else None,
            "meets_target": nrm["msgs_per_s"] >= TARGET_MSGS_PER_S,
            "meets_target_cpu_time": nrm["cpu_msgs_per_s"] >= TARGET_MSGS_PER_S,
        }


def _pure_python(min_seconds: float) -> dict:
    """The per-type numbers again, with the Python modules (a child interpreter)."""
    env = {**os.environ, "PRACTICEFLOW_PURE_PYTHON": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--per-type", str(min_seconds)], env=env, check=True, capture_output=True, text=True
    )
    res = json.loads(proc.stdout)
    return {
        "forms": res["forms"],
        **{
            k: {
                m: res[k][m]
                for m in ("normalize_msgs_per_s", "normalize_us_per_msg", "normalize_cpu_msgs_per_s", "meets_target")
            }
            for k in LABELS
        },
    }


def run(min_seconds: float = 2.0) -> dict:
    out: dict = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "calibration_dict16_ns_at_start": round(_calibration_ns()),
        "min_seconds": min_seconds,
        "target_msgs_per_s": TARGET_MSGS_PER_S,
        "forms": speedups_status(),
    }
    _per_type(out, min_seconds)
    labels = LABELS
    out["sample_day_mix"] = _sample_day_mix(min_seconds)
    out["meets_target"] = all(out[k]["meets_target"] for k in labels)
    out["meets_target_cpu_time"] = all(out[k]["meets_target_cpu_time"] for k in labels)
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["calibration_dict16_ns_at_end"] = round(_calibration_ns())
    # This VM runs at about 700 ns per calibration dict when it is not throttled; it is
    # throttled to about half speed after sustained load (CPU credits). Such a run is
    # flagged rather than compared with the target.
    cal = (out["calibration_dict16_ns_at_start"], out["calibration_dict16_ns_at_end"])
    out["machine_throttled_during_run"] = max(cal) > 1.3 * min(cal)
    if set(out["forms"].values()) != {"python"}:
        out["pure_python"] = _pure_python(min_seconds)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--per-type":
        res: dict = {"forms": speedups_status()}
        _per_type(res, float(sys.argv[2]) if len(sys.argv) > 2 else 2.0, with_hl7apy=False)
        print(json.dumps(res))
    else:
        print(json.dumps(run(), indent=2))
