"""Reproduce the sink's rc -6 (SIGABRT) under broker kills, and check the fix.

librdkafka 2.16.0 aborts the process with ``rd_kafka_enq_once_del_source_return: Assertion
`eonce->refcnt > 0' failed`` when a coordinator-targeted Admin API request (ListConsumerGroupOffsets,
DescribeConsumerGroups, ...) loses its connection: the error path of ``rd_kafka_admin_coord_request``
frees the request's ``eonce`` and the coordinator FSM uses it afterwards (librdkafka PR #5397,
open when this was written). ``wait_for_coordinator`` asked with ListConsumerGroupOffsets at every
sink and worker start, so a start during a broker kill could take the process down.

This script starts a 3-node KRaft cluster, commits an offset for a group, then runs short-lived
child processes that each poll "is the coordinator there?" in a loop (``--method admin``: the old
AdminClient.list_consumer_group_offsets; ``--method consumer``: ``wait_for_coordinator`` as shipped)
while the parent SIGKILLs and restarts a broker chosen at random (seeded), then counts the
children that died by a signal.

    python bench/repro_coord_abort.py --method admin --rounds 20
    python bench/repro_coord_abort.py --method consumer --rounds 20
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time
from concurrent.futures import TimeoutError as FutureTimeout
bootstrap, group, method, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
end = time.monotonic() + seconds
if method == "admin":
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
    from confluent_kafka.admin import AdminClient
    while time.monotonic() < end:  # a new client per start, as the sink and worker did
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        for _ in range(20):
            try:
                for fut in admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=2).values():
                    fut.result(3)
            except (KafkaException, FutureTimeout):
                pass
        del admin
else:
    from practiceflow.streams.recovery import wait_for_coordinator
    while time.monotonic() < end:
        for _ in range(20):
            wait_for_coordinator(bootstrap, [group], timeout=3)
print("ok")
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", choices=("admin", "consumer"), required=True)
    ap.add_argument("--rounds", type=int, default=20, help="broker kills")
    ap.add_argument("--children", type=int, default=3, help="asking processes per round")
    ap.add_argument("--out", type=Path, help="append the result (JSON) to this file")
    args = ap.parse_args(argv)

    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from practiceflow.localstack.kafka import new_cluster

    group = "repro-coord"
    with tempfile.TemporaryDirectory(prefix="pf-repro-") as tmp:
        cluster = new_cluster(Path(tmp) / "kafka", ROOT / ".stack" / "cache", nodes=3)
        cluster.start()
        try:
            admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
            for fut in admin.create_topics([NewTopic("repro", 3, 3)]).values():
                fut.result(30)
            c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
            c.commit(offsets=[TopicPartition("repro", 0, 0)], asynchronous=False)
            c.close()
            signalled: list[int] = []
            ok = 0
            rng = random.Random(7)
            for rnd in range(args.rounds):
                kids = [
                    subprocess.Popen(
                        [sys.executable, "-c", CHILD, cluster.bootstrap, group, args.method, "8"],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for _ in range(args.children)
                ]
                time.sleep(rng.uniform(0.5, 2.0))
                node = rng.choice(cluster.nodes).node_id
                cluster.kill_node(node)
                time.sleep(rng.uniform(1.0, 3.0))
                cluster.restart_node(node)
                for k in kids:
                    try:
                        _, err = k.communicate(timeout=120)
                    except subprocess.TimeoutExpired:
                        k.kill()  # a hung child must not outlive the run
                        _, err = k.communicate()
                    if k.returncode < 0:
                        signalled.append(k.returncode)
                        tail = [ln for ln in err.splitlines() if "ssert" in ln]
                        print(f"round {rnd}: child died rc {k.returncode} {tail[-1:]}", flush=True)
                    elif k.returncode == 0:
                        ok += 1
                    else:
                        print(f"round {rnd}: child rc {k.returncode}: {err[-300:]}", flush=True)
                time.sleep(3)  # the restarted node catches up
            result = {
                "method": args.method,
                "rounds": args.rounds,
                "children": args.rounds * args.children,
                "ok": ok,
                "killed_by_signal": len(signalled),
                "signals": sorted(set(signalled)),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            print(json.dumps(result), flush=True)
            if args.out:
                with args.out.open("a") as fh:
                    fh.write(json.dumps(result) + "\n")
            return 0
        finally:
            cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main())
