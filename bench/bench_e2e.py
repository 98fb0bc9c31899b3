"""End-to-end benchmark: MLLP gateways -> Kafka -> the shipped worker -> normalized events.

Issue 8's mix through the REAL pieces, each in its own process as in production: a local
Kafka 4.1 broker and the Apicurio registry (``LocalStack``, or ``--bootstrap``/``--registry``
for a running stack), the MLLP gateways (``GatewayCore`` + ``DurableProducer``, one plain
listener per practice, run by this file in a child process) and ``practiceflow worker
--no-sink`` (the ClickHouse sink is its own consumer group and not on the path measured here;
``practiceflow sink`` runs it as a separate process in production).

What it reports (``run()`` returns a dict; ``python bench/bench_e2e.py`` records it in
``bench/results.json`` and ``bench/RESULTS.md`` under ``e2e``):

* ``throughput``: 20,000 distinct HL7 messages (60 % ORU^R01, half of those with 8 OBX, half
  with 1; 40 % ADT^A04) over 8 MLLP connections as fast as the gateways take them. msg/s end to
  end = messages / (first send -> last FlowEvent seen on ``pf.analytics.flow``); the gateways'
  own AA rate; worker CPU ms per message from ``/proc/<pid>/stat`` (user + system, all threads)
  over the phase.
* ``latency``: at fixed offered rates (50, 100, 200, 500 msg/s, open loop: a message is sent at
  its scheduled time whether or not earlier ones are done), p50/p95/p99 of MLLP send -> the
  message's FlowEvent seen by a consumer in this process.
* ``normalizer``: the bare HL7 normalizer (``normalize_hl7``) over the same messages, in this
  process, in the same run: the reference the end-to-end rate is compared with.
* ``ingest_only`` and ``worker_drain``: the backlog sent through the gateways with no worker
  running, then drained by a worker alone; each reports the CPU of every process per message
  and ``kafka_records_per_input``: the records it wrote to Kafka per input, by topic (every
  topic of the run, the worker's table changelogs included), and how many of them the worker
  reads again (bench/e2e_notes.md). The drain's rate and CPU are the normalizer's (first to last
  FlowEvent); it also waits for the whole worker to be idle and reports its CPU until then
  (``worker_cpu_ms_per_msg_until_idle``, ``until_idle_msgs_per_s``) and its threads' CPU by kind.
* ``two_workers``: two worker processes in one consumer group, partitions split by Kafka,
  the same 20,000 messages' shape sent again; per worker its CPU and the messages it
  normalized (from its own ``/metrics``), showing both share the load.

This file runs the phases; ``bench/e2e/`` holds the parts (the message mix, the MLLP senders and
FlowEvent watcher, the processes, the measurements, the profiler).

The load average is recorded beside every figure: the development machine has 2 cores
shared with other work, so a loaded machine's numbers are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from e2e.measure import (
    OTHERS,
    cpu_by_role,
    cpu_seconds,
    cpu_split,
    loadavg,
    pct,
    records_per_input,
    threads_cpu,
    topic_ends,
    worker_input_suffixes,
)
from e2e.messages import PARTITIONS, PRACTICES, message_ids, mix, normalizer_rates
from e2e.mllp import CONNECTIONS, FlowWatcher, send_all
from e2e.procs import (
    Procs,
    free_port,
    gateway_main,
    normalized_count,
    start_gateways,
    start_worker,
    wait_http,
    worker_env,
)
from e2e.profile import start_profile, top_entries

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RATES = (50, 100, 200, 500)
TARGETS = {"e2e_msgs_per_s": 3000, "p99_ms_at_500": 250, "worker_cpu_ms_per_msg": 0.3}


# ---------------------------------------------------------------------------------- phases
def run_batch(ports, msgs, ids, watcher: FlowWatcher, worker_pids: list[int], *, rate=None, timeout=600.0):
    cpu0 = {pid: cpu_seconds(pid) for pid in worker_pids}
    roles0 = cpu_by_role(worker_pids)
    load0 = loadavg()
    t0 = time.perf_counter()
    sent = asyncio.run(send_all(ports, msgs, rate=rate))
    done = watcher.wait(ids, timeout)
    seen = [watcher.seen.get(i) for i in ids]
    last = max(s for s in seen if s is not None) if any(seen) else float("nan")
    first_send = min(sent["sent_at"])
    cpu = {pid: cpu_seconds(pid) - cpu0[pid] for pid in worker_pids}
    split = cpu_split(roles0, cpu_by_role(worker_pids), len(msgs))
    lat = [(s - a) * 1000 for s, a in zip(seen, sent["sent_at"], strict=True) if s is not None]
    return {
        "messages": len(msgs),
        "all_seen": done,
        "missing": sum(1 for s in seen if s is None),
        "acks": sent["acks"],
        "gateway_ack_msgs_per_s": round(len(msgs) / (sent["acked_at"] - first_send), 1),
        "e2e_seconds": round(last - first_send, 3),
        "e2e_msgs_per_s": round(len(msgs) / (last - first_send), 1),
        "worker_cpu_s": {str(pid): round(c, 2) for pid, c in cpu.items()},
        "worker_cpu_ms_per_msg": round(sum(cpu.values()) * 1000 / len(msgs), 3),
        "cpu_ms_per_msg_by_role": split,
        "latency_ms": {"p50": round(pct(lat, 50), 1), "p95": round(pct(lat, 95), 1), "p99": round(pct(lat, 99), 1)},
        "wall_s": round(time.perf_counter() - t0, 2),
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
    }


def settle(pids: list[int], *, idle_share: float = 0.3, window: float = 2.0, timeout: float = 600.0) -> float:
    """Wait until the workers are idle (together under ``idle_share`` of a core over ``window``
    seconds; an idle worker still uses about 0.12 of a core polling its ~70 partitions) and
    return how long that took. A phase's FlowEvents are seen before the worker has
    finished the rest of that phase's work (audit chaining, de-dup sweeps): without this wait the
    next phase's latency measured the previous phase's backlog (p50 14.7 s at 50 msg/s on an
    idle machine, 2026-12-02)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        c0 = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(window)
        if (sum(cpu_seconds(pid) for pid in pids) - c0) / window < idle_share:
            break
    return round(time.perf_counter() - t0, 1)


