"""``practiceflow sink`` as production runs it (the CLI, its arguments and settings), except that
the process SIGKILLs itself right after its N-th committed batch: the reconcile test's kill point
(tests/streams/test_clickhouse_day_reconcile.py). Killing from outside when the committed lag
dropped raced the sink: it could drain everything between two probes, or not commit at all
before the test gave up (review S10). Here the kill comes after exactly N commits.

Usage: python tests/streams/sink_kill_after.py N sink --group ... (the CLI's arguments).
"""

from __future__ import annotations

import os
import signal
import sys

from practiceflow import cli
from practiceflow.streams.clickhouse_sink import ClickHouseSinkConsumer


def main(after: int, argv: list[str]) -> int:
    commit = ClickHouseSinkConsumer._commit

    def commit_then_die(self: ClickHouseSinkConsumer, consumer, batch) -> None:  # type: ignore[no-untyped-def]
        commit(self, consumer, batch)
        if self.counts.get("clickhouse.batches", 0) >= after:  # counted only when the commit succeeded
            os.kill(os.getpid(), signal.SIGKILL)

    ClickHouseSinkConsumer._commit = commit_then_die  # type: ignore[method-assign]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
