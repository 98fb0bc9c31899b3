"""Issue 8's message mix (ORU^R01 with 1 or 8 OBX, ADT^A04) and the bare normalizer's rate over it."""

from __future__ import annotations

import time

PARTITIONS = 4
# four tenants whose murmur2 partitions (of 4) differ, so two workers can split them
PRACTICES = ("bench-a", "bench-e", "bench-c", "bench-d")


def _ts(i: int) -> str:
    return f"202403{(i % 28) + 1:02d}{(i // 60) % 24:02d}{i % 60:02d}00"


def oru(i: int, obx: int, practice: str) -> bytes:
    segs = [
        f"MSH|^~\\&|LAB_APP|CITY_LAB|EHR|{practice}|{_ts(i)}||ORU^R01^ORU_R01|B{i:08d}|P|2.5.1|||AL|NE",
        f"PID|1||MRN{i % 5000:06d}^^^FAMPRAC^MR||PATIENT^TEST^{i % 97}||19780214|F|||"
        "742 EVERGREEN TER^^SPRINGFIELD^IL^62704^USA^H||(217)555-0142^PRN^PH|||M",
        "PV1|1|O|CLINIC^^^FAMPRAC||||1234567890^WELBY^MARCUS^^^^MD|||||||||||V778899",
        f"ORC|RE|ORD{i:08d}|LAB{i:08d}||CM||||20240305080000|||1234567890^WELBY^MARCUS^^^^MD",
        f"OBR|1|ORD{i:08d}|LAB{i:08d}|80053^Comprehensive metabolic panel^CPT|||20240305081500|||||||||"
        "1234567890^WELBY^MARCUS^^^^MD||||||20240305142500|||F",
    ]
    codes = [("2345-7", "Glucose", "mg/dL"), ("3094-0", "Urea nitrogen", "mg/dL"), ("2160-0", "Creatinine", "mg/dL")]
    codes += [("2951-2", "Sodium", "mmol/L"), ("2823-3", "Potassium", "mmol/L"), ("2075-0", "Chloride", "mmol/L")]
    codes += [("2028-9", "Carbon dioxide", "mmol/L"), ("17861-6", "Calcium", "mg/dL")]
    for n in range(obx):
        code, name, unit = codes[n]
        flag = "H" if (i + n) % 11 == 0 else "N"
        segs.append(
            f"OBX|{n + 1}|NM|{code}^{name}^LN||{50 + (i * 7 + n) % 90}|{unit}|10-200|{flag}|||F|||20240305120000"
        )
    return ("\r".join(segs) + "\r").encode("ascii")


def adt_a04(i: int, practice: str) -> bytes:
    segs = [
        f"MSH|^~\\&|REG_APP|FAMPRAC|PF|{practice}|{_ts(i)}||ADT^A04^ADT_A01|R{i:08d}|P|2.5.1|||AL|NE",
        f"EVN|A04|{_ts(i)}",
        f"PID|1||MRN{i % 5000:06d}^^^FAMPRAC^MR||OKAFOR^CHIDI^{i % 89}||19850722|M|||"
        "15 LAKE SHORE DR^APT 4B^CHICAGO^IL^60611^USA^H||(312)555-0199^PRN^PH|||S||ACCT5566^^^FAMPRAC^AN",
        "PV1|1|O|MAIN^EXAM3^1^FAMPRAC||||4455667788^NGUYEN^LINH^^^^MD|||FM||||1|||4455667788^NGUYEN^LINH^^^^MD|"
        f"OP|VN{i:08d}|||||||||||||||||||||||||20240305092500",
    ]
    return ("\r".join(segs) + "\r").encode("ascii")


def mix(start: int, n: int, practices: tuple[str, ...] = PRACTICES) -> list[tuple[str, bytes]]:
    """``n`` distinct messages (ids ``start``..): 60 % ORU (half 8 OBX, half 1), 40 % ADT^A04,
    round-robin over the practices."""
    out = []
    for i in range(start, start + n):
        practice = practices[i % len(practices)]
        k = i % 10
        if k < 3:
            out.append((practice, oru(i, 8, practice)))
        elif k < 6:
            out.append((practice, oru(i, 1, practice)))
        else:
            out.append((practice, adt_a04(i, practice)))
    return out


def message_ids(msgs: list[tuple[str, bytes]]) -> tuple[list[str], float]:
    """The id the gateway gives each message (the worker's FlowEvent key), and the bare
    normalizer's rate over them (msg/s, this process, one core)."""
    from practiceflow.processors.hl7.normalize import normalize_hl7

    ids = []
    t0 = time.perf_counter()
    for practice, payload in msgs:
        ids.append(normalize_hl7(payload, practice, 0).message_id)
    return ids, len(msgs) / (time.perf_counter() - t0)


def normalizer_rates(msgs: list[tuple[str, bytes]], seconds: float = 2.0) -> dict[str, float]:
    """The bare normalizer over ``msgs``, at least ``seconds``: msg/s of wall time (what a core
    gave it) and of CPU time (comparable with the worker's CPU per message on a loaded machine)."""
    from practiceflow.processors.hl7.normalize import normalize_hl7

    n, w0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - w0 < seconds:
        for practice, payload in msgs:
            normalize_hl7(payload, practice, 0)
        n += len(msgs)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "msgs_per_s": round(n / wall, 1),
        "cpu_msgs_per_s": round(n / cpu, 1),
        "cpu_ms_per_msg": round(cpu * 1000 / n, 4),
    }