def ingest_only(ports: dict[str, int], msgs: list[tuple[str, bytes]], bootstrap: str, prefix: str) -> dict[str, Any]:
    """The gateways and the broker alone (no worker running): how fast the MLLP gateways
    acknowledge, and what each process spends per message and per second doing only that.

    CPU per message is not a constant: the broker's load is mostly fixed (clients polling it),
    so its figure per message falls as the rate rises. ``cores_by_role`` (CPU seconds per
    second) shows how much of the machine each process used at the rate reached."""
    load0 = loadavg()
    ends0 = topic_ends(bootstrap, prefix)
    before = cpu_by_role([])
    t0 = time.perf_counter()
    sent = asyncio.run(send_all(ports, msgs))
    wall = time.perf_counter() - t0
    split = cpu_split(before, cpu_by_role([]), len(msgs))
    return {
        "kafka_records_per_input": records_per_input(
            ends0, topic_ends(bootstrap, prefix), len(msgs), prefix, worker_input_suffixes()
        ),
        "messages": len(msgs),
        "acks": sent["acks"],
        "gateway_ack_msgs_per_s": round(len(msgs) / (sent["acked_at"] - min(sent["sent_at"])), 1),
        "cpu_ms_per_msg_by_role": split,
        "cores_by_role": {r: None if v is None else round(v * len(msgs) / 1000 / wall, 3) for r, v in split.items()},
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
    }


