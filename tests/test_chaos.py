"""The chaos harness in CI: one SIGKILL cycle of each kind on a 3-node cluster.

The shipped commands (``practiceflow gateways``, ``worker --no-sink``, ``sink``) run as
child processes against a 3-node KRaft cluster (replication 3, min.insync.replicas 2);
each cycle streams distinct HL7 messages over MLLP and kills the worker, the sink, the
gateways or one broker mid-stream, then restarts it. Every AA'd message must end in
exactly one outcome, and afterwards the audit chain must verify with no event twice and
ClickHouse must hold every row once (raw and FINAL). The full run (>= 20 cycles per
kind) is ``bench/chaos.py``; its numbers are in ``bench/CHAOS.md``.
"""

from __future__ import annotations

import pytest

from practiceflow.localstack.chaos import KINDS, Chaos

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]


def test_one_sigkill_cycle_of_each_kind_loses_and_duplicates_nothing(tmp_path):
    lines: list[str] = []
    chaos = Chaos(tmp_path, seed=3, log=lines.append)
    try:
        chaos.start()
        # a normal start-up logs no errors: the clients wait for the group coordinator
        # (streams/recovery.py wait_for_coordinator) instead of reporting it missing
        for name in ("gateways", "worker", "sink"):
            noisy = [ln for ln in chaos.tail(name, 200_000).splitlines() if "ERROR" in ln or ln.startswith("%3|")]
            assert not noisy, (name, noisy[:5])
        results = [chaos.cycle(kind, 1, messages=40, rate=20.0) for kind in KINDS]
        check = chaos.check_all()
    finally:
        chaos.stop()
    print("\n".join(lines))
    assert all(r.ok for r in results), [(r.kind, r.problems) for r in results]
    assert all(r.acked == r.sent for r in results), [(r.kind, r.acked, r.sent) for r in results]
    assert check["ok"], check["problems"]
    assert check["acked"] == 40 * len(KINDS)
    # Faust's data folders stay under the state dir, never in the working directory
    assert not list(tmp_path.glob("*-data")), list(tmp_path.glob("*-data"))
