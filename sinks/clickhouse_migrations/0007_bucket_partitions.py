"""0007: partition the tables whose version time moves by practice bucket only (review S17).

0002 and 0003 partitioned seven tables by ``(practice bucket, month of <time>)`` where
``<time>`` is the sink's clock when it wrote the row (``written_at``), when the message
failed (``failed_at``) or when a command finished (``completed_at``). Those times change
between the versions of one key: a patient re-sent in February after January, a dead letter
replayed and failing again. ReplacingMergeTree collapses versions only inside a partition,
and background merges and ``OPTIMIZE ... FINAL`` never merge across partitions, so every
monthly version stayed on disk until the TTL (six years), and ``FINAL`` could not use its
partition-local shortcut. ``FINAL`` answers stayed right (the partition key is not in the
sort key), which is why this was not a must-fix.

Like ``denial_money``, these tables are now partitioned by ``cityHash64(practice_id) % 8``
alone. Retention keeps working: the row TTL (``toDateTime(<time>) + days``) is carried over
from the old table (and ``apply_retention`` sets it at every start anyway); a TTL deletes rows
inside parts, it does not need month partitions. Tables whose time is fixed per key
(``handoff_items.created_at``, ``flow_events.at``, ``audit_events.at``, the 0003 tables keyed by
their creation or decision time) keep their months.

Same procedure as 0002 (the partition key cannot be altered): rename to
``<table>_before_0007``, create with the same columns, engine, sort key and TTL and the new
partition key, copy the rows (Kafka positions included), check every key arrived, drop the
set-aside table. Re-runnable after a crash: the rows not copied yet are copied from the set-aside table.
Other writers may be live meanwhile (old sinks in a rolling upgrade, Kafka-engine views): their rows in
the new table are never deleted (review s19 M3, see ``repartition``).
"""

from __future__ import annotations

import re

from practiceflow.sinks.clickhouse_migrations import MigrationContext, repartition

# checksums this file had before edits that leave a database that finished it as it is (the runner treats
# them as this file)
AMENDED_FROM = {
    "708981054a0ca8632fae81669039a81e93d5624cc85fc4511a8ebb6ac744860c": (
        "s19 M3: no TRUNCATE, copy only missing rows, keys a subset; a finished run left the same tables"
    ),
}

PRACTICE_BUCKETS = 8
BY_BUCKET = f"cityHash64(practice_id) % {PRACTICE_BUCKETS}"

# the tables 0002/0003 partitioned by a month of a time that differs between a key's versions
TABLES = (
    "records",
    "observations",
    "immunizations",
    "fax_classifications",
    "dead_letters",
    "command_results",
    "eligibility_results",
)

_TTL = re.compile(r"\bTTL\s+(.+?)(?=\s+SETTINGS\b|$)", re.S)


def _norm(expr: str) -> str:
    return expr.replace(" ", "").strip("()")


def migrate(ctx: MigrationContext) -> None:
    for table in TABLES:
        aside = f"{table}_before_0007"
        info = ctx.table_info(table)
        if info is not None and _norm(info[0]) != _norm(BY_BUCKET):
            ctx.command(f"RENAME TABLE {{db}}.{table} TO {{db}}.{aside}")
        source = ctx.table_info(aside)
        if source is None:
            continue  # by bucket already, and no copy pending
        ttl = _TTL.search(source[2])
        repartition(ctx, table, aside, BY_BUCKET, ttl=ttl.group(1).strip() if ttl else "")