def drain(
    procs: Procs, env: dict[str, str], ids: list[str], watcher: FlowWatcher, profile: Path | None = None
) -> dict[str, Any]:
    """Start the worker on a backlog already in the raw topic; rate = backlog / (first -> last
    FlowEvent seen), CPU between those two moments (sampled every 0.1 s).

    The last FlowEvent says only that the normalizer is done: the worker's downstream agents (the
    context fold, the audit chain, the work-items table) are still working through what it wrote.
    So the drain then waits until the worker is idle and its topics stop growing, and reports the
    worker's CPU from the first FlowEvent until then as well (``worker_cpu_ms_per_msg_until_idle``),
    with the Kafka records the drain wrote per input."""
    load0 = loadavg()
    bootstrap, prefix = env["PRACTICEFLOW_KAFKA_BOOTSTRAP"], env["PRACTICEFLOW_TOPIC_PREFIX"]
    ends0 = topic_ends(bootstrap, prefix)  # the backlog is on the raw topic already
    proc = procs.spawn("worker-drain", [sys.executable, "-m", "practiceflow.cli", "worker", "--no-sink"], env)
    samples: list[tuple[float, dict[str, float | None]]] = []  # (time, CPU seconds by role)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set() and proc.poll() is None:
            roles = cpu_by_role([proc.pid])
            if roles["worker"] is None:  # the worker ended
                return
            samples.append((time.perf_counter(), roles))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    spy = start_profile(proc.pid, profile) if profile else None
    done = watcher.wait(ids, 900)
    stop.set()
    sampler.join(2)
    seen = [watcher.seen[i] for i in ids if i in watcher.seen]
    first, last = min(seen), max(seen)

    def at(t: float) -> dict[str, float | None]:
        return min(samples, key=lambda s: abs(s[0] - t))[1]

    split = cpu_split(at(first), at(last), len(seen))
    # what the drain wrote to Kafka per input, once the downstream agents are idle too: settled
    # (under 0.3 of a core for 2 s) and no topic grew over 3 s, asked up to three times
    settled_s, stable = 0.0, False
    ends1: dict[str, int] = {}
    for _ in range(3):
        settled_s += settle([proc.pid], timeout=180)
        ends1 = topic_ends(bootstrap, prefix)
        time.sleep(3)
        stable = topic_ends(bootstrap, prefix) == ends1
        if stable:
            break
    cpu_idle = cpu_seconds(proc.pid)
    if spy is not None:  # until idle: the context fold and audit chain work on after the normalizer
        spy.send_signal(signal.SIGINT)
        spy.wait(120)
    threads = threads_cpu(proc.pid)  # the worker's whole life, start-up included
    per_input = records_per_input(ends0, ends1, len(ids), prefix, worker_input_suffixes())
    worker_first = at(first)["worker"]
    procs.stop(proc)
    return {
        "kafka_records_per_input": per_input,
        "records_stable": stable,
        "worker_threads_cpu_s": threads,
        "settled_after_last_flow_event_s": round(settled_s, 1),
        # inputs / (first FlowEvent -> idle again): the whole worker's rate, not only the normalizer's
        # (approximate: settle reads 2 s windows, and the stability check waits 3 s)
        "until_idle_msgs_per_s": round(len(seen) / (last - first + settled_s), 1),
        # the worker's CPU from the first FlowEvent until it was idle again: every agent's share
        "worker_cpu_ms_per_msg_until_idle": (
            None if worker_first is None else round((cpu_idle - worker_first) * 1000 / len(seen), 3)
        ),
        "messages": len(ids),
        "all_seen": done,
        "drain_seconds": round(last - first, 3),
        "drain_msgs_per_s": round(len(seen) / (last - first), 1),
        "worker_cpu_ms_per_msg": split["worker"],
        "cpu_ms_per_msg_by_role": split,
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
        **({"profile": top_entries(profile)} if profile else {}),
    }


