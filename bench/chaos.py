"""The chaos run: >= 20 SIGKILL cycles per kind (worker, sink, gateways, one broker of 3).

    .venv/bin/python bench/chaos.py [--cycles 20] [--kinds worker,sink,gateways,broker]
                                    [--messages 100] [--rate 25] [--state DIR]

Everything (3-node KRaft cluster, registry, ``practiceflow gateways``, ``worker``,
``sink``) runs on this machine under ``--state`` (a fresh temporary folder by default).
Each cycle sends ``--messages`` distinct HL7 messages over MLLP at ``--rate``/s and
SIGKILLs the cycle's victim at a random point, restarting it after 0.5 to 3 s; the checks are
in ``practiceflow/localstack/chaos.py``. After each kind's block, the whole-run checks
(outcomes, audit chain, ClickHouse raw and FINAL) run. Results: ``bench/chaos_results.json``
and ``bench/CHAOS.md``; exit status 1 when any cycle or check failed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from practiceflow.localstack.chaos import KINDS, Chaos

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=20, help="cycles per kind")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--messages", type=int, default=100, help="messages per cycle")
    ap.add_argument("--rate", type=float, default=25.0, help="messages per second offered")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--state", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "chaos_results.json")
    ap.add_argument("--md", type=Path, default=HERE / "CHAOS.md")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    state = args.state or Path(tempfile.mkdtemp(prefix="pf-chaos-"))
    started = time.time()

    def log(line: str) -> None:
        print(line, flush=True)

    chaos = Chaos(state, seed=args.seed, log=log)
    results, checks = [], []
    try:
        chaos.start()
        for kind in kinds:
            for n in range(1, args.cycles + 1):
                results.append(chaos.cycle(kind, n, messages=args.messages, rate=args.rate))
                write(args, kinds, results, checks, started)
            try:
                checks.append({"after": kind, **chaos.check_all()})
            except Exception as exc:  # a check that could not run is a failed check, not a lost run
                checks.append({"after": kind, "ok": False, "problems": [f"check did not run: {exc}"[:500]]})
                if "sink" not in chaos.procs:
                    chaos.spawn("sink")
            write(args, kinds, results, checks, started)
    finally:
        chaos.stop()
    write(args, kinds, results, checks, started)
    ok = all(r.ok for r in results) and all(c["ok"] for c in checks)
    return 0 if ok else 1


def write(args: argparse.Namespace, kinds: list[str], results: list, checks: list, started: float) -> None:
    data = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "started": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(started)),
        "minutes": round((time.time() - started) / 60, 1),
        "settings": {"messages_per_cycle": args.messages, "rate": args.rate, "seed": args.seed},
        "cycles": [asdict(r) for r in results],
        "checks": checks,
    }
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    lines = [
        "# Chaos harness results",
        "",
        f"`bench/chaos.py` run of {data['started']} ({data['minutes']} min) on {data['machine']};",
        f"{args.messages} distinct HL7 messages per cycle over MLLP at {args.rate}/s, one SIGKILL per cycle.",
        "Raw per-cycle data: `bench/chaos_results.json`.",
        "",
        "| kill | cycles | passed | AA'd | resent | lost | conflicting | rewritten | drain s (median / max) "
        "| resume s (median / max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        rs = [r for r in results if r.kind == kind]
        if not rs:
            continue
        drains = [r.drained_s for r in rs]
        resumes = [r.resumed_s for r in rs if r.resumed_s is not None]
        resume = f"{statistics.median(resumes):.1f} / {max(resumes):.1f}" if resumes else "—"
        lines.append(
            f"| {kind} | {len(rs)} | {sum(r.ok for r in rs)} | {sum(r.acked for r in rs)} | "
            f"{sum(r.resends for r in rs)} | {sum(r.lost for r in rs)} | {sum(r.conflicting for r in rs)} | "
            f"{sum(r.rewritten for r in rs)} | "
            f"{statistics.median(drains):.1f} / {max(drains):.1f} | {resume} |"
        )
    lines += ["", "Whole-run checks after each kind's block (outcomes, audit chain, ClickHouse raw and FINAL):", ""]
    for c in checks:
        verdict = "pass" if c["ok"] else "FAIL: " + "; ".join(c["problems"])
        if "acked" not in c:
            lines.append(f"- after {c['after']}: {verdict}")
            continue
        lines.append(
            f"- after {c['after']}: {c['acked']} AA'd messages, {c['raw_copies']} raw copies, "
            f"{c['audit_events']} audit events (no id twice, chain verified), "
            f"{c['outcomes_rewritten_by_replay']} outcomes rewritten by a replay under the same keys; "
            f"ClickHouse rows written twice for one output (raw): "
            f"{sum(t.get('rows_twice_for_one_output', t.get('rows_twice_for_one_kafka_message', 0)) for t in c['clickhouse'].values())}"
            f", raw rows beyond FINAL: {sum(t['raw'] - t['final'] for t in c['clickhouse'].values())}: {verdict}"
        )
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["", "Failed cycles:", ""]
        lines += [f"- {r.kind} #{r.cycle}: {'; '.join(r.problems)}" for r in failed]
    args.md.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