def run(
    *,
    messages: int = 20_000,
    rate_seconds: float = 10.0,
    rates: tuple[int, ...] = RATES,
    two_workers: bool = True,
    bootstrap: str | None = None,
    registry: str | None = None,
    profile: bool = False,
    only_latency: bool = False,
    only_drain: bool = False,
) -> dict[str, Any]:
    from practiceflow.processors.hl7 import speedups_status
    from practiceflow.settings import REPO_ROOT
    from practiceflow.streams.topics import create_topics

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "hl7_modules": speedups_status(),
        "loadavg_at_start": loadavg(),
        "mix": "60% ORU^R01 (half 8 OBX, half 1 OBX), 40% ADT^A04, distinct",
        "connections": CONNECTIONS,
        "partitions": PARTITIONS,
        "practices": len(PRACTICES),
        "targets": TARGETS,
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    OTHERS.clear()  # this run's processes only
    stack = None
    if bootstrap is None:
        from practiceflow.localstack.stack import LocalStack

        stack = LocalStack(workdir / "stack", cache_dir=REPO_ROOT / ".stack" / "cache")
        info = stack.start()
        bootstrap, registry = info.bootstrap, info.registry_url
        OTHERS["broker"] = list(info.kafka_pids)
        OTHERS["registry"] = [info.registry_pid] if info.registry_pid else []
    OTHERS["bench"] = [os.getpid()]
    assert registry is not None
    procs = Procs(workdir)
    counter = iter(range(0, 10**9, 1_000_000))  # message-number blocks: every message distinct
    try:
        # ---------------------------------------------------------------- one worker
        prefix = f"b{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, prefix, PARTITIONS, 1)
        gw, ports = start_gateways(procs, bootstrap, registry, prefix)
        OTHERS["gateways"] = [gw.pid]
        web = free_port()
        env = worker_env(bootstrap, registry, prefix, f"bench-{prefix}", workdir / "w1", web)
        (workdir / "w1").mkdir()
        worker = start_worker(procs, "worker1", env)
        watcher = FlowWatcher(bootstrap, f"{prefix}.analytics.flow")
        warm = mix(next(counter), 400)
        warm_ids, _ = message_ids(warm)
        out["warmup"] = run_batch(ports, warm, warm_ids, watcher, [worker.pid], timeout=180)

        msgs = mix(next(counter), messages)
        ids, _ = message_ids(msgs)
        # the bare normalizer's rate, over the same messages, at least 2 s
        out["normalizer"] = {**normalizer_rates(msgs[:5000]), "loadavg": loadavg()}
        if not (only_latency or only_drain):
            out["settled_before_throughput_s"] = settle([worker.pid])
            out["throughput"] = run_batch(ports, msgs, ids, watcher, [worker.pid])
        out["latency"] = {}
        for rate in () if only_drain else rates:
            batch = mix(next(counter), int(rate * rate_seconds))
            bids, _ = message_ids(batch)
            settled = settle([worker.pid])
            res = run_batch(ports, batch, bids, watcher, [worker.pid], rate=rate, timeout=120)
            out["latency"][str(rate)] = {"settled_before_s": settled, **res}
        if only_latency:
            watcher.close()
            return out
        # the worker alone: a backlog written while it was stopped, drained after its restart; the
        # earlier phases' downstream work done first, so the drain's counts are the drain's own
        out["settled_before_ingest_only_s"] = settle([worker.pid])
        procs.stop(worker)
        backlog = mix(next(counter), messages)
        bids, _ = message_ids(backlog)
        out["ingest_only"] = ingest_only(ports, backlog, bootstrap, prefix)
        out["worker_drain"] = drain(procs, env, bids, watcher, workdir / "worker-profile.txt" if profile else None)
        watcher.close()
        # ---------------------------------------------------------------- two workers
        if two_workers and not only_drain:
            prefix2 = f"b{uuid.uuid4().hex[:6]}"
            create_topics(bootstrap, prefix2, PARTITIONS, 1)
            gw2, ports2 = start_gateways(procs, bootstrap, registry, prefix2)
            OTHERS["gateways"] = [gw2.pid]  # the first run's gateways are idle from here on
            webs = [free_port(), free_port()]
            workers = []
            for n, port in enumerate(webs, start=1):
                (workdir / f"ww{n}").mkdir()
                workers.append(
                    start_worker(
                        procs,
                        f"two-worker{n}",
                        worker_env(bootstrap, registry, prefix2, f"bench2-{prefix2}", workdir / f"ww{n}", port),
                    )
                )
            time.sleep(15)  # let the group settle with both members before measuring
            for port in webs:
                wait_http(f"http://127.0.0.1:{port}/readyz", 120)
            watcher2 = FlowWatcher(bootstrap, f"{prefix2}.analytics.flow")
            msgs2 = mix(next(counter), messages)
            ids2, _ = message_ids(msgs2)
            res = run_batch(ports2, msgs2, ids2, watcher2, [w.pid for w in workers])
            res["normalized_per_worker"] = [normalized_count(port) for port in webs]
            out["two_workers"] = res
            watcher2.close()
    finally:
        procs.stop_all()
        if stack is not None:
            stack.stop()
    out["loadavg_at_end"] = loadavg()
    out["workdir"] = str(workdir)
    return out


def record(result: dict[str, Any]) -> None:
    """Store the result under ``e2e`` in bench/results.json and bench/RESULTS.md (as run_all does)."""
    sys.path.insert(0, str(HERE))
    import run_all  # bench/ is not a package

    path = HERE / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["e2e"] = result
    path.write_text(json.dumps(results, indent=2) + "\n")
    run_all.write_markdown(results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateway", help=argparse.SUPPRESS)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--rates", default=",".join(map(str, RATES)))
    ap.add_argument("--no-two-workers", action="store_true")
    ap.add_argument("--only-latency", action="store_true", help="warm-up and the fixed-rate phases only")
    ap.add_argument("--only-drain", action="store_true", help="warm-up and the worker's backlog drain only")
    ap.add_argument("--bootstrap")
    ap.add_argument("--registry")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the worker in the backlog drain, until it is idle again (py-spy beside the interpreter)",
    )
    ap.add_argument("--no-record", action="store_true", help="print only; do not update bench/results.json")
    args = ap.parse_args()
    if args.gateway:
        gateway_main(args.gateway)
        return 0
    result = run(
        messages=args.messages,
        rate_seconds=args.rate_seconds,
        rates=tuple(int(r) for r in args.rates.split(",") if r),
        two_workers=not args.no_two_workers,
        bootstrap=args.bootstrap,
        registry=args.registry,
        profile=args.profile,
        only_latency=args.only_latency,
        only_drain=args.only_drain,
    )
    print(json.dumps(result, indent=2))
    if not (args.no_record or args.only_latency or args.only_drain):  # a partial run never replaces the whole
        record(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
